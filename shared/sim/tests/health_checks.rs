//! The health-check reconciler under Lambda's batching and concurrency, through the
//! control plane over the in-memory AWS and the simulator's table.
//!
//! Its `maxInFlight` holds only because its plans are fenced. The interleaving that
//! shows it is narrow (two passes of one health check, a Machine failing between
//! their reads, the later failure sorting first), so seeded runs of the simulator
//! seldom find it; `two_passes_a_failure_apart` plays it exactly:
//!
//! 1. pass A reads the Machines: `b` is unhealthy, `a` is not;
//! 2. the machine reconciler records that `a`'s instance terminated;
//! 3. pass B reads (`a` and `b` unhealthy, none in flight), remediates `a`, commits;
//! 4. pass A acts on what it read: it remediates `b`.
//!
//! Fenced, A's plan fails on the health check's observed item (B moved it), A reads
//! again and finds one remediation in flight: one Machine deleted. Unfenced, both act
//! and `health_checks_within_limits` trips: two in flight, `maxInFlight` 1.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use capstan_model::item::{self, Part, encode_desired};
use capstan_model::{
    Expect, IntOrPercent, Kind, LabelSelector, MachineClass, MachineClassSpec, MachineHealthCheck,
    MachineHealthCheckSpec, MachinePhase, MachineSet, MachineSetSpec, MachineTemplate,
    MachineTemplateSpec, Object, ObjectKey, ObjectMeta, TemplateMetadata,
};
use capstan_reconcile::Tree;
use capstan_runtime::events::{ObjectEvent, envelope, instance_state_change};
use capstan_runtime::handlers::Delivery;
use capstan_runtime::routes::{Reconciler, SOURCE, changed};
use capstan_runtime::table::trees_by_partition;
use capstan_runtime::{Clock, ControlPlane, NoWorkload, Store};
use capstan_sim::bus::Delivery as BusDelivery;
use capstan_sim::simulator::faults::{Chaos, FaultyStore};
use capstan_sim::simulator::invariants::{Remediations, health_checks_within_limits};
use capstan_sim::simulator::{Faults, Mutation, Violation};
use capstan_sim::{Ec2Config, ManualClock, MemBus, MemStore, SeededEntropy, SimEc2};

const NAMESPACE: &str = "default";
const CLUSTER: &str = "demo";

/// Runs a future over the in-memory adapters (which never wait) to completion.
fn finish<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: NAMESPACE.into(),
        ..Default::default()
    }
}

fn objects(replicas: i32) -> Vec<Object> {
    let class = Object::MachineClass(MachineClass {
        metadata: meta("workers"),
        spec: MachineClassSpec {
            cluster_name: CLUSTER.into(),
            image_id: "ami-0abcdef1234567890".into(),
            instance_types: vec!["m7i.large".into()],
            subnets: vec!["subnet-0a1b2c3d4e5f60001".into()],
            security_groups: vec!["sg-0123456789abcdef0".into()],
            ..Default::default()
        },
        status: Default::default(),
    });
    let pool: BTreeMap<String, String> = [("pool".to_string(), "workers".to_string())].into();
    let set = Object::MachineSet(MachineSet {
        metadata: meta("workers"),
        spec: MachineSetSpec {
            cluster_name: CLUSTER.into(),
            replicas,
            template: MachineTemplate {
                metadata: TemplateMetadata {
                    labels: pool.clone(),
                    ..Default::default()
                },
                spec: MachineTemplateSpec {
                    version: "v1.31.2".into(),
                    machine_class: "workers".into(),
                    ..Default::default()
                },
            },
            ..Default::default()
        },
        status: Default::default(),
    });
    let mut spec = MachineHealthCheckSpec {
        cluster_name: CLUSTER.into(),
        selector: LabelSelector { match_labels: pool },
        ..Default::default()
    };
    spec.remediation.max_in_flight = Some(IntOrPercent::Int(1));
    let mut others = spec.clone();
    others.selector.match_labels = [("pool".to_string(), "others".to_string())].into();
    let check = |name: &str, spec| {
        Object::MachineHealthCheck(MachineHealthCheck {
            metadata: meta(name),
            spec,
            status: Default::default(),
        })
    };
    // A second check over a pool with no Machines: it selects none of these.
    vec![class, set, check("workers", spec), check("others", others)]
}

