//! The autoscaler's pass for one Cluster: the I/O around
//! [`decide_scaling`](capstan_reconcile::autoscale::decide_scaling). It reads the
//! Cluster's partition (pools, MachineDeployments, Machines), the workload cluster's
//! Nodes and pods (one list each), and the instance types' capacities (cached in the
//! table), decides, and writes the decision where a person scaling the pool would.
//!
//! # Expected flow
//! 1. A Cluster with `spec.access` and a pool with `autoscaling` gets an autoscale
//!    event once a minute ([`ControlPlane::autoscale_tick`]), from every drift sweep
//!    and, while pods wait for nodes, from its own pass 10 s later ([`PENDING_RECHECK`]).
//! 2. Scale-up: the pool's MachineDeployment desired item gets the new `spec.replicas`;
//!    its MachineSet creates the Machines, which launch and join.
//! 3. Scale-down: the chosen Machine's desired item is annotated
//!    `capstan.dev/delete-machine` and the replicas lowered by one in the same
//!    transaction; the MachineSet deletes that Machine first, which drains its Node
//!    before its instance goes.
//! 4. The MachineDeployment's observed item records the pass: the `Autoscaling`
//!    condition and `status.autoscaling` (last scale-up and scale-down, unneeded Nodes
//!    since when, the pending pods a scale-up waits on), which the next pass reads
//!    back; a pass that finds a waited-on pod bound reports its wait
//!    ([`AutoscaleOutcome::pending_to_scheduled`]) once its write succeeds.
//!
//! # Guarantees
//! - Every write of one pool is one transaction, each item conditional on the version
//!   the decision read: two passes deciding from the same read cannot both scale; the
//!   loser reads again and finds the booting Machines the winner asked for.
//! - Nothing is written when nothing changes (a steady pool costs reads only).
//!
//! # Errors
//! - The workload cluster unreachable or refusing: nothing is decided; the next
//!   sweep's event tries again (the pass never scales on a partial view).
//! - Capacities EC2 will not give: the pools whose first instance type is unknown
//!   take no pod (their condition says so); the others scale.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_model::item::{AttrValue, Item, ItemKey, Part, RV, partition_key, to_attr};
use capstan_model::labels::DELETE_MACHINE;
use capstan_model::{Expect, Kind, Object, ObjectKey, TaintEffect, Timestamp};
use capstan_reconcile::Tree;
use capstan_reconcile::autoscale::{
    self as decide, InstanceCapacity, Resources, ScalingSnapshot, Toleration,
};
use capstan_reconcile::autoscale_pools::{
    AutoscaledPool, PodTimes, autoscaled_pools, kube_reserved, scaled_deployment, settle_waiting,
    unplaced_note,
};
use tracing::{info, warn};

use crate::control_plane::{CONFLICT_RETRIES, ControlPlane, HandlerError};
use crate::ports::{
    Bus, Compute, ComputeError, Node, Pod, PodFilter, Store, StoreError, Workload, WorkloadTarget,
    Write,
};
use capstan_model::quantity;

/// How soon a pass looks again while pods wait for nodes.
pub const PENDING_RECHECK: Duration = Duration::from_secs(10);
/// The partition that caches DescribeInstanceTypes' answers, one item per type (sort
/// key: the type). A namespace cannot start with `_`, so no cluster's partition is it.
pub const INSTANCE_TYPES_PARTITION: &str = "_capstan#instance-types";

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoscaleOutcome {
    pub scaled_up: u64,
    pub scaled_down: u64,
    /// When to look again: Some while pods wait for nodes (not for pods no pool takes).
    pub recheck: Option<Duration>,
    /// How long each pod a scale-up waited on took from created to scheduled, each
    /// reported by the one pass whose write removed it from the pool's memory.
    pub pending_to_scheduled: Vec<Duration>,
}

