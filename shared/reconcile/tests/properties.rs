//! Properties of the pure reconcilers, over random pools, spec changes, schedules and
//! faults. A small in-memory driver plays the runtime: it keeps the items, performs a
//! plan's writes under their conditions, plays EC2 for launches and terminations, and
//! reconciles objects in a random order while time moves on. Nothing here is async and
//! nothing reads a clock: a failing case shrinks and replays exactly.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_model::hash::spec_hash;
use capstan_model::item::{self, ItemKey, Part, encode_desired, encode_observed};
use capstan_model::labels::DELETE_MACHINE;
use capstan_model::meta::{FINALIZER, condition};
use capstan_model::*;
use capstan_reconcile::deployment::{SetCounts, fenceposts, rollout_step};
use capstan_reconcile::machine::{
    FoundInstance, LaunchOutcome, after_launch, after_tagging, record_found, record_instance_state,
};
use capstan_reconcile::machine_set::{delete_priority, machine_domain, machines_to_delete};
use capstan_reconcile::plan::version_after;
use capstan_reconcile::{Action, Ctx, Tree, decide};
use proptest::prelude::*;

// Real-looking ids: the loop validates every desired item as `capstan validate` does.
const SUBNETS: [&str; 3] = [
    "subnet-0a1b2c3d4e5f60001",
    "subnet-0a1b2c3d4e5f60002",
    "subnet-0a1b2c3d4e5f60003",
];
const AMI_OLD: &str = "ami-0aaaaaaaaaaaaaaa1";
const AMI_NEW: &str = "ami-0aaaaaaaaaaaaaaa2";
const AMI_1: &str = "ami-0aaaaaaaaaaaaaaa3";
const TYPES: [&str; 2] = ["m7i.large", "m6i.large"];

fn epoch() -> Timestamp {
    Timestamp::from_second(1_767_225_600).unwrap()
}

/// How launches go wrong while faults are on.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// The offering (type index, subnet index) has no capacity.
    NoCapacity(usize, usize),
    /// The call timed out; it may have launched (`took_effect`).
    Timeout {
        took_effect: bool,
    },
    Throttled,
}

/// The items, the instances, the clock: the runtime's side, in memory.
struct World {
    items: BTreeMap<ItemKey, Item>,
    now: Timestamp,
    entropy: u128,
    /// instance id → (machine uid, state, subnet, type)
    instances: BTreeMap<String, (String, InstanceState, String, String)>,
    launches: u64,
    fault: Fault,
}

impl World {
    fn new(objects: &[Object]) -> World {
        let mut w = World {
            items: BTreeMap::new(),
            now: epoch(),
            entropy: 7,
            instances: BTreeMap::new(),
            launches: 0,
            fault: Fault::None,
        };
        for o in objects {
            w.put_desired(o.clone());
        }
        w
    }

    fn put_desired(&mut self, o: Object) {
        let k = ItemKey::of(&o.key(), Part::Desired);
        let rv = self.items.get(&k).map_or(0, item::version_of) + 1;
        self.items.insert(k, encode_desired(&o, rv));
    }

    fn tree(&self) -> Tree {
        Tree::from_items(&self.items.values().cloned().collect::<Vec<_>>())
    }

    fn keys(&self) -> Vec<ObjectKey> {
        let mut keys: Vec<ObjectKey> = self
            .items
            .keys()
            .filter_map(|k| k.parse().map(|(k, _)| k))
            .collect();
        keys.dedup();
        keys
    }

    fn version(&self, key: &ObjectKey, part: Part) -> Option<u64> {
        self.items
            .get(&ItemKey::of(key, part))
            .map(item::version_of)
    }

    fn holds(&self, key: &ObjectKey, part: Part, expect: Expect) -> bool {
        match (expect, self.version(key, part)) {
            (Expect::Any, _) => true,
            (Expect::Absent, v) => v.is_none(),
            (Expect::Version(n), v) => v == Some(n),
        }
    }

    fn put_observed(&mut self, o: &Object, expect: Expect) -> bool {
        let key = o.key();
        if !self.holds(&key, Part::Observed, expect) {
            return false;
        }
        let hash = spec_hash(&o.spec_json());
        self.items.insert(
            ItemKey::of(&key, Part::Observed),
            encode_observed(o, &hash, version_after(expect)),
        );
        true
    }

