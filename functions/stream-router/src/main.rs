//! stream-router: turns the table's DynamoDB stream into "<Kind> Changed" events on the
//! `capstan` bus, carrying the object's key and its owner's.
//!
//! Triggered by the table's stream (NEW_AND_OLD_IMAGES) with ReportBatchItemFailures:
//! a malformed record or a failed publish is reported by sequence number, so Lambda
//! retries from there and never skips a change.

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    capstan_aws::lambda::init_tracing();
    // Clients are built once per execution environment and reused by every invocation.
    let functions = capstan_aws::lambda::functions_from_env().await;
    let functions = &functions;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<DynamoDbEventResponse, Error>(functions.stream(&event.payload).await)
    }))
    .await
}