struct World {
    clock: ManualClock,
    store: MemStore,
    ec2: SimEc2,
    /// Every reconciler but the health check's, over the table as it is.
    cp: ControlPlane<MemStore, SimEc2, MemBus>,
    /// The health check's passes, over the simulator's table with `mutation`.
    checks: ControlPlane<FaultyStore, SimEc2, MemBus>,
}

fn world(mutation: Option<Mutation>) -> World {
    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().expect("a time"));
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let store = MemStore::new(shared.clone());
    let ec2 = SimEc2::new(Ec2Config::default(), shared.clone());
    let bus = MemBus::new(shared.clone(), BusDelivery::default());
    let mut chaos = Chaos::new(1, Faults::none(), mutation);
    chaos.serving = Some(Reconciler::HealthCheck);
    let faulty = FaultyStore {
        inner: store.clone(),
        chaos: Arc::new(Mutex::new(chaos)),
    };
    let plane = |entropy| ControlPlane {
        store: store.clone(),
        compute: ec2.clone(),
        bus: bus.clone(),
        workload: NoWorkload,
        clock: shared.clone(),
        entropy: Arc::new(SeededEntropy::new(entropy)),
        installation: "test".to_string(),
        batch_launches: true,
    };
    let cp = plane(7);
    let p = plane(8);
    let checks = ControlPlane {
        store: faulty,
        compute: p.compute,
        bus: p.bus,
        workload: p.workload,
        clock: p.clock,
        entropy: p.entropy,
        installation: p.installation,
        batch_launches: p.batch_launches,
    };
    World {
        clock,
        store,
        ec2,
        cp,
        checks,
    }
}

impl World {
    /// Reconciles everything but the health checks until a pool of `replicas` runs.
    fn converge(&self, replicas: i32) {
        for object in objects(replicas) {
            finish(self.store.put(encode_desired(&object, 1), Expect::Absent)).expect("created");
        }
        for _ in 0..12 {
            let keys: BTreeSet<ObjectKey> = self
                .store
                .items()
                .iter()
                .filter_map(item::item_key)
                .filter_map(|k| k.parse().map(|(key, _)| key))
                .filter(|k: &ObjectKey| k.kind != Kind::MachineHealthCheck)
                .collect();
            for key in keys {
                let _ = finish(self.cp.reconcile(&key));
            }
            self.record_ec2();
            self.clock.advance(Duration::from_secs(5));
            self.ec2.advance();
        }
    }

    /// The machine reconciler records the instance state changes EC2 reported.
    fn record_ec2(&self) {
        for event in self.ec2.take_events() {
            if let Some((id, state, at)) = instance_state_change(&event) {
                let _ = finish(self.cp.record_state(&id, state, at));
            }
        }
    }

    /// An instance terminated from outside, recorded on its Machine.
    fn terminate(&self, instance: &str) {
        self.ec2.terminate_externally(instance);
        self.clock.advance(Duration::from_secs(60));
        self.ec2.advance();
        self.record_ec2();
    }

    fn trees(&self) -> BTreeMap<String, Tree> {
        trees_by_partition(self.store.items())
    }

    /// The two running workers, by name: (name, instance).
    fn workers(&self) -> Vec<(String, String)> {
        let pk = item::partition_key(NAMESPACE, CLUSTER);
        let trees = self.trees();
        let tree = trees.get(&pk).expect("the cluster's partition");
        let mut workers: Vec<(String, String)> = tree
            .of_kind(Kind::Machine)
            .filter_map(|s| s.object.as_machine())
            .filter(|m| m.status.phase == MachinePhase::Running)
            .filter_map(|m| Some((m.metadata.name.clone(), m.status.instance_id.clone()?)))
            .collect();
        workers.sort();
        workers
    }

    fn remediated(&self) -> Vec<capstan_model::ItemKey> {
        let chaos = self
            .checks
            .store
            .chaos
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        chaos.remediated.clone()
    }
}

