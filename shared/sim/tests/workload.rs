mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_model::InstanceState;
use capstan_model::meta::ConditionStatus;
use capstan_runtime::{
    Eviction, Instance, Node, NodePatch, PodFilter, Taint, Toleration, Workload, WorkloadError,
    WorkloadTarget,
};
use capstan_sim::{
    Budget, ClusterKey, Ec2Config, FlakyApi, IntOrPercent, ManualClock, MemWorkload, NotReady,
    PodDisruptionBudget, PodSpec, SimEc2, Throttle, WorkloadConfig,
};
use common::{block_on, clock, start};

const GI: u64 = 1024 * 1024 * 1024;

/// A workload cluster and the instances its kubelets run on, stepped a second at a time.
struct World {
    clock: ManualClock,
    wl: MemWorkload,
    instances: Vec<Instance>,
}

fn key() -> ClusterKey {
    ClusterKey::new("team-a", "prod")
}

fn target() -> WorkloadTarget {
    key().target()
}

fn instance(id: &str, ip: &str, instance_type: &str) -> Instance {
    Instance {
        instance_id: id.into(),
        state: InstanceState::Running,
        instance_type: instance_type.into(),
        subnet_id: "subnet-0a1b2c3d4e5f60001".into(),
        availability_zone: "us-east-1a".into(),
        private_ip: Some(ip.into()),
        tags: BTreeMap::from([
            ("capstan.dev/namespace".to_string(), "team-a".to_string()),
            ("capstan.dev/cluster".to_string(), "prod".to_string()),
        ]),
        launch_time: start(),
        client_token: None,
        launch_index: None,
    }
}

impl World {
    fn new() -> World {
        let (clock, shared) = clock();
        World {
            clock,
            wl: MemWorkload::new(WorkloadConfig::default(), shared),
            instances: Vec::new(),
        }
    }

    /// `n` running m5.large instances, i-000…1 at 10.0.1.11 and so on.
    fn with_nodes(n: usize) -> World {
        let mut w = World::new();
        for i in 1..=n {
            w.instances.push(instance(
                &format!("i-00000000000000{i:03}"),
                &format!("10.0.1.{}", 10 + i),
                "m5.large",
            ));
        }
        w.step(21);
        w
    }

    fn step(&mut self, seconds: u64) {
        for _ in 0..seconds {
            self.clock.advance(Duration::from_secs(1));
            self.wl.observe_instances(now(&self.clock), &self.instances);
        }
    }

    /// Tells the cluster about the instances now, without moving the clock.
    fn observe(&self) {
        self.wl.observe_instances(now(&self.clock), &self.instances);
    }

    fn set_state(&mut self, id: &str, state: InstanceState) {
        for i in &mut self.instances {
            if i.instance_id == id {
                i.state = state;
            }
        }
        self.observe();
    }

    fn node_names(&self) -> Vec<String> {
        self.wl.nodes(key()).into_iter().map(|n| n.name).collect()
    }

    fn pods_on(&self, node: &str) -> Vec<String> {
        block_on(self.wl.list_pods(&target(), PodFilter::OnNode(node.into())))
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.name)
            .collect()
    }
}

fn now(clock: &ManualClock) -> capstan_model::Timestamp {
    use capstan_runtime::Clock;
    clock.now()
}

fn later(clock: &ManualClock, seconds: u64) -> capstan_model::Timestamp {
    now(clock)
        .checked_add(Duration::from_secs(seconds))
        .expect("within the calendar")
}

fn ready(node: &Node) -> Option<ConditionStatus> {
    node.condition("Ready").map(|c| c.status)
}

const NODE1: &str = "ip-10-0-1-11.ec2.internal";
const NODE2: &str = "ip-10-0-1-12.ec2.internal";
const NODE3: &str = "ip-10-0-1-13.ec2.internal";

