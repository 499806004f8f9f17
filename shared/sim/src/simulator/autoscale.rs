//! The autoscaler's invariants, checked after every step against the table and the
//! in-memory workload clusters (issue 17). The checker keeps its own memory of what it
//! saw; it does not trust the autoscaler's bookkeeping.
//!
//! - `replicas_within_bounds`: an autoscaled pool's MachineDeployment never asks for
//!   fewer replicas than its min or more than its max (the bounds Cluster API's
//!   cluster-autoscaler annotations on it state);
//! - `no_scale_down_in_quiet_period`: an autoscaled pool's replicas never go down
//!   within the quiet period after they last went up;
//! - `no_needed_node_removed`: when the autoscaler marks a Machine for deletion, the
//!   pods on its Node (DaemonSet, mirror and terminating pods aside) all fit, together,
//!   in the room the other schedulable Nodes have left.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_model::item::{AttrValue, Item, decode, item_key};
use capstan_model::labels::{AUTOSCALER_MAX_SIZE, AUTOSCALER_MIN_SIZE, DELETE_MACHINE};
use capstan_model::{Kind, Timestamp};
use capstan_reconcile::autoscale::DEFAULT_QUIET_PERIOD;

use super::Violation;
use crate::workload::{ClusterKey, MemWorkload, node_resources};

/// State carried from step to step.
#[derive(Debug, Default)]
pub struct AutoscaleChecker {
    /// Per MachineDeployment (pk, name): replicas last seen and when they last rose.
    replicas: BTreeMap<(String, String), (i64, Option<Timestamp>)>,
    /// Machines (pk, name) already seen marked for deletion by the autoscaler.
    marked: BTreeSet<(String, String)>,
}

