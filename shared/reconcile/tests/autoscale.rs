//! The autoscaling decision: one situation at a time, then properties over random
//! clusters. The properties check the decision against a small oracle written here
//! (does a pod fit a node, one pod at a time), not against the module's own packing.

use std::collections::BTreeMap;

use capstan_model::{TaintEffect, Timestamp};
use capstan_reconcile::autoscale::{
    DEFAULT_QUIET_PERIOD, InstanceCapacity, MatchExpression, Misfit, Node, NodeSelectorTerm,
    Operator, Placement, Pod, PodRef, Pool, Resources, Toleration, Unplaced,
};
use capstan_reconcile::bootstrap::NodeTaint;
use capstan_reconcile::{ScalingDecision, ScalingSnapshot, decide_scaling};
use proptest::prelude::*;

const MI: u64 = 1 << 20;
const GI: u64 = 1 << 30;

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_second(1_767_225_600 + minutes * 60).unwrap()
}

fn capacities() -> BTreeMap<String, InstanceCapacity> {
    let cap = |vcpus, memory_mib, max_pods| InstanceCapacity {
        vcpus,
        memory_mib,
        max_pods,
    };
    BTreeMap::from([
        ("small".to_string(), cap(2, 8192, 29)),
        ("large".to_string(), cap(8, 32768, 58)),
    ])
}

/// A pod a ReplicaSet owns.
fn pod(name: &str, cpu_millis: u64, memory_mib: u64) -> Pod {
    Pod {
        namespace: "default".into(),
        name: name.into(),
        cpu_millis,
        memory_bytes: memory_mib * MI,
        owner_kind: Some("ReplicaSet".into()),
        ..Pod::default()
    }
}

fn pods(prefix: &str, n: usize, cpu_millis: u64) -> Vec<Pod> {
    (0..n)
        .map(|i| pod(&format!("{prefix}-{i}"), cpu_millis, 256))
        .collect()
}

fn at_ref(name: &str) -> PodRef {
    PodRef {
        namespace: "default".into(),
        name: name.into(),
    }
}

trait PodFixture {
    fn selects(self, key: &str, value: &str) -> Self;
    fn affinity(self, key: &str, operator: Operator, values: &[&str]) -> Self;
    fn tolerates(self, key: &str) -> Self;
    fn daemon_set(self) -> Self;
    fn local_storage(self) -> Self;
    fn no_controller(self) -> Self;
    fn drain_skip(self) -> Self;
}