#[test]
fn node_registers_join_delay_after_the_instance_runs() {
    let mut w = World::new();
    w.instances
        .push(instance("i-0abc", "10.0.1.23", "t3.medium"));
    w.observe();
    w.step(19);
    assert!(w.node_names().is_empty());
    w.step(1);
    let node = block_on(w.wl.find_node(&target(), "i-0abc"))
        .expect("reachable")
        .expect("registered");
    assert_eq!(node.name, "ip-10-0-1-23.ec2.internal");
    assert_eq!(
        node.provider_id.as_deref(),
        Some("aws:///us-east-1a/i-0abc")
    );
    assert_eq!(node.labels["kubernetes.io/hostname"], node.name);
    assert_eq!(node.labels["node.kubernetes.io/instance-type"], "t3.medium");
    assert_eq!(node.labels["topology.kubernetes.io/zone"], "us-east-1a");
    assert!(node.is_ready());
    assert_eq!(node.allocatable["cpu"], "1930m");
    assert_eq!(node.allocatable["pods"], "17");
    assert!(!node.kubelet_version.is_empty() && !node.os_image.is_empty());
    // Outside us-east-1 the name carries the region; without an IP it is the id.
    let mut other = instance("i-0def", "10.1.0.5", "c5.large");
    other.availability_zone = "eu-west-1b".into();
    let mut no_ip = instance("i-0fed", "10.1.0.6", "c5.large");
    no_ip.private_ip = None;
    w.instances.extend([other, no_ip]);
    w.observe();
    w.step(20);
    let names = w.node_names();
    assert!(names.contains(&"ip-10-1-0-5.eu-west-1.compute.internal".to_string()));
    assert!(names.contains(&"i-0fed".to_string()));
}

#[test]
fn untagged_and_never_joining_instances_get_no_node() {
    let mut w = World::new();
    let mut foreign = instance("i-0f00", "10.0.1.40", "m5.large");
    foreign.tags.clear();
    w.instances.push(foreign);
    w.instances
        .push(instance("i-0bad", "10.0.1.41", "m5.large"));
    w.wl.never_join("i-0bad");
    w.step(600);
    assert!(w.node_names().is_empty());
    assert_eq!(block_on(w.wl.find_node(&target(), "i-0bad")), Ok(None));
}

#[test]
fn node_goes_not_ready_at_the_given_time_and_back() {
    let mut w = World::with_nodes(1);
    let at = later(&w.clock, 30);
    w.wl.set_not_ready(
        "i-00000000000000001",
        Some(NotReady {
            at,
            reason: "KubeletNotReady".into(),
        }),
    );
    w.step(29);
    assert!(w.wl.node(key(), NODE1).expect("node").is_ready());
    w.step(1);
    let node = w.wl.node(key(), NODE1).expect("node");
    let cond = node.condition("Ready").expect("Ready");
    assert_eq!(cond.status, ConditionStatus::False);
    assert_eq!(cond.reason, "KubeletNotReady");
    assert!(
        node.taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/not-ready")
    );
    w.wl.set_not_ready("i-00000000000000001", None);
    let node = w.wl.node(key(), NODE1).expect("node");
    assert!(node.is_ready());
    assert!(node.taints.is_empty());
}

#[test]
fn stopped_kubelet_leaves_a_ghost_node_unknown_after_the_grace() {
    // Driven by the simulated EC2 itself.
    let (clock, shared) = clock();
    let ec2 = SimEc2::new(Ec2Config::default(), shared.clone());
    let wl = MemWorkload::new(WorkloadConfig::default(), shared);
    let tags = [
        ("capstan.dev/namespace", "team-a"),
        ("capstan.dev/cluster", "prod"),
    ];
    let inst = ec2
        .launch_foreign("subnet-0a1b2c3d4e5f60001", tags)
        .expect("launched");
    let step = |secs: u64| {
        for _ in 0..secs {
            clock.advance(Duration::from_secs(1));
            wl.observe_instances(now(&clock), &ec2.instances());
        }
    };
    step(30);
    let node = block_on(wl.find_node(&target(), &inst.instance_id))
        .expect("reachable")
        .expect("joined");
    assert!(node.is_ready());
    assert!(ec2.terminate_externally(&inst.instance_id));
    wl.observe_instances(now(&clock), &ec2.instances());
    step(39);
    let still = wl.node(key(), &node.name).expect("node");
    assert_eq!(ready(&still), Some(ConditionStatus::True));
    step(1);
    let ghost = wl.node(key(), &node.name).expect("node");
    assert_eq!(ready(&ghost), Some(ConditionStatus::Unknown));
    assert_eq!(
        ghost.condition("Ready").map(|c| c.reason.as_str()),
        Some("NodeStatusUnknown")
    );
    assert!(
        ghost
            .taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable")
    );
    // Nobody but Capstan deletes it.
    step(3600);
    let found = block_on(wl.find_node(&target(), &inst.instance_id)).expect("reachable");
    assert_eq!(found.map(|n| n.name), Some(node.name.clone()));
    block_on(wl.delete_node(&target(), &node.name)).expect("deleted");
    block_on(wl.delete_node(&target(), &node.name)).expect("gone is success");
    step(60);
    assert!(
        wl.nodes(key()).is_empty(),
        "a terminated kubelet does not come back"
    );
}

