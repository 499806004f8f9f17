//! The functions' event handling: what every Lambda binary runs, and what the driver
//! (`crate::driver`) hands the same Lambda event shapes to in every other runtime.
//!
//! Each method takes the typed `aws_lambda_events` event its trigger delivers, turns it
//! into the runtime's inputs (`StreamRecord`s, `Delivery`s), calls the handler in
//! `capstan-runtime`, and answers in the trigger's partial-failure shape: a malformed
//! record is logged and reported failed (so it reaches the DLQ or the stream's failure
//! destination), never a panic, and never a reason to fail the rest of the batch.

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::dynamodb::{Event as DynamoDbEvent, EventRecord};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use capstan_model::item::item_key;
use thiserror::Error;
use tracing::{Instrument, error, info, info_span};

use crate::control_plane::NoWorkload;
use crate::control_plane::{ControlPlane, HandlerError};
use crate::handlers::Delivery;
use crate::metrics::{Invocation, Meter, Metered, RecentLines};
use crate::ports::{
    Bus, BusEvent, ChangeKind, Clock, Compute, Entropy, Store, StreamRecord, Workload,
};
use crate::routes::Reconciler;
use crate::sweep::SweepReport;
use crate::wire::{ConvertError, item_from_wire};

/// The name of the stream-router function (the reconcilers' are `Reconciler::name()`).
pub const STREAM_ROUTER: &str = "stream-router";
/// The name of the drift-sweep function.
pub const DRIFT_SWEEP: &str = "drift-sweep";
/// The name the autoscaler's scheduled check reports under (the drift-sweep function
/// on a second schedule).
pub const AUTOSCALE_SCHEDULE: &str = "autoscale-schedule";

/// Why a stream record could not be turned into a `StreamRecord`.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error("unknown eventName {0:?} (expected INSERT, MODIFY or REMOVE)")]
    EventName(String),
    #[error("no SequenceNumber")]
    NoSequence,
    #[error("SequenceNumber {0:?} is not a number")]
    BadSequence(String),
    #[error("Keys lack the string attributes pk and sk")]
    Keys,
    #[error("{part}: {source}")]
    Attribute {
        part: &'static str,
        #[source]
        source: ConvertError,
    },
    #[error("{part}: {source}")]
    Json {
        part: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Where EMF lines go: stdout in Lambda (CloudWatch Logs reads them there); the local
/// runtimes keep their stdout for people and log them at debug level instead (and keep
/// the last few in `Functions::recent`); the simulator, which runs millions of
/// invocations, drops them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsSink {
    Stdout,
    Log,
    Discard,
}

/// The control_plane over metered ports, and the meter that reads them.
pub struct Functions<S, C, B, W = NoWorkload> {
    pub control_plane: ControlPlane<Metered<S>, Metered<C>, Metered<B>, W>,
    pub meter: Meter,
    pub metrics: MetricsSink,
    /// With [`MetricsSink::Log`], the lines logged, kept to be read back.
    pub recent: RecentLines,
}

impl<S: Store, C: Compute, B: Bus> Functions<S, C, B> {
    /// Functions without access to any workload cluster (Machines of Clusters that
    /// declare `spec.access` say so); [`Functions::with_workload`] gives them one.
    pub fn new(
        store: S,
        compute: C,
        bus: B,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        installation: &str,
        metrics: MetricsSink,
    ) -> Functions<S, C, B> {
        let meter = Meter::default();
        Functions {
            control_plane: ControlPlane {
                store: Metered::new(store, meter.clone()),
                compute: Metered::new(compute, meter.clone()),
                bus: Metered::new(bus, meter.clone()),
                workload: NoWorkload,
                clock,
                entropy,
                installation: installation.to_string(),
                batch_launches: true,
            },
            meter,
            metrics,
            recent: RecentLines::default(),
        }
    }
}

impl<S: Store, C: Compute, B: Bus, W: Workload> Functions<S, C, B, W> {
    /// The same functions, reaching workload clusters through `workload`.
    pub fn with_workload<W2: Workload>(self, workload: W2) -> Functions<S, C, B, W2> {
        let cp = self.control_plane;
        Functions {
            control_plane: ControlPlane {
                store: cp.store,
                compute: cp.compute,
                bus: cp.bus,
                workload,
                clock: cp.clock,
                entropy: cp.entropy,
                installation: cp.installation,
                batch_launches: cp.batch_launches,
            },
            meter: self.meter,
            metrics: self.metrics,
            recent: self.recent,
        }
    }