    /// Reconciles one object and performs its plan, stopping at the first conflict.
    fn reconcile(&mut self, key: &ObjectKey) {
        self.entropy = self
            .entropy
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let ctx = Ctx {
            now: self.now,
            entropy: self.entropy,
            installation: "prop".into(),
        };
        let plan = decide(key, &self.tree(), &ctx);
        for action in plan.actions {
            if !self.perform(action) {
                return;
            }
        }
    }

    fn perform(&mut self, action: Action) -> bool {
        match action {
            Action::PutDesired { object, expect } => {
                let key = object.key();
                if !self.holds(&key, Part::Desired, expect) {
                    return false;
                }
                self.items.insert(
                    ItemKey::of(&key, Part::Desired),
                    encode_desired(&object, version_after(expect)),
                );
                true
            }
            Action::DeleteDesired { key, expect } => {
                if !self.holds(&key, Part::Desired, expect) {
                    return false;
                }
                self.items.remove(&ItemKey::of(&key, Part::Desired));
                true
            }
            Action::PutObserved { object, expect } => self.put_observed(&object, expect),
            Action::DeleteObserved { key, expect } => {
                if !self.holds(&key, Part::Observed, expect) {
                    return false;
                }
                self.items.remove(&ItemKey::of(&key, Part::Observed));
                true
            }
            Action::Launch {
                machine,
                request,
                observed_rv,
                ..
            } => {
                let outcome = self.launch(&machine, &request);
                let m = after_launch(&machine, outcome, self.now);
                self.put_observed(&Object::Machine(m), Expect::Version(observed_rv))
            }
            Action::Terminate {
                machine,
                instance_id,
                observed_rv,
            } => {
                if let Some(i) = self.instances.get_mut(&instance_id) {
                    i.1 = InstanceState::Terminated;
                }
                match record_instance_state(
                    &machine,
                    &instance_id,
                    InstanceState::Terminated,
                    self.now,
                ) {
                    Some(m) => self.put_observed(&Object::Machine(m), Expect::Version(observed_rv)),
                    None => true,
                }
            }
            Action::FindInstance {
                machine,
                observed_rv,
            } => {
                let found = self.find(&machine);
                let m = record_found(&machine, found, self.now);
                self.put_observed(&Object::Machine(m), Expect::Version(observed_rv))
            }
            // No Cluster in these properties declares access: nothing reads a Node.
            Action::ObserveNode { .. } | Action::DeleteNode { .. } | Action::DrainNode { .. } => {
                true
            }
            Action::TagInstance {
                machine,
                observed_rv,
                ..
            } => self.put_observed(
                &Object::Machine(after_tagging(&machine)),
                Expect::Version(observed_rv),
            ),
        }
    }

    fn find(&self, machine: &Machine) -> Option<FoundInstance> {
        let uid = machine.metadata.uid.clone().unwrap_or_default();
        self.instances
            .iter()
            .find(|(_, (u, s, _, _))| *u == uid && s.is_live())
            .map(|(id, (_, s, subnet, t))| FoundInstance {
                instance_id: id.clone(),
                instance_type: t.clone(),
                subnet_id: subnet.clone(),
                availability_zone: "zone".into(),
                private_ip: None,
                state: *s,
            })
    }

    /// A launch that took effect. The token is honoured: a second call for the same
    /// Machine returns the first instance.
    fn made(&mut self, machine: &Machine, req: &LaunchRequest) -> FoundInstance {
        if let Some(found) = self.find(machine) {
            return found;
        }
        self.launches += 1;
        let id = format!("i-{:08x}", self.launches);
        let uid = machine.metadata.uid.clone().unwrap_or_default();
        self.instances.insert(
            id.clone(),
            (
                uid,
                InstanceState::Pending,
                req.subnet_id.clone(),
                req.instance_type.clone(),
            ),
        );
        FoundInstance {
            instance_id: id,
            instance_type: req.instance_type.clone(),
            subnet_id: req.subnet_id.clone(),
            availability_zone: "zone".into(),
            private_ip: None,
            state: InstanceState::Pending,
        }
    }