#[test]
fn deleted_node_of_a_running_kubelet_registers_again_uncordoned() {
    let mut w = World::with_nodes(1);
    let cordon = NodePatch {
        unschedulable: Some(true),
        ..NodePatch::default()
    };
    let node = block_on(w.wl.patch_node(&target(), NODE1, cordon)).expect("patched");
    assert!(node.unschedulable);
    assert!(
        node.taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unschedulable")
    );
    block_on(w.wl.delete_node(&target(), NODE1)).expect("deleted");
    assert!(w.node_names().is_empty());
    let missing = block_on(w.wl.patch_node(&target(), NODE1, NodePatch::default()));
    assert!(matches!(missing, Err(WorkloadError::Invalid(m)) if m.contains("not found")));
    w.step(10);
    let back = w.wl.node(key(), NODE1).expect("re-registered");
    assert_ne!(back.uid, node.uid);
    assert!(!back.unschedulable);
}

#[test]
fn unreachable_throttled_and_flaky_clusters_refuse_calls() {
    let w = World::with_nodes(1);
    let until = later(&w.clock, 60);
    w.wl.set_unreachable(key(), Some(until));
    let err = block_on(w.wl.list_nodes(&target())).expect_err("unreachable");
    assert!(matches!(err, WorkloadError::Unavailable(_)) && err.is_retryable());
    w.clock.advance(Duration::from_secs(60));
    assert_eq!(block_on(w.wl.list_nodes(&target())).map(|n| n.len()), Ok(1));

    w.wl.set_throttle(
        key(),
        Some(Throttle {
            every: 3,
            retry_after: Some(Duration::from_secs(2)),
        }),
    );
    let results: Vec<bool> = (0..6)
        .map(|_| block_on(w.wl.list_nodes(&target())).is_ok())
        .collect();
    assert_eq!(results.iter().filter(|ok| !**ok).count(), 2);
    w.wl.set_throttle(key(), None);

    w.wl.fail_next(key(), WorkloadError::Conflict("moved".into()));
    assert_eq!(
        block_on(w.wl.list_nodes(&target())),
        Err(WorkloadError::Conflict("moved".into()))
    );

    let flaky = FlakyApi {
        seed: 7,
        unavailable: 0.3,
        throttled: 0.2,
    };
    let run = || {
        w.wl.set_flaky(key(), Some(flaky));
        (0..50)
            .map(|_| block_on(w.wl.list_nodes(&target())).is_ok())
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first, run(), "the same seed fails the same calls");
    assert!(first.iter().any(|ok| *ok) && first.iter().any(|ok| !*ok));
    assert!(w.wl.calls().list_nodes >= 109);
}

