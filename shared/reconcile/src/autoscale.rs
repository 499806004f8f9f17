//! How many nodes each autoscaled pool should have: pods the scheduler could not place
//! raise a pool's replicas, nodes nobody needs are removed after a quiet period. This is
//! the decision cluster-autoscaler's Cluster API provider takes from a management
//! cluster, taken here by the control plane that launches the nodes. Pure: the runtime
//! reads pods and Nodes through the workload port and the pools from the table, hands
//! them over as a [`ScalingSnapshot`], and performs the [`ScalingDecision`].
//!
//! # Expected flow
//! Pending pods (`PodScheduled=False`, reason `Unschedulable`) are packed
//! first-fit-decreasing (by cpu, then memory): onto the free room of Ready, uncordoned
//! Nodes first (the scheduler will get there; cluster-autoscaler's "filter out
//! schedulable"), then onto the empty nodes of Machines still booting, then onto new
//! nodes, which raise the pool's replicas. Every autoscaled node whose pods could all
//! run elsewhere is "unneeded since" the first pass that saw it so; once unneeded for
//! the quiet period it is removed (its Machine named in [`Removal`], replicas lowered by
//! one), drained by the ordinary path.
//!
//! # Guarantees
//! - Replicas are never outside `[min, max]`; a pool found outside is brought back.
//! - Pods covered by booting Machines are not counted twice: each booting Machine is one
//!   empty node's room. Deciding again with the decided replicas (and the new Machines
//!   booting) asks for nothing more.
//! - At most one node per pool per pass is removed, and only when each of its pods
//!   (besides DaemonSet and mirror pods) may be moved and fits on another node's free
//!   room, with the pods of the other nodes removed in the same pass already moved.
//! - No scale-down while the pool rolls out, within the quiet period after its last
//!   scale-up, at `min`, or while a pending pod fits the pool.
//! - Deterministic: pools, nodes and pods are taken in name order; no clock read.
//!
//! # Choices
//! - Among pools that fit a pod, a node-to-come that already holds a pending pod takes
//!   it first; otherwise the first pool in name order with a booting node still empty
//!   or room under `max` does (cluster-autoscaler's `random` expander made
//!   deterministic, not `least-waste`): users who want a preference name pools
//!   accordingly.
//! - A pool's node is its first instance type: the smallest, as the pool lists them,
//!   so a pod that fits it fits any node the pool may launch.
//! - No utilization threshold (cluster-autoscaler's 0.5): any node whose pods fit
//!   elsewhere is unneeded, as Karpenter's consolidation does.
//! - Among nodes unneeded long enough, the one with the fewest pods to move goes first,
//!   then the oldest (Cluster API's `Oldest` deletion order), then by name.
//! - Pending DaemonSet pods scale nothing: they are bound to one node each.
//! - Only selectors, required node affinity, taints and requests are simulated: a pod
//!   pending for pod affinity, topology spread or host ports while a node has room
//!   does not scale a pool.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use capstan_model::{TaintEffect, Timestamp};

use crate::bootstrap::NodeTaint;

/// cluster-autoscaler's `scale-down-unneeded-time` and `scale-down-delay-after-add`.
pub const DEFAULT_QUIET_PERIOD: Duration = Duration::from_secs(10 * 60);

/// Requests or room: millicores, bytes, pod slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u64,
}

impl Resources {
    fn minus(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            pods: self.pods.saturating_sub(other.pods),
        }
    }

    fn plus(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            pods: self.pods.saturating_add(other.pods),
        }
    }

    /// The first resource `need` exceeds this room in, if any.
    fn short_of(&self, need: &Resources) -> Option<Shortfall> {
        let short = |resource, need: u64, room: u64| {
            (need > room).then_some(Shortfall {
                resource,
                need,
                room,
            })
        };
        short(Resource::Cpu, need.cpu_millis, self.cpu_millis)
            .or_else(|| short(Resource::Memory, need.memory_bytes, self.memory_bytes))
            .or_else(|| short(Resource::Pods, need.pods, self.pods))
    }
}

/// What EC2 DescribeInstanceTypes says of an instance type (`VCpuInfo.DefaultVCpus`,
/// `MemoryInfo.SizeInMiB`) and the pods its network allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceCapacity {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub max_pods: u32,
}