impl PodFixture for Pod {
    fn selects(mut self, key: &str, value: &str) -> Pod {
        self.node_selector.insert(key.into(), value.into());
        self
    }
    fn affinity(mut self, key: &str, operator: Operator, values: &[&str]) -> Pod {
        self.affinity.push(NodeSelectorTerm {
            match_expressions: vec![MatchExpression {
                key: key.into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
        });
        self
    }
    fn tolerates(mut self, key: &str) -> Pod {
        self.tolerations.push(Toleration {
            key: Some(key.into()),
            exists: true,
            value: None,
            effect: None,
        });
        self
    }
    fn daemon_set(mut self) -> Pod {
        self.owner_kind = Some("DaemonSet".into());
        self
    }
    fn local_storage(mut self) -> Pod {
        self.local_storage = true;
        self
    }
    fn no_controller(mut self) -> Pod {
        self.owner_kind = None;
        self
    }
    fn drain_skip(mut self) -> Pod {
        self.drain_skip = true;
        self
    }
}

/// An autoscaled pool of `small` nodes labelled `pool: <name>`.
fn pool(name: &str, min: u32, max: u32, replicas: u32) -> Pool {
    Pool {
        name: name.into(),
        labels: BTreeMap::from([("pool".to_string(), name.to_string())]),
        taints: Vec::new(),
        instance_types: vec!["small".into()],
        min,
        max,
        replicas,
        booting: 0,
        last_scale_up: None,
        rolling_out: false,
        daemon_set_overhead: Resources::default(),
    }
}

trait PoolFixture {
    fn booting(self, n: u32) -> Self;
    fn tainted(self, key: &str, value: &str) -> Self;
    fn rolling_out(self) -> Self;
    fn scaled_up_at(self, t: Timestamp) -> Self;
    fn daemon_sets(self, cpu_millis: u64) -> Self;
}

impl PoolFixture for Pool {
    fn booting(mut self, n: u32) -> Pool {
        self.booting = n;
        self
    }
    fn tainted(mut self, key: &str, value: &str) -> Pool {
        self.taints.push(NodeTaint {
            key: key.into(),
            value: Some(value.into()),
            effect: TaintEffect::NoSchedule,
        });
        self
    }
    fn rolling_out(mut self) -> Pool {
        self.rolling_out = true;
        self
    }
    fn scaled_up_at(mut self, t: Timestamp) -> Pool {
        self.last_scale_up = Some(t);
        self
    }
    fn daemon_sets(mut self, cpu_millis: u64) -> Pool {
        self.daemon_set_overhead = Resources {
            cpu_millis,
            memory_bytes: 0,
            pods: 1,
        };
        self
    }
}

/// A Ready `small` node of the pool, its Machine named after it.
fn node(name: &str, pool: &str) -> Node {
    Node {
        name: name.into(),
        pool: Some(pool.into()),
        machine: Some(format!("{name}-machine")),
        labels: BTreeMap::from([("pool".to_string(), pool.to_string())]),
        taints: Vec::new(),
        allocatable: capacities()["small"].resources(),
        ready: true,
        cordoned: false,
        deleting: false,
        created: at(-120),
        pods: Vec::new(),
    }
}

/// A node Capstan does not manage (no pool, no Machine).
fn unmanaged(name: &str) -> Node {
    Node {
        pool: None,
        machine: None,
        labels: BTreeMap::new(),
        ..node(name, "")
    }
}

trait NodeFixture {
    fn with(self, pod: Pod) -> Self;
    fn cordoned(self) -> Self;
}

impl NodeFixture for Node {
    fn with(mut self, pod: Pod) -> Node {
        self.pods.push(pod);
        self
    }
    fn cordoned(mut self) -> Node {
        self.cordoned = true;
        self
    }
}

fn snapshot(pools: Vec<Pool>, nodes: Vec<Node>, pending: Vec<Pod>) -> ScalingSnapshot {
    ScalingSnapshot {
        pending,
        nodes,
        pools,
        capacities: capacities(),
        quiet_period: DEFAULT_QUIET_PERIOD,
        unneeded_since: BTreeMap::new(),
    }
}

/// A node with no room left.
fn full(name: &str, pool: &str) -> Node {
    node(name, pool).with(pod(&format!("{name}-app"), 2000, 1024))
}

fn says(d: &ScalingDecision, pool: &str) -> String {
    d.pools[pool].reason.to_string()
}

// ---- Scale up ----

#[test]
fn pending_pods_scale_up_once_for_the_nodes_they_need() {
    let s = snapshot(
        vec![pool("a", 0, 10, 1)],
        vec![full("a-1", "a")],
        pods("web", 3, 900),
    );
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 3);
    assert_eq!(d.pools["a"].reason.reason(), "ScalingUp");
    assert_eq!(
        says(&d, "a"),
        "ScalingUp: 3 pods unschedulable need 2 nodes"
    );
    assert_eq!(d.placements.len(), 3);
    assert!(d.unplaced.is_empty());
}

#[test]
fn a_pool_at_max_says_so_and_its_pods_wait() {
    let nodes = (0..10).map(|i| full(&format!("a-{i}"), "a")).collect();
    let s = snapshot(vec![pool("a", 0, 10, 10)], nodes, pods("web", 3, 900));
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 10);
    assert_eq!(says(&d, "a"), "at max 10: 3 pods unschedulable");
    assert_eq!(
        d.unplaced[&at_ref("web-0")],
        Unplaced::PoolsAtMax(vec!["a".into()])
    );
    assert_eq!(d.unplaced[&at_ref("web-0")].to_string(), "pools at max: a");
}

