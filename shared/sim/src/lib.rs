//! In-memory adapters that keep AWS's semantics: a DynamoDB table with its change
//! stream and sparse index ([`MemStore`]), EC2 with instance lifecycles and state-change
//! events ([`SimEc2`]), and an EventBridge bus feeding one SQS work queue per
//! reconciler ([`MemBus`]), and the workload clusters' Kubernetes API servers with their
//! kubelets ([`MemWorkload`]); plus virtual time ([`ManualClock`]) and seeded entropy
//! ([`SeededEntropy`]), and the platform the driver reads them through
//! ([`MemPlatform`]). The embedded control plane (`capstan-embedded`), the tests and
//! the simulator drive Capstan's functions through them.
//!
//! Everything is deterministic: no OS randomness and no wall-clock reads; time comes
//! from an injected [`Clock`](capstan_runtime::Clock) and ids from counters or the
//! seeded [`Rng`]. Every adapter is a cheap `Clone` handle onto shared state, and every
//! async method completes without awaiting anything.
//!
//! This crate must not depend on AWS SDK crates: it stands in for AWS, and the
//! `aws_lambda_events` types it uses are plain serde structs.

pub mod bus;
pub mod clock;
pub mod ec2;
pub mod platform;
pub mod rng;
pub mod simulator;
pub mod store;
pub mod workload;

pub use bus::{Delivery, MemBus, Message, RequeueCount};
pub use clock::{ManualClock, SeededEntropy};
pub use ec2::{Bucket, Ec2Calls, Ec2Config, Ec2Limits, Ec2Op, SimEc2};
pub use platform::MemPlatform;
pub use rng::Rng;
pub use store::MemStore;
pub use workload::{
    Budget, ClusterKey, EvictionRecord, FlakyApi, IntOrPercent, MemWorkload, NotReady,
    PodDisruptionBudget, PodSpec, Throttle, WorkloadCalls, WorkloadConfig,
};