impl InstanceCapacity {
    pub fn resources(&self) -> Resources {
        Resources {
            cpu_millis: u64::from(self.vcpus) * 1000,
            memory_bytes: self.memory_mib.saturating_mul(1 << 20),
            pods: u64::from(self.max_pods),
        }
    }
}

/// A required node-affinity operator (`Gt`/`Lt` are not simulated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One `matchExpressions` entry of a node selector term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchExpression {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl MatchExpression {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// One of `requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`: its
/// expressions must all match. An empty term matches no node, as in Kubernetes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSelectorTerm {
    pub match_expressions: Vec<MatchExpression>,
}

/// A pod's toleration. `Equal` with no key is not valid Kubernetes and tolerates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toleration {
    /// None with `exists`: every key.
    pub key: Option<String>,
    /// `Exists` (any value) rather than `Equal`.
    pub exists: bool,
    pub value: Option<String>,
    /// None: every effect.
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    fn tolerates(&self, taint: &NodeTaint) -> bool {
        let effect = self.effect.is_none_or(|e| e == taint.effect);
        let key = match &self.key {
            None => self.exists,
            Some(k) => *k == taint.key,
        };
        let value = self.exists
            || self.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
        effect && key && value
    }
}

/// A pod as autoscaling needs it: pending, or running on a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// Sum of the containers' requests.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity: any one term must match. Empty: no requirement.
    pub affinity: Vec<NodeSelectorTerm>,
    pub tolerations: Vec<Toleration>,
    /// The controller owner's kind (`ReplicaSet`, `DaemonSet`, …); None: no controller.
    pub owner_kind: Option<String>,
    /// A static pod's API mirror (`kubernetes.io/config.mirror`).
    pub mirror: bool,
    /// Volumes on the node's own disk (emptyDir, hostPath): lost if moved.
    pub local_storage: bool,
    /// Annotated `capstan.dev/drain: skip`: its owner asked that it not be evicted.
    pub drain_skip: bool,
}

impl Pod {
    pub fn reference(&self) -> PodRef {
        PodRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    fn requests(&self) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis,
            memory_bytes: self.memory_bytes,
            pods: 1,
        }
    }

    fn is_daemon_set(&self) -> bool {
        self.owner_kind.as_deref() == Some("DaemonSet")
    }

    /// DaemonSet and mirror pods go with their node; nothing moves them.
    fn stays_with_node(&self) -> bool {
        self.is_daemon_set() || self.mirror
    }

    /// Draining would not lose it: cluster-autoscaler keeps a node whose pods have no
    /// controller to recreate them or data on the node's own disk, and Capstan's drain
    /// leaves `capstan.dev/drain: skip` pods alone, so their node cannot go.
    fn movable(&self) -> bool {
        self.owner_kind.is_some() && !self.local_storage && !self.drain_skip
    }

    /// Why this pod cannot run on a node with these labels, taints and free room.
    fn misfit(
        &self,
        labels: &BTreeMap<String, String>,
        taints: &[NodeTaint],
        room: Resources,
    ) -> Option<Misfit> {
        if let Some((key, value)) = self
            .node_selector
            .iter()
            .find(|(k, v)| labels.get(*k) != Some(*v))
        {
            return Some(Misfit::NodeSelector {
                key: key.clone(),
                value: value.clone(),
            });
        }
        let affine = self.affinity.is_empty()
            || self.affinity.iter().any(|term| {
                !term.match_expressions.is_empty()
                    && term.match_expressions.iter().all(|e| e.matches(labels))
            });
        if !affine {
            return Some(Misfit::Affinity);
        }
        if let Some(t) = taints.iter().find(|t| {
            t.effect != TaintEffect::PreferNoSchedule
                && !self.tolerations.iter().any(|tol| tol.tolerates(t))
        }) {
            return Some(Misfit::Taint(t.clone()));
        }
        room.short_of(&self.requests()).map(Misfit::TooBig)
    }
}

