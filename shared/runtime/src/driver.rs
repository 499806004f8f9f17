//! The one loop every runtime runs: the embedded control plane (`capstan up`), the
//! simulator and the endpoint runtime (`capstan run --endpoint`). On AWS, Lambda is
//! this loop; everywhere else, the driver plays Lambda's part, with the same event
//! shapes and through the same entry points (`crate::functions`):
//!
//! 1. **relay** what happened outside the table (EC2's instance events) onto the bus;
//! 2. hand the stream router one **stream batch** (a `DynamoDbEvent`) and checkpoint
//!    as Lambda does: records before the first one reported failed are done, the rest
//!    comes again;
//! 3. **serve the queues**: for each reconciler, start up to the schedule's number of
//!    invocations at once, each with its own `SqsEvent` batch, run them side by side,
//!    and delete only the messages not reported failed (an invocation abandoned at the
//!    function timeout deletes nothing: its messages come back after the visibility
//!    timeout);
//! 4. run the **drift sweep** with a scheduled event when due.
//!
//! A runtime chooses only its adapters (the `Platform` and the ports inside
//! `Functions`) and its scheduling policy (`Schedule`): the order queues are served
//! in, how many invocations run at once and how they interleave, batch sizes, time.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use capstan_model::Timestamp;
use serde_json::json;
use thiserror::Error;

use crate::control_plane::HandlerError;
use crate::control_plane::NoWorkload;
use crate::events::envelope;
use crate::functions::Functions;
use crate::ports::{Bus, Compute, Store, Workload};
use crate::routes::Reconciler;
use crate::sweep::SweepReport;

/// The largest batch Lambda hands one invocation from a standard SQS queue (with a
/// batching window; without one, 10).
pub const MAX_BATCH_SIZE: usize = 10_000;

/// A call to the platform (the endpoint's stream, queues or EC2) that failed.
#[derive(Debug, Error)]
#[error("{action}: {detail}")]
pub struct PlatformError {
    pub action: String,
    pub detail: String,
}

impl PlatformError {
    pub fn new(action: impl Into<String>, detail: impl std::fmt::Display) -> PlatformError {
        PlatformError {
            action: action.into(),
            detail: detail.to_string(),
        }
    }
}

/// What Lambda's triggers read from: the table's stream, the queues, and EC2's events.
pub trait Platform {
    /// Delivers what happened outside the table since the last call (EC2's instance
    /// events) onto the bus; how many events.
    fn relay(&mut self) -> impl Future<Output = Result<usize, PlatformError>>;
    /// The stream's next batch of at most `max` records, as the event source mapping
    /// delivers it; None when there is nothing new.
    fn stream_batch(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Option<DynamoDbEvent>, PlatformError>>;
    /// Lambda's checkpoint after the router answered: records before the first one
    /// reported failed are done; from it on, the stream delivers them again.
    fn checkpoint(
        &mut self,
        batch: &DynamoDbEvent,
        response: &DynamoDbEventResponse,
    ) -> impl Future<Output = Result<(), PlatformError>>;
    /// Up to `max` messages of `queue`, as the SQS trigger delivers them (hidden for
    /// the visibility timeout until deleted).
    fn receive(
        &mut self,
        queue: Reconciler,
        max: usize,
    ) -> impl Future<Output = Result<SqsEvent, PlatformError>>;
    /// Deletes handled messages from `queue`.
    fn delete(
        &mut self,
        queue: Reconciler,
        handled: &[&SqsMessage],
    ) -> impl Future<Output = Result<(), PlatformError>>;
    /// The platform's time: the sweep's schedule reads it.
    fn now(&self) -> Timestamp;
}

/// One reconciler invocation in flight.
pub struct Invocation<'a> {
    pub queue: Reconciler,
    pub future: Pin<Box<dyn Future<Output = SqsBatchResponse> + 'a>>,
}

/// A runtime's scheduling policy.
pub trait Schedule {
    /// The queues in the order this step serves them.
    fn queues(&mut self) -> Vec<Reconciler> {
        Reconciler::ALL.to_vec()
    }
    /// How many invocations of `queue` may start at once this step (Lambda's
    /// concurrency; each takes its own batch).
    fn invocations(&mut self, _queue: Reconciler) -> usize {
        1
    }
    /// The batch size of one invocation.
    fn batch_size(&mut self, _queue: Reconciler) -> usize {
        10
    }
    /// Whether all queues' invocations of a step run side by side (received first,
    /// then run together), rather than each queue's as soon as they are received.
    fn queues_side_by_side(&self) -> bool {
        false
    }
    /// After serving a queue that had messages, whether this step ends there.
    fn stop_after(&mut self, _queue: Reconciler) -> bool {
        false
    }
    /// Runs the step's invocations side by side until each has answered or was
    /// abandoned at the function timeout (None), in the order given.
    fn run<'a>(
        &'a mut self,
        invocations: Vec<Invocation<'a>>,
    ) -> impl Future<Output = Vec<Option<SqsBatchResponse>>> + 'a;
}

