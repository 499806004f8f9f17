//! The Machine's Node, through the workload port: reading it (and putting the pool's
//! labels and taints on it) and deleting it. What to make of what is found is decided in
//! `capstan_reconcile::node`; this is only the I/O.

use capstan_model::meta::Condition;
use capstan_model::{ClusterAccess, Machine};
use capstan_reconcile::node::{NodeSeen, SeenNode, SeenTaint, label_patch, taint_patch};
use tracing::warn;

use crate::ports::{
    ClusterAccessKey, Node, NodePatch, Taint, Workload, WorkloadError, WorkloadTarget,
};

/// The workload target a Machine's Node lives in; None when `access` names no single way in.
pub fn target_of(machine: &Machine, access: &ClusterAccess) -> Option<WorkloadTarget> {
    Some(WorkloadTarget {
        namespace: machine.metadata.namespace.clone(),
        cluster: machine.spec.cluster_name.clone(),
        access: ClusterAccessKey::from_spec(access)?,
    })
}

/// Finds the Node of `instance_id` and brings its labels in line with the pool.
/// Never fails: what could not be read is reported as [`NodeSeen::Unknown`], so the
/// Machine says why, and the next pass looks again. The bool: the labels are on it.
pub async fn observe<W: Workload>(
    workload: &W,
    machine: &Machine,
    instance_id: &str,
    access: &ClusterAccess,
) -> (NodeSeen, bool) {
    let Some(target) = target_of(machine, access) else {
        return (
            NodeSeen::Unknown {
                reason: "NoAccess".into(),
                message: "spec.access names no single way to reach the cluster".into(),
            },
            false,
        );
    };
    let node = match workload.find_node(&target, instance_id).await {
        Ok(Some(node)) => node,
        Ok(None) => return (NodeSeen::Absent, false),
        Err(e) => return (unknown(&e), false),
    };
    let mut seen = seen(&node);
    let patch = NodePatch {
        labels: label_patch(machine, &seen),
        taints: taint_patch(machine, &seen).map(|taints| {
            taints
                .into_iter()
                .map(|t| Taint {
                    key: t.key,
                    value: t.value,
                    effect: t.effect,
                })
                .collect()
        }),
        ..NodePatch::default()
    };
    if patch.is_empty() {
        return (NodeSeen::Found(seen), true);
    }
    match workload.patch_node(&target, &node.name, patch).await {
        Ok(patched) => {
            seen = self::seen(&patched);
            (NodeSeen::Found(seen), true)
        }
        Err(e) => {
            warn!(node = %node.name, error = %e, "putting the pool's labels and taints on the node failed; the next pass tries again");
            (NodeSeen::Found(seen), false)
        }
    }
}

/// Deletes the Node (`node`, or the one whose providerID names `instance_id`); Ok also
/// when it is already gone or never registered.
pub async fn delete<W: Workload>(
    workload: &W,
    machine: &Machine,
    node: Option<&str>,
    instance_id: &str,
    access: &ClusterAccess,
) -> Result<(), WorkloadError> {
    let Some(target) = target_of(machine, access) else {
        return Err(WorkloadError::Invalid(
            "spec.access names no single way to reach the cluster".into(),
        ));
    };
    let name = match node {
        Some(name) => name.to_string(),
        None => match workload.find_node(&target, instance_id).await? {
            Some(found) => found.name,
            None => return Ok(()),
        },
    };
    workload.delete_node(&target, &name).await
}

fn unknown(e: &WorkloadError) -> NodeSeen {
    let reason = match e {
        WorkloadError::Throttled { .. } => "WorkloadThrottled",
        WorkloadError::Unavailable(_) => "WorkloadUnreachable",
        WorkloadError::Conflict(_) => "WorkloadConflict",
        WorkloadError::Forbidden(_) => "WorkloadAccessDenied",
        WorkloadError::Invalid(_) => "WorkloadRequestRefused",
    };
    NodeSeen::Unknown {
        reason: reason.into(),
        message: e.to_string(),
    }
}

fn seen(node: &Node) -> SeenNode {
    SeenNode {
        name: node.name.clone(),
        uid: node.uid.clone(),
        kubelet_version: node.kubelet_version.clone(),
        os_image: node.os_image.clone(),
        labels: node.labels.clone(),
        taints: node
            .taints
            .iter()
            .map(|t| SeenTaint {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
            })
            .collect(),
        conditions: node
            .conditions
            .iter()
            .map(|c| Condition {
                type_: c.type_.clone(),
                status: c.status,
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_transition_time: c
                    .last_transition_time
                    .unwrap_or(capstan_model::Timestamp::UNIX_EPOCH),
            })
            .collect(),
    }
}

/// A runtime without access to workload clusters: every call is refused, and a
/// Machine whose Cluster declares access says so on its NodeHealthy condition.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoWorkload;

impl Workload for NoWorkload {
    async fn find_node(&self, _: &WorkloadTarget, _: &str) -> Result<Option<Node>, WorkloadError> {
        Err(no_access())
    }
    async fn list_nodes(&self, _: &WorkloadTarget) -> Result<Vec<Node>, WorkloadError> {
        Err(no_access())
    }
    async fn patch_node(
        &self,
        _: &WorkloadTarget,
        _: &str,
        _: NodePatch,
    ) -> Result<Node, WorkloadError> {
        Err(no_access())
    }
    async fn delete_node(&self, _: &WorkloadTarget, _: &str) -> Result<(), WorkloadError> {
        Err(no_access())
    }
    async fn list_pods(
        &self,
        _: &WorkloadTarget,
        _: crate::ports::PodFilter,
    ) -> Result<Vec<crate::ports::Pod>, WorkloadError> {
        Err(no_access())
    }
    async fn evict(
        &self,
        _: &WorkloadTarget,
        _: &str,
        _: &str,
        _: Option<i64>,
    ) -> Result<crate::ports::Eviction, WorkloadError> {
        Err(no_access())
    }
    async fn volume_attachments(
        &self,
        _: &WorkloadTarget,
        _: &str,
    ) -> Result<Vec<crate::ports::VolumeAttachment>, WorkloadError> {
        Err(no_access())
    }
    async fn eks_cluster(
        &self,
        _: &WorkloadTarget,
    ) -> Result<crate::ports::EksCluster, WorkloadError> {
        Err(no_access())
    }
}

fn no_access() -> WorkloadError {
    WorkloadError::Forbidden(
        "this runtime has no access to workload clusters (it was built without a workload adapter)"
            .into(),
    )
}