impl<S: Store, C: Compute, B: Bus, W: Workload> ControlPlane<S, C, B, W> {
    /// The scheduled check: one Scan of the Clusters' items, and an autoscale event
    /// for each Cluster that declares access and has an autoscaled pool. Returns how
    /// many were asked for.
    pub async fn autoscale_tick(&self) -> Result<usize, HandlerError> {
        let now = self.clock.now();
        let mut by_pk: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        let mut start = None;
        loop {
            let page = self.store.scan_page("Cluster#", start).await?;
            for item in page.items {
                if let Some(k) = capstan_model::item::item_key(&item) {
                    by_pk.entry(k.pk).or_default().push(item);
                }
            }
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        let events: Vec<_> = by_pk
            .values()
            .map(|items| Tree::from_items(items))
            .filter(autoscaled)
            .filter_map(|tree| {
                let c = tree.of_kind(Kind::Cluster).next()?;
                Some(crate::events::autoscale_event(&c.key(), now))
            })
            .collect();
        for chunk in events.chunks(10) {
            self.bus.put_events(chunk.to_vec()).await?;
        }
        Ok(events.len())
    }

    /// One autoscaling pass for the Cluster `cluster` (see the module's doc), read and
    /// decided again on a conflict. What an attempt wrote before its conflict is kept
    /// in the outcome: the next attempt reads it as done and does not count it again.
    pub async fn autoscale(&self, cluster: &ObjectKey) -> Result<AutoscaleOutcome, HandlerError> {
        let mut outcome = AutoscaleOutcome::default();
        for _ in 0..CONFLICT_RETRIES {
            match self.autoscale_once(cluster, &mut outcome).await {
                Err(HandlerError::Store(StoreError::Conflict)) => continue,
                Err(e) => return Err(e),
                Ok(()) => return Ok(outcome),
            }
        }
        outcome.recheck = Some(crate::control_plane::CONFLICT_REQUEUE);
        Ok(outcome)
    }

    async fn autoscale_once(
        &self,
        key: &ObjectKey,
        outcome: &mut AutoscaleOutcome,
    ) -> Result<(), HandlerError> {
        let pk = partition_key(&key.namespace, &key.cluster);
        let items = self.store.query(&pk, None).await?;
        let tree = Tree::from_items(&items);
        let Some(target) = workload_target(&tree, key) else {
            return Ok(());
        };
        if autoscaled_pools(&tree, &BTreeSet::new()).is_empty() {
            return Ok(());
        }
        let (nodes, pods) = match self.read_workload(&target).await {
            Ok(read) => read,
            Err(e) => {
                warn!(step = "autoscale", cluster = %key, error = %e, "the workload cluster cannot be read; no decision this pass");
                return Ok(());
            }
        };
        let schedulable: BTreeSet<String> = nodes
            .iter()
            .filter(|n| n.is_ready() && !n.unschedulable && !n.deleting)
            .map(|n| n.name.clone())
            .collect();
        let mut pools = autoscaled_pools(&tree, &schedulable);
        let first_types: BTreeSet<String> = pools
            .iter()
            .filter_map(|p| p.pool.instance_types.first().cloned())
            .collect();
        let capacities = self.capacities(first_types).await?;
        let now = self.clock.now();
        let snapshot = snapshot(&mut pools, &nodes, &pods, capacities, now);
        let decision = decide::decide_scaling(&snapshot, now);
        let times: BTreeMap<String, PodTimes> =
            pods.iter().map(|p| (p.uid.clone(), pod_times(p))).collect();

        for pool in &pools {
            let Some(scaling) = decision.pools.get(&pool.pool.name) else {
                continue;
            };
            let (waiting, waited) = settle_waiting(
                &pool.memory.waiting_pods,
                &pool.pool.name,
                scaling.replicas > pool.pool.replicas,
                &decision.placements,
                &times,
                now,
            );
            let Some(next) = scaled_deployment(pool, scaling, &decision, waiting, now) else {
                continue;
            };
            let mut writes = pool_writes(&items, pool, &next)?;
            if let Some(removal) = &scaling.remove {
                writes.push(annotate_for_deletion(&items, &tree, &removal.machine)?);
            }
            self.store.transact(writes).await?;
            let deployment = pool.deployment_name();
            for w in waited {
                info!(step = "autoscale", cluster = %key, deployment, pod = %w.pod, seconds = w.waited.as_secs_f64(), "pending pod scheduled");
                outcome.pending_to_scheduled.push(w.waited);
            }
            if scaling.replicas > pool.pool.replicas {
                outcome.scaled_up += 1;
            }
            if let Some(r) = &scaling.remove {
                outcome.scaled_down += 1;
                info!(step = "autoscale", cluster = %key, deployment, machine = %r.machine, node = %r.node, reason = %scaling.reason, "scaling down");
            } else if scaling.replicas != pool.pool.replicas {
                info!(step = "autoscale", cluster = %key, deployment, from = pool.pool.replicas, to = scaling.replicas, reason = %scaling.reason, "scaling");
            }
        }
        if let Some(note) = unplaced_note(&decision) {
            info!(step = "autoscale", cluster = %key, pending = snapshot.pending.len(), "{note}");
        }
        // Pods placed on booting or new nodes, or on room the scheduler has yet to use:
        // look again soon. Pods no pool takes wait for the once-a-minute check.
        if !decision.placements.is_empty() {
            outcome.recheck = Some(PENDING_RECHECK);
        }
        Ok(())
    }

    /// Every Node and every pod not finished: two list calls, whatever the cluster's size.
    async fn read_workload(
        &self,
        target: &WorkloadTarget,
    ) -> Result<(Vec<Node>, Vec<Pod>), crate::ports::WorkloadError> {
        let nodes = self.workload.list_nodes(target).await?;
        let pods = self.workload.list_pods(target, PodFilter::Active).await?;
        Ok((nodes, pods))
    }

    /// The capacities of `types`: from the table where cached, from EC2
    /// (DescribeInstanceTypes) for the rest, which are then cached. EC2 refusing the
    /// whole call for one type it does not offer is asked again type by type; a type
    /// it still refuses, or EC2 unavailable, leaves that type out.
    pub async fn capacities(
        &self,
        types: BTreeSet<String>,
    ) -> Result<BTreeMap<String, InstanceCapacity>, StoreError> {
        let mut known: BTreeMap<String, InstanceCapacity> = self
            .store
            .query(INSTANCE_TYPES_PARTITION, None)
            .await?
            .iter()
            .filter_map(cached_capacity)
            .filter(|(t, _)| types.contains(t))
            .collect();
        let missing: Vec<String> = types
            .iter()
            .filter(|t| !known.contains_key(*t))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(known);
        }
        let answered = match self.compute.describe_instance_types(missing.clone()).await {
            Ok(all) => all,
            Err(ComputeError::Invalid { .. }) if missing.len() > 1 => {
                let mut some = Vec::new();
                for t in missing {
                    match self.compute.describe_instance_types(vec![t.clone()]).await {
                        Ok(one) => some.extend(one),
                        Err(e) => {
                            warn!(step = "autoscale", instance_type = %t, error = %e, "no capacity for this instance type")
                        }
                    }
                }
                some
            }
            Err(e) => {
                warn!(step = "autoscale", types = ?missing, error = %e, "describing instance types failed");
                Vec::new()
            }
        };
        for (t, c) in answered {
            self.store.put(capacity_item(&t, &c), Expect::Any).await?;
            known.insert(t, c);
        }
        Ok(known)
    }
}