/// Every queue in turn, one invocation at a time, each to its end: the embedded
/// runtime's policy (its adapters never wait, so nothing times out).
#[derive(Clone, Copy, Debug)]
pub struct Sequential {
    /// Messages an invocation takes at once (Lambda's batch size, at most 10).
    pub batch_size: usize,
}

impl Default for Sequential {
    fn default() -> Self {
        Sequential { batch_size: 10 }
    }
}

impl Schedule for Sequential {
    fn batch_size(&mut self, _queue: Reconciler) -> usize {
        self.batch_size
    }

    async fn run<'a>(
        &'a mut self,
        invocations: Vec<Invocation<'a>>,
    ) -> Vec<Option<SqsBatchResponse>> {
        let mut out = Vec::with_capacity(invocations.len());
        for invocation in invocations {
            out.push(Some(invocation.future.await));
        }
        out
    }
}

/// How the driver behaves.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// How often the drift sweep runs (5 minutes on AWS).
    pub sweep_every: Duration,
    /// Records the stream router takes at once (the mapping's batch size).
    pub stream_batch_size: usize,
    /// How often the autoscaler's scheduled check runs (once a minute); None: never
    /// (the drift sweep still asks for one with each sweep).
    pub autoscale_every: Option<Duration>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            sweep_every: Duration::from_secs(300),
            stream_batch_size: 100,
            autoscale_every: Some(Duration::from_secs(60)),
        }
    }
}

/// Counters a person (or a test) may want after a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    pub steps: u64,
    /// Events relayed from outside the table (EC2's instance events).
    pub relayed: u64,
    pub stream_records: u64,
    /// Reconciler invocations, and the messages they were handed.
    pub batches: u64,
    pub messages: u64,
    pub failed_messages: u64,
    pub timed_out_invocations: u64,
    pub sweeps: u64,
}

/// One served invocation, as the step saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub queue: Reconciler,
    pub messages: usize,
    pub failed: usize,
    pub timed_out: bool,
}

/// What one step did.
#[derive(Debug, Default)]
pub struct StepReport {
    pub relayed: usize,
    pub stream_records: usize,
    /// Stream records the router reported failed (to be delivered again).
    pub stream_failed: bool,
    pub served: Vec<Served>,
    pub sweep: Option<Result<SweepReport, HandlerError>>,
}

impl StepReport {
    /// True if anything happened.
    pub fn worked(&self) -> bool {
        self.relayed > 0
            || self.stream_records > 0
            || !self.served.is_empty()
            || self.sweep.is_some()
    }
}

/// The loop: a platform, the functions, a schedule.
pub struct Driver<P, S, C, B, Sch, W = NoWorkload> {
    pub platform: P,
    pub functions: Functions<S, C, B, W>,
    pub schedule: Sch,
    pub config: DriverConfig,
    next_sweep: Timestamp,
    /// When the autoscaler's scheduled check is next due (None: not scheduled).
    next_autoscale: Option<Timestamp>,
    pub stats: DriverStats,
}