#[test]
fn scheduler_honours_selectors_taints_and_capacity() {
    let mut w = World::with_nodes(2);
    let gpu = BTreeMap::from([("gpu".to_string(), Some("yes".to_string()))]);
    block_on(w.wl.patch_node(
        &target(),
        NODE2,
        NodePatch {
            labels: gpu,
            taints: Some(vec![Taint {
                key: "dedicated".into(),
                value: Some("gpu".into()),
                effect: "NoSchedule".into(),
            }]),
            ..NodePatch::default()
        },
    ))
    .expect("patched");
    // Selects node 2 but does not tolerate its taint: nowhere to go.
    w.wl.add_pod(
        key(),
        PodSpec::new("default", "picky").node_selector("gpu", "yes"),
    );
    // Selects and tolerates it.
    let toleration = Toleration {
        key: Some("dedicated".into()),
        operator: "Equal".into(),
        value: Some("gpu".into()),
        effect: Some("NoSchedule".into()),
    };
    w.wl.add_pod(
        key(),
        PodSpec::new("default", "trainer")
            .node_selector("gpu", "yes")
            .tolerate(toleration),
    );
    // Fills node 1 (1930m allocatable): the second cannot fit anywhere untainted.
    w.wl.add_pod(key(), PodSpec::new("default", "big-1").requests(1500, GI));
    w.wl.add_pod(key(), PodSpec::new("default", "big-2").requests(1500, GI));
    w.step(1);
    assert_eq!(w.pods_on(NODE2), vec!["trainer".to_string()]);
    assert_eq!(w.pods_on(NODE1), vec!["big-1".to_string()]);
    let pending = block_on(w.wl.list_pods(&target(), PodFilter::Unscheduled)).expect("listed");
    let names: Vec<&str> = pending.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["big-2", "picky"]);
    assert!(pending.iter().all(|p| p.unschedulable));
    // A cordoned node takes nothing new; a new node takes the waiting pod.
    let cordon = NodePatch {
        unschedulable: Some(true),
        ..NodePatch::default()
    };
    block_on(w.wl.patch_node(&target(), NODE1, cordon)).expect("cordoned");
    w.instances
        .push(instance("i-00000000000000003", "10.0.1.13", "m5.large"));
    w.step(21);
    assert_eq!(w.pods_on(NODE3), vec!["big-2".to_string()]);
    let big2 = w.wl.pod(key(), "default", "big-2").expect("pod");
    assert!(!big2.unschedulable);
    w.step(5);
    assert_eq!(
        w.wl.pod(key(), "default", "big-2").map(|p| p.phase),
        Some("Running".into())
    );
}

fn web_pdb(min_available: u32) -> PodDisruptionBudget {
    PodDisruptionBudget {
        namespace: "default".into(),
        name: "web-pdb".into(),
        selector: BTreeMap::from([("app".to_string(), "web".to_string())]),
        budget: Budget::MinAvailable(IntOrPercent::Int(min_available)),
    }
}

#[test]
fn eviction_waits_for_the_budget_and_the_replacement_is_rescheduled() {
    let mut w = World::with_nodes(2);
    w.wl.add_deployment(
        key(),
        "web",
        2,
        PodSpec::new("default", "").requests(500, GI),
    );
    w.wl.add_pdb(key(), web_pdb(2));
    w.step(6);
    let pods = w.wl.pods(key());
    assert_eq!(pods.len(), 2);
    assert!(pods.iter().all(|p| p.phase == "Running"));
    assert!(
        pods.iter()
            .all(|p| p.controller_kind.as_deref() == Some("ReplicaSet"))
    );
    let on_node1 = w.pods_on(NODE1);
    assert_eq!(on_node1.len(), 1, "spread over both nodes");
    let victim = on_node1[0].clone();

    let blocked = block_on(w.wl.evict(&target(), "default", &victim, None)).expect("answered");
    let Eviction::Blocked { message } = blocked else {
        panic!("expected Blocked, got {blocked:?}");
    };
    assert!(
        message.starts_with("Cannot evict pod as it would violate the pod's disruption budget.")
    );
    assert!(message.contains("web-pdb"));

    // A third replica becomes Ready elsewhere: now one may go.
    let cordon = NodePatch {
        unschedulable: Some(true),
        ..NodePatch::default()
    };
    block_on(w.wl.patch_node(&target(), NODE1, cordon)).expect("cordoned");
    w.wl.scale_deployment(key(), "default", "web", 3);
    w.step(6);
    assert_eq!(w.wl.pdb_status(key(), "default", "web-pdb"), Some((3, 2)));
    let started = block_on(w.wl.evict(&target(), "default", &victim, Some(10))).expect("answered");
    assert_eq!(started, Eviction::Started);
    let terminating = w.wl.pod(key(), "default", &victim).expect("still there");
    assert!(terminating.deleting_since.is_some());
    // The ReplicaSet replaces it at once, on the uncordoned node.
    assert_eq!(w.wl.pods(key()).len(), 4);
    // Another eviction now would break the budget.
    let second = w.pods_on(NODE2).into_iter().next().expect("pods on node 2");
    let again = block_on(w.wl.evict(&target(), "default", &second, None)).expect("answered");
    assert!(matches!(again, Eviction::Blocked { .. }));

    w.step(9);
    assert!(w.wl.pod(key(), "default", &victim).is_some());
    w.step(1);
    assert!(w.wl.pod(key(), "default", &victim).is_none());
    assert_eq!(
        block_on(w.wl.evict(&target(), "default", &victim, None)),
        Ok(Eviction::Gone)
    );
    w.step(5);
    let pods = w.wl.pods(key());
    assert_eq!(pods.len(), 3);
    assert!(
        pods.iter()
            .all(|p| p.phase == "Running" && p.node_name.as_deref() == Some(NODE2)),
        "{pods:#?}"
    );
    assert!(
        pods.iter()
            .all(|p| p.phase == "Running" && p.node_name.as_deref() == Some(NODE2))
    );
    assert!(w.pods_on(NODE1).is_empty());
    assert!(w.wl.pdb_violations().is_empty());
    let log = w.wl.evictions_log();
    assert_eq!(
        log.iter()
            .filter(|e| e.outcome == Eviction::Started)
            .count(),
        1
    );
    assert_eq!(log.len(), 4);
}

