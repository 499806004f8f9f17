//! reconcile-dispatcher: reads the one work queue that every reconciler's EventBridge
//! rule feeds, each message wrapped with the reconciler it is for
//! (`capstan_runtime::routes::wrap`), and invokes each reconciler's own function
//! synchronously with the messages meant for it (`capstan_runtime::dispatch`).
//!
//! Triggered by the work queue's one SQS event source mapping; answers with the union of
//! the reconcilers' failed messages (ReportBatchItemFailures) — every message of a
//! reconciler whose invocation failed as a whole — so only those are delivered again
//! and, after five receives, reach the dead-letter queue. Its role may only read the
//! work queue and invoke the reconcilers' functions; it reads no table and calls no EC2.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use capstan_runtime::dispatch::dispatch;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    capstan_aws::lambda::init_tracing();
    // The Lambda client is built once per execution environment and reused.
    let invoker = capstan_aws::invoke::LambdaInvoker::from_env().await;
    let invoker = &invoker;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(dispatch(invoker, &event.payload).await)
    }))
    .await
}
