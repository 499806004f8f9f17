//! Capstan's ports over the AWS SDK — `DynamoStore` (one table), `Ec2Compute`,
//! `EventBridgeBus` (EventBridge + SQS) — built from one `aws-config` load
//! (`Clients`), the Lambda event handling every function shares (`lambda`), the
//! resources a deployment has (`provision`, used by the local runtime), and, with the
//! `local` feature, the local runtime against an AWS-compatible endpoint.
//!
//! Depends on `capstan-model` and `capstan-runtime`; the decisions never see an SDK type.

pub mod bus;
pub mod clients;
pub mod compute;
pub mod convert;
mod error;
pub mod lambda;
pub mod metrics;
pub mod provision;
pub mod store;

#[cfg(feature = "local")]
pub mod local;

pub use bus::EventBridgeBus;
pub use clients::{Clients, Names, Settings};
pub use compute::Ec2Compute;
pub use lambda::{AwsFunctions, Functions, MetricsSink};
pub use store::DynamoStore;
