//! The workload-cluster port ([`capstan_runtime::ports::Workload`]) over the Kubernetes
//! API with kube-rs, the EKS bearer token, and (feature `fixture`) a local API server
//! for tests. May not depend on any `aws-sdk-*` crate: the embedded control plane links
//! it and stays SDK-free; the AWS way in (EKS DescribeCluster, a kubeconfig in Secrets
//! Manager) lives in an adapter crate that implements [`Connect`] with [`eks_token`]
//! and [`config_from_kubeconfig_yaml`].

mod adapter;
mod connect;
mod convert;
pub mod eks_token;
mod error;
pub use capstan_runtime::quantity;
mod retry_after;

#[cfg(feature = "fixture")]
pub mod fixture;

pub use adapter::{KubeWorkload, Timeouts};
pub use connect::{Connect, StaticConnect, config_from_kubeconfig_yaml};
pub use convert::MIRROR_ANNOTATION;