#[test]
fn scale_up_stops_at_max_and_says_it_was_capped() {
    let s = snapshot(
        vec![pool("a", 0, 2, 1)],
        vec![full("a-1", "a")],
        pods("web", 3, 1500),
    );
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 2);
    assert_eq!(
        says(&d, "a"),
        "ScalingUp: 1 pod unschedulable needs 1 node, at max 2"
    );
    assert_eq!(d.unplaced.len(), 2);
}

#[test]
fn booting_machines_are_not_counted_twice() {
    // Two Machines booting: room for the three pods, nothing more to ask for.
    let s = snapshot(
        vec![pool("a", 0, 10, 3).booting(2)],
        vec![full("a-1", "a")],
        pods("web", 3, 900),
    );
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 3);
    assert_eq!(says(&d, "a"), "3 pods unschedulable wait for booting nodes");
    assert_eq!(d.placements[&at_ref("web-0")], Placement::Pool("a".into()));
}

#[test]
fn replicas_raised_before_their_machines_exist_are_not_counted_twice() {
    // The last pass asked for 3; the MachineSet has not created the Machines yet.
    let s = snapshot(
        vec![pool("a", 0, 10, 3)],
        vec![full("a-1", "a")],
        pods("web", 3, 900),
    );
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 3);
    assert_eq!(d.pools["a"].reason.reason(), "WaitingForNodes");
}

#[test]
fn free_room_on_a_ready_node_takes_a_pending_pod_before_any_scale_up() {
    let s = snapshot(
        vec![pool("a", 0, 10, 1)],
        vec![node("a-1", "a")],
        pods("web", 1, 900),
    );
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 1);
    assert_eq!(
        d.placements[&at_ref("web-0")],
        Placement::Node("a-1".into())
    );
    assert_eq!(
        says(&d, "a"),
        "1 pod unschedulable fit the pool: no scale-down"
    );
}

#[test]
fn the_first_fitting_pool_by_name_grows() {
    let s = snapshot(
        vec![pool("b", 0, 5, 0), pool("a", 0, 5, 0)],
        vec![],
        pods("web", 1, 500),
    );
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 1);
    assert_eq!(d.pools["b"].replicas, 0);
}

#[test]
fn pods_that_fit_no_pool_scale_nothing_and_say_why() {
    let pending = vec![
        pod("gpu", 100, 128).selects("accelerator", "nvidia"),
        pod("huge", 4000, 128),
        pod("picky", 100, 128).affinity("pool", Operator::NotIn, &["a", "b"]),
    ];
    let s = snapshot(
        vec![
            pool("a", 0, 5, 0),
            pool("b", 0, 5, 0).tainted("dedicated", "batch"),
        ],
        vec![],
        pending,
    );
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 0);
    assert_eq!(d.pools["b"].replicas, 0);
    assert_eq!(
        d.unplaced[&at_ref("gpu")].to_string(),
        "fits no pool: a: nodeSelector accelerator=nvidia does not match; \
         b: nodeSelector accelerator=nvidia does not match"
    );
    assert_eq!(
        d.unplaced[&at_ref("huge")].to_string(),
        "fits no pool: a: requests 4000m cpu, a node has 2000m; \
         b: taint dedicated=batch:NoSchedule not tolerated"
    );
    assert!(matches!(
        &d.unplaced[&at_ref("picky")],
        Unplaced::FitsNoPool(m) if m.values().all(|m| *m == Misfit::Affinity)
    ));
}

#[test]
fn a_toleration_and_matching_affinity_open_a_tainted_pool() {
    let pending =
        vec![
            pod("batch", 500, 128)
                .tolerates("dedicated")
                .affinity("pool", Operator::In, &["b"]),
        ];
    let s = snapshot(
        vec![
            pool("a", 0, 5, 0),
            pool("b", 0, 5, 0).tainted("dedicated", "batch"),
        ],
        vec![],
        pending,
    );
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 0);
    assert_eq!(d.pools["b"].replicas, 1);
}

