//! Hostile and foreign writers, through the control plane over the in-memory AWS: what
//! anyone writes to the table costs no instance that is not theirs to lose, and an
//! invalid spec launches nothing.
//!
//! Each test drives `ControlPlane` the way the functions do: reconcile every object,
//! record EC2's state changes, advance virtual time, sweep.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use capstan_model::item::{self, AttrValue, Item, ItemKey, Part, encode_desired, encode_observed};
use capstan_model::labels::{
    TAG_CLUSTER, TAG_INSTALLATION, TAG_MACHINE, TAG_MACHINE_UID, TAG_NAMESPACE,
};
use capstan_model::meta::condition;
use capstan_model::{
    Expect, InstanceState, Kind, LaunchRequest, Machine, MachineClass, MachineClassSpec,
    MachinePhase, MachineSet, MachineSetSpec, MachineTemplate, MachineTemplateSpec, Object,
    ObjectKey, ObjectMeta, Resource,
};
use capstan_reconcile::Tree;
use capstan_runtime::events::instance_state_change;
use capstan_runtime::sweep::ORPHAN_GRACE;
use capstan_runtime::{Clock, Compute, ControlPlane, Store};
use capstan_sim::bus::Delivery;
use capstan_sim::{Ec2Config, ManualClock, MemBus, MemStore, SeededEntropy, SimEc2};

const INSTALLATION: &str = "test";
const CLUSTER: &str = "demo";
const SUBNET: &str = "subnet-0a1b2c3d4e5f60001";
const IMAGE: &str = "ami-0abcdef1234567890";

struct World {
    clock: ManualClock,
    store: MemStore,
    ec2: SimEc2,
    cp: ControlPlane<MemStore, SimEc2, MemBus>,
}

fn world() -> World {
    world_paged(capstan_sim::store::DEFAULT_PAGE_ITEMS)
}

/// A world whose table answers Scans `page` items at a time.
fn world_paged(page: usize) -> World {
    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().expect("a time"));
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let store = MemStore::new(shared.clone()).with_page_size(page);
    let ec2 = SimEc2::new(Ec2Config::default(), shared.clone());
    let bus = MemBus::new(shared.clone(), Delivery::default());
    let cp = ControlPlane {
        store: store.clone(),
        compute: ec2.clone(),
        bus,
        workload: capstan_runtime::NoWorkload,
        clock: shared,
        entropy: Arc::new(SeededEntropy::new(7)),
        installation: INSTALLATION.to_string(),
        batch_launches: true,
    };
    World {
        clock,
        store,
        ec2,
        cp,
    }
}

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: namespace.into(),
        ..Default::default()
    }
}

fn class(namespace: &str) -> Object {
    Object::MachineClass(MachineClass {
        metadata: meta(namespace, "workers"),
        spec: MachineClassSpec {
            cluster_name: CLUSTER.into(),
            image_id: IMAGE.into(),
            instance_types: vec!["m7i.large".into()],
            subnets: vec![SUBNET.into()],
            security_groups: vec!["sg-0123456789abcdef0".into()],
            ..Default::default()
        },
        status: Default::default(),
    })
}

