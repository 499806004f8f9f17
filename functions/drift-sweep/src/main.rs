//! drift-sweep: the constant-work safety net, on a schedule (rate(5 minutes)). Asks
//! every object's reconciler to look again, repairs recorded instance states from one
//! paginated DescribeInstances, and terminates leaked instances carrying this
//! installation's tag.
//!
//! A failed sweep fails the invocation (EventBridge retries it); the next scheduled
//! sweep repairs whatever this one missed either way.

use capstan_runtime::ports::BusEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    capstan_aws::lambda::init_tracing();
    // Clients are built once per execution environment and reused by every invocation.
    let functions = capstan_aws::lambda::functions_from_env().await;
    let functions = &functions;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<BusEvent>| async move {
        let report = functions.schedule(&event.payload).await?;
        Ok::<Value, Error>(json!({
            "resynced": report.resynced,
            "statesRepaired": report.states_repaired,
            "orphansTerminated": report.orphans_terminated,
        }))
    }))
    .await
}
