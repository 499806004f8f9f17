//! The reconcile dispatcher: what the one function reading the work queue does with a
//! batch. Every reconciler's rule feeds that one queue, each message wrapped with the
//! reconciler it is for (`routes::wrap`); the dispatcher
//!
//! 1. **groups** the batch by reconciler, unwrapping each message to the EventBridge
//!    event it carries, so each group is exactly the SQS event the reconciler would have
//!    received from a queue of its own (same message ids, receipt handles and
//!    attributes; the body is the event) — the reconcilers' handlers, their per-object
//!    coalescing and their partial batch responses are unchanged;
//! 2. **invokes** each group's reconciler (on AWS a synchronous Lambda Invoke of that
//!    reconciler's own function, with its own role), the groups side by side;
//! 3. **answers** the union of the groups' `batchItemFailures`, plus every message it
//!    could not unwrap. A group whose invocation failed as a whole (throttled after the
//!    SDK's retries, a function error, a timeout, an answer that is not a batch
//!    response) fails every message of the group: SQS delivers them again after the
//!    visibility timeout and, after `MAX_RECEIVE_COUNT` receives, moves them to the
//!    dead-letter queue, where the wrapper still names the reconciler.
//!
//! Guarantees: a message is reported failed unless the reconciler it names handled it;
//! a failure a reconciler reports for a message outside its group (which would make
//! Lambda fail the whole batch) fails its whole group instead.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use thiserror::Error;
use tracing::{error, info, warn};

use crate::routes::{Reconciler, unwrap};

/// Why a reconciler's invocation failed as a whole.
#[derive(Debug, Error)]
pub enum InvokeError {
    /// Refused for lack of concurrency (Lambda's 429 TooManyRequestsException), after
    /// the SDK's own retries.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The function ran and failed: it crashed, returned an error or timed out
    /// (Lambda's `X-Amz-Function-Error`).
    #[error("the function failed ({kind}): {detail}")]
    Function { kind: String, detail: String },
    /// The function answered with something that is not an SQS batch response.
    #[error("the answer is not a batch response: {0}")]
    Answer(String),
    /// The call did not complete (network, service error, the client's timeout).
    #[error("{0}")]
    Unavailable(String),
}

/// A reconciler's own entry point, as the dispatcher reaches it (on AWS: Lambda's
/// Invoke, RequestResponse; in a test: a fake that answers what it is told).
pub trait Invoke {
    /// Runs `reconciler` on `event` and returns its partial batch response.
    fn invoke(
        &self,
        reconciler: Reconciler,
        event: SqsEvent,
    ) -> impl Future<Output = Result<SqsBatchResponse, InvokeError>>;
}

/// One work-queue batch, split by reconciler.
#[derive(Debug, Default)]
pub struct Groups {
    /// Each reconciler's messages, unwrapped, in the batch's order.
    pub by_reconciler: BTreeMap<Reconciler, SqsEvent>,
    /// Messages that name no known reconciler or carry no event: reported failed, so
    /// that they reach the dead-letter queue.
    pub unreadable: Vec<String>,
}

/// Splits `batch` by the reconciler each message names; each message's body becomes the
/// event it carries.
pub fn group(batch: &SqsEvent) -> Groups {
    let mut groups = Groups::default();
    for message in &batch.records {
        let Some(id) = message.message_id.clone() else {
            error!(
                step = "dispatch",
                "an SQS message without a messageId; it cannot be reported failed"
            );
            continue;
        };
        match message.body.as_deref().map(unwrap) {
            Some(Ok((reconciler, event))) => {
                let mut inner: SqsMessage = message.clone();
                inner.body = Some(event.to_string());
                groups
                    .by_reconciler
                    .entry(reconciler)
                    .or_default()
                    .records
                    .push(inner);
            }
            Some(Err(e)) => {
                error!(step = "dispatch", message = %id, error = %e, "not a work-queue message; it will reach the dead-letter queue");
                groups.unreadable.push(id);
            }
            None => {
                error!(step = "dispatch", message = %id, "message without a body; it will reach the dead-letter queue");
                groups.unreadable.push(id);
            }
        }
    }
    groups
}

/// The message ids a batch response reports as failed, sorted.
pub fn failed_ids(response: &SqsBatchResponse) -> Vec<String> {
    let mut ids: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    ids
}

/// The messages of `event` that its reconciler's `answer` says failed: the ones it
/// reported, or all of them when the invocation failed or reported an id it was not given.
pub fn failures_of(
    reconciler: Reconciler,
    event: &SqsEvent,
    answer: Result<SqsBatchResponse, InvokeError>,
) -> Vec<String> {
    let ids: BTreeSet<&str> = event
        .records
        .iter()
        .filter_map(|m| m.message_id.as_deref())
        .collect();
    let all = || ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
    match answer {
        Ok(response) => {
            let reported = failed_ids(&response);
            if let Some(stranger) = reported.iter().find(|id| !ids.contains(id.as_str())) {
                warn!(step = "dispatch", function = reconciler.name(), message = %stranger, "the reconciler reported a message it was not given; failing its whole group");
                return all();
            }
            reported
        }
        Err(e) => {
            warn!(step = "dispatch", function = reconciler.name(), messages = ids.len(), error = %e, "invocation failed; its messages come back after the visibility timeout");
            all()
        }
    }
}

/// The dispatcher's whole job: group, invoke side by side, answer the failures.
pub async fn dispatch<I: Invoke>(invoker: &I, batch: &SqsEvent) -> SqsBatchResponse {
    let Groups {
        by_reconciler,
        unreadable,
    } = group(batch);
    let calls = by_reconciler.iter().map(|(reconciler, event)| async move {
        let answer = invoker.invoke(*reconciler, event.clone()).await;
        failures_of(*reconciler, event, answer)
    });
    let mut failed: Vec<String> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .chain(unreadable)
        .collect();
    failed.sort();
    failed.dedup();
    info!(
        step = "dispatch",
        messages = batch.records.len(),
        groups = by_reconciler.len(),
        failed = failed.len(),
        "batch dispatched"
    );
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}
