//! The drain's invariants, checked after every step against the in-memory workload
//! clusters (issue 14):
//!
//! - `drained_before_terminate`: an instance Capstan terminates has no pod left on its
//!   Node that needed eviction, unless its Machine was excluded from draining or its
//!   drain was cut short (`nodeDrainTimeoutSeconds`, or a spot instance's two-minute
//!   notice);
//! - `no_budget_broken`: no eviction Capstan asked for broke a PodDisruptionBudget;
//! - `cordon_kept`: a Node once cordoned is never uncordoned (Capstan never cancels a
//!   deletion, so it never has a reason to).

use std::collections::{BTreeMap, BTreeSet};

use capstan_model::item::{AttrValue, INSTANCE_ID, Item, decode};
use capstan_model::labels::EXCLUDE_NODE_DRAINING;
use capstan_model::{Machine, Timestamp};
use capstan_reconcile::drain::cut_short;

use super::Violation;
use crate::workload::{ClusterKey, MemWorkload};

/// State carried from step to step.
#[derive(Debug, Default)]
pub struct DrainChecker {
    /// Instances already judged.
    judged: BTreeSet<String>,
    /// Nodes seen cordoned: (cluster, name) → uid.
    cordoned: BTreeMap<(ClusterKey, String), String>,
}

impl DrainChecker {
    /// `terminated`: every instance Capstan asked TerminateInstances for; `items`: the
    /// table, to find the Machine of a newly terminated instance.
    pub fn check(
        &mut self,
        now: Timestamp,
        workload: &MemWorkload,
        terminated: &BTreeSet<String>,
        items: &[&Item],
    ) -> Result<(), Violation> {
        if let Some(broken) = workload.pdb_violations().first() {
            return Err(violation(
                "no_budget_broken",
                format!(
                    "evicting {}/{} broke {:?}",
                    broken.namespace, broken.pod, broken.broke_budgets
                ),
            ));
        }
        for key in workload.clusters() {
            for node in workload.nodes(&key) {
                let id = (key.clone(), node.name.clone());
                if node.unschedulable {
                    self.cordoned.insert(id, node.uid.clone());
                } else if self.cordoned.get(&id) == Some(&node.uid) {
                    return Err(violation(
                        "cordon_kept",
                        format!("Node {} was cordoned, and is schedulable again", node.name),
                    ));
                }
            }
        }
        let fresh: Vec<String> = terminated
            .iter()
            .filter(|id| !self.judged.contains(*id))
            .cloned()
            .collect();
        for id in fresh {
            self.judged.insert(id.clone());
            let Some(machine) = machine_of(items, &id) else {
                // An orphan the drift sweep collected: no Machine to drain for.
                continue;
            };
            let Some(deletion) = &machine.status.deletion else {
                // Its Cluster declares no access: terminated without a drain, as before.
                continue;
            };
            // Excluded, out of time, or out of the spot notice: allowed to leave pods.
            if machine
                .metadata
                .annotations
                .contains_key(EXCLUDE_NODE_DRAINING)
                || cut_short(&machine)
            {
                continue;
            }
            let key = ClusterKey::new(&machine.metadata.namespace, &machine.spec.cluster_name);
            let left = needing_eviction(workload, &key, &id, now);
            if !left.is_empty() {
                return Err(violation(
                    "drained_before_terminate",
                    format!(
                        "instance {id} of Machine {} was terminated with {} still on its Node ({deletion:?})",
                        machine.metadata.name,
                        left.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn violation(invariant: &'static str, message: String) -> Violation {
    Violation { invariant, message }
}

/// The Machine whose observed item names `instance_id`.
fn machine_of(items: &[&Item], instance_id: &str) -> Option<Machine> {
    items
        .iter()
        .filter(|item| matches!(item.get(INSTANCE_ID), Some(AttrValue::S(id)) if id == instance_id))
        .find_map(|item| decode(None, Some(item)).ok())
        .and_then(|stored| stored.object.as_machine().cloned())
}

/// The pods on the Node of `instance_id` that a drain must have evicted.
fn needing_eviction(
    workload: &MemWorkload,
    key: &ClusterKey,
    instance_id: &str,
    now: Timestamp,
) -> Vec<String> {
    let Some(node) = workload.nodes(key).into_iter().find(|n| {
        n.provider_id
            .as_deref()
            .and_then(capstan_runtime::ports::instance_id_of)
            == Some(instance_id)
    }) else {
        return Vec::new();
    };
    workload
        .pods(key)
        .into_iter()
        .filter(|p| p.node_name.as_deref() == Some(node.name.as_str()))
        .filter(|p| capstan_runtime::drain::needs_eviction_on(&node, p, now))
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect()
}
