//! The workload cluster: the Kubernetes API server of a cluster whose machines Capstan
//! manages, reached from outside it (as Cluster API reaches workload clusters through a
//! kubeconfig). Only what the Machine lifecycle needs: the Node an instance becomes,
//! the pods on it, evictions and volume attachments.
//!
//! The contract, for every method and every adapter:
//! - 429 (throttled, or an eviction a PodDisruptionBudget refuses), 5xx, timeouts and
//!   dropped connections are retryable: [`WorkloadError::is_retryable`]. The caller
//!   gives up for this pass and is woken again; it never counts them as an answer.
//! - 404 means the object does not exist *now*. A lookup answers `None`; a delete of
//!   something already gone succeeds. It never means "the cluster is unreachable".
//! - 409 (a resourceVersion that moved) is `Conflict`: re-read and decide again.
//! - 401/403 and 400/422 are final until a person fixes access or RBAC: reported on the
//!   Machine, never retried in a loop.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use capstan_model::Timestamp;
use capstan_model::kinds::ClusterAccess;
use capstan_model::meta::ConditionStatus;
pub use capstan_reconcile::EksCluster;
pub use capstan_reconcile::autoscale::{MatchExpression, NodeSelectorTerm, Operator};
use thiserror::Error;

/// Which workload cluster a call is for: the Capstan Cluster and how to reach its API.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadTarget {
    pub namespace: String,
    pub cluster: String,
    pub access: ClusterAccessKey,
}

/// The part of a Cluster's `spec.access` that identifies its API server, hashable so an
/// adapter can cache one client per cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClusterAccessKey {
    Eks {
        cluster_name: String,
        region: Option<String>,
    },
    Kubeconfig {
        secret_arn: String,
    },
}

impl ClusterAccessKey {
    /// None when the Cluster declares no (or no single) way in.
    pub fn from_spec(access: &ClusterAccess) -> Option<Self> {
        match (&access.eks, &access.kubeconfig) {
            (Some(eks), None) => Some(ClusterAccessKey::Eks {
                cluster_name: eks.cluster_name.clone(),
                region: eks.region.clone(),
            }),
            (None, Some(k)) => Some(ClusterAccessKey::Kubeconfig {
                secret_arn: k.secret_arn.clone(),
            }),
            _ => None,
        }
    }
}

/// `providerID` of the Node an EC2 instance becomes: `aws:///<zone>/<instance-id>`.
pub fn provider_id(availability_zone: &str, instance_id: &str) -> String {
    format!("aws:///{availability_zone}/{instance_id}")
}

/// The instance id at the end of a providerID (`aws:///us-east-1a/i-0abc` → `i-0abc`),
/// whatever the zone part says: kubelets and cloud providers disagree on it.
pub fn instance_id_of(provider_id: &str) -> Option<&str> {
    let rest = provider_id.strip_prefix("aws://")?;
    let id = rest.rsplit('/').next()?;
    id.starts_with("i-").then_some(id)
}

/// A Node as the Machine lifecycle needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub provider_id: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// `spec.unschedulable`: cordoned.
    pub unschedulable: bool,
    pub conditions: Vec<NodeCondition>,
    pub kubelet_version: String,
    pub os_image: String,
    /// `status.allocatable`, as reported (cpu, memory, pods …).
    pub allocatable: BTreeMap<String, String>,
    /// `status.volumesAttached[].name`.
    pub volumes_attached: Vec<String>,
    pub created: Option<Timestamp>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

impl Node {
    pub fn condition(&self, type_: &str) -> Option<&NodeCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// The kubelet says Ready=True.
    pub fn is_ready(&self) -> bool {
        self.condition("Ready")
            .is_some_and(|c| c.status == ConditionStatus::True)
    }
}

/// A node taint (`spec.taints[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// One of a Node's `status.conditions`.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeCondition {
    pub type_: String,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
    pub last_transition_time: Option<Timestamp>,
}

/// What to change on a Node, as a merge patch: labels set (Some) or removed (None),
/// taints replaced whole when Some, cordoned or uncordoned when Some.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodePatch {
    pub labels: BTreeMap<String, Option<String>>,
    pub taints: Option<Vec<Taint>>,
    pub unschedulable: Option<bool>,
}

impl NodePatch {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.taints.is_none() && self.unschedulable.is_none()
    }
}

/// Which pods to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodFilter {
    /// `spec.nodeName=<node>`.
    OnNode(String),
    /// Not bound to a node and not finished (`spec.nodeName=`, phase Pending).
    Unscheduled,
    /// Every pod not finished (`status.phase!=Succeeded,status.phase!=Failed`), bound or
    /// not: one list for what autoscaling needs of the whole cluster.
    Active,
}

