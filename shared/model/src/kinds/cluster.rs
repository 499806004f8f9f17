use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::kinds::{HealthCheckChecks, HealthCheckRemediation, Rollout, TemplateMetadata};
use crate::meta::Conditions;

/// A Kubernetes cluster's machines: a control plane and worker pools, each expanded
/// by the cluster reconciler into a MachineDeployment (Cluster API's topology).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterSpec {
    /// Kubernetes version every machine is built for, e.g. "v1.31.2".
    pub version: String,
    /// While true, no reconciler acts on this cluster's tree (deletion still proceeds).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    pub control_plane: ControlPlaneTopology,
    pub workers: Vec<WorkerPool>,
    /// Tags on every instance of the cluster (CAPA's `additionalTags`); changed in
    /// place on running instances, never by a rollout.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_tags: BTreeMap<String, String>,
    /// How Capstan's functions reach the workload cluster's API server, to see the
    /// Node each instance becomes (Cluster API reaches workload clusters through a
    /// kubeconfig the same way). None: instance-only behaviour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<ClusterAccess>,
}

/// One way of reaching a workload cluster's API server. Exactly one is set. No
/// credential is ever stored here: only where to find one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterAccess {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eks: Option<EksAccess>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<KubeconfigAccess>,
}

/// An EKS cluster, reached with a bearer token made from the function's own IAM role
/// (as aws-iam-authenticator makes it), authorised by an EKS access entry. Endpoint and
/// certificate authority come from DescribeCluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct EksAccess {
    pub cluster_name: String,
    /// The cluster's region when it differs from the installation's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// A self-managed control plane: a kubeconfig held in Secrets Manager.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct KubeconfigAccess {
    pub secret_arn: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct ControlPlaneTopology {
    pub machine_class: String,
    #[cfg_attr(feature = "schema", schemars(range(min = 0)))]
    pub replicas: i32,
}

/// A pool of identical worker machines.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct WorkerPool {
    pub name: String,
    pub machine_class: String,
    /// Desired size; with `autoscaling` set, only the initial size (an autoscaler owns it after).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0)))]
    pub replicas: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<PoolHealthCheck>,
    /// Labels and annotations for the pool's Machines (Cluster API's
    /// `topology.workers.machineDeployments[].metadata`), propagated in place.
    #[serde(skip_serializing_if = "is_default")]
    pub metadata: TemplateMetadata,
    /// Tags on the pool's instances besides the cluster's; they win on a clash.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_tags: BTreeMap<String, String>,
    /// Taints for the pool's Nodes, applied in place (needs `spec.access`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<crate::kinds::MachineTaint>,
    /// Timeouts of the pool's Machines' deletion steps (drain, volume detach, Node
    /// deletion), applied in place (needs `spec.access`).
    #[serde(skip_serializing_if = "crate::kinds::MachineDeletion::is_default")]
    pub deletion: crate::kinds::MachineDeletion,
}

fn is_default(m: &TemplateMetadata) -> bool {
    *m == TemplateMetadata::default()
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct Autoscaling {
    pub min: i32,
    pub max: i32,
}

/// A MachineHealthCheck the cluster reconciler creates for one pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct PoolHealthCheck {
    pub checks: HealthCheckChecks,
    pub remediation: HealthCheckRemediation,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ClusterPhase {
    #[default]
    Pending,
    Provisioning,
    Provisioned,
    Deleting,
    Failed,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    pub phase: ClusterPhase,
    pub control_plane: ReplicaSummary,
    pub workers: ReplicaSummary,
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
}

/// Desired against ready machines across a set of pools.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicaSummary {
    pub desired: i32,
    pub ready: i32,
}
