//! drift-sweep: the scheduled jobs, on two schedules. Every 5 minutes, the
//! constant-work safety net: asks every object's reconciler to look again, repairs
//! recorded instance states from one paginated DescribeInstances, and terminates leaked
//! instances carrying this installation's tag. Every minute (an input with
//! `{"check": "autoscale"}`), the autoscaler's check: one Scan of Clusters, an
//! autoscale event for each one with access and an autoscaled pool.
//!
//! A failed job fails the invocation (Lambda retries it once; a run that fails again is
//! recorded in the dead-letter queue, behind its alarm); the next scheduled one repairs
//! whatever this one missed either way.

use capstan_runtime::events::ScheduledJob;
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
        match ScheduledJob::of(&event.payload) {
            ScheduledJob::Sweep => {
                let report = functions.schedule(&event.payload).await?;
                Ok::<Value, Error>(json!({
                    "resynced": report.resynced,
                    "statesRepaired": report.states_repaired,
                    "orphansTerminated": report.orphans_terminated,
                }))
            }
            ScheduledJob::AutoscaleCheck => {
                let clusters = functions.autoscale_schedule(&event.payload).await?;
                Ok(json!({ "autoscaleEvents": clusters }))
            }
        }
    }))
    .await
}
