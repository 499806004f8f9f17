//! Capstan's ports over the AWS SDK — `DynamoStore` (one table), `Ec2Compute`,
//! `EventBridgeBus` (EventBridge + SQS), `AwsConnect` (how `capstan-kube` reaches an
//! EKS or kubeconfig-described workload cluster) — built from one `aws-config` load
//! (`Clients`), what a Lambda binary needs to start (`lambda`), the reconcile
//! dispatcher's Lambda Invoke (`invoke`), and the resources an
//! installation has (`provision`, used by the endpoint runtime).
//!
//! Depends on `capstan-model` and `capstan-runtime`; the decisions never see an SDK type.

pub mod bus;
pub mod clients;
pub mod compute;
pub mod convert;
pub mod error;
pub mod invoke;
pub mod lambda;
pub mod provision;
pub mod store;
pub mod workload;

pub use bus::EventBridgeBus;
pub use capstan_runtime::functions::{Functions, MetricsSink};
pub use clients::{Clients, Names, Settings};
pub use compute::Ec2Compute;
pub use lambda::{AwsFunctions, aws_functions};
pub use store::DynamoStore;
pub use workload::AwsConnect;