/// A pod's name, the key of the per-pod outputs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A Node of the workload cluster with the pods bound to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// The pool whose Machine it is; None for nodes Capstan does not manage.
    pub pool: Option<String>,
    /// The Machine (in the Cluster's namespace) whose instance it is.
    pub machine: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<NodeTaint>,
    /// `status.allocatable`.
    pub allocatable: Resources,
    pub ready: bool,
    /// `spec.unschedulable`.
    pub cordoned: bool,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    pub created: Timestamp,
    /// Every pod bound to it, DaemonSet and mirror pods included.
    pub pods: Vec<Pod>,
}

impl Node {
    /// The scheduler places pods here.
    fn schedulable(&self) -> bool {
        self.ready && !self.cordoned && !self.deleting
    }
}

/// A worker pool with `autoscaling`, as its MachineDeployment and Machines stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    /// The labels and taints its Nodes get (well-known ones included).
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<NodeTaint>,
    /// Smallest first: a new node is simulated as the first.
    pub instance_types: Vec<String>,
    pub min: u32,
    pub max: u32,
    /// The MachineDeployment's replicas now.
    pub replicas: u32,
    /// Machines of the pool without a Ready Node yet (launching, joining).
    pub booting: u32,
    pub last_scale_up: Option<Timestamp>,
    /// A rollout is replacing the pool's Machines.
    pub rolling_out: bool,
    /// Requests of the DaemonSet pods every node of the pool runs (`pods`: how many).
    pub daemon_set_overhead: Resources,
}

/// Everything one autoscaling pass looks at, for one Cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalingSnapshot {
    /// Pods the scheduler marked `PodScheduled=False`, reason `Unschedulable`.
    pub pending: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub pools: Vec<Pool>,
    /// By instance type name.
    pub capacities: BTreeMap<String, InstanceCapacity>,
    /// How long a node stays unneeded before it goes, and how long after a scale-up a
    /// pool does not scale down ([`DEFAULT_QUIET_PERIOD`]).
    pub quiet_period: Duration,
    /// From the previous decision: since when each node has been unneeded.
    pub unneeded_since: BTreeMap<String, Timestamp>,
}

/// What one pass decided.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalingDecision {
    /// Every pool of the snapshot, by name.
    pub pools: BTreeMap<String, PoolScaling>,
    /// To carry into the next pass's snapshot.
    pub unneeded_since: BTreeMap<String, Timestamp>,
    /// Where each pending pod that fits was packed.
    pub placements: BTreeMap<PodRef, Placement>,
    /// Pending pods no pool can take, and why (for conditions).
    pub unplaced: BTreeMap<PodRef, Unplaced>,
}

/// One pool's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolScaling {
    /// The replicas to write (the same as the pool's when nothing changes).
    pub replicas: u32,
    pub reason: PoolReason,
    /// The node to drain and whose Machine to delete, with replicas one lower.
    pub remove: Option<Removal>,
}

/// The node a scale-down takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    pub node: String,
    pub machine: String,
}

/// Where the packing put a pending pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Free room on a schedulable node: the scheduler will place it, nothing launches.
    Node(String),
    /// A booting or newly asked-for node of this pool.
    Pool(String),
}

/// Why a pool scales, or does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolReason {
    ScalingUp {
        /// Pending pods packed onto the pool's booting and new nodes.
        pods: usize,
        /// New nodes asked for.
        nodes: u32,
        /// Some pods still wait: the pool reached its max.
        capped_at: Option<u32>,
    },
    /// Pods fit the pool but it cannot grow.
    AtMax {
        max: u32,
        pods: usize,
    },
    /// Pods wait only for Machines already booting.
    WaitingForNodes {
        pods: usize,
    },
    /// Pending pods fit the pool (and free room elsewhere): it keeps its nodes.
    PodsPending {
        pods: usize,
    },
    BelowMin {
        min: u32,
    },
    AboveMax {
        max: u32,
    },
    ScalingDown {
        node: String,
        unneeded_for: Duration,
    },
    RollingOut,
    ScaledUpRecently {
        ago: Duration,
    },
    AtMin {
        min: u32,
    },
    /// A node is unneeded, not yet for the quiet period.
    Unneeded {
        node: String,
        unneeded_for: Duration,
        quiet_period: Duration,
    },
    /// A node unneeded long enough stays this pass: its pods need the room another
    /// pool's removal takes. The next pass looks again.
    RoomTaken {
        node: String,
    },
    Steady,
}