#[test]
fn unhealthy_pods_may_go_while_the_budget_holds_and_two_budgets_refuse() {
    let mut w = World::with_nodes(2);
    w.wl.add_deployment(key(), "web", 2, PodSpec::new("default", ""));
    w.wl.add_pdb(key(), web_pdb(1));
    w.step(6);
    let on = |node: &str| w.pods_on(node).into_iter().next().expect("a pod");
    let (healthy, sick) = (on(NODE1), on(NODE2));
    w.wl.set_not_ready(
        "i-00000000000000002",
        Some(NotReady {
            at: now(&w.clock),
            reason: "KubeletNotReady".into(),
        }),
    );
    assert_eq!(w.wl.pdb_status(key(), "default", "web-pdb"), Some((1, 1)));
    let refused = block_on(w.wl.evict(&target(), "default", &healthy, None));
    assert!(matches!(refused, Ok(Eviction::Blocked { .. })));
    // IfHealthyBudget: a pod that is not Ready may go while the budget is met.
    let sick_goes = block_on(w.wl.evict(&target(), "default", &sick, None));
    assert_eq!(sick_goes, Ok(Eviction::Started));

    w.wl.add_pdb(
        key(),
        PodDisruptionBudget {
            name: "second".into(),
            ..web_pdb(0)
        },
    );
    let err = block_on(w.wl.evict(&target(), "default", &healthy, None));
    assert!(matches!(err, Err(WorkloadError::Unavailable(m)) if m.contains("more than one")));
    assert!(w.wl.pdb_violations().is_empty());
}

#[test]
fn reused_address_lets_a_new_kubelet_adopt_the_ghost_until_it_is_deleted() {
    let mut w = World::with_nodes(1);
    w.set_state("i-00000000000000001", InstanceState::Terminated);
    w.step(40);
    // EC2 gives the freed address to the next instance: same node name.
    w.instances
        .push(instance("i-00000000000000009", "10.0.1.11", "m5.large"));
    w.observe();
    w.step(20);
    let adopted = w.wl.node(key(), NODE1).expect("node");
    assert!(adopted.is_ready());
    assert_eq!(
        adopted.provider_id.as_deref(),
        Some("aws:///us-east-1a/i-00000000000000001"),
        "providerID never changes"
    );
    assert_eq!(
        block_on(w.wl.find_node(&target(), "i-00000000000000009")),
        Ok(None)
    );
    block_on(w.wl.delete_node(&target(), NODE1)).expect("deleted");
    w.step(10);
    let own = block_on(w.wl.find_node(&target(), "i-00000000000000009"))
        .expect("reachable")
        .expect("re-registered");
    assert_eq!(own.name, NODE1);
}

#[test]
fn pods_on_a_dead_node_stay_terminating_until_the_node_is_deleted() {
    let mut w = World::with_nodes(1);
    w.wl.add_deployment(key(), "web", 1, PodSpec::new("default", ""));
    w.step(6);
    let pod = w.wl.pods(key()).remove(0);
    w.set_state("i-00000000000000001", InstanceState::Stopped);
    w.step(40);
    assert_eq!(
        ready(&w.wl.node(key(), NODE1).expect("ghost")),
        Some(ConditionStatus::Unknown)
    );
    let still = w.wl.pod(key(), "default", &pod.name).expect("stays bound");
    assert_eq!(still.phase, "Running");
    // Unhealthy and no budget: the eviction is accepted, with a 1 s grace...
    let started = block_on(w.wl.evict(&target(), "default", &pod.name, Some(1)));
    assert_eq!(started, Ok(Eviction::Started));
    w.step(120);
    // ...but no kubelet confirms it.
    assert!(w.wl.pod(key(), "default", &pod.name).is_some());
    block_on(w.wl.delete_node(&target(), NODE1)).expect("deleted");
    w.step(39);
    assert!(w.wl.pod(key(), "default", &pod.name).is_some());
    w.step(1);
    assert!(w.wl.pod(key(), "default", &pod.name).is_none(), "pod GC");
    let pending = block_on(w.wl.list_pods(&target(), PodFilter::Unscheduled)).expect("listed");
    assert_eq!(pending.len(), 1, "the replacement waits for a node");
}