/// Whether the partition's Cluster declares access and has a pool with `autoscaling`.
pub fn autoscaled(tree: &Tree) -> bool {
    tree.cluster_access().is_some()
        && tree
            .of_kind(Kind::Cluster)
            .filter(|s| !s.is_deleting())
            .filter_map(|s| s.object.as_cluster())
            .any(|c| c.spec.workers.iter().any(|p| p.autoscaling.is_some()))
}

/// The Cluster's workload target when it declares one way in.
fn workload_target(tree: &Tree, key: &ObjectKey) -> Option<WorkloadTarget> {
    let access = tree.cluster_access()?;
    Some(WorkloadTarget {
        namespace: key.namespace.clone(),
        cluster: key.cluster.clone(),
        access: crate::ports::ClusterAccessKey::from_spec(access)?,
    })
}

/// The decision's input from what was read. Fills in each pool's DaemonSet overhead.
fn snapshot(
    pools: &mut [AutoscaledPool<'_>],
    nodes: &[Node],
    pods: &[Pod],
    capacities: BTreeMap<String, InstanceCapacity>,
    now: Timestamp,
) -> ScalingSnapshot {
    let mut pods_on: BTreeMap<&str, Vec<decide::Pod>> = BTreeMap::new();
    let mut pending = Vec::new();
    for p in pods {
        match p.node_name.as_deref() {
            Some(node) => pods_on.entry(node).or_default().push(pod(p)),
            None if p.unschedulable && p.deleting_since.is_none() => pending.push(pod(p)),
            None => {}
        }
    }
    let owner: BTreeMap<&str, (&str, &str)> = pools
        .iter()
        .flat_map(|p| {
            p.machine_of_node
                .iter()
                .map(|(node, m)| (node.as_str(), (p.pool.name.as_str(), m.as_str())))
        })
        .collect();
    let nodes: Vec<decide::Node> = nodes
        .iter()
        .map(|n| decide::Node {
            name: n.name.clone(),
            pool: owner.get(n.name.as_str()).map(|(p, _)| p.to_string()),
            machine: owner.get(n.name.as_str()).map(|(_, m)| m.to_string()),
            labels: n.labels.clone(),
            taints: n
                .taints
                .iter()
                .filter_map(|t| {
                    Some(capstan_reconcile::NodeTaint {
                        key: t.key.clone(),
                        value: t.value.clone(),
                        effect: taint_effect(&t.effect)?,
                    })
                })
                .collect(),
            allocatable: allocatable(n),
            ready: n.is_ready(),
            cordoned: n.unschedulable,
            deleting: n.deleting,
            created: n.created.unwrap_or(now),
            pods: pods_on.remove(n.name.as_str()).unwrap_or_default(),
        })
        .collect();
    let mut unneeded_since = BTreeMap::new();
    for p in pools.iter_mut() {
        unneeded_since.extend(p.memory.unneeded_since.clone());
        p.pool.daemon_set_overhead = overhead(&p.pool, &nodes, &capacities);
    }
    ScalingSnapshot {
        pending,
        nodes,
        pools: pools.iter().map(|p| p.pool.clone()).collect(),
        capacities,
        quiet_period: decide::DEFAULT_QUIET_PERIOD,
        unneeded_since,
    }
}

/// What a new node of the pool does not offer its pods: as a Ready node of the
/// pool's first instance type shows it (its capacity less its allocatable, plus its
/// DaemonSet pods), cluster-autoscaler's node template from a real node; without one,
/// EKS's reservation ([`kube_reserved`]).
fn overhead(
    pool: &decide::Pool,
    nodes: &[decide::Node],
    capacities: &BTreeMap<String, InstanceCapacity>,
) -> Resources {
    let Some(first) = pool.instance_types.first() else {
        return Resources::default();
    };
    let Some(capacity) = capacities.get(first) else {
        return Resources::default();
    };
    let full = capacity.resources();
    let sample = nodes.iter().find(|n| {
        n.ready
            && n.pool.as_deref() == Some(pool.name.as_str())
            && n.labels.get("node.kubernetes.io/instance-type") == Some(first)
    });
    match sample {
        Some(n) => {
            let daemons = n
                .pods
                .iter()
                .filter(|p| p.owner_kind.as_deref() == Some("DaemonSet"))
                .fold(Resources::default(), |sum, p| Resources {
                    cpu_millis: sum.cpu_millis + p.cpu_millis,
                    memory_bytes: sum.memory_bytes + p.memory_bytes,
                    pods: sum.pods + 1,
                });
            Resources {
                cpu_millis: full.cpu_millis.saturating_sub(n.allocatable.cpu_millis)
                    + daemons.cpu_millis,
                memory_bytes: full.memory_bytes.saturating_sub(n.allocatable.memory_bytes)
                    + daemons.memory_bytes,
                pods: full.pods.saturating_sub(n.allocatable.pods) + daemons.pods,
            }
        }
        None => kube_reserved(capacity),
    }
}

fn pod_times(p: &Pod) -> PodTimes {
    PodTimes {
        pod: decide::PodRef {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
        },
        uid: p.uid.clone(),
        created: p.created,
        bound: p.node_name.is_some(),
        scheduled_at: p.scheduled_at,
    }
}

fn pod(p: &Pod) -> decide::Pod {
    decide::Pod {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        cpu_millis: p.cpu_millis,
        memory_bytes: p.memory_bytes,
        node_selector: p.node_selector.clone(),
        affinity: p.affinity.clone(),
        tolerations: p
            .tolerations
            .iter()
            .map(|t| Toleration {
                key: t.key.clone().filter(|k| !k.is_empty()),
                exists: t.operator == "Exists",
                value: t.value.clone(),
                effect: t.effect.as_deref().and_then(taint_effect),
            })
            .collect(),
        owner_kind: p.controller_kind.clone(),
        mirror: p.mirror,
        local_storage: p.local_volumes,
        drain_skip: p
            .labels
            .get(capstan_model::labels::DRAIN_LABEL)
            .is_some_and(|v| v == capstan_model::labels::DRAIN_SKIP),
    }
}

fn taint_effect(s: &str) -> Option<TaintEffect> {
    match s {
        "NoSchedule" => Some(TaintEffect::NoSchedule),
        "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
        "NoExecute" => Some(TaintEffect::NoExecute),
        _ => None,
    }
}

/// `status.allocatable` as numbers; a quantity that does not parse counts as none.
fn allocatable(n: &Node) -> Resources {
    let get =
        |k: &str, f: fn(&str) -> Option<u64>| n.allocatable.get(k).and_then(|q| f(q)).unwrap_or(0);
    Resources {
        cpu_millis: get("cpu", quantity::millis),
        memory_bytes: get("memory", quantity::units),
        pods: get("pods", quantity::units),
    }
}

/// The raw item at `pk`/`sk` among those read.
fn raw<'a>(items: &'a [Item], key: &ItemKey) -> Option<&'a Item> {
    items
        .iter()
        .find(|it| capstan_model::item::item_key(it).is_some_and(|k| k == *key))
}