impl PoolReason {
    /// The condition reason (CamelCase, as Kubernetes reasons are).
    pub fn reason(&self) -> &'static str {
        match self {
            PoolReason::ScalingUp { .. } | PoolReason::BelowMin { .. } => "ScalingUp",
            PoolReason::AtMax { .. } => "AtMax",
            PoolReason::WaitingForNodes { .. } => "WaitingForNodes",
            PoolReason::PodsPending { .. } => "PodsPending",
            PoolReason::ScalingDown { .. } | PoolReason::AboveMax { .. } => "ScalingDown",
            PoolReason::RollingOut => "RollingOut",
            PoolReason::ScaledUpRecently { .. } => "ScaledUpRecently",
            PoolReason::AtMin { .. } => "AtMin",
            PoolReason::Unneeded { .. } | PoolReason::RoomTaken { .. } => "Unneeded",
            PoolReason::Steady => "Steady",
        }
    }
}

impl fmt::Display for PoolReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolReason::ScalingUp {
                pods,
                nodes,
                capped_at,
            } => {
                let (pods_word, need) = if *pods == 1 {
                    ("pod", "needs")
                } else {
                    ("pods", "need")
                };
                write!(
                    f,
                    "ScalingUp: {pods} {pods_word} unschedulable {need} {}",
                    count(*nodes as usize, "node")
                )?;
                match capped_at {
                    Some(max) => write!(f, ", at max {max}"),
                    None => Ok(()),
                }
            }
            PoolReason::AtMax { max, pods } => {
                write!(f, "at max {max}: {} unschedulable", count(*pods, "pod"))
            }
            PoolReason::WaitingForNodes { pods } => {
                write!(
                    f,
                    "{} unschedulable wait for booting nodes",
                    count(*pods, "pod")
                )
            }
            PoolReason::PodsPending { pods } => {
                write!(
                    f,
                    "{} unschedulable fit the pool: no scale-down",
                    count(*pods, "pod")
                )
            }
            PoolReason::BelowMin { min } => write!(f, "ScalingUp: below min {min}"),
            PoolReason::AboveMax { max } => write!(f, "ScalingDown: above max {max}"),
            PoolReason::ScalingDown { node, unneeded_for } => {
                write!(
                    f,
                    "ScalingDown: node {node} unneeded for {}",
                    span(*unneeded_for)
                )
            }
            PoolReason::RollingOut => write!(f, "rolling out: no scale-down"),
            PoolReason::ScaledUpRecently { ago } => {
                write!(f, "scaled up {} ago: no scale-down yet", span(*ago))
            }
            PoolReason::AtMin { min } => write!(f, "at min {min}"),
            PoolReason::Unneeded {
                node,
                unneeded_for,
                quiet_period,
            } => write!(
                f,
                "node {node} unneeded for {}, removed after {}",
                span(*unneeded_for),
                span(*quiet_period)
            ),
            PoolReason::RoomTaken { node } => write!(
                f,
                "node {node} unneeded, its pods need the room another removal takes"
            ),
            PoolReason::Steady => write!(f, "no pod waits, no node unneeded"),
        }
    }
}

/// Why a pending pod got no node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unplaced {
    /// The Cluster has no autoscaled pool.
    NoPools,
    /// No pool's nodes could run it: the first reason per pool.
    FitsNoPool(BTreeMap<String, Misfit>),
    /// The pools that could run it are at their max.
    PoolsAtMax(Vec<String>),
}

impl fmt::Display for Unplaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unplaced::NoPools => write!(f, "no autoscaled pool"),
            Unplaced::FitsNoPool(misfits) => {
                write!(f, "fits no pool")?;
                let mut sep = ": ";
                for (pool, misfit) in misfits {
                    write!(f, "{sep}{pool}: {misfit}")?;
                    sep = "; ";
                }
                Ok(())
            }
            Unplaced::PoolsAtMax(pools) => write!(f, "pools at max: {}", pools.join(", ")),
        }
    }
}