    /// stream-router: a DynamoDB stream batch onto the bus as "<Kind> Changed" events.
    ///
    /// Records are routed in order up to the first malformed one, which is reported
    /// failed: Lambda then retries from it (ReportBatchItemFailures checkpoints at the
    /// lowest failed sequence number) and, after the mapping's retry limit, sends it to
    /// the failure destination. If publishing fails, the whole batch is reported failed.
    pub async fn stream(&self, event: &DynamoDbEvent) -> DynamoDbEventResponse {
        let started = Instant::now();
        let span = info_span!("invocation", function = STREAM_ROUTER);
        async {
            let mut records = Vec::new();
            let mut sequences = Vec::new();
            let mut failed: Option<String> = None;
            for record in &event.records {
                let sequence = record.change.sequence_number.clone().unwrap_or_default();
                match stream_record(record) {
                    Ok(r) => {
                        records.push(r);
                        sequences.push(sequence);
                    }
                    Err(e) => {
                        error!(step = "decode", event_id = %record.event_id, sequence = %sequence, error = %e, "malformed stream record; reporting it failed");
                        failed = Some(sequence);
                        break;
                    }
                }
            }
            // Boxed: the handlers' futures are deep, and a binary's main would otherwise
            // exceed the compiler's layout depth limit.
            let routed = match Box::pin(self.control_plane.route_stream(&records)).await {
                Ok(_) => records.len(),
                Err(e) => {
                    error!(step = "route", error = %e, "publishing failed; the batch will be retried");
                    failed = sequences.first().cloned().or(failed);
                    0
                }
            };
            let mut response = DynamoDbEventResponse::default();
            if let Some(sequence) = failed {
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(sequence);
                response.batch_item_failures.push(failure);
            }
            let errors = response.batch_item_failures.len() as u64;
            self.emit(STREAM_ROUTER, self.meter.take(routed as u64, errors, started.elapsed()));
            response
        }
        .instrument(span)
        .await
    }

    /// A reconciler: an SQS batch of EventBridge events, coalesced by object key by the
    /// runtime's `handle_batch`; the failed messages are reported for redelivery.
    pub async fn queue(&self, reconciler: Reconciler, event: &SqsEvent) -> SqsBatchResponse {
        let started = Instant::now();
        let span = info_span!("invocation", function = reconciler.name());
        async {
            let total = event.records.len();
            let mut failed: Vec<String> = Vec::new();
            let mut deliveries = Vec::new();
            for message in &event.records {
                let Some(message_id) = message.message_id.clone() else {
                    error!(step = "decode", "an SQS message without a messageId; it cannot be reported failed");
                    continue;
                };
                match message.body.as_deref().map(serde_json::from_str::<BusEvent>) {
                    Some(Ok(event)) => deliveries.push(Delivery { message_id, event }),
                    Some(Err(e)) => {
                        error!(step = "decode", message = %message_id, error = %e, "message body is not an EventBridge event; it will reach the dead-letter queue");
                        failed.push(message_id);
                    }
                    None => {
                        error!(step = "decode", message = %message_id, "message without a body; it will reach the dead-letter queue");
                        failed.push(message_id);
                    }
                }
            }
            let outcome = Box::pin(self.control_plane.handle_batch(reconciler, deliveries)).await;
            let (scale_ups, scale_downs) = (outcome.scaled_up, outcome.scaled_down);
            let pending_to_scheduled = outcome.pending_to_scheduled;
            failed.extend(outcome.failed);
            failed.sort();
            failed.dedup();
            let mut response = SqsBatchResponse::default();
            for id in &failed {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id.clone();
                response.batch_item_failures.push(failure);
            }
            let errors = failed.len() as u64;
            let mut invocation =
                self.meter.take((total as u64).saturating_sub(errors), errors, started.elapsed());
            invocation.scale_ups = scale_ups;
            invocation.scale_downs = scale_downs;
            invocation.pending_to_scheduled = pending_to_scheduled;
            self.emit(reconciler.name(), invocation);
            response
        }
        .instrument(span)
        .await
    }