impl<P: Platform, S: Store, C: Compute, B: Bus, Sch: Schedule, W: Workload>
    Driver<P, S, C, B, Sch, W>
{
    /// The first sweep comes one period after `platform.now()`.
    pub fn new(
        platform: P,
        functions: Functions<S, C, B, W>,
        schedule: Sch,
        config: DriverConfig,
    ) -> Self {
        let now = platform.now();
        let next_sweep = now.checked_add(config.sweep_every).unwrap_or(now);
        let next_autoscale = config
            .autoscale_every
            .and_then(|every| now.checked_add(every).ok());
        Driver {
            platform,
            functions,
            schedule,
            config,
            next_sweep,
            next_autoscale,
            stats: DriverStats::default(),
        }
    }

    /// When the next scheduled event is due: the sweep, or the autoscaler's check.
    pub fn next_sweep(&self) -> Timestamp {
        match self.next_autoscale {
            Some(t) => t.min(self.next_sweep),
            None => self.next_sweep,
        }
    }

    /// Runs the drift sweep at the next step: how a control plane that restarts
    /// catches up with work whose queued messages it did not keep.
    pub fn sweep_soon(&mut self) {
        self.next_sweep = self.platform.now();
    }

    /// One round: relay, one stream batch, the queues, the sweep when due.
    pub async fn step(&mut self) -> Result<StepReport, PlatformError> {
        self.stats.steps += 1;
        let mut report = StepReport {
            relayed: self.platform.relay().await?,
            ..StepReport::default()
        };
        self.stats.relayed += report.relayed as u64;

        if let Some(batch) = self
            .platform
            .stream_batch(self.config.stream_batch_size)
            .await?
        {
            let response = self.functions.stream(&batch).await;
            report.stream_records = batch.records.len();
            report.stream_failed = !response.batch_item_failures.is_empty();
            self.stats.stream_records += batch.records.len() as u64;
            self.platform.checkpoint(&batch, &response).await?;
        }

        // As Lambda's pollers do, an invocation's batch is received just before it
        // runs (a batch received long before would sit invisible, its visibility
        // timeout running); a schedule that runs every queue's invocations side by
        // side receives them all first.
        let side_by_side = self.schedule.queues_side_by_side();
        let mut batches: Vec<(Reconciler, SqsEvent)> = Vec::new();
        for queue in self.schedule.queues() {
            let mut any = false;
            for _ in 0..self.schedule.invocations(queue).max(1) {
                // Lambda's SQS batch: at most 10 messages without a batching window,
                // up to 10,000 with one. A platform over real SQS (10 a receive) clamps.
                let size = self.schedule.batch_size(queue).clamp(1, MAX_BATCH_SIZE);
                let event = self.platform.receive(queue, size).await?;
                if event.records.is_empty() {
                    break;
                }
                any = true;
                batches.push((queue, event));
            }
            if !side_by_side {
                self.serve(std::mem::take(&mut batches), &mut report)
                    .await?;
            }
            if any && self.schedule.stop_after(queue) {
                break;
            }
        }
        self.serve(batches, &mut report).await?;

        if self.platform.now() >= self.next_sweep {
            report.sweep = Some(self.sweep().await);
        }
        if let Some(due) = self.next_autoscale
            && self.platform.now() >= due
        {
            let now = self.platform.now();
            let event = envelope("aws.events", "Scheduled Event", json!({}), now);
            // A failure is logged by the function; the next minute's check repairs it.
            let _ = self.functions.autoscale_schedule(&event).await;
            self.next_autoscale = self
                .config
                .autoscale_every
                .and_then(|every| now.checked_add(every).ok());
        }
        Ok(report)
    }

    /// Runs the drift sweep now, with the scheduled event EventBridge sends (it also
    /// runs every `sweep_every`).
    pub async fn sweep(&mut self) -> Result<SweepReport, HandlerError> {
        self.stats.sweeps += 1;
        let now = self.platform.now();
        let event = envelope("aws.events", "Scheduled Event", json!({}), now);
        let result = self.functions.schedule(&event).await;
        self.next_sweep = now.checked_add(self.config.sweep_every).unwrap_or(now);
        result
    }

    /// Runs invocations on `batches` side by side and settles each.
    async fn serve(
        &mut self,
        batches: Vec<(Reconciler, SqsEvent)>,
        report: &mut StepReport,
    ) -> Result<(), PlatformError> {
        if batches.is_empty() {
            return Ok(());
        }
        let functions = &self.functions;
        let invocations = batches
            .iter()
            .map(|(queue, event)| Invocation {
                queue: *queue,
                future: Box::pin(functions.queue(*queue, event)),
            })
            .collect();
        let answers = self.schedule.run(invocations).await;
        for ((queue, event), answer) in batches.iter().zip(answers) {
            let served = self.settle(*queue, event, answer).await?;
            report.served.push(served);
        }
        Ok(())
    }

    /// Deletes what an invocation handled; nothing if it timed out.
    async fn settle(
        &mut self,
        queue: Reconciler,
        event: &SqsEvent,
        answer: Option<SqsBatchResponse>,
    ) -> Result<Served, PlatformError> {
        self.stats.batches += 1;
        self.stats.messages += event.records.len() as u64;
        let Some(response) = answer else {
            self.stats.timed_out_invocations += 1;
            tracing::warn!(
                function = queue.name(),
                step = "invoke",
                "invocation timed out; as in Lambda, nothing is deleted and the messages come back after the visibility timeout"
            );
            return Ok(Served {
                queue,
                messages: event.records.len(),
                failed: 0,
                timed_out: true,
            });
        };
        let failed = |m: &SqsMessage| {
            response
                .batch_item_failures
                .iter()
                .any(|f| Some(&f.item_identifier) == m.message_id.as_ref())
        };
        let handled: Vec<&SqsMessage> = event.records.iter().filter(|m| !failed(m)).collect();
        let failed = event.records.len() - handled.len();
        self.stats.failed_messages += failed as u64;
        if !handled.is_empty() {
            self.platform.delete(queue, &handled).await?;
        }
        Ok(Served {
            queue,
            messages: event.records.len(),
            failed,
            timed_out: false,
        })
    }
}