#[test]
fn daemon_set_overhead_leaves_less_room_on_a_new_node() {
    let s = snapshot(
        vec![pool("a", 0, 5, 0).daemon_sets(200)],
        vec![],
        pods("web", 1, 1900),
    );
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 0);
    assert_eq!(
        d.unplaced[&at_ref("web-0")].to_string(),
        "fits no pool: a: requests 1900m cpu, a node has 1800m"
    );
}

#[test]
fn pending_daemon_set_pods_scale_nothing() {
    let s = snapshot(
        vec![pool("a", 0, 5, 0)],
        vec![],
        vec![pod("agent", 100, 64).daemon_set()],
    );
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 0);
    assert!(d.placements.is_empty() && d.unplaced.is_empty());
}

#[test]
fn a_pool_outside_its_bounds_is_brought_back() {
    let s = snapshot(vec![pool("a", 2, 5, 0), pool("b", 0, 3, 6)], vec![], vec![]);
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 2);
    assert_eq!(says(&d, "a"), "ScalingUp: below min 2");
    assert_eq!(d.pools["b"].replicas, 3);
    assert_eq!(says(&d, "b"), "ScalingDown: above max 3");
}

// ---- Scale down ----

/// Pool `a` of two nodes: `a-1` runs a small pod, `a-2` is empty.
fn two_nodes(pool_a: Pool) -> ScalingSnapshot {
    snapshot(
        vec![pool_a],
        vec![
            node("a-1", "a").with(pod("web-0", 500, 256)),
            node("a-2", "a"),
        ],
        vec![],
    )
}

#[test]
fn an_unneeded_node_goes_only_after_the_quiet_period() {
    let mut s = two_nodes(pool("a", 0, 5, 2));
    let first = decide_scaling(&s, at(0));
    assert_eq!(first.pools["a"].replicas, 2);
    assert_eq!(first.unneeded_since["a-2"], at(0));
    assert_eq!(first.pools["a"].reason.reason(), "Unneeded");

    s.unneeded_since = first.unneeded_since;
    let early = decide_scaling(&s, at(9));
    assert_eq!(early.pools["a"].replicas, 2);
    assert!(early.pools["a"].remove.is_none());
    assert_eq!(
        says(&early, "a"),
        "node a-1 unneeded for 9m, removed after 10m"
    );
    assert_eq!(early.unneeded_since["a-2"], at(0));

    s.unneeded_since = early.unneeded_since;
    let due = decide_scaling(&s, at(10));
    assert_eq!(due.pools["a"].replicas, 1);
    let removal = due.pools["a"].remove.clone().unwrap();
    assert_eq!(
        (removal.node.as_str(), removal.machine.as_str()),
        ("a-2", "a-2-machine")
    );
    assert_eq!(says(&due, "a"), "ScalingDown: node a-2 unneeded for 10m");
    assert_eq!(due.pools["a"].reason.reason(), "ScalingDown");
}

#[test]
fn no_scale_down_below_min() {
    let mut s = two_nodes(pool("a", 2, 5, 2));
    s.unneeded_since = BTreeMap::from([("a-2".to_string(), at(-60))]);
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 2);
    assert!(d.pools["a"].remove.is_none());
    assert_eq!(says(&d, "a"), "at min 2");
    assert!(d.unneeded_since.is_empty());
}

#[test]
fn no_scale_down_while_the_pool_rolls_out() {
    let mut s = two_nodes(pool("a", 0, 5, 2).rolling_out());
    s.unneeded_since = BTreeMap::from([("a-2".to_string(), at(-60))]);
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 2);
    assert!(d.pools["a"].remove.is_none());
    assert_eq!(says(&d, "a"), "rolling out: no scale-down");
}

#[test]
fn no_scale_down_within_the_quiet_period_after_a_scale_up() {
    let mut s = two_nodes(pool("a", 0, 5, 2).scaled_up_at(at(-5)));
    s.unneeded_since = BTreeMap::from([("a-2".to_string(), at(-60))]);
    let d = decide_scaling(&s, at(0));
    assert!(d.pools["a"].remove.is_none());
    assert_eq!(says(&d, "a"), "scaled up 5m ago: no scale-down yet");
    // The node stays unneeded meanwhile, from when it first was.
    assert_eq!(d.unneeded_since["a-2"], at(-60));
    let later = decide_scaling(&s, at(5));
    assert_eq!(later.pools["a"].remove.as_ref().unwrap().node, "a-2");
}