impl AutoscaleChecker {
    pub fn check(
        &mut self,
        now: Timestamp,
        workload: &MemWorkload,
        items: &[&Item],
    ) -> Result<(), Violation> {
        for item in items {
            let Some(key) = item_key(item) else {
                continue;
            };
            let Some((object, part)) = key.parse() else {
                continue;
            };
            if part != capstan_model::Part::Desired {
                continue;
            }
            match object.kind {
                Kind::MachineDeployment => {
                    self.deployment(now, &key.pk, &object.name, item)?;
                }
                Kind::Machine => {
                    let marked = annotation(item, DELETE_MACHINE) == Some("autoscaler");
                    let id = (key.pk.clone(), object.name.clone());
                    if marked && self.marked.insert(id) {
                        let cluster = ClusterKey::new(&object.namespace, &object.cluster);
                        needed_elsewhere(workload, &cluster, items, &key.pk, &object.name)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn deployment(
        &mut self,
        now: Timestamp,
        pk: &str,
        name: &str,
        item: &Item,
    ) -> Result<(), Violation> {
        let (Some(min), Some(max)) = (
            annotation(item, AUTOSCALER_MIN_SIZE).and_then(|v| v.parse::<i64>().ok()),
            annotation(item, AUTOSCALER_MAX_SIZE).and_then(|v| v.parse::<i64>().ok()),
        ) else {
            return Ok(());
        };
        let Some(replicas) = spec_replicas(item) else {
            return Ok(());
        };
        if replicas < min || replicas > max {
            return Err(violation(
                "replicas_within_bounds",
                format!(
                    "MachineDeployment {name} asks for {replicas} replicas, outside [{min}, {max}]"
                ),
            ));
        }
        let entry = self
            .replicas
            .entry((pk.to_string(), name.to_string()))
            .or_insert((replicas, None));
        let (last, rose) = *entry;
        if replicas > last {
            *entry = (replicas, Some(now));
        } else if replicas < last {
            if let Some(up) = rose {
                let since = Duration::try_from(now.duration_since(up)).unwrap_or_default();
                if since < DEFAULT_QUIET_PERIOD {
                    return Err(violation(
                        "no_scale_down_in_quiet_period",
                        format!(
                            "MachineDeployment {name} went from {last} to {replicas} replicas {}s after it last scaled up",
                            since.as_secs()
                        ),
                    ));
                }
            }
            *entry = (replicas, rose);
        }
        Ok(())
    }
}

fn violation(invariant: &'static str, message: String) -> Violation {
    Violation { invariant, message }
}

fn annotation<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    match item.get("annotations") {
        Some(AttrValue::M(m)) => match m.get(key) {
            Some(AttrValue::S(v)) => Some(v),
            _ => None,
        },
        _ => None,
    }
}

fn spec_replicas(item: &Item) -> Option<i64> {
    match item.get("spec") {
        Some(AttrValue::M(spec)) => match spec.get("replicas") {
            Some(AttrValue::N(n)) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// A Node's name, labels and free cpu, memory and pod slots.
type Room = (String, BTreeMap<String, String>, i64, i64, i64);

/// Checks that the pods on the Node of Machine `machine` fit on the other schedulable
/// Nodes' free room, packed largest first.
fn needed_elsewhere(
    workload: &MemWorkload,
    cluster: &ClusterKey,
    items: &[&Item],
    pk: &str,
    machine: &str,
) -> Result<(), Violation> {
    let observed = items.iter().find(|i| {
        item_key(i).is_some_and(|k| k.pk == pk && k.sk == format!("Machine#{machine}#status"))
    });
    let Some(node_name) = observed
        .and_then(|o| decode(None, Some(o)).ok())
        .and_then(|s| s.object.as_machine().cloned())
        .and_then(|m| m.status.node_ref.map(|n| n.name))
    else {
        return Ok(());
    };
    let nodes = workload.nodes(cluster.clone());
    let pods = workload.pods(cluster.clone());
    let mut rooms: Vec<Room> = nodes
        .iter()
        .filter(|n| n.name != node_name && n.is_ready() && !n.unschedulable && !n.deleting)
        .map(|n| {
            let instance_type = n
                .labels
                .get("node.kubernetes.io/instance-type")
                .cloned()
                .unwrap_or_default();
            let r = node_resources(&instance_type);
            let (mut cpu, mut mem, mut slots) =
                (r.cpu_millis as i64, r.memory_bytes as i64, r.pods as i64);
            for p in pods.iter().filter(|p| {
                p.node_name.as_deref() == Some(n.name.as_str())
                    && !matches!(p.phase.as_str(), "Succeeded" | "Failed")
            }) {
                cpu -= p.cpu_millis as i64;
                mem -= p.memory_bytes as i64;
                slots -= 1;
            }
            (n.name.clone(), n.labels.clone(), cpu, mem, slots)
        })
        .collect();
    let mut moving: Vec<_> = pods
        .iter()
        .filter(|p| p.node_name.as_deref() == Some(node_name.as_str()))
        .filter(|p| p.deleting_since.is_none() && !p.mirror)
        .filter(|p| p.controller_kind.as_deref() != Some("DaemonSet"))
        .filter(|p| !matches!(p.phase.as_str(), "Succeeded" | "Failed"))
        .collect();
    moving.sort_by(|a, b| {
        b.cpu_millis
            .cmp(&a.cpu_millis)
            .then(b.memory_bytes.cmp(&a.memory_bytes))
    });
    for p in moving {
        let fits = rooms.iter_mut().find(|(_, labels, cpu, mem, slots)| {
            p.node_selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
                && *cpu >= p.cpu_millis as i64
                && *mem >= p.memory_bytes as i64
                && *slots >= 1
        });
        match fits {
            Some(room) => {
                room.2 -= p.cpu_millis as i64;
                room.3 -= p.memory_bytes as i64;
                room.4 -= 1;
            }
            None => {
                return Err(violation(
                    "no_needed_node_removed",
                    format!(
                        "Machine {machine} was marked for deletion while pod {}/{} on its Node {node_name} fits on no other Node",
                        p.namespace, p.name
                    ),
                ));
            }
        }
    }
    Ok(())
}