/// Why a pod cannot run on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Misfit {
    NodeSelector {
        key: String,
        value: String,
    },
    Affinity,
    Taint(NodeTaint),
    TooBig(Shortfall),
    /// The pool has no instance type, or its first one's capacity is unknown.
    UnknownInstanceType(Option<String>),
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misfit::NodeSelector { key, value } => {
                write!(f, "nodeSelector {key}={value} does not match")
            }
            Misfit::Affinity => write!(f, "required node affinity does not match"),
            Misfit::Taint(t) => {
                let value = t
                    .value
                    .as_deref()
                    .map(|v| format!("={v}"))
                    .unwrap_or_default();
                write!(
                    f,
                    "taint {}{value}:{} not tolerated",
                    t.key,
                    t.effect.as_str()
                )
            }
            Misfit::TooBig(s) => write!(f, "{s}"),
            Misfit::UnknownInstanceType(Some(t)) => write!(f, "capacity of {t} unknown"),
            Misfit::UnknownInstanceType(None) => write!(f, "no instance type"),
        }
    }
}

/// A request larger than a node's room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub resource: Resource,
    pub need: u64,
    pub room: u64,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (need, room) = match self.resource {
            Resource::Cpu => (format!("{}m", self.need), format!("{}m", self.room)),
            Resource::Memory => (
                format!("{}Mi", self.need >> 20),
                format!("{}Mi", self.room >> 20),
            ),
            Resource::Pods => (self.need.to_string(), self.room.to_string()),
        };
        write!(
            f,
            "requests {need} {}, a node has {room}",
            self.resource.as_str()
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
    Pods,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Pods => "pods",
        }
    }
}

/// Decides every autoscaled pool's replicas for one pass (see the module's doc).
pub fn decide_scaling(s: &ScalingSnapshot, now: Timestamp) -> ScalingDecision {
    let pools = by_name(&s.pools, |p| &p.name);
    let nodes = by_name(&s.nodes, |n| &n.name);
    let templates: BTreeMap<&str, Result<Resources, Misfit>> = pools
        .iter()
        .map(|(name, pool)| (*name, template_room(pool, &s.capacities)))
        .collect();
    let mut rooms: BTreeMap<&str, Room> = nodes
        .iter()
        .filter(|(_, n)| n.schedulable())
        .map(|(name, n)| (*name, Room::of(n)))
        .collect();

    let mut packing = Packing::new(&pools, &nodes);
    let mut pending: Vec<&Pod> = by_pod(&s.pending)
        .into_values()
        .filter(|p| !p.stays_with_node())
        .collect();
    pending.sort_by(|a, b| decreasing(a, b));
    // Pools some pending pod could run on: none of them scales down.
    let mut wanted: BTreeMap<&str, usize> = BTreeMap::new();
    for pod in pending {
        let fits: Vec<&str> = templates
            .iter()
            .filter(|(name, room)| match room {
                Ok(room) => pod
                    .misfit(&pools[*name].labels, &pools[*name].taints, *room)
                    .is_none(),
                Err(_) => false,
            })
            .map(|(name, _)| *name)
            .collect();
        for name in &fits {
            *wanted.entry(name).or_default() += 1;
        }
        packing.place(pod, &fits, &templates, &pools, &mut rooms);
    }

    let mut decision = ScalingDecision {
        pools: BTreeMap::new(),
        unneeded_since: BTreeMap::new(),
        placements: packing.placements,
        unplaced: packing.unplaced,
    };

    // Pools that may lose a node this pass, and why others may not.
    let mut held: BTreeMap<&str, PoolReason> = BTreeMap::new();
    for (name, pool) in &pools {
        let bins = &packing.bins[name];
        let reason = if bins.opened > 0 {
            Some(PoolReason::ScalingUp {
                pods: bins.pods,
                nodes: bins.opened,
                capped_at: (bins.blocked > 0).then_some(bins.max),
            })
        } else if bins.blocked > 0 {
            Some(PoolReason::AtMax {
                max: bins.max,
                pods: bins.blocked,
            })
        } else if pool.replicas < pool.min {
            Some(PoolReason::BelowMin { min: pool.min })
        } else if pool.replicas > bins.max {
            Some(PoolReason::AboveMax { max: bins.max })
        } else if bins.pods > 0 {
            Some(PoolReason::WaitingForNodes { pods: bins.pods })
        } else if let Some(pods) = wanted.get(name) {
            Some(PoolReason::PodsPending { pods: *pods })
        } else if pool.rolling_out {
            Some(PoolReason::RollingOut)
        } else if bins.base <= pool.min {
            Some(PoolReason::AtMin { min: pool.min })
        } else {
            None
        };
        if let Some(reason) = reason {
            held.insert(name, reason);
        }
    }

    // Unneeded: each node on its own, against the room left after pending pods.
    for (name, node) in &nodes {
        let Some(pool) = node.pool.as_deref() else {
            continue;
        };
        if held.contains_key(pool) || !node.schedulable() || node.machine.is_none() {
            continue;
        }
        let mut trial = rooms.clone();
        if moves_off(name, &mut trial) {
            let since = s.unneeded_since.get(*name).copied().unwrap_or(now);
            decision
                .unneeded_since
                .insert((*name).to_string(), since.min(now));
        }
    }

    // Removals: at most one per pool, each checked with the earlier ones' pods moved.
    for (name, pool) in &pools {
        let bins = &packing.bins[name];
        let replicas = bins.base + bins.opened;
        let outcome = match held.remove(name) {
            Some(reason) => PoolScaling {
                replicas,
                reason,
                remove: None,
            },
            None => scale_down(
                pool,
                replicas,
                &nodes,
                &mut decision.unneeded_since,
                s,
                now,
                &mut rooms,
            ),
        };
        decision.pools.insert((*name).to_string(), outcome);
    }
    decision
}