#[test]
fn no_scale_down_while_pending_pods_fit_the_pool() {
    let mut s = two_nodes(pool("a", 0, 5, 2));
    s.unneeded_since = BTreeMap::from([("a-2".to_string(), at(-60))]);
    s.pending = pods("web-new", 1, 100);
    let d = decide_scaling(&s, at(0));
    assert!(d.pools["a"].remove.is_none());
    assert_eq!(d.pools["a"].replicas, 2);
}

#[test]
fn a_node_whose_pods_fit_nowhere_else_stays() {
    let s = snapshot(
        vec![pool("a", 0, 5, 2)],
        vec![
            node("a-1", "a").with(pod("web-0", 1500, 256)),
            node("a-2", "a").with(pod("web-1", 1500, 256)),
        ],
        vec![],
    );
    let d = decide_scaling(&s, at(0));
    assert!(d.unneeded_since.is_empty());
    assert_eq!(says(&d, "a"), "no pod waits, no node unneeded");
}

#[test]
fn pods_that_would_be_lost_keep_their_node() {
    for keeper in [
        pod("cache", 100, 64).local_storage(),
        pod("bare", 100, 64).no_controller(),
        pod("pinned", 100, 64).drain_skip(),
    ] {
        let s = snapshot(
            vec![pool("a", 0, 5, 2)],
            vec![node("a-1", "a"), node("a-2", "a").with(keeper.clone())],
            vec![],
        );
        let d = decide_scaling(&s, at(0));
        assert!(!d.unneeded_since.contains_key("a-2"), "{}", keeper.name);
        assert!(d.unneeded_since.contains_key("a-1"));
    }
}

#[test]
fn daemon_set_and_mirror_pods_do_not_keep_a_node() {
    let mirror = Pod {
        mirror: true,
        ..pod("static", 100, 64).no_controller()
    };
    let s = snapshot(
        vec![pool("a", 0, 5, 2)],
        vec![
            full("a-1", "a"),
            node("a-2", "a")
                .with(pod("agent", 100, 64).daemon_set())
                .with(mirror),
        ],
        vec![],
    );
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.unneeded_since.keys().collect::<Vec<_>>(), ["a-2"]);
}

#[test]
fn two_pools_do_not_both_count_on_the_same_free_room() {
    // Either pod fits on `spare`, not both: only one of the nodes goes.
    let mut s = snapshot(
        vec![pool("a", 0, 5, 1), pool("b", 0, 5, 1)],
        vec![
            node("a-1", "a").with(pod("a-app", 1500, 256)),
            node("b-1", "b").with(pod("b-app", 1500, 256)),
            unmanaged("spare"),
        ],
        vec![],
    );
    s.unneeded_since = BTreeMap::from([("a-1".to_string(), at(-60)), ("b-1".to_string(), at(-60))]);
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].remove.as_ref().unwrap().node, "a-1");
    assert!(d.pools["b"].remove.is_none());
    assert_eq!(d.pools["b"].replicas, 1);
    assert_eq!(
        says(&d, "b"),
        "node b-1 unneeded, its pods need the room another removal takes"
    );
}

#[test]
fn one_node_per_pool_per_pass() {
    let mut s = snapshot(
        vec![pool("a", 0, 5, 3)],
        vec![node("a-1", "a"), node("a-2", "a"), node("a-3", "a")],
        vec![],
    );
    s.unneeded_since = ["a-1", "a-2", "a-3"]
        .into_iter()
        .map(|n| (n.to_string(), at(-60)))
        .collect();
    let d = decide_scaling(&s, at(0));
    assert_eq!(d.pools["a"].replicas, 2);
    assert_eq!(d.pools["a"].remove.as_ref().unwrap().node, "a-1");
    assert!(!d.unneeded_since.contains_key("a-1"));
    assert_eq!(d.unneeded_since["a-2"], at(-60));
}