/// A pod as drain and autoscaling need it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node_name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The controller owner's kind (`DaemonSet`, `ReplicaSet`, `Node` for mirror pods…).
    pub controller_kind: Option<String>,
    /// `kubernetes.io/config.mirror` annotation: a static pod's API mirror.
    pub mirror: bool,
    /// `metadata.deletionTimestamp`, when set.
    pub deleting_since: Option<Timestamp>,
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    pub phase: String,
    /// `PodScheduled=False` with reason `Unschedulable`.
    pub unschedulable: bool,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// When it was bound to its node: `PodScheduled=True`'s `lastTransitionTime`.
    pub scheduled_at: Option<Timestamp>,
    /// Sum of the containers' requests, in millicores and bytes.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub node_selector: BTreeMap<String, String>,
    /// `affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution
    /// .nodeSelectorTerms`: any one term must match; empty, no requirement.
    pub affinity: Vec<NodeSelectorTerm>,
    pub tolerations: Vec<Toleration>,
    /// Volumes backed by the node's own disk (emptyDir, hostPath).
    pub local_volumes: bool,
}

/// A pod's toleration (`spec.tolerations[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Toleration {
    pub key: Option<String>,
    /// `Exists` or `Equal`.
    pub operator: String,
    pub value: Option<String>,
    pub effect: Option<String>,
}

/// A CSI VolumeAttachment (`storage.k8s.io/v1`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeAttachment {
    pub name: String,
    pub node_name: String,
    pub attached: bool,
}

/// What became of an eviction request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// Accepted (201): the pod is now terminating.
    Started,
    /// The pod no longer exists (404): nothing left to evict.
    Gone,
    /// 429 because a PodDisruptionBudget would be broken: try again later. The
    /// message is the API server's, naming the budget.
    Blocked { message: String },
}

/// Why a workload-cluster call failed (see the module's contract).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WorkloadError {
    /// 429 from API priority and fairness: retry after the server's `Retry-After`.
    #[error("throttled by the API server: {message}")]
    Throttled {
        retry_after: Option<Duration>,
        message: String,
    },
    /// 5xx, a timeout, a refused or dropped connection, DNS: the call may or may not
    /// have happened.
    #[error("API server unreachable: {0}")]
    Unavailable(String),
    /// 409: the object changed since it was read.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 401/403, a missing secret, a token that cannot be made: a person must fix access.
    #[error("access refused: {0}")]
    Forbidden(String),
    /// 400/422 and anything else the server will keep refusing.
    #[error("request refused: {0}")]
    Invalid(String),
}

impl WorkloadError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            WorkloadError::Throttled { .. }
                | WorkloadError::Unavailable(_)
                | WorkloadError::Conflict(_)
        )
    }
}

/// A workload cluster's API server. Every call names its target; adapters keep one
/// client per target.
pub trait Workload: Send + Sync {
    /// The Node whose `spec.providerID` names `instance_id` (any zone part), or None.
    /// An adapter may list nodes to find it.
    fn find_node(
        &self,
        target: &WorkloadTarget,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<Node>, WorkloadError>> + Send;

    /// Every Node, following pages.
    fn list_nodes(
        &self,
        target: &WorkloadTarget,
    ) -> impl Future<Output = Result<Vec<Node>, WorkloadError>> + Send;

    /// Applies `patch` (a merge patch) to the Node and returns it as it now is. A Node
    /// that is gone is `Invalid` with "not found" — a patch never creates one.
    fn patch_node(
        &self,
        target: &WorkloadTarget,
        node: &str,
        patch: NodePatch,
    ) -> impl Future<Output = Result<Node, WorkloadError>> + Send;

    /// Deletes the Node object; one already gone is success.
    fn delete_node(
        &self,
        target: &WorkloadTarget,
        node: &str,
    ) -> impl Future<Output = Result<(), WorkloadError>> + Send;

    /// Pods matching `filter`, following pages.
    fn list_pods(
        &self,
        target: &WorkloadTarget,
        filter: PodFilter,
    ) -> impl Future<Output = Result<Vec<Pod>, WorkloadError>> + Send;

    /// Asks the API server to evict the pod (`policy/v1` Eviction), with
    /// `grace_seconds` overriding the pod's own grace period when Some.
    fn evict(
        &self,
        target: &WorkloadTarget,
        namespace: &str,
        pod: &str,
        grace_seconds: Option<i64>,
    ) -> impl Future<Output = Result<Eviction, WorkloadError>> + Send;

    /// VolumeAttachments whose `spec.nodeName` is `node`.
    fn volume_attachments(
        &self,
        target: &WorkloadTarget,
        node: &str,
    ) -> impl Future<Output = Result<Vec<VolumeAttachment>, WorkloadError>> + Send;

    /// What a node needs to join the EKS cluster `target` names (DescribeCluster's
    /// endpoint, certificate authority and service CIDR), for the user data of a
    /// launch with `bootstrap.eks`. A target that is not an EKS cluster is `Invalid`.
    fn eks_cluster(
        &self,
        target: &WorkloadTarget,
    ) -> impl Future<Output = Result<EksCluster, WorkloadError>> + Send;
}