/// Plays the interleaving above and judges it as the simulator judges every step;
/// also returns how many Machines the passes deleted.
fn two_passes_a_failure_apart(mutation: Option<Mutation>) -> (usize, Result<(), Violation>) {
    let w = world(mutation);
    w.converge(2);
    let workers = w.workers();
    let [(_, first), (_, second)] = workers.as_slice() else {
        panic!("two running workers wanted, found {workers:?}");
    };
    w.terminate(second);
    let before = w.trees();
    let check = ObjectKey::new(NAMESPACE, CLUSTER, Kind::MachineHealthCheck, "workers");
    let mut cx = Context::from_waker(Waker::noop());
    let mut pass_a = pin!(w.checks.reconcile(&check));
    // Poll 1 stops before A's Query, poll 2 after it, before A's first write.
    for _ in 0..2 {
        assert!(
            pass_a.as_mut().poll(&mut cx).is_pending(),
            "A ran to its end"
        );
    }
    w.terminate(first);
    finish(w.checks.reconcile(&check)).expect("pass B");
    while pass_a.as_mut().poll(&mut cx).is_pending() {}
    let remediated = w.remediated();
    assert!(!remediated.is_empty(), "no pass remediated anything");
    let judged = health_checks_within_limits(
        &before,
        &w.trees(),
        &Remediations {
            this_step: &remediated,
            all: &remediated,
        },
        w.clock.now(),
    );
    (remediated.len(), judged)
}

#[test]
fn fenced_two_health_check_passes_remediate_one_machine_at_a_time() {
    assert_eq!(two_passes_a_failure_apart(None), (1, Ok(())));
}

#[test]
fn without_the_fence_two_health_check_passes_exceed_max_in_flight() {
    let (remediated, judged) = two_passes_a_failure_apart(Some(Mutation::UnfencedHealthChecks));
    assert_eq!(remediated, 2);
    let violation = judged.expect_err("two passes each remediated what they read");
    assert_eq!(violation.invariant, "health_checks_within_limits");
    assert!(
        violation.message.contains("maxInFlight allows 1"),
        "{}",
        violation.message
    );
}

/// A Machine's status changed, as the stream router tells the health-check reconciler.
fn status_changed(name: &str, now: capstan_model::Timestamp) -> Delivery {
    let detail = ObjectEvent {
        namespace: NAMESPACE.into(),
        cluster: CLUSTER.into(),
        kind: Kind::Machine,
        name: name.into(),
        part: Some("status".into()),
        change: Some("MODIFY".into()),
        owner: None,
        autoscale: false,
        requeued_at: None,
    };
    Delivery {
        message_id: name.to_string(),
        event: envelope(
            SOURCE,
            &changed(Kind::Machine),
            serde_json::to_value(detail).expect("an event serializes"),
            now,
        ),
    }
}

/// Ten Machines' status changes in one batch wake the check that selects them once (one
/// read of the cluster's partition, not ten), and the check that selects none of them
/// not at all: a pool's churn costs its health check one pass per batch.
#[test]
fn status_changes_in_one_batch_wake_the_check_selecting_them_once() {
    let w = world(None);
    w.converge(10);
    let workers = w.workers();
    assert_eq!(workers.len(), 10, "{workers:?}");
    let batch: Vec<Delivery> = workers
        .iter()
        .map(|(name, _)| status_changed(name, w.clock.now()))
        .collect();
    let pk = item::partition_key(NAMESPACE, CLUSTER);
    let partition = w
        .store
        .items()
        .iter()
        .filter(|i| item::item_key(i).is_some_and(|k| k.pk == pk))
        .count() as u64;
    let read_before = w.store.items_read();
    let outcome = finish(w.cp.handle_batch(Reconciler::HealthCheck, batch));
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    let read = w.store.items_read() - read_before;
    // One pass over the partition, and per message the Machine's own two items and the
    // partition's checks (read once per batch).
    assert!(
        read <= partition + 3 * 10,
        "{read} items read for ten status changes; the partition holds {partition}"
    );
    let status_of = |name: &str| {
        w.store.items().iter().filter_map(item::item_key).any(|k| {
            k.pk == pk && k.sk == item::sort_key(Kind::MachineHealthCheck, name, Part::Observed)
        })
    };
    assert!(
        status_of("workers"),
        "the check selecting the Machines was not reconciled"
    );
    assert!(
        !status_of("others"),
        "a check selecting none of the Machines was reconciled"
    );
}