#[test]
fn daemon_set_runs_one_pod_per_node_and_comes_back_when_evicted() {
    let mut w = World::with_nodes(2);
    w.wl.add_daemon_set(
        key(),
        "kube-proxy",
        PodSpec::new("kube-system", "").requests(100, 0),
    );
    w.wl.add_pod(
        key(),
        PodSpec {
            mirror: true,
            ..PodSpec::new("kube-system", "static-web").on_node(NODE1)
        },
    );
    w.step(1);
    for node in [NODE1, NODE2] {
        let ds: Vec<String> = w
            .pods_on(node)
            .into_iter()
            .filter(|p| p.starts_with("kube-proxy-"))
            .collect();
        assert_eq!(ds.len(), 1, "{node}: {ds:?}");
    }
    // A cordoned node keeps its DaemonSet pod; evicted, it is back at once.
    let cordon = NodePatch {
        unschedulable: Some(true),
        ..NodePatch::default()
    };
    block_on(w.wl.patch_node(&target(), NODE1, cordon)).expect("cordoned");
    let ds_pod =
        w.wl.pods(key())
            .into_iter()
            .find(|p| {
                p.node_name.as_deref() == Some(NODE1)
                    && p.controller_kind.as_deref() == Some("DaemonSet")
            })
            .expect("ds pod");
    assert_eq!(
        block_on(w.wl.evict(&target(), "kube-system", &ds_pod.name, None)),
        Ok(Eviction::Started)
    );
    assert_eq!(
        block_on(w.wl.evict(&target(), "kube-system", "static-web", None)),
        Ok(Eviction::Started)
    );
    w.step(31);
    let on1 = w.pods_on(NODE1);
    assert_eq!(on1.len(), 2, "{on1:?}");
    assert!(!on1.contains(&ds_pod.name));
    assert!(
        on1.contains(&"static-web".to_string()),
        "the kubelet posts its mirror again"
    );
    // A new node gets its own.
    w.instances
        .push(instance("i-00000000000000003", "10.0.1.13", "m5.large"));
    w.step(21);
    assert_eq!(w.pods_on(NODE3).len(), 1);
}

#[test]
fn volume_detaches_after_the_delay_once_its_pod_left() {
    let mut w = World::with_nodes(1);
    w.wl.add_pod(
        key(),
        PodSpec::new("db", "postgres-0")
            .persistent_volume("data-postgres-0")
            .grace(Duration::from_secs(5)),
    );
    w.step(6);
    let atts = block_on(w.wl.volume_attachments(&target(), NODE1)).expect("listed");
    assert_eq!(atts.len(), 1);
    assert!(atts[0].attached);
    assert_eq!(
        w.wl.node(key(), NODE1)
            .expect("node")
            .volumes_attached
            .len(),
        1
    );
    assert_eq!(
        block_on(w.wl.evict(&target(), "db", "postgres-0", None)),
        Ok(Eviction::Started)
    );
    w.step(5);
    assert!(w.wl.pod(key(), "db", "postgres-0").is_none());
    w.step(9);
    assert_eq!(w.wl.attachments(key()).len(), 1);
    w.step(1);
    assert!(
        block_on(w.wl.volume_attachments(&target(), NODE1))
            .expect("listed")
            .is_empty()
    );
    assert!(
        w.wl.node(key(), NODE1)
            .expect("node")
            .volumes_attached
            .is_empty()
    );
}

