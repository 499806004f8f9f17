//! The table's side of autoscaling: a Cluster's autoscaled pools as their
//! MachineDeployments, MachineClasses and Machines stand (the pools of a
//! [`ScalingSnapshot`](crate::autoscale::ScalingSnapshot)), what each pool's
//! MachineDeployment remembers between passes, and what one [`PoolScaling`] changes on
//! it. Pure: the runtime reads the tree and the workload cluster, calls
//! [`decide_scaling`](crate::autoscale::decide_scaling), and writes what this returns.
//!
//! # Guarantees
//! - Only pools with `autoscaling` whose MachineDeployment exists, is not being deleted
//!   and is not paused are autoscaled; a paused or deleted Cluster has none.
//! - A pool's booting count is its replicas less its Machines whose Node is Ready, so
//!   replicas just raised (Machines not created yet) are counted as booting, never as
//!   room to fill again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_model::kinds::AutoscalingStatus;
use capstan_model::labels::DEPLOYMENT_NAME;
use capstan_model::meta::{ConditionStatus, condition};
use capstan_model::{Kind, MachineDeployment, StoredObject, Timestamp};

use crate::autoscale::{
    InstanceCapacity, Placement, PodRef, Pool, PoolReason, PoolScaling, Resources, ScalingDecision,
};
use crate::bootstrap::NodeTaint;
use crate::cluster::deployment_name;
use crate::tree::Tree;

/// The condition type a pool's MachineDeployment carries for the last autoscaling
/// decision: reason [`PoolReason::reason`], message its text.
pub const AUTOSCALING: &str = "Autoscaling";

/// One autoscaled pool, with the objects a pass reads and writes.
#[derive(Clone, Debug)]
pub struct AutoscaledPool<'a> {
    /// The snapshot's pool (its `daemon_set_overhead` left for the runtime to fill in).
    pub pool: Pool,
    pub deployment: &'a StoredObject,
    /// The pool's live Machines by the Node name they record.
    pub machine_of_node: BTreeMap<String, String>,
    /// What the MachineDeployment remembers.
    pub memory: AutoscalingStatus,
}

impl AutoscaledPool<'_> {
    pub fn deployment_name(&self) -> &str {
        &self.deployment.object.metadata().name
    }
}

/// The Cluster's autoscaled pools, in pool order. `ready_nodes`: the Nodes that are
/// Ready, uncordoned and not being deleted, by name.
pub fn autoscaled_pools<'a>(
    tree: &'a Tree,
    ready_nodes: &BTreeSet<String>,
) -> Vec<AutoscaledPool<'a>> {
    let Some(cluster) = tree
        .of_kind(Kind::Cluster)
        .find(|s| !s.is_deleting())
        .and_then(|s| s.object.as_cluster())
        .filter(|c| !c.spec.paused)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for pool in &cluster.spec.workers {
        let Some(bounds) = &pool.autoscaling else {
            continue;
        };
        let md_name = deployment_name(&cluster.metadata.name, &pool.name);
        let Some(stored) = tree
            .get(Kind::MachineDeployment, &md_name)
            .filter(|s| !s.is_deleting())
        else {
            continue;
        };
        let Some(md) = stored.object.as_machine_deployment() else {
            continue;
        };
        if md.spec.paused {
            continue;
        }
        let instance_types = tree
            .live_class(&md.spec.template.spec.machine_class)
            .map(|c| c.spec.instance_types.clone())
            .unwrap_or_default();
        let mut machine_of_node = BTreeMap::new();
        let mut ready = 0u32;
        for m in tree
            .of_kind(Kind::Machine)
            .filter(|s| !s.is_deleting())
            .filter_map(|s| s.object.as_machine())
            .filter(|m| m.metadata.labels.get(DEPLOYMENT_NAME) == Some(&md_name))
        {
            if let Some(node) = &m.status.node_ref {
                machine_of_node.insert(node.name.clone(), m.metadata.name.clone());
                if ready_nodes.contains(&node.name) {
                    ready += 1;
                }
            }
        }
        let replicas = u32::try_from(md.spec.replicas).unwrap_or(0);
        let min = u32::try_from(bounds.min).unwrap_or(0);
        let max = u32::try_from(bounds.max.max(bounds.min)).unwrap_or(0);
        let memory = md.status.autoscaling.clone().unwrap_or_default();
        out.push(AutoscaledPool {
            pool: Pool {
                name: pool.name.clone(),
                labels: pool_labels(md, &pool.name, instance_types.first()),
                taints: NodeTaint::all_of(&md.spec.template.spec.taints),
                instance_types,
                min,
                max,
                replicas,
                booting: replicas.saturating_sub(ready),
                last_scale_up: memory.last_scale_up,
                rolling_out: md.status.conditions.is_true(condition::ROLLING_OUT),
                daemon_set_overhead: Resources::default(),
            },
            deployment: stored,
            machine_of_node,
            memory,
        });
    }
    out
}

