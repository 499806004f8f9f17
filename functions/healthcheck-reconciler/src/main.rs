//! healthcheck-reconciler: MachineHealthCheck changes and the Machines they watch: reports health, remediates.
//!
//! Invoked synchronously by reconcile-dispatcher with the messages of the work queue
//! meant for it (those the EventBridge rule `Reconciler::HealthCheck.patterns()` wrapped for it),
//! unwrapped, as the SQS event a queue of its own would deliver; answers with the
//! messages that failed (ReportBatchItemFailures), so only those are delivered again
//! and, after five receives, reach the dead-letter queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use capstan_runtime::routes::Reconciler;
use lambda_runtime::{Error, LambdaEvent, service_fn};

const RECONCILER: Reconciler = Reconciler::HealthCheck;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    capstan_aws::lambda::init_tracing();
    // Clients are built once per execution environment and reused by every invocation.
    let functions = capstan_aws::lambda::functions_from_env().await;
    let functions = &functions;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(functions.queue(RECONCILER, &event.payload).await)
    }))
    .await
}