fn version(item: &Item) -> u64 {
    capstan_model::item::version_of(item)
}

/// The pool's writes: its MachineDeployment's desired item with the new replicas (or a
/// check that it is still the version read), and its observed item with the new status,
/// each conditional on the version the decision read. Edits the items as read rather
/// than re-encoding them, as `capstan scale` and a node-health reporter do.
fn pool_writes(
    items: &[Item],
    pool: &AutoscaledPool<'_>,
    next: &capstan_model::MachineDeployment,
) -> Result<Vec<Write>, HandlerError> {
    let key = pool.deployment.key();
    let desired_key = ItemKey::of(&key, Part::Desired);
    let observed_key = ItemKey::of(&key, Part::Observed);
    let (Some(desired), Some(observed)) = (raw(items, &desired_key), raw(items, &observed_key))
    else {
        // Not taken in by its reconciler yet: the next pass scales it.
        return Err(StoreError::Conflict.into());
    };
    let mut writes = Vec::with_capacity(3);
    let drv = version(desired);
    let replicas = pool
        .deployment
        .object
        .as_machine_deployment()
        .map(|md| md.spec.replicas);
    if replicas != Some(next.spec.replicas) {
        let mut item = desired.clone();
        if let Some(AttrValue::M(spec)) = item.get_mut("spec") {
            spec.insert(
                "replicas".into(),
                AttrValue::N(next.spec.replicas.to_string()),
            );
        }
        item.insert(RV.into(), AttrValue::N((drv + 1).to_string()));
        writes.push(Write::Put {
            item,
            expect: Expect::Version(drv),
        });
    } else {
        writes.push(Write::Check {
            key: desired_key,
            expect: Expect::Version(drv),
        });
    }
    let orv = version(observed);
    let mut item = observed.clone();
    item.insert(
        "status".into(),
        to_attr(&Object::MachineDeployment(next.clone()).status_json()),
    );
    item.insert(RV.into(), AttrValue::N((orv + 1).to_string()));
    writes.push(Write::Put {
        item,
        expect: Expect::Version(orv),
    });
    Ok(writes)
}

