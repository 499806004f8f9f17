//! The workload-cluster port ([`capstan_runtime::ports::Workload`]) over the Kubernetes
//! API with kube-rs, the EKS bearer token, and (feature `fixture`) a local API server
//! for tests. May not depend on any `aws-sdk-*` crate: the embedded control plane links
//! it and stays SDK-free; the AWS way in (DescribeCluster, Secrets Manager) lives in an
//! adapter crate that implements [`Connect`] with [`eks_token`].

pub mod eks_token;