/// A pool free to scale down: waits out the quiet period after its last scale-up, then
/// removes its node unneeded long enough, if that node's pods still fit elsewhere.
fn scale_down<'a>(
    pool: &Pool,
    replicas: u32,
    nodes: &BTreeMap<&'a str, &'a Node>,
    unneeded_since: &mut BTreeMap<String, Timestamp>,
    s: &ScalingSnapshot,
    now: Timestamp,
    rooms: &mut BTreeMap<&'a str, Room<'a>>,
) -> PoolScaling {
    let steady = |reason| PoolScaling {
        replicas,
        reason,
        remove: None,
    };
    if let Some(ago) = pool.last_scale_up.map(|t| elapsed(t, now))
        && ago < s.quiet_period
    {
        return steady(PoolReason::ScaledUpRecently { ago });
    }
    match removal(
        &pool.name,
        nodes,
        unneeded_since,
        s.quiet_period,
        now,
        rooms,
    ) {
        Ok(r) => {
            let unneeded_for = unneeded_since
                .remove(&r.node)
                .map(|t| elapsed(t, now))
                .unwrap_or_default();
            PoolScaling {
                replicas: replicas.saturating_sub(1),
                reason: PoolReason::ScalingDown {
                    node: r.node.clone(),
                    unneeded_for,
                },
                remove: Some(r),
            }
        }
        Err(waiting) => steady(waiting),
    }
}

/// Name-ordered, the first of each name kept.
fn by_name<T>(items: &[T], name: impl Fn(&T) -> &String) -> BTreeMap<&str, &T> {
    let mut map = BTreeMap::new();
    for item in items {
        map.entry(name(item).as_str()).or_insert(item);
    }
    map
}

/// By namespace and name, the first of each kept.
fn by_pod(pods: &[Pod]) -> BTreeMap<(&str, &str), &Pod> {
    let mut map = BTreeMap::new();
    for pod in pods {
        map.entry((pod.namespace.as_str(), pod.name.as_str()))
            .or_insert(pod);
    }
    map
}

/// First-fit-decreasing order: larger cpu, then larger memory, then by name.
fn decreasing(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    b.cpu_millis
        .cmp(&a.cpu_millis)
        .then(b.memory_bytes.cmp(&a.memory_bytes))
        .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
}

/// One empty node of the pool: its first instance type, less its DaemonSets.
fn template_room(
    pool: &Pool,
    capacities: &BTreeMap<String, InstanceCapacity>,
) -> Result<Resources, Misfit> {
    let first = pool
        .instance_types
        .first()
        .ok_or(Misfit::UnknownInstanceType(None))?;
    let capacity = capacities
        .get(first)
        .ok_or_else(|| Misfit::UnknownInstanceType(Some(first.clone())))?;
    Ok(capacity.resources().minus(pool.daemon_set_overhead))
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

/// A schedulable node's free room, and the pods the simulation put on it.
#[derive(Clone)]
struct Room<'a> {
    node: &'a Node,
    free: Resources,
    added: Vec<&'a Pod>,
}

