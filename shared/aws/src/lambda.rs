//! What a Lambda binary needs beyond `capstan_runtime::functions`: the functions over
//! the real AWS adapters, built from the environment, and JSON logging.

use std::sync::Arc;

use capstan_runtime::functions::{Functions, MetricsSink};
use capstan_runtime::system::{OsEntropy, SystemClock};

use crate::bus::EventBridgeBus;
use crate::clients::{Clients, Names};
use crate::compute::Ec2Compute;
use crate::store::DynamoStore;
use crate::workload::AwsConnect;
use capstan_kube::KubeWorkload;

/// The functions over the real AWS adapters, reaching workload clusters over HTTPS.
pub type AwsFunctions =
    Functions<DynamoStore, Ec2Compute, EventBridgeBus, KubeWorkload<AwsConnect>>;

/// The adapters over `clients`, on the wall clock and the OS's randomness.
pub fn aws_functions(clients: &Clients, names: &Names, metrics: MetricsSink) -> AwsFunctions {
    Functions::new(
        DynamoStore::new(clients.dynamodb.clone(), &names.table),
        Ec2Compute::new(clients.ec2.clone()),
        EventBridgeBus::new(
            clients.eventbridge.clone(),
            clients.sqs.clone(),
            names.clone(),
        ),
        Arc::new(SystemClock),
        Arc::new(OsEntropy),
        &names.installation,
        metrics,
    )
    .with_workload(KubeWorkload::new(AwsConnect::new(clients)))
}

/// The functions a Lambda binary runs: names from the environment (`Names::from_env`),
/// clients from the usual AWS chain, metrics on stdout. Built once per process.
pub async fn functions_from_env() -> AwsFunctions {
    let names = Names::from_env();
    let clients = Clients::load(&crate::clients::Settings::default()).await;
    aws_functions(&clients, &names, MetricsSink::Stdout)
}

/// Logs as JSON lines (stdout, which Lambda sends to CloudWatch Logs): one object per
/// line with the invocation's function and, from the handlers, the object key and step.
/// `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
}