fn machine_set(namespace: &str, replicas: i32) -> Object {
    Object::MachineSet(MachineSet {
        metadata: meta(namespace, "web"),
        spec: MachineSetSpec {
            cluster_name: CLUSTER.into(),
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

impl World {
    async fn create(&self, object: &Object) {
        self.store
            .put(encode_desired(object, 1), Expect::Absent)
            .await
            .expect("created");
    }

    /// Reconciles every object in the table, records EC2's state changes, and moves
    /// time on, `rounds` times (a bounded loop: a livelock fails the test).
    async fn run(&self, rounds: usize) {
        for _ in 0..rounds {
            let keys: BTreeSet<ObjectKey> = self
                .store
                .items()
                .iter()
                .filter_map(item::item_key)
                .filter_map(|k| k.parse().map(|(key, _)| key))
                .collect();
            for key in keys {
                let _ = self.cp.reconcile(&key).await;
            }
            for event in self.ec2.take_events() {
                if let Some((id, state, at)) = instance_state_change(&event) {
                    let _ = self.cp.record_state(&id, state, at).await;
                }
            }
            self.clock.advance(Duration::from_secs(5));
            self.ec2.advance();
        }
    }

    fn tree(&self, namespace: &str) -> Tree {
        let pk = item::partition_key(namespace, CLUSTER);
        let items: Vec<Item> = self
            .store
            .items()
            .into_iter()
            .filter(|i| item::item_key(i).is_some_and(|k| k.pk == pk))
            .collect();
        Tree::from_items(&items)
    }

    fn machines(&self, namespace: &str) -> Vec<Machine> {
        self.tree(namespace)
            .of_kind(Kind::Machine)
            .filter_map(|s| s.object.as_machine().cloned())
            .collect()
    }

    fn live_instances(&self) -> Vec<String> {
        self.ec2
            .instances()
            .into_iter()
            .filter(|i| i.state.is_live())
            .map(|i| i.instance_id)
            .collect()
    }

    /// A namespace with one running Machine: its instance id and the Machine.
    async fn running(&self, namespace: &str) -> (String, Machine) {
        self.create(&class(namespace)).await;
        self.create(&machine_set(namespace, 1)).await;
        self.run(12).await;
        let machines = self.machines(namespace);
        assert_eq!(machines.len(), 1, "{machines:?}");
        let m = machines.into_iter().next().expect("one Machine");
        assert_eq!(m.status.phase, MachinePhase::Running, "{m:?}");
        let id = m.status.instance_id.clone().expect("an instance");
        (id, m)
    }

    fn state_of(&self, id: &str) -> InstanceState {
        self.ec2.instance(id).expect("the instance exists").state
    }

    /// Past the orphan grace, then a sweep and a few more rounds.
    async fn sweep_later(&self) -> capstan_runtime::sweep::SweepReport {
        self.clock.advance(ORPHAN_GRACE + Duration::from_secs(60));
        self.ec2.advance();
        let report = self.cp.sweep().await.expect("the sweep runs");
        self.run(6).await;
        report
    }
}

fn s(v: &str) -> AttrValue {
    AttrValue::S(v.to_string())
}

fn status_of(item: &mut Item) -> &mut BTreeMap<String, AttrValue> {
    match item.get_mut("status") {
        Some(AttrValue::M(m)) => m,
        _ => panic!("an observed item with a status"),
    }
}

/// docs/ARCHITECTURE.md, "Reporting node health": a node agent writes NodeReady into the
/// observed item, as Kubernetes conditions are written, with `observedGeneration`.
#[tokio::test(flavor = "current_thread")]
async fn a_node_agents_condition_costs_no_instance() {
    let w = world();
    let (id, m) = w.running("team-a").await;
    let key = ItemKey::of(
        &ObjectKey::new("team-a", CLUSTER, Kind::Machine, &m.metadata.name),
        Part::Observed,
    );
    let mut observed = w.store.get(&key).expect("the observed item");
    let rv = item::version_of(&observed);
    let conditions = match status_of(&mut observed).remove("conditions") {
        Some(AttrValue::L(l)) => l,
        _ => Vec::new(),
    };
    let mut conditions = conditions;
    conditions.push(AttrValue::M(BTreeMap::from([
        ("type".into(), s("NodeReady")),
        ("status".into(), s("True")),
        ("reason".into(), s("KubeletReady")),
        ("message".into(), s("kubelet is posting ready status")),
        ("lastTransitionTime".into(), s("2026-01-01T00:01:00Z")),
        ("observedGeneration".into(), AttrValue::N("1".into())),
    ])));
    status_of(&mut observed).insert("conditions".into(), AttrValue::L(conditions));
    // And a status field a newer version of the functions writes.
    status_of(&mut observed).insert("nodeRef".into(), s("ip-10-0-0-4.ec2.internal"));
    observed.insert(item::RV.into(), AttrValue::N((rv + 1).to_string()));
    w.store
        .put(observed, Expect::Version(rv))
        .await
        .expect("the agent's write");

    w.run(6).await;
    let report = w.sweep_later().await;

    assert_eq!(w.state_of(&id), InstanceState::Running);
    assert!(report.orphans_terminated.is_empty(), "{report:?}");
    assert!(w.ec2.terminated_by_request().is_empty());
    assert_eq!(w.ec2.launched_total(), 1, "no replacement was launched");
    let machines = w.machines("team-a");
    assert_eq!(machines.len(), 1);
    assert!(machines[0].status.conditions.is_true("NodeReady"));
    assert!(machines[0].status.conditions.is_true(condition::READY));
}

/// A raw observed item in team-a's partition, shaped like a Machine being deleted but
/// naming team-b's instance (and even team-b's machine uid).
#[tokio::test(flavor = "current_thread")]
async fn a_forged_item_in_one_namespace_does_not_terminate_anothers_instance() {
    let w = world();
    let (theirs, their_machine) = w.running("team-b").await;
    let mut forged: Machine = their_machine.clone();
    forged.metadata.namespace = "team-a".into();
    forged.metadata.name = "borrowed".into();
    forged.metadata.owner_references.clear();
    let forged = Object::Machine(forged);
    w.store
        .put(encode_observed(&forged, "h", 1), Expect::Absent)
        .await
        .expect("the forged write");

    w.run(6).await;
    w.sweep_later().await;

    assert_eq!(w.state_of(&theirs), InstanceState::Running);
    assert!(w.ec2.terminated_by_request().is_empty());
    let forged = w
        .tree("team-a")
        .get(Kind::Machine, "borrowed")
        .and_then(|s| s.object.as_machine().cloned())
        .expect("the forged Machine is left in place");
    assert!(
        forged
            .status
            .conditions
            .get("InstanceOwned")
            .is_some_and(|c| c.reason == "InstanceNotOwned"),
        "{:?}",
        forged.status.conditions
    );
    assert_eq!(w.machines("team-b").len(), 1);
}

/// A Machine in team-a claiming team-b's machine uid, with a launch "in flight": the
/// recovery by tag must not adopt team-b's instance (and so never terminate it).
#[tokio::test(flavor = "current_thread")]
async fn a_forged_uid_does_not_adopt_anothers_instance() {
    let w = world();
    let (theirs, their_machine) = w.running("team-b").await;
    let mut forged: Machine = their_machine.clone();
    forged.metadata.namespace = "team-a".into();
    forged.metadata.name = "squatter".into();
    forged.metadata.owner_references.clear();
    forged.status = Default::default();
    forged.status.phase = MachinePhase::Provisioning;
    forged.status.launch_requested_at = Some(w.clock.now());
    let forged = Object::Machine(forged);
    w.create(&forged).await;
    w.store
        .put(
            encode_observed(
                &forged,
                &capstan_model::hash::spec_hash(&forged.spec_json()),
                1,
            ),
            Expect::Absent,
        )
        .await
        .expect("the forged write");

    w.run(4).await;
    let squatter = w
        .tree("team-a")
        .get(Kind::Machine, "squatter")
        .and_then(|s| s.object.as_machine().cloned())
        .expect("the squatter");
    assert_ne!(
        squatter.status.instance_id.as_deref(),
        Some(theirs.as_str())
    );

    // Deleting the squatter tears down what it owns, which is not team-b's instance.
    w.store
        .delete(
            &ItemKey::of(
                &ObjectKey::new("team-a", CLUSTER, Kind::Machine, "squatter"),
                Part::Desired,
            ),
            Expect::Any,
        )
        .await
        .expect("deleted");
    w.run(30).await;
    w.sweep_later().await;
    assert_eq!(w.state_of(&theirs), InstanceState::Running);
    assert!(
        !w.ec2.terminated_by_request().contains(&theirs),
        "{:?}",
        w.ec2.terminated_by_request()
    );
}

/// A raw PutItem with a spec `capstan validate` refuses: nothing is launched, and the
/// object says why, listing every error, in a status far under DynamoDB's limit.
#[tokio::test(flavor = "current_thread")]
async fn an_invalid_raw_desired_item_launches_nothing_and_says_why() {
    let w = world();
    w.create(&class("team-a")).await;
    let mut set = machine_set("team-a", 3);
    if let Object::MachineSet(ms) = &mut set {
        ms.spec.replicas = i32::MAX;
    }
    w.create(&set).await;
    // A Machine written by hand with secrets in its user data and Capstan's own tags.
    let mut machine: Machine = Resource {
        metadata: meta("team-a", "hand-made"),
        ..Default::default()
    };
    machine.spec.cluster_name = CLUSTER.into();
    machine.spec.version = "v1.31.2".into();
    machine.spec.failure_domain = SUBNET.into();
    machine.spec.launch.image_id = IMAGE.into();
    machine.spec.launch.instance_types = vec!["m7i.large".into()];
    machine.spec.launch.user_data = Some("export AWS_KEY=AKIAABCDEFGHIJKLMNOP\n".into());
    machine
        .spec
        .launch
        .tags
        .insert(TAG_NAMESPACE.into(), "team-b".into());
    w.create(&Object::Machine(machine)).await;
    // And one in a partition whose cluster is not the one its spec names.
    let mut stray = machine_set("team-a", 1);
    if let Object::MachineSet(ms) = &mut stray {
        ms.metadata.name = "stray".into();
    }
    let mut stray_item = encode_desired(&stray, 1);
    stray_item.insert(item::PK.into(), s("team-a#elsewhere"));
    w.store
        .put(stray_item, Expect::Absent)
        .await
        .expect("created");

    w.run(6).await;

    assert_eq!(w.ec2.launched_total(), 0);
    assert!(w.live_instances().is_empty());
    let tree = w.tree("team-a");
    assert_eq!(
        tree.of_kind(Kind::Machine).count(),
        1,
        "only the hand-made one"
    );
    for name in [(Kind::MachineSet, "web"), (Kind::Machine, "hand-made")] {
        let stored = tree.get(name.0, name.1).expect("the object");
        let valid = stored
            .object
            .conditions()
            .get(condition::SPEC_VALID)
            .expect("SpecValid is reported");
        assert_eq!(valid.status, capstan_model::ConditionStatus::False);
        assert!(valid.message.len() <= 8 * 1024);
        let observed = w
            .store
            .get(&ItemKey::of(&stored.key(), Part::Observed))
            .expect("an observed item");
        assert!(item::item_size(&observed) < 64 * 1024);
    }
    let set_message = &tree
        .get(Kind::MachineSet, "web")
        .expect("the set")
        .object
        .conditions()
        .get(condition::SPEC_VALID)
        .expect("SpecValid")
        .message;
    assert!(set_message.contains("spec.replicas"), "{set_message}");
    let machine_message = &tree
        .get(Kind::Machine, "hand-made")
        .expect("the Machine")
        .object
        .conditions()
        .get(condition::SPEC_VALID)
        .expect("SpecValid")
        .message;
    assert!(
        machine_message.contains("spec.launch.userData"),
        "{machine_message}"
    );
    assert!(
        machine_message.contains("capstan.dev/namespace"),
        "{machine_message}"
    );

    let elsewhere: Vec<Item> = w
        .store
        .items()
        .into_iter()
        .filter(|i| item::item_key(i).is_some_and(|k| k.pk == "team-a#elsewhere"))
        .collect();
    let stray = Tree::from_items(&elsewhere);
    let message = &stray
        .get(Kind::MachineSet, "stray")
        .expect("the stray set")
        .object
        .conditions()
        .get(condition::SPEC_VALID)
        .expect("SpecValid")
        .message;
    assert!(message.contains("spec.clusterName"), "{message}");
}

/// A MachineSet reads its Machines by their name prefix (`<set>-`), so a Machine another
/// writer puts in the table with the set as its controller under any other name would be
/// invisible to it: such a Machine is refused (SpecValid False, naming the field and the
/// fix), never launched, and the set keeps its own count.
#[tokio::test(flavor = "current_thread")]
async fn a_machine_claiming_a_set_under_another_name_is_refused_and_not_counted() {
    let w = world();
    let (id, mine) = w.running("team-a").await;
    let mut intruder = mine.clone();
    intruder.metadata.name = "intruder".into();
    intruder.metadata.uid = None;
    intruder.status = Default::default();
    assert!(
        intruder
            .metadata
            .controller()
            .is_some_and(|o| o.kind == Kind::MachineSet && o.name == "web")
    );
    w.create(&Object::Machine(intruder)).await;

    w.run(6).await;

    assert_eq!(w.state_of(&id), InstanceState::Running);
    assert_eq!(
        w.ec2.launched_total(),
        1,
        "nothing launched for the intruder"
    );
    let tree = w.tree("team-a");
    let refused = tree.get(Kind::Machine, "intruder").expect("the intruder");
    let valid = refused
        .object
        .conditions()
        .get(condition::SPEC_VALID)
        .expect("SpecValid is reported");
    assert_eq!(valid.status, capstan_model::ConditionStatus::False);
    assert!(
        valid.message.contains("metadata.name") && valid.message.contains("\"web-\""),
        "{}",
        valid.message
    );
    let set = tree.get(Kind::MachineSet, "web").expect("the set");
    let Object::MachineSet(set) = &set.object else {
        panic!("a MachineSet");
    };
    assert_eq!(set.status.replicas, 1, "{:?}", set.status);
    assert_eq!(w.live_instances(), vec![id]);
}

/// A Machine whose observed item cannot be read (a status value of the wrong type) is
/// counted by its set and left alone: no replacement, and its instance is no orphan.
#[tokio::test(flavor = "current_thread")]
async fn an_unreadable_machine_is_counted_and_its_instance_kept() {
    let w = world();
    let (id, m) = w.running("team-a").await;
    let key = ItemKey::of(
        &ObjectKey::new("team-a", CLUSTER, Kind::Machine, &m.metadata.name),
        Part::Observed,
    );
    let mut observed = w.store.get(&key).expect("the observed item");
    let rv = item::version_of(&observed);
    status_of(&mut observed).insert("phase".into(), s("Draining"));
    observed.insert(item::RV.into(), AttrValue::N((rv + 1).to_string()));
    w.store
        .put(observed, Expect::Version(rv))
        .await
        .expect("a newer writer's status");

    w.run(6).await;
    let report = w.sweep_later().await;

    assert_eq!(w.state_of(&id), InstanceState::Running);
    assert!(report.orphans_terminated.is_empty());
    assert_eq!(report.unreadable, 1);
    assert_eq!(w.ec2.launched_total(), 1, "no replacement");
    let tree = w.tree("team-a");
    let set = tree.get(Kind::MachineSet, "web").expect("the set");
    let readable = set
        .object
        .conditions()
        .get("ChildrenReadable")
        .expect("the set reports it");
    assert!(
        readable.message.contains(&m.metadata.name),
        "{}",
        readable.message
    );
}

fn capstan_tags(namespace: &str, machine: &str, uid: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_INSTALLATION.to_string(), INSTALLATION.to_string()),
        (TAG_NAMESPACE.to_string(), namespace.to_string()),
        (TAG_CLUSTER.to_string(), CLUSTER.to_string()),
        (TAG_MACHINE.to_string(), machine.to_string()),
        (TAG_MACHINE_UID.to_string(), uid.to_string()),
        (
            format!("kubernetes.io/cluster/{CLUSTER}"),
            "owned".to_string(),
        ),
    ])
}

fn launch(uid: &str, tags: BTreeMap<String, String>) -> LaunchRequest {
    LaunchRequest {
        client_token: uid.to_string(),
        image_id: IMAGE.into(),
        instance_type: "m7i.large".into(),
        subnet_id: SUBNET.into(),
        security_groups: vec![],
        instance_profile: None,
        root_volume: Default::default(),
        market: Default::default(),
        metadata_options: Default::default(),
        tags,
        user_data: None,
    }
}

/// Orphans only on positive evidence: a leaked launch of ours is collected; an
/// instance someone tagged by hand (no ClientToken), one whose tags disagree, and one
/// whose uid some item still mentions, however unreadable, are not.
#[tokio::test(flavor = "current_thread")]
async fn orphans_are_collected_only_on_positive_evidence() {
    let w = world();
    let leaked = w
        .ec2
        .run_instances(vec![launch(
            "uid-leaked",
            capstan_tags("team-a", "gone", "uid-leaked"),
        )])
        .await
        .remove(0)
        .expect("launched")
        .instance_id;
    let by_hand = w
        .ec2
        .launch_foreign(SUBNET, capstan_tags("team-a", "pet", "uid-pet"))
        .expect("launched")
        .instance_id;
    let mut partial = capstan_tags("team-a", "half", "uid-half");
    partial.remove(TAG_NAMESPACE);
    let half_tagged = w
        .ec2
        .run_instances(vec![launch("uid-half", partial)])
        .await
        .remove(0)
        .expect("launched")
        .instance_id;
    let mentioned = w
        .ec2
        .run_instances(vec![launch(
            "uid-noted",
            capstan_tags("team-a", "noted", "uid-noted"),
        )])
        .await
        .remove(0)
        .expect("launched")
        .instance_id;
    // An item nobody can decode, naming the last one's uid.
    let junk = Item::from([
        (item::PK.to_string(), s("team-a#demo")),
        (item::SK.to_string(), s("Notes#1")),
        ("see".to_string(), AttrValue::L(vec![s("uid-noted")])),
    ]);
    w.store.put(junk, Expect::Absent).await.expect("written");

    let report = w.sweep_later().await;

    assert_eq!(report.orphans_terminated, vec![leaked.clone()]);
    assert!(!w.state_of(&leaked).is_live() || w.state_of(&leaked) == InstanceState::ShuttingDown);
    for kept in [&by_hand, &half_tagged, &mentioned] {
        assert!(w.state_of(kept).is_live(), "{kept} was kept");
    }
}

/// A forged observed item in team-a naming team-b's instance comes first in the
/// instance index; team-b's Machine still gets its instance's state changes.
#[tokio::test(flavor = "current_thread")]
async fn a_forged_item_does_not_divert_anothers_instance_events() {
    let w = world();
    let (theirs, their_machine) = w.running("team-b").await;
    let mut forged: Machine = their_machine.clone();
    forged.metadata.namespace = "team-a".into();
    forged.metadata.name = "decoy".into();
    forged.metadata.owner_references.clear();
    w.store
        .put(
            encode_observed(&Object::Machine(forged), "h", 1),
            Expect::Absent,
        )
        .await
        .expect("the forged write");
    assert_eq!(
        w.store
            .find_by_instance(&theirs)
            .await
            .expect("index")
            .len(),
        2,
        "both items are in the index"
    );

    assert!(w.ec2.stop_instance(&theirs));
    w.run(8).await;

    let theirs_now = w.machines("team-b").remove(0);
    assert_eq!(
        theirs_now.status.instance_state,
        Some(InstanceState::Stopped),
        "{:?}",
        theirs_now.status
    );
    assert!(w.ec2.terminated_by_request().is_empty());
}

/// The sweep reads the table a page at a time, partition by partition: with one item
/// per page, every partition straddles pages, and still every Machine's state is
/// repaired, nothing is taken for an orphan, and an item on the last page that
/// mentions an instance's uid saves it.
#[tokio::test(flavor = "current_thread")]
async fn the_sweep_pages_through_the_table_one_partition_at_a_time() {
    let w = world_paged(1);
    let mut ids = Vec::new();
    for team in ["team-a", "team-b", "team-c", "team-d"] {
        ids.push(w.running(team).await.0);
    }
    // EC2 changes under Capstan, and the events are lost.
    for id in &ids {
        assert!(w.ec2.stop_instance(id));
    }
    w.clock.advance(Duration::from_secs(120));
    w.ec2.advance();
    let _lost = w.ec2.take_events();
    let noted = w
        .ec2
        .run_instances(vec![launch(
            "uid-noted",
            capstan_tags("team-z", "noted", "uid-noted"),
        )])
        .await
        .remove(0)
        .expect("launched")
        .instance_id;
    let junk = Item::from([
        (item::PK.to_string(), s("zz#last")),
        (item::SK.to_string(), s("Notes#1")),
        ("see".to_string(), AttrValue::L(vec![s("uid-noted")])),
    ]);
    w.store.put(junk, Expect::Absent).await.expect("written");

    w.clock.advance(ORPHAN_GRACE + Duration::from_secs(60));
    w.ec2.advance();
    let report = w.cp.sweep().await.expect("the sweep runs");

    assert_eq!(report.states_repaired, 4, "{report:?}");
    assert!(report.orphans_terminated.is_empty(), "{report:?}");
    assert!(w.state_of(&noted).is_live());
    for team in ["team-a", "team-b", "team-c", "team-d"] {
        let m = w.machines(team).remove(0);
        assert_eq!(
            m.status.instance_state,
            Some(InstanceState::Stopped),
            "{team}"
        );
    }
}