/// The Machine's desired item annotated `capstan.dev/delete-machine`, conditional on
/// the version read: its MachineSet takes it first when the replicas go down.
fn annotate_for_deletion(
    items: &[Item],
    tree: &Tree,
    machine: &str,
) -> Result<Write, HandlerError> {
    let key = tree
        .get(Kind::Machine, machine)
        .map(|s| s.key())
        .ok_or(StoreError::Conflict)?;
    let ik = ItemKey::of(&key, Part::Desired);
    let desired = raw(items, &ik).ok_or(StoreError::Conflict)?;
    let rv = version(desired);
    let mut item = desired.clone();
    let annotations = item
        .entry("annotations".into())
        .or_insert_with(|| AttrValue::M(BTreeMap::new()));
    if let AttrValue::M(map) = annotations {
        map.insert(DELETE_MACHINE.into(), AttrValue::S("autoscaler".into()));
    } else {
        *annotations = AttrValue::M(BTreeMap::from([(
            DELETE_MACHINE.to_string(),
            AttrValue::S("autoscaler".into()),
        )]));
    }
    item.insert(RV.into(), AttrValue::N((rv + 1).to_string()));
    Ok(Write::Put {
        item,
        expect: Expect::Version(rv),
    })
}

fn capacity_item(instance_type: &str, c: &InstanceCapacity) -> Item {
    Item::from([
        (
            "pk".to_string(),
            AttrValue::S(INSTANCE_TYPES_PARTITION.into()),
        ),
        ("sk".to_string(), AttrValue::S(instance_type.into())),
        ("vcpus".to_string(), AttrValue::N(c.vcpus.to_string())),
        (
            "memoryMiB".to_string(),
            AttrValue::N(c.memory_mib.to_string()),
        ),
        ("maxPods".to_string(), AttrValue::N(c.max_pods.to_string())),
    ])
}

fn cached_capacity(item: &Item) -> Option<(String, InstanceCapacity)> {
    let n = |k: &str| match item.get(k) {
        Some(AttrValue::N(v)) => v.parse::<u64>().ok(),
        _ => None,
    };
    let Some(AttrValue::S(t)) = item.get("sk") else {
        return None;
    };
    Some((
        t.clone(),
        InstanceCapacity {
            vcpus: u32::try_from(n("vcpus")?).ok()?,
            memory_mib: n("memoryMiB")?,
            max_pods: u32::try_from(n("maxPods")?).ok()?,
        },
    ))
}