#[test]
fn a_cordoned_node_is_no_destination_and_no_candidate() {
    let s = snapshot(
        vec![pool("a", 0, 5, 2)],
        vec![
            node("a-1", "a").with(pod("web-0", 500, 256)),
            node("a-2", "a").cordoned(),
        ],
        vec![],
    );
    let d = decide_scaling(&s, at(0));
    assert!(d.unneeded_since.is_empty());
}

// ---- Properties ----

/// Does the pod fit a node with these labels, taints and free room? Written apart
/// from the module, one pod at a time.
fn oracle_fits(
    pod: &Pod,
    labels: &BTreeMap<String, String>,
    taints: &[NodeTaint],
    room: Resources,
) -> bool {
    let selector = pod
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let affinity = pod.affinity.is_empty()
        || pod.affinity.iter().any(|t| {
            t.match_expressions.iter().all(|e| match e.operator {
                Operator::In => labels.get(&e.key).is_some_and(|v| e.values.contains(v)),
                Operator::NotIn => labels.get(&e.key).is_none_or(|v| !e.values.contains(v)),
                Operator::Exists => labels.contains_key(&e.key),
                Operator::DoesNotExist => !labels.contains_key(&e.key),
            })
        });
    let tolerated = taints.iter().all(|t| {
        t.effect == TaintEffect::PreferNoSchedule
            || pod
                .tolerations
                .iter()
                .any(|tol| tol.key.as_deref() == Some(t.key.as_str()))
    });
    selector
        && affinity
        && tolerated
        && pod.cpu_millis <= room.cpu_millis
        && pod.memory_bytes <= room.memory_bytes
        && room.pods >= 1
}

fn template(pool: &Pool) -> Option<Resources> {
    let cap = capacities().get(pool.instance_types.first()?)?.resources();
    let o = pool.daemon_set_overhead;
    Some(Resources {
        cpu_millis: cap.cpu_millis.saturating_sub(o.cpu_millis),
        memory_bytes: cap.memory_bytes.saturating_sub(o.memory_bytes),
        pods: cap.pods.saturating_sub(o.pods),
    })
}

fn fits_pool(pod: &Pod, pool: &Pool) -> bool {
    template(pool).is_some_and(|room| oracle_fits(pod, &pool.labels, &pool.taints, room))
}

fn free_room(node: &Node) -> Resources {
    let (cpu, mem) = node.pods.iter().fold((0u64, 0u64), |(c, m), p| {
        (c + p.cpu_millis, m + p.memory_bytes)
    });
    Resources {
        cpu_millis: node.allocatable.cpu_millis.saturating_sub(cpu),
        memory_bytes: node.allocatable.memory_bytes.saturating_sub(mem),
        pods: node.allocatable.pods.saturating_sub(node.pods.len() as u64),
    }
}

fn stays(pod: &Pod) -> bool {
    pod.owner_kind.as_deref() == Some("DaemonSet") || pod.mirror
}

fn clamped(pool: &Pool) -> u32 {
    pool.replicas.clamp(pool.min, pool.max)
}

fn arb_pod(prefix: &'static str) -> impl Strategy<Value = Pod> {
    (
        0..1000u32,
        100..2600u64,
        1..6u64,
        prop_oneof![Just(None), Just(Some("x")), Just(Some("y"))],
        proptest::option::weighted(0.2, prop_oneof![Just("a"), Just("b"), Just("c")]),
        proptest::bool::weighted(0.3),
        0..20u8,
    )
        .prop_map(move |(id, cpu, gib, tier, only_pool, tolerates, kind)| {
            let mut p = pod(&format!("{prefix}-{id}"), cpu, 0);
            p.memory_bytes = gib * GI / 2;
            if let Some(tier) = tier {
                p = p.selects("tier", tier);
            }
            if let Some(only) = only_pool {
                p = p.affinity("pool", Operator::In, &[only]);
            }
            if tolerates {
                p = p.tolerates("dedicated");
            }
            match kind {
                0 => p.daemon_set(),
                1 => p.local_storage(),
                2 => p.no_controller(),
                3 => p.drain_skip(),
                _ => p,
            }
        })
}

