//! One pass of a deleting Machine's drain through the workload port: read the Node,
//! its pods and its volume attachments, cordon, evict a bounded batch. What to do and
//! what it means is decided in `capstan_reconcile::drain`; this is only the I/O.

use capstan_model::{ClusterAccess, DeletionStep, Machine, Timestamp};
use capstan_reconcile::drain::{
    DrainAttachment, DrainNode, DrainPod, Evicted, NodeView, NodeWork, PassOutcome,
};
use tracing::{info, warn};

use crate::node::target_of;
use crate::ports::{Eviction, Node, NodePatch, Pod, PodFilter, Workload, WorkloadTarget};

/// Reads what the Machine's current step needs to see of its Node. Never fails: what
/// could not be read is [`NodeView::Unreachable`], so the Machine says why.
pub async fn view<W: Workload>(
    workload: &W,
    machine: &Machine,
    instance_id: &str,
    access: &ClusterAccess,
) -> (NodeView, Option<WorkloadTarget>) {
    let Some(target) = target_of(machine, access) else {
        let message = "spec.access names no single way to reach the cluster".to_string();
        return (NodeView::Unreachable { message }, None);
    };
    let node = match workload.find_node(&target, instance_id).await {
        Ok(Some(node)) => node,
        Ok(None) => return (NodeView::Absent, Some(target)),
        Err(e) => {
            let message = e.to_string();
            return (NodeView::Unreachable { message }, Some(target));
        }
    };
    let step = machine.status.deletion.as_ref().map(|d| d.step);
    let pods = if step == Some(DeletionStep::DrainingNode) {
        match workload
            .list_pods(&target, PodFilter::OnNode(node.name.clone()))
            .await
        {
            Ok(pods) => pods.iter().map(drain_pod).collect(),
            Err(e) => {
                let message = e.to_string();
                return (NodeView::Unreachable { message }, Some(target));
            }
        }
    } else {
        Vec::new()
    };
    let attachments = if step == Some(DeletionStep::WaitingForVolumeDetach) {
        match workload.volume_attachments(&target, &node.name).await {
            Ok(list) => list
                .into_iter()
                .map(|a| DrainAttachment {
                    name: a.name,
                    attached: a.attached,
                })
                .collect(),
            Err(e) => {
                let message = e.to_string();
                return (NodeView::Unreachable { message }, Some(target));
            }
        }
    } else {
        Vec::new()
    };
    let view = NodeView::Found {
        node: drain_node(&node),
        pods,
        attachments,
    };
    (view, Some(target))
}

/// Cordons `node`; the error's text when it failed.
pub async fn cordon<W: Workload>(
    workload: &W,
    target: &WorkloadTarget,
    machine: &str,
    node: &str,
) -> Result<(), String> {
    let patch = NodePatch {
        unschedulable: Some(true),
        ..NodePatch::default()
    };
    match workload.patch_node(target, node, patch).await {
        Ok(_) => {
            info!(machine, step = "cordon", node = %node, "cordoned");
            Ok(())
        }
        Err(e) => {
            warn!(machine, step = "cordon", node = %node, error = %e, "cordoning failed; the next pass tries again");
            Err(e.to_string())
        }
    }
}

/// Performs `work`'s evictions and reports each call's outcome. Stops at the first
/// error that says the API server is unreachable or throttling: the rest would fail
/// the same way.
pub async fn evict<W: Workload>(
    workload: &W,
    target: &WorkloadTarget,
    machine: &str,
    work: &NodeWork,
) -> PassOutcome {
    let mut outcome = PassOutcome::default();
    for pod in &work.evict {
        let result = workload
            .evict(target, &pod.namespace, &pod.name, work.grace_seconds)
            .await;
        let evicted = match result {
            Ok(Eviction::Started) => {
                info!(machine, step = "evict", pod = %pod, "evicting");
                Evicted::Started
            }
            Ok(Eviction::Gone) => Evicted::Gone,
            Ok(Eviction::Blocked { message }) => {
                info!(machine, step = "evict", pod = %pod, reason = %message, "eviction refused by a disruption budget; trying again later");
                Evicted::Blocked(message)
            }
            Err(e) => {
                warn!(machine, step = "evict", pod = %pod, error = %e, "eviction failed; the next pass tries again");
                let stop = e.is_retryable();
                outcome
                    .evictions
                    .push((pod.clone(), Evicted::Failed(e.to_string())));
                if stop {
                    break;
                }
                continue;
            }
        };
        outcome.evictions.push((pod.clone(), evicted));
    }
    outcome
}

/// One pass over the deleting Machine's Node: the Machine as it should be recorded,
/// or None when nothing changed.
///
/// An uncordoned Node is cordoned first and its pods read again after: a pod the
/// scheduler bound between the first read and the cordon would otherwise be missed, and
/// the drain could end with it still on the Node (Cluster API cordons, then lists).
pub async fn pass<W: Workload>(
    workload: &W,
    machine: &Machine,
    instance_id: &str,
    access: &ClusterAccess,
    cluster_deleting: bool,
    now: Timestamp,
) -> Option<Machine> {
    let name = machine.metadata.name.as_str();
    let (mut view, target) = view(workload, machine, instance_id, access).await;
    let mut work = capstan_reconcile::drain::work(machine, &view, now);
    let mut outcome = PassOutcome {
        cluster_deleting,
        ..PassOutcome::default()
    };
    if let (Some(node), Some(target)) = (&work.cordon, &target) {
        if let Err(why) = cordon(workload, target, name, node).await {
            outcome.cordon_failed = Some(why);
            return capstan_reconcile::drain::record(machine, &view, &outcome, now);
        }
        (view, _) = self::view(workload, machine, instance_id, access).await;
        work = capstan_reconcile::drain::work(machine, &view, now);
    }
    if let Some(target) = &target
        && !work.evict.is_empty()
    {
        outcome = PassOutcome {
            cluster_deleting,
            ..evict(workload, target, name, &work).await
        };
    }
    capstan_reconcile::drain::record(machine, &view, &outcome, now)
}

/// Whether `pod`, on `node`, is one a drain must evict before the instance may go
/// ([`capstan_reconcile::drain::needs_eviction`] on the port's types): what the
/// simulator's invariants and the end-to-end tests check a termination against.
pub fn needs_eviction_on(node: &Node, pod: &Pod, now: Timestamp) -> bool {
    capstan_reconcile::drain::needs_eviction(&drain_pod(pod), &drain_node(node), now)
}

fn drain_node(node: &Node) -> DrainNode {
    DrainNode {
        name: node.name.clone(),
        unschedulable: node.unschedulable,
        ready: node.condition("Ready").map(|c| c.status),
        volumes_attached: node.volumes_attached.clone(),
    }
}

fn drain_pod(pod: &Pod) -> DrainPod {
    DrainPod {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        labels: pod.labels.clone(),
        controller_kind: pod.controller_kind.clone(),
        mirror: pod.mirror,
        deleting_since: pod.deleting_since,
        phase: pod.phase.clone(),
    }
}