/// The labels every Node of the pool carries: those Capstan keeps on its Nodes
/// ([`crate::node::node_labels`]) and the well-known ones of its first instance type.
fn pool_labels(
    md: &MachineDeployment,
    pool: &str,
    instance_type: Option<&String>,
) -> BTreeMap<String, String> {
    let mut labels = crate::node::pool_node_labels(&md.spec.template.metadata.labels, Some(pool));
    labels.insert("kubernetes.io/os".into(), "linux".into());
    if let Some(t) = instance_type {
        labels.insert("node.kubernetes.io/instance-type".into(), t.clone());
    }
    labels
}

/// What the kubelet and the system keep of a node for themselves, as the EKS AMI
/// reserves it (`kube-reserved` cpu: 6% of the first core, 1% of the second, 0.5% of
/// the next two, 0.25% of the rest; memory: 255 MiB + 11 MiB per pod; plus the
/// 100 MiB hard eviction threshold). A new node's room is its capacity less this and
/// less its DaemonSets.
/// <https://github.com/awslabs/amazon-eks-ami/blob/main/templates/al2023/runtime/gen-kubelet-config>
pub fn kube_reserved(c: &InstanceCapacity) -> Resources {
    let cores = u64::from(c.vcpus);
    let tiers = [(1, 60), (1, 10), (2, 5)];
    let mut left = cores;
    let mut cpu_millis = 0;
    for (n, per_core_tenths) in tiers {
        let take = left.min(n);
        cpu_millis += take * per_core_tenths;
        left -= take;
    }
    cpu_millis += left * 25 / 10;
    let memory_mib = 255 + 11 * u64::from(c.max_pods) + 100;
    Resources {
        cpu_millis,
        memory_bytes: memory_mib << 20,
        pods: 0,
    }
}

/// At most this many pods a pool remembers waiting on: the item stays small; a larger
/// burst is measured by its first pods.
pub const WAITING_PODS_CAP: usize = 100;

/// A pod of the workload cluster as the wait memory reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodTimes {
    pub pod: PodRef,
    pub uid: String,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// Bound to a node.
    pub bound: bool,
    /// When it was bound (`PodScheduled` True), when known.
    pub scheduled_at: Option<Timestamp>,
}

/// A remembered pod that got its node, and how long it waited since it was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waited {
    pub pod: PodRef,
    pub waited: Duration,
}

/// Pool `pool`'s pods waiting after this pass (`remembered`: before it), and those
/// that left scheduled. A remembered pod now bound leaves, with its wait if its bind
/// time is known (`scheduled_at` less `created`, or less when first seen without
/// `created`); one gone from the cluster leaves uncounted; the rest stay. When the pass
/// scales the pool up, the pending pods packed onto it join, first seen `now`, up to
/// [`WAITING_PODS_CAP`]. `pods`: every active pod listed, by uid.
pub fn settle_waiting(
    remembered: &BTreeMap<String, Timestamp>,
    pool: &str,
    scaled_up: bool,
    placements: &BTreeMap<PodRef, Placement>,
    pods: &BTreeMap<String, PodTimes>,
    now: Timestamp,
) -> (BTreeMap<String, Timestamp>, Vec<Waited>) {
    let mut waiting = BTreeMap::new();
    let mut waited = Vec::new();
    for (uid, first_seen) in remembered {
        match pods.get(uid) {
            None => {}
            Some(p) if p.bound => {
                if let Some(at) = p.scheduled_at {
                    let from = p.created.unwrap_or(*first_seen);
                    waited.push(Waited {
                        pod: p.pod.clone(),
                        waited: Duration::try_from(at.duration_since(from))
                            .unwrap_or(Duration::ZERO),
                    });
                }
            }
            Some(_) => {
                waiting.insert(uid.clone(), *first_seen);
            }
        }
    }
    if scaled_up {
        let placed: BTreeSet<&PodRef> = placements
            .iter()
            .filter(|(_, p)| matches!(p, Placement::Pool(name) if name == pool))
            .map(|(r, _)| r)
            .collect();
        for (uid, p) in pods {
            if waiting.len() >= WAITING_PODS_CAP {
                break;
            }
            if !p.bound && !uid.is_empty() && placed.contains(&p.pod) {
                waiting.entry(uid.clone()).or_insert(now);
            }
        }
    }
    (waiting, waited)
}