fn arb_pool(name: &'static str) -> impl Strategy<Value = (Pool, Vec<Node>)> {
    (
        (0..3u32, 0..5u32, 0..8u32, 0..3u32),
        prop_oneof![Just("x"), Just("y")],
        proptest::bool::weighted(0.25),
        prop_oneof![4 => Just("small"), 3 => Just("large"), 1 => Just("unknown")],
        (
            proptest::bool::weighted(0.15),
            proptest::option::of(0..30i64),
            0..400u64,
        ),
        proptest::collection::vec(
            (
                proptest::bool::weighted(0.9),
                proptest::bool::weighted(0.1),
                proptest::collection::vec(arb_pod("run"), 0..4),
            ),
            0..5,
        ),
    )
        .prop_map(
            move |(
                (min, span, replicas, booting),
                tier,
                taint,
                itype,
                (rolling, scaled, ds),
                nodes,
            )| {
                // Mostly within bounds, sometimes one over max or (replicas 7) at zero.
                let replicas = if replicas == 7 {
                    0
                } else {
                    min + replicas % (span + 2)
                };
                let mut p = pool(name, min, min + span, replicas);
                p.labels.insert("tier".into(), tier.into());
                if taint {
                    p = p.tainted("dedicated", name);
                }
                p.instance_types = vec![itype.into()];
                p.booting = booting;
                p.rolling_out = rolling;
                p.last_scale_up = scaled.map(|ago| at(-ago));
                p.daemon_set_overhead = Resources {
                    cpu_millis: ds,
                    memory_bytes: ds * MI,
                    pods: 1,
                };
                let allocatable = capacities()
                    .get(itype)
                    .map_or(capacities()["small"].resources(), |c| c.resources());
                let nodes = nodes
                    .into_iter()
                    .enumerate()
                    .map(|(i, (ready, cordoned, running))| {
                        let mut n = node(&format!("{name}-{i}"), name);
                        n.labels = p.labels.clone();
                        n.taints = p.taints.clone();
                        n.allocatable = allocatable;
                        n.ready = ready;
                        n.cordoned = cordoned;
                        n.created = at(-(i as i64) * 7);
                        for (j, mut r) in running.into_iter().enumerate() {
                            r.name = format!("{}-{name}-{i}-{j}", r.name);
                            n.pods.push(r);
                        }
                        n
                    })
                    .collect();
                (p, nodes)
            },
        )
}

fn arb_snapshot() -> impl Strategy<Value = ScalingSnapshot> {
    (
        arb_pool("a"),
        proptest::option::of(arb_pool("b")),
        proptest::option::of(arb_pool("c")),
        proptest::option::of(proptest::collection::vec(arb_pod("spare"), 0..3)),
        prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(arb_pod("pending"), 0..12)
        ],
        proptest::collection::vec(0..25i64, 0..16),
    )
        .prop_map(|(a, b, c, spare, mut pending, ages)| {
            for (i, p) in pending.iter_mut().enumerate() {
                p.name = format!("pending-{i}");
            }
            let mut pools = Vec::new();
            let mut nodes = Vec::new();
            for (p, ns) in [Some(a), b, c].into_iter().flatten() {
                pools.push(p);
                nodes.extend(ns);
            }
            if let Some(running) = spare {
                let mut n = unmanaged("spare");
                for (j, mut r) in running.into_iter().enumerate() {
                    r.name = format!("{}-spare-{j}", r.name);
                    n.pods.push(r);
                }
                nodes.push(n);
            }
            let unneeded_since = nodes
                .iter()
                .zip(ages)
                .map(|(n, ago)| (n.name.clone(), at(-ago)))
                .collect();
            ScalingSnapshot {
                pending,
                nodes,
                pools,
                capacities: capacities(),
                quiet_period: DEFAULT_QUIET_PERIOD,
                unneeded_since,
            }
        })
}