impl<'a> Room<'a> {
    fn of(node: &'a Node) -> Room<'a> {
        let used = node
            .pods
            .iter()
            .fold(Resources::default(), |sum, p| sum.plus(p.requests()));
        Room {
            node,
            free: node.allocatable.minus(used),
            added: Vec::new(),
        }
    }

    fn take(&mut self, pod: &'a Pod) -> bool {
        if pod
            .misfit(&self.node.labels, &self.node.taints, self.free)
            .is_some()
        {
            return false;
        }
        self.free = self.free.minus(pod.requests());
        self.added.push(pod);
        true
    }
}

/// A pool's side of the packing.
struct PoolBins {
    /// Replicas within `[min, max]`, before this pass adds any.
    base: u32,
    max: u32,
    /// Empty nodes still to come: booting Machines, and replicas without a Node yet.
    empty: u32,
    /// New nodes the pool may still add under `max`.
    headroom: u32,
    /// New nodes added this pass.
    opened: u32,
    /// The free room of its nodes-to-come that hold a simulated pod, in opening order.
    used: Vec<Resources>,
    /// Pending pods packed onto its nodes-to-come.
    pods: usize,
    /// Pending pods that fit it but found it at max.
    blocked: usize,
}

struct Packing<'a> {
    bins: BTreeMap<&'a str, PoolBins>,
    placements: BTreeMap<PodRef, Placement>,
    unplaced: BTreeMap<PodRef, Unplaced>,
}

impl<'a> Packing<'a> {
    fn new(
        pools: &BTreeMap<&'a str, &'a Pool>,
        nodes: &BTreeMap<&'a str, &'a Node>,
    ) -> Packing<'a> {
        let bins = pools
            .iter()
            .map(|(name, pool)| {
                let max = pool.max.max(pool.min);
                let base = pool.replicas.clamp(pool.min, max);
                let registered = nodes
                    .values()
                    .filter(|n| n.pool.as_deref() == Some(*name) && !n.deleting)
                    .count();
                let registered = u32::try_from(registered).unwrap_or(u32::MAX);
                let pool_bins = PoolBins {
                    base,
                    max,
                    empty: pool.booting.max(base.saturating_sub(registered)),
                    headroom: max - base,
                    opened: 0,
                    used: Vec::new(),
                    pods: 0,
                    blocked: 0,
                };
                (*name, pool_bins)
            })
            .collect();
        Packing {
            bins,
            placements: BTreeMap::new(),
            unplaced: BTreeMap::new(),
        }
    }

    /// First fit: a schedulable node's room; a node-to-come of a fitting pool that
    /// already holds a pod; an empty node-to-come (booting first, then new) of the
    /// first fitting pool that has one. Empty nodes-to-come are alike, so deciding
    /// again with the new Machines booting packs the same way and adds nothing.
    fn place(
        &mut self,
        pod: &'a Pod,
        fits: &[&'a str],
        templates: &BTreeMap<&str, Result<Resources, Misfit>>,
        pools: &BTreeMap<&'a str, &'a Pool>,
        rooms: &mut BTreeMap<&'a str, Room<'a>>,
    ) {
        let at = pod.reference();
        if let Some(node) = rooms
            .iter_mut()
            .find_map(|(name, room)| room.take(pod).then_some(*name))
        {
            self.placements
                .insert(at, Placement::Node(node.to_string()));
            return;
        }
        if fits.is_empty() {
            let why = if pools.is_empty() {
                Unplaced::NoPools
            } else {
                Unplaced::FitsNoPool(
                    templates
                        .iter()
                        .filter_map(|(name, room)| {
                            let misfit = match room {
                                Ok(room) => {
                                    pod.misfit(&pools[*name].labels, &pools[*name].taints, *room)
                                }
                                Err(e) => Some(e.clone()),
                            };
                            misfit.map(|m| ((*name).to_string(), m))
                        })
                        .collect(),
                )
            };
            self.unplaced.insert(at, why);
            return;
        }
        let need = pod.requests();
        for name in fits {
            let Some(bins) = self.bins.get_mut(name) else {
                continue;
            };
            if let Some(free) = bins
                .used
                .iter_mut()
                .find(|free| free.short_of(&need).is_none())
            {
                *free = free.minus(need);
                bins.pods += 1;
                self.placements
                    .insert(at, Placement::Pool((*name).to_string()));
                return;
            }
        }
        for name in fits {
            let (Some(bins), Some(Ok(room))) = (self.bins.get_mut(name), templates.get(name))
            else {
                continue;
            };
            if bins.empty > 0 {
                bins.empty -= 1;
            } else if bins.headroom > 0 {
                bins.headroom -= 1;
                bins.opened += 1;
            } else {
                continue;
            }
            bins.used.push(room.minus(need));
            bins.pods += 1;
            self.placements
                .insert(at, Placement::Pool((*name).to_string()));
            return;
        }
        for name in fits {
            if let Some(bins) = self.bins.get_mut(name) {
                bins.blocked += 1;
            }
        }
        self.unplaced.insert(
            at,
            Unplaced::PoolsAtMax(fits.iter().map(|n| n.to_string()).collect()),
        );
    }
}