/// The pool's MachineDeployment after one decision: `spec.replicas` as decided, the
/// autoscaler's memory carried forward (with `waiting_pods` from [`settle_waiting`]),
/// and the `Autoscaling` condition saying why. Returns None when nothing it holds
/// changes.
pub fn scaled_deployment(
    pool: &AutoscaledPool<'_>,
    outcome: &PoolScaling,
    decision: &ScalingDecision,
    waiting_pods: BTreeMap<String, Timestamp>,
    now: Timestamp,
) -> Option<MachineDeployment> {
    let unneeded_since = &decision.unneeded_since;
    let md = pool.deployment.object.as_machine_deployment()?;
    let mut next = md.clone();
    next.spec.replicas = i32::try_from(outcome.replicas).unwrap_or(i32::MAX);
    let mut memory = pool.memory.clone();
    if outcome.replicas > pool.pool.replicas {
        memory.last_scale_up = Some(now);
    }
    if outcome.remove.is_some() {
        memory.last_scale_down = Some(now);
    }
    memory.unneeded_since = unneeded_since
        .iter()
        .filter(|(node, _)| pool.machine_of_node.contains_key(*node))
        .map(|(n, t)| (n.clone(), *t))
        .collect();
    memory.waiting_pods = waiting_pods;
    next.status.autoscaling = Some(memory);
    // The text without its leading reason ("ScalingUp: 3 pods …" → "3 pods …").
    let reason = outcome.reason.reason();
    let text = outcome.reason.to_string();
    let message = text
        .strip_prefix(reason)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(&text);
    let message = match unplaced_note(decision) {
        Some(note) => format!("{message}; {note}"),
        None => message.to_string(),
    };
    next.status.conditions.set(
        AUTOSCALING,
        scaling_status(&outcome.reason),
        reason,
        message,
        now,
    );
    (next != *md).then_some(next)
}

/// What the Cluster's pending pods that no pool takes wait for: how many, and the
/// first one's reason (e.g. `1 pod fits no pool: default/gpu-0: fits no pool: workers:
/// nodeSelector gpu=yes does not match`). None when every pending pod has a place.
pub fn unplaced_note(decision: &ScalingDecision) -> Option<String> {
    let (pod, why) = decision.unplaced.iter().next()?;
    let n = decision.unplaced.len();
    let (noun, verb) = if n == 1 {
        ("pod", "gets")
    } else {
        ("pods", "get")
    };
    Some(format!("{n} pending {noun} {verb} no node: {pod}: {why}"))
}

/// True while the pool is changing size or about to (scaling, waiting for nodes, a
/// node unneeded), False when it is steady or held.
fn scaling_status(reason: &PoolReason) -> ConditionStatus {
    match reason {
        PoolReason::ScalingUp { .. }
        | PoolReason::BelowMin { .. }
        | PoolReason::AboveMax { .. }
        | PoolReason::ScalingDown { .. }
        | PoolReason::WaitingForNodes { .. } => ConditionStatus::True,
        _ => ConditionStatus::False,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eks_reserves_cpu_by_tiers_and_memory_by_pods() {
        let m7i_large = InstanceCapacity {
            vcpus: 2,
            memory_mib: 8192,
            max_pods: 29,
        };
        let r = kube_reserved(&m7i_large);
        assert_eq!(r.cpu_millis, 70, "6% of the first core, 1% of the second");
        assert_eq!(r.memory_bytes, (255 + 11 * 29 + 100) << 20);
        let big = InstanceCapacity {
            vcpus: 16,
            memory_mib: 65536,
            max_pods: 234,
        };
        // 60 + 10 + 2 × 5 + 12 × 2.5
        assert_eq!(kube_reserved(&big).cpu_millis, 110);
    }
}