/// The snapshot a runtime would see next: decided replicas written, and the Machines
/// the scale-up asked for booting.
fn after_scale_up(s: &ScalingSnapshot, d: &ScalingDecision) -> ScalingSnapshot {
    let mut next = s.clone();
    for p in &mut next.pools {
        let decided = d.pools[&p.name].replicas;
        let before = clamped(p);
        if decided > before {
            p.booting += decided - before;
            p.replicas = decided;
        }
    }
    next
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn replicas_never_leave_min_max(s in arb_snapshot()) {
        let d = decide_scaling(&s, at(0));
        for p in &s.pools {
            let out = &d.pools[&p.name];
            prop_assert!(out.replicas >= p.min && out.replicas <= p.max,
                "{}: {} outside [{}, {}] ({})", p.name, out.replicas, p.min, p.max, out.reason);
            if out.remove.is_some() {
                prop_assert_eq!(out.replicas + 1, clamped(p));
            }
        }
    }

    #[test]
    fn every_pending_pod_that_fits_a_pool_with_room_is_covered(s in arb_snapshot()) {
        let d = decide_scaling(&s, at(0));
        for pod in s.pending.iter().filter(|p| !stays(p)) {
            let at = pod.reference();
            prop_assert!(d.placements.contains_key(&at) != d.unplaced.contains_key(&at));
            let room_left = s.pools.iter().any(|p| {
                fits_pool(pod, p) && d.pools[&p.name].replicas < p.max
            });
            if room_left {
                prop_assert!(d.placements.contains_key(&at), "{} not covered: {:?}", at, d.unplaced.get(&at));
            }
            if !s.pools.iter().any(|p| fits_pool(pod, p)) {
                let on_a_node = matches!(d.placements.get(&at), Some(Placement::Node(_)));
                prop_assert!(on_a_node || d.unplaced.contains_key(&at));
            }
        }
    }

    #[test]
    fn deciding_again_asks_for_nothing_more(s in arb_snapshot()) {
        let first = decide_scaling(&s, at(0));
        let next = after_scale_up(&s, &first);
        let again = decide_scaling(&next, at(0));
        for p in &next.pools {
            let out = &again.pools[&p.name];
            prop_assert!(out.replicas <= clamped(p),
                "{} grows again: {} → {} ({})", p.name, p.replicas, out.replicas, out.reason);
        }
        prop_assert_eq!(
            first.placements.keys().collect::<Vec<_>>(),
            again.placements.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn no_node_goes_while_a_pod_on_it_fits_nowhere_else(s in arb_snapshot()) {
        let d = decide_scaling(&s, at(0));
        let removed: Vec<&str> = d.pools.values()
            .filter_map(|p| p.remove.as_ref().map(|r| r.node.as_str()))
            .collect();
        for name in &removed {
            let node = s.nodes.iter().find(|n| n.name == *name).unwrap();
            let pool = s.pools.iter().find(|p| Some(&p.name) == node.pool.as_ref()).unwrap();
            prop_assert!(node.ready && !node.cordoned && !node.deleting);
            prop_assert!(!pool.rolling_out);
            prop_assert!(pool.last_scale_up.is_none_or(|t| at(0).duration_since(t).as_secs() >= 600));
            prop_assert!(s.unneeded_since[*name] <= at(-10));
            prop_assert!(!s.pending.iter().any(|p| !stays(p) && fits_pool(p, pool)));
            for pod in node.pods.iter().filter(|p| !stays(p)) {
                prop_assert!(pod.owner_kind.is_some() && !pod.local_storage && !pod.drain_skip);
                let elsewhere = s.nodes.iter().any(|other| {
                    !removed.contains(&other.name.as_str())
                        && other.ready && !other.cordoned && !other.deleting
                        && oracle_fits(pod, &other.labels, &other.taints, free_room(other))
                });
                prop_assert!(elsewhere, "{} removed with {} that fits nowhere else", name, pod.name);
            }
        }
    }

    #[test]
    fn unneeded_times_carry_over(s in arb_snapshot()) {
        let d = decide_scaling(&s, at(0));
        for (node, since) in &d.unneeded_since {
            let expected = s.unneeded_since.get(node).copied().unwrap_or(at(0)).min(at(0));
            prop_assert_eq!(*since, expected);
        }
    }
}