    /// drift-sweep: runs on a schedule; the event itself carries nothing it needs.
    pub async fn schedule(&self, event: &BusEvent) -> Result<SweepReport, HandlerError> {
        let started = Instant::now();
        let span = info_span!("invocation", function = DRIFT_SWEEP);
        async {
            info!(step = "sweep", source = %event.source, detail_type = %event.detail_type, "sweeping");
            let result = Box::pin(self.control_plane.sweep()).await;
            let errors = u64::from(result.is_err());
            let mut invocation = self.meter.take(1 - errors, errors, started.elapsed());
            if let Ok(report) = &result {
                invocation.skipped = report.failures as u64;
                invocation.unreadable = report.unreadable as u64;
            }
            self.emit(DRIFT_SWEEP, invocation);
            if let Err(e) = &result {
                error!(step = "sweep", error = %e, "sweep failed; the next one repairs what this one missed");
            }
            result
        }
        .instrument(span)
        .await
    }

    /// The autoscaler's scheduled check (once a minute): an autoscale event for every
    /// Cluster with access and an autoscaled pool, onto the cluster-reconciler's route.
    pub async fn autoscale_schedule(&self, event: &BusEvent) -> Result<usize, HandlerError> {
        let started = Instant::now();
        let span = info_span!("invocation", function = AUTOSCALE_SCHEDULE);
        async {
            tracing::debug!(step = "autoscale", source = %event.source, "scheduled autoscaling check");
            let result = Box::pin(self.control_plane.autoscale_tick()).await;
            let errors = u64::from(result.is_err());
            self.emit(
                AUTOSCALE_SCHEDULE,
                self.meter.take(1 - errors, errors, started.elapsed()),
            );
            if let Err(e) = &result {
                error!(step = "autoscale", error = %e, "the scheduled autoscaling check failed; the next one tries again");
            }
            result
        }
        .instrument(span)
        .await
    }

    fn emit(&self, function: &str, invocation: Invocation) {
        if invocation.is_idle() || self.metrics == MetricsSink::Discard {
            return;
        }
        let line = invocation.emf(function, jiff::Timestamp::now().as_millisecond());
        match self.metrics {
            MetricsSink::Discard => {}
            MetricsSink::Stdout => println!("{line}"),
            MetricsSink::Log => {
                tracing::debug!(target: "capstan::metrics", metrics = %line, "invocation metrics");
                self.recent.push(line);
            }
        }
    }
}

/// One Lambda stream record as the runtime's `StreamRecord`.
pub fn stream_record(record: &EventRecord) -> Result<StreamRecord, RecordError> {
    let kind = match record.event_name.as_str() {
        "INSERT" => ChangeKind::Insert,
        "MODIFY" => ChangeKind::Modify,
        "REMOVE" => ChangeKind::Remove,
        other => return Err(RecordError::EventName(other.to_string())),
    };
    let sequence = record
        .change
        .sequence_number
        .as_deref()
        .ok_or(RecordError::NoSequence)?;
    let sequence = sequence_number(sequence)?;
    let keys = wire_item("Keys", &record.change.keys)?.ok_or(RecordError::Keys)?;
    let key = item_key(&keys).ok_or(RecordError::Keys)?;
    Ok(StreamRecord {
        sequence,
        kind,
        key,
        old_image: wire_item("OldImage", &record.change.old_image)?,
        new_image: wire_item("NewImage", &record.change.new_image)?,
    })
}

/// An image or key map (serde_dynamo's item) read through its JSON wire form; None
/// when absent (an INSERT has no old image, a REMOVE no new one).
fn wire_item<T: serde::Serialize>(
    part: &'static str,
    item: &T,
) -> Result<Option<capstan_model::Item>, RecordError> {
    let value = serde_json::to_value(item).map_err(|source| RecordError::Json { part, source })?;
    if value.as_object().is_some_and(|m| m.is_empty()) || value.is_null() {
        return Ok(None);
    }
    item_from_wire(&value)
        .map(Some)
        .map_err(|source| RecordError::Attribute { part, source })
}

/// DynamoDB Streams sequence numbers are decimal strings of up to 40 digits, beyond
/// u64. The router uses the number only to name the event it publishes, so the last 19
/// digits (which always fit, and differ between neighbouring records) are kept.
fn sequence_number(s: &str) -> Result<u64, RecordError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RecordError::BadSequence(s.to_string()));
    }
    let tail = &s[s.len().saturating_sub(19)..];
    tail.parse()
        .map_err(|_| RecordError::BadSequence(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_sequence_numbers_keep_their_last_digits() {
        assert_eq!(
            sequence_number("1100000000017454423009").unwrap(),
            17454423009
        );
        assert_eq!(sequence_number("111").unwrap(), 111);
        assert!(sequence_number("12a").is_err());
        assert!(sequence_number("").is_err());
    }
}