    fn launch(&mut self, machine: &Machine, req: &LaunchRequest) -> LaunchOutcome {
        match self.fault {
            Fault::NoCapacity(t, s)
                if req.instance_type == TYPES[t] && req.subnet_id == SUBNETS[s] =>
            {
                LaunchOutcome::Unfulfillable {
                    code: "InsufficientInstanceCapacity".into(),
                    message: "none".into(),
                    offering: capstan_reconcile::launch::Offering {
                        instance_type: req.instance_type.clone(),
                        subnet: req.subnet_id.clone(),
                    },
                }
            }
            Fault::Timeout { took_effect } => {
                if took_effect {
                    self.made(machine, req);
                }
                LaunchOutcome::Unknown {
                    code: "ServiceUnavailable".into(),
                    message: "timeout".into(),
                }
            }
            Fault::Throttled => LaunchOutcome::Retryable {
                code: "RequestLimitExceeded".into(),
                message: "slow down".into(),
            },
            _ => LaunchOutcome::Launched(self.made(machine, req)),
        }
    }

    /// EC2 moves pending instances to running and reports it to their Machines.
    fn boot(&mut self) {
        let pending: Vec<String> = self
            .instances
            .iter()
            .filter(|(_, i)| i.1 == InstanceState::Pending)
            .map(|(id, _)| id.clone())
            .collect();
        for id in pending {
            if let Some(i) = self.instances.get_mut(&id) {
                i.1 = InstanceState::Running;
            }
            self.report(&id, InstanceState::Running);
        }
    }

    /// Records an instance state on the Machine holding it (the instance-events path).
    fn report(&mut self, id: &str, state: InstanceState) {
        let tree = self.tree();
        let Some((m, rv)) = tree
            .of_kind(Kind::Machine)
            .filter_map(|s| Some((s.object.as_machine()?.clone(), s.observed_rv?)))
            .find(|(m, _)| m.status.instance_id.as_deref() == Some(id))
        else {
            return;
        };
        if let Some(m) = record_instance_state(&m, id, state, self.now) {
            self.put_observed(&Object::Machine(m), Expect::Version(rv));
        }
    }

    fn tick(&mut self, secs: u64) {
        self.now = self.now.checked_add(Duration::from_secs(secs)).unwrap();
    }

    /// Reconciles every object in key order, `rounds` times, booting instances and
    /// moving time on between rounds.
    fn settle(&mut self, rounds: usize) {
        for _ in 0..rounds {
            for key in self.keys() {
                self.reconcile(&key);
            }
            self.boot();
            self.tick(30);
        }
    }

    /// The sets and Machines, one line each, for failure messages.
    fn summary(&self) -> String {
        let tree = self.tree();
        let mut out = String::new();
        for s in tree.of_kind(Kind::MachineSet) {
            if let Some(ms) = s.object.as_machine_set() {
                out.push_str(&format!(
                    "set {} deleting={} spec={} status={}/{}\n",
                    ms.metadata.name,
                    s.is_deleting(),
                    ms.spec.replicas,
                    ms.status.replicas,
                    ms.status.available_replicas
                ));
            }
        }
        for s in tree.of_kind(Kind::Machine) {
            if let Some(m) = s.object.as_machine() {
                out.push_str(&format!(
                    "  machine {} deleting={} owner={:?} ready={}\n",
                    m.metadata.name,
                    s.is_deleting(),
                    m.metadata.controller().map(|o| &o.name),
                    is_ready(m)
                ));
            }
        }
        out
    }

    /// Live Machines (desired item present) with their stored state.
    fn machines(&self) -> Vec<Machine> {
        self.tree()
            .of_kind(Kind::Machine)
            .filter(|s| !s.is_deleting())
            .filter_map(|s| s.object.as_machine().cloned())
            .collect()
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: "default".into(),
        ..Default::default()
    }
}

fn class(image: &str) -> Object {
    Object::MachineClass(Resource {
        metadata: meta("workers"),
        spec: MachineClassSpec {
            cluster_name: "demo".into(),
            image_id: image.into(),
            instance_types: TYPES.map(String::from).to_vec(),
            subnets: SUBNETS.map(String::from).to_vec(),
            security_groups: vec!["sg-0123456789abcdef0".into()],
            ..Default::default()
        },
        status: Default::default(),
    })
}

fn deployment(replicas: i32, rolling: RollingUpdate, strategy: RolloutStrategyType) -> Object {
    let mut rollout = Rollout::default();
    rollout.strategy.strategy_type = strategy;
    rollout.strategy.rolling_update = rolling;
    Object::MachineDeployment(Resource {
        metadata: meta("pool"),
        spec: MachineDeploymentSpec {
            cluster_name: "demo".into(),
            replicas,
            template: MachineTemplate {
                metadata: Default::default(),
                spec: MachineTemplateSpec {
                    version: "v1.31.2".into(),
                    machine_class: "workers".into(),
                    ..Default::default()
                },
            },
            rollout,
            ..Default::default()
        },
        status: Default::default(),
    })
}