/// Moves the node's pods (its own, less DaemonSet and mirror pods, and those the
/// simulation put there) onto the other rooms, first-fit-decreasing, and takes the
/// node's room away (nodes removed earlier in the pass have none left to offer).
/// `rooms` is changed only when every pod found a place; says whether they did.
fn moves_off<'a>(node: &str, rooms: &mut BTreeMap<&'a str, Room<'a>>) -> bool {
    let mut trial = rooms.clone();
    let Some(room) = trial.remove(node) else {
        return false;
    };
    let own = room.node.pods.iter().filter(|p| !p.stays_with_node());
    let mut moving: Vec<&'a Pod> = own.collect();
    if !moving.iter().all(|p| p.movable()) {
        return false;
    }
    moving.extend(room.added.iter().copied());
    moving.sort_by(|a, b| decreasing(a, b));
    for pod in moving {
        if !trial.values_mut().any(|other| other.take(pod)) {
            return false;
        }
    }
    *rooms = trial;
    true
}

/// The pool's node to remove this pass, or why none is.
fn removal<'a>(
    pool: &str,
    nodes: &BTreeMap<&'a str, &'a Node>,
    unneeded_since: &BTreeMap<String, Timestamp>,
    quiet_period: Duration,
    now: Timestamp,
    rooms: &mut BTreeMap<&'a str, Room<'a>>,
) -> Result<Removal, PoolReason> {
    let mut waiting: Option<(&str, Duration)> = None;
    let mut ready: Vec<(usize, Timestamp, &'a str, &'a str)> = Vec::new();
    for (name, node) in nodes {
        if node.pool.as_deref() != Some(pool) {
            continue;
        }
        let (Some(since), Some(machine)) = (unneeded_since.get(*name), node.machine.as_deref())
        else {
            continue;
        };
        let unneeded_for = elapsed(*since, now);
        if unneeded_for >= quiet_period {
            let to_move = node.pods.iter().filter(|p| !p.stays_with_node()).count()
                + rooms.get(name).map_or(0, |r| r.added.len());
            ready.push((to_move, node.created, name, machine));
        } else if waiting.is_none_or(|(_, longest)| unneeded_for > longest) {
            waiting = Some((name, unneeded_for));
        }
    }
    ready.sort();
    for (_, _, node, machine) in &ready {
        if moves_off(node, rooms) {
            return Ok(Removal {
                node: node.to_string(),
                machine: machine.to_string(),
            });
        }
    }
    // Each was unneeded on its own: only the room earlier removals took is missing.
    Err(match (ready.first(), waiting) {
        (Some((_, _, node, _)), _) => PoolReason::RoomTaken {
            node: node.to_string(),
        },
        (None, Some((node, unneeded_for))) => PoolReason::Unneeded {
            node: node.to_string(),
            unneeded_for,
            quiet_period,
        },
        (None, None) => PoolReason::Steady,
    })
}

fn count(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `10m`, `45s`, `1m30s`, `2h5m`: the way cluster-autoscaler's flags read.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}