/// A kubelet started by nodeadm joins only the cluster its NodeConfig reaches (the
/// name and endpoint DescribeCluster gives), and registers with its flags' labels
/// and taints; one pointed elsewhere never joins.
#[test]
fn a_kubelet_joins_only_the_cluster_its_node_config_reaches() {
    use capstan_model::{LaunchRequest, Market, MetadataOptions, RootVolume};
    use capstan_reconcile::{EksNodeInput, NodeTaint, TaintEffect, eks_user_data};
    use capstan_runtime::Compute;

    let (clock, shared) = clock();
    let ec2 = SimEc2::new(Ec2Config::default(), shared.clone());
    let wl = MemWorkload::new(WorkloadConfig::default(), shared);
    let described = block_on(wl.eks_cluster(&target())).expect("described");
    let user_data = |endpoint: &str| {
        eks_user_data(&EksNodeInput {
            cluster_name: "prod".into(),
            api_server_endpoint: endpoint.into(),
            certificate_authority: described.certificate_authority.clone(),
            service_cidr: described.service_cidr.clone(),
            labels: BTreeMap::from([("team".to_string(), "web".to_string())]),
            taints: vec![NodeTaint {
                key: "example.com/warming".into(),
                value: None,
                effect: TaintEffect::NoSchedule,
            }],
            extra_user_data: None,
        })
        .expect("user data")
    };
    let launch = |token: &str, user_data: String| LaunchRequest {
        client_token: token.into(),
        image_id: "ami-0abcdef1234567890".into(),
        instance_type: "m7i.large".into(),
        subnet_id: "subnet-0a1b2c3d4e5f60001".into(),
        security_groups: vec!["sg-0123456789abcdef0".into()],
        instance_profile: None,
        root_volume: RootVolume::default(),
        market: Market::default(),
        metadata_options: MetadataOptions::default(),
        tags: BTreeMap::from([
            ("capstan.dev/namespace".to_string(), "team-a".to_string()),
            ("capstan.dev/cluster".to_string(), "prod".to_string()),
        ]),
        user_data: Some(user_data),
    };
    let launched = block_on(ec2.run_instances(vec![
        launch("good", user_data(&described.endpoint)),
        launch(
            "astray",
            user_data("https://00000000000000000000000000000000.gr7.us-east-1.eks.amazonaws.com"),
        ),
    ]));
    let ids: Vec<String> = launched
        .into_iter()
        .map(|r| r.expect("launched").instance_id)
        .collect();
    let mut seen = 0;
    for _ in 0..120 {
        clock.advance(Duration::from_secs(1));
        seen = wl.follow(now(&clock), &ec2, seen);
    }
    let good = block_on(wl.find_node(&target(), &ids[0]))
        .expect("reachable")
        .expect("the kubelet that reaches the cluster joins");
    assert_eq!(good.labels.get("team").map(String::as_str), Some("web"));
    assert!(good.taints.iter().any(|t| t.key == "example.com/warming"));
    assert_eq!(
        block_on(wl.find_node(&target(), &ids[1])).expect("reachable"),
        None,
        "a kubelet pointed at another endpoint never joins"
    );
}

#[test]
fn required_node_affinity_places_a_pod_only_on_a_matching_node() {
    use capstan_runtime::{MatchExpression, NodeSelectorTerm, Operator};
    let mut w = World::new();
    w.instances
        .push(instance("i-00000000000000001", "10.0.1.11", "m5.large"));
    w.instances
        .push(instance("i-00000000000000002", "10.0.1.12", "c5.large"));
    w.step(21);
    let on = |types: &[&str]| NodeSelectorTerm {
        match_expressions: vec![MatchExpression {
            key: "node.kubernetes.io/instance-type".into(),
            operator: Operator::In,
            values: types.iter().map(|t| (*t).to_string()).collect(),
        }],
    };
    w.wl.add_pod(
        key(),
        PodSpec::new("default", "compute").affinity(on(&["c5.large", "c6i.large"])),
    );
    w.wl.add_pod(
        key(),
        PodSpec::new("default", "nowhere").affinity(on(&["g5.xlarge"])),
    );
    w.step(1);
    assert_eq!(w.pods_on(NODE2), vec!["compute".to_string()]);
    assert!(w.pods_on(NODE1).is_empty());
    let pending = block_on(w.wl.list_pods(&target(), PodFilter::Unscheduled)).expect("listed");
    let names: Vec<&str> = pending.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["nowhere"]);
    assert!(pending[0].unschedulable);
    // One list answers for the whole cluster: bound and pending alike.
    let active = block_on(w.wl.list_pods(&target(), PodFilter::Active)).expect("listed");
    assert_eq!(active.len(), 2);
}