fn int_or_percent() -> impl Strategy<Value = IntOrPercent> {
    prop_oneof![
        (0..4i32).prop_map(IntOrPercent::Int),
        (0..=100u32).prop_map(IntOrPercent::Percent),
    ]
}

/// A RollingUpdate `capstan validate` accepts: maxSurge and maxUnavailable not both 0
/// (the loop refuses such a deployment, as Cluster API does).
fn rolling_update() -> impl Strategy<Value = RollingUpdate> {
    (int_or_percent(), int_or_percent())
        .prop_filter(
            "maxSurge and maxUnavailable both 0",
            |(surge, unavailable)| !(zero(*surge) && zero(*unavailable)),
        )
        .prop_map(|(max_surge, max_unavailable)| RollingUpdate {
            max_surge,
            max_unavailable,
        })
}

fn zero(v: IntOrPercent) -> bool {
    matches!(v, IntOrPercent::Int(0) | IntOrPercent::Percent(0))
}

fn is_ready(m: &Machine) -> bool {
    m.status.conditions.is_true(condition::READY)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// RollingUpdate keeps the pool within `desired + maxSurge` Machines and at least
    /// `desired - maxUnavailable` Ready ones at every step of a random schedule, and
    /// converges to the new template.
    #[test]
    fn a_rollout_stays_within_its_bounds_at_every_step(
        desired in 1..7i32,
        rolling in rolling_update(),
        schedule in proptest::collection::vec((0..64usize, 0..40u64, any::<bool>()), 40..160),
    ) {
        let mut w = World::new(&[class(AMI_OLD), deployment(desired, rolling.clone(), RolloutStrategyType::RollingUpdate)]);
        w.settle(12);
        prop_assert_eq!(w.machines().len() as i32, desired);
        prop_assert!(w.machines().iter().all(is_ready));

        w.put_desired(class(AMI_NEW));
        let (surge, unavailable) = fenceposts(&rolling, desired);
        for (pick, secs, boot) in schedule {
            let keys = w.keys();
            let key = keys[pick % keys.len()].clone();
            w.reconcile(&key);
            if boot {
                w.boot();
            }
            w.tick(secs);
            let ms = w.machines();
            prop_assert!(ms.len() as i32 <= desired + surge,
                "{} Machines, at most {} + {} after {:?}\n{}", ms.len(), desired, surge, key, w.summary());
            let ready = ms.iter().filter(|m| is_ready(m)).count() as i32;
            prop_assert!(ready >= desired - unavailable,
                "{} Ready, at least {} - {}", ready, desired, unavailable);
        }
        w.settle(40);
        let ms = w.machines();
        prop_assert_eq!(ms.len() as i32, desired);
        prop_assert!(ms.iter().all(|m| m.spec.launch().is_some_and(|l| l.image_id == AMI_NEW) && is_ready(m)));
        let sets = w.tree().of_kind(Kind::MachineSet).count();
        prop_assert_eq!(sets, 1, "old sets are pruned");
    }

    /// The sizes a rollout asks for never exceed the surge, never drop the Machines
    /// surely kept available below the minimum, and never grow an old set.
    #[test]
    fn rollout_steps_respect_the_fenceposts(
        desired in 0..10i32,
        rolling in rolling_update(),
        current in (0..12i32, 0..12i32),
        old in proptest::collection::vec((0..8i32, 0..8i32), 0..3),
    ) {
        let counts = |(spec, avail): (i32, i32)| SetCounts { spec, actual: spec.max(avail), available: avail.min(spec) };
        let current = counts(current);
        let old: Vec<SetCounts> = old.into_iter().map(counts).collect();
        let step = rollout_step(RolloutStrategyType::RollingUpdate, &rolling, desired, current, &old);
        let (surge, unavailable) = fenceposts(&rolling, desired);
        let before: i32 = current.spec + old.iter().map(|s| s.spec).sum::<i32>();
        let after: i32 = step.current + step.old.iter().sum::<i32>();
        prop_assert!(step.old.iter().zip(&old).all(|(n, o)| *n <= o.spec));
        prop_assert!(step.current <= desired.max(current.spec));
        prop_assert!(after <= (desired + surge).max(before), "{} > {} + {}", after, desired, surge);
        let kept_before: i32 = current.available + old.iter().map(|s| s.available).sum::<i32>();
        let kept_after: i32 = current.available.min(step.current)
            + step.old.iter().zip(&old).map(|(n, o)| o.available.min(*n)).sum::<i32>();
        prop_assert!(kept_after >= (desired - unavailable).min(kept_before));
    }

    /// OnDelete replaces nothing until a Machine is deleted, and each deleted Machine
    /// comes back from the new template.
    #[test]
    fn on_delete_replaces_only_deleted_machines(desired in 1..6i32, deletions in 0..6usize) {
        let mut w = World::new(&[class(AMI_OLD), deployment(desired, RollingUpdate::default(), RolloutStrategyType::OnDelete)]);
        w.settle(12);
        w.put_desired(class(AMI_NEW));
        w.settle(12);
        // The old Machines stay; their launchRef no longer resolves against the
        // edited class (they were made from the old one).
        prop_assert!(w.machines().iter().all(|m| m.spec.launch().is_none_or(|l| l.image_id == AMI_OLD)));
        let deletions = deletions.min(desired as usize);
        for m in w.machines().iter().take(deletions) {
            w.items.remove(&ItemKey::of(&Object::Machine(m.clone()).key(), Part::Desired));
        }
        w.settle(20);
        let ms = w.machines();
        prop_assert_eq!(ms.len() as i32, desired);
        let new = ms.iter().filter(|m| m.spec.launch().is_some_and(|l| l.image_id == AMI_NEW)).count();
        prop_assert_eq!(new, deletions);
    }

    /// Scale-down takes Machines by priority first whatever the order (annotated,
    /// Failed, unhealthy, not Running, Running), then from the most populated subnet,
    /// and keeps a balanced pool balanced within one.
    #[test]
    fn scale_down_follows_the_priority_and_keeps_subnets_balanced(
        machines in proptest::collection::vec((0..5u8, 0..3usize, 0..1000i64), 1..15),
        n in 0..15usize,
        order in prop_oneof![Just(DeletionOrder::Random), Just(DeletionOrder::Newest), Just(DeletionOrder::Oldest)],
    ) {
        let objects: Vec<(StoredObject, Machine)> = machines
            .iter()
            .enumerate()
            .map(|(i, (prio, subnet, age))| {
                let m = machine_with(i, *prio, SUBNETS[*subnet], *age);
                (stored(&m), m)
            })
            .collect();
        let live: Vec<(&StoredObject, &Machine)> = objects.iter().map(|(s, m)| (s, m)).collect();
        let subnets = SUBNETS.map(String::from).to_vec();
        let chosen = machines_to_delete(&live, n, order, &subnets);
        prop_assert_eq!(chosen.len(), n.min(live.len()));
        let names: Vec<&str> = chosen.iter().map(|(_, m)| m.metadata.name.as_str()).collect();
        let worst_kept = live
            .iter()
            .filter(|(_, m)| !names.contains(&m.metadata.name.as_str()))
            .map(|(_, m)| delete_priority(m))
            .min();
        let best_taken = chosen.iter().map(|(_, m)| delete_priority(m)).max();
        if let (Some(taken), Some(kept)) = (best_taken, worst_kept) {
            prop_assert!(taken <= kept, "took priority {} while keeping {}", taken, kept);
        }
        // All of one priority and balanced within one: still balanced after.
        let all_running = machines.iter().all(|(p, _, _)| *p == 4);
        let spread = |ms: &mut dyn Iterator<Item = &Machine>| {
            let mut counts = BTreeMap::from(SUBNETS.map(|s| (s.to_string(), 0usize)));
            for m in ms { *counts.entry(machine_domain(m).to_string()).or_default() += 1; }
            counts.values().max().unwrap() - counts.values().min().unwrap()
        };
        if all_running && spread(&mut live.iter().map(|(_, m)| *m)) <= 1 {
            let mut kept = live.iter().filter(|(_, m)| !names.contains(&m.metadata.name.as_str())).map(|(_, m)| *m);
            prop_assert!(spread(&mut kept) <= 1);
        }
    }

    /// A MachineSet resized at random keeps its Machines balanced across subnets within
    /// one, on the way up and on the way down.
    #[test]
    fn failure_domains_stay_balanced_within_one(sizes in proptest::collection::vec(0..10i32, 1..6)) {
        let mut w = World::new(&[class(AMI_1), machine_set(0)]);
        for size in sizes {
            w.put_desired(with_replicas(&w, size));
            w.settle(6);
            let ms = w.machines();
            prop_assert_eq!(ms.len() as i32, size);
            let mut counts = BTreeMap::from(SUBNETS.map(|s| (s, 0usize)));
            for m in &ms { *counts.get_mut(machine_domain(m)).unwrap() += 1; }
            let (hi, lo) = (counts.values().max().unwrap(), counts.values().min().unwrap());
            prop_assert!(hi - lo <= 1, "{:?}", counts);
        }
    }

    /// Whatever capacity errors, timeouts and throttling happen while a pool scales and
    /// rolls, once they stop the tree converges: every Machine Running on the newest
    /// template, one instance each, none left over.
    #[test]
    fn once_faults_stop_the_tree_converges(
        desired in 1..6i32,
        faults in proptest::collection::vec((0..5u8, 0..2usize, 0..3usize, 0..64usize, 0..90u64), 10..80),
        roll in any::<bool>(),
    ) {
        let mut w = World::new(&[class(AMI_OLD), deployment(desired, RollingUpdate::default(), RolloutStrategyType::RollingUpdate)]);
        if roll {
            w.put_desired(class(AMI_NEW));
        }
        for (kind, t, s, pick, secs) in faults {
            w.fault = match kind {
                0 => Fault::NoCapacity(t, s),
                1 => Fault::Timeout { took_effect: t == 0 },
                2 => Fault::Throttled,
                _ => Fault::None,
            };
            let keys = w.keys();
            let key = keys[pick % keys.len()].clone();
            w.reconcile(&key);
            if secs % 3 == 0 { w.boot(); }
            w.tick(secs);
        }
        w.fault = Fault::None;
        w.settle(60);
        let image = if roll { AMI_NEW } else { AMI_OLD };
        let ms = w.machines();
        prop_assert_eq!(ms.len() as i32, desired);
        prop_assert!(ms.iter().all(|m| m.status.phase == MachinePhase::Running && m.spec.launch().is_some_and(|l| l.image_id == image)),
            "{:?}", ms.iter().map(|m| (&m.metadata.name, m.status.phase)).collect::<Vec<_>>());
        // One live instance per Machine, and none that no Machine holds.
        let live: Vec<&String> = w.instances.iter().filter(|(_, i)| i.1.is_live()).map(|(_, i)| &i.0).collect();
        prop_assert_eq!(live.len(), ms.len(), "live instances {:?}", live);
    }
}

fn machine_with(i: usize, prio: u8, subnet: &str, age: i64) -> Machine {
    let mut m = Machine {
        metadata: meta(&format!("m-{i:02}")),
        ..Default::default()
    };
    m.metadata.uid = Some(format!("uid-{:04}", (i * 7919) % 1000));
    m.metadata.creation_timestamp = Some(
        epoch()
            .checked_add(jiff::SignedDuration::from_secs(age))
            .unwrap(),
    );
    m.metadata.finalizers = vec![FINALIZER.into()];
    m.spec.failure_domain = subnet.into();
    m.status.phase = MachinePhase::Running;
    match prio {
        0 => {
            m.metadata
                .annotations
                .insert(DELETE_MACHINE.into(), "true".into());
        }
        1 => m.status.phase = MachinePhase::Failed,
        2 => m
            .status
            .conditions
            .set_false("NodeReady", "NotReady", "", epoch()),
        3 => m.status.phase = MachinePhase::Provisioned,
        _ => {}
    }
    m
}

fn stored(m: &Machine) -> StoredObject {
    StoredObject {
        object: Object::Machine(m.clone()),
        desired_rv: Some(1),
        observed_rv: Some(1),
        observed_spec_hash: None,
        observed_annotations: None,
    }
}

fn machine_set(replicas: i32) -> Object {
    Object::MachineSet(Resource {
        metadata: meta("set"),
        spec: MachineSetSpec {
            cluster_name: "demo".into(),
            replicas,
            template: MachineTemplate {
                metadata: Default::default(),
                spec: MachineTemplateSpec {
                    version: "v1.31.2".into(),
                    machine_class: "workers".into(),
                    ..Default::default()
                },
            },
            ..Default::default()
        },
        status: Default::default(),
    })
}

fn with_replicas(w: &World, replicas: i32) -> Object {
    let tree = w.tree();
    let mut set = tree
        .get(Kind::MachineSet, "set")
        .and_then(|s| s.object.as_machine_set().cloned())
        .unwrap();
    set.spec.replicas = replicas;
    Object::MachineSet(set)
}
