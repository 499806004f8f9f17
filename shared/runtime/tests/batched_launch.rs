//! Batched launches (issue 16), through the Machine reconciler's queue handler over
//! the in-memory AWS: identical launches of one SQS batch share one RunInstances, and
//! a crash between the call and recording its instances launches nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use capstan_model::item::{self, Item, ItemKey, encode_desired, encode_observed};
use capstan_model::labels::TAG_LAUNCH_BATCH;
use capstan_model::{
    Expect, Kind, Machine, MachineClass, MachineClassSpec, MachinePhase, MachineSet,
    MachineSetSpec, MachineTemplate, MachineTemplateSpec, Object, ObjectKey, ObjectMeta,
};
use capstan_reconcile::Tree;
use capstan_runtime::events::{instance_state_change, resync_event};
use capstan_runtime::routes::Reconciler;
use capstan_runtime::{Clock, ControlPlane, Delivery, ScanPage, Store, StoreError, Write};
use capstan_sim::bus::Delivery as BusDelivery;
use capstan_sim::{Ec2Config, ManualClock, MemBus, MemStore, SeededEntropy, SimEc2};

const INSTALLATION: &str = "test";
const CLUSTER: &str = "demo";
const SUBNET: &str = "subnet-0a1b2c3d4e5f60001";
const IMAGE: &str = "ami-0abcdef1234567890";

/// The table, but every write fails once EC2 has launched anything: the process died
/// right after RunInstances, before it recorded a single instance.
#[derive(Clone)]
struct DiesAfterLaunch {
    inner: MemStore,
    ec2: SimEc2,
}

impl DiesAfterLaunch {
    fn dead(&self) -> Result<(), StoreError> {
        if self.ec2.launched_total() > 0 {
            Err(StoreError::Unavailable("the process died".into()))
        } else {
            Ok(())
        }
    }
}

impl Store for DiesAfterLaunch {
    async fn query(&self, pk: &str, sk_prefix: Option<&str>) -> Result<Vec<Item>, StoreError> {
        self.inner.query(pk, sk_prefix).await
    }
    async fn put(&self, item: Item, expect: Expect) -> Result<(), StoreError> {
        self.dead()?;
        self.inner.put(item, expect).await
    }
    async fn delete(&self, key: &ItemKey, expect: Expect) -> Result<(), StoreError> {
        self.dead()?;
        self.inner.delete(key, expect).await
    }
    async fn find_by_instance(&self, instance_id: &str) -> Result<Vec<ItemKey>, StoreError> {
        self.inner.find_by_instance(instance_id).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.dead()?;
        self.inner.transact(writes).await
    }
    async fn scan_page(
        &self,
        sk_prefix: &str,
        start: Option<ItemKey>,
    ) -> Result<ScanPage, StoreError> {
        self.inner.scan_page(sk_prefix, start).await
    }
}

/// The table, but the first write that touches `machine`'s items fails: it conflicts
/// (another invocation got there first), or, `applied`, it takes effect and then
/// times out (the caller cannot tell it happened).
#[derive(Clone)]
struct FailsOnce {
    inner: MemStore,
    machine: String,
    applied: bool,
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl FailsOnce {
    /// Whether this write is the one that fails.
    fn fails<'a>(&self, mut keys: impl Iterator<Item = &'a ItemKey>) -> bool {
        let needle = format!("#{}#", self.machine);
        keys.any(|k| k.sk.contains(&needle))
            && !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    fn after(&self, fails: bool, applied: Result<(), StoreError>) -> Result<(), StoreError> {
        match (fails, self.applied) {
            (false, _) => applied,
            (true, false) => Err(StoreError::Conflict),
            (true, true) => applied.and(Err(StoreError::Unavailable("timed out".into()))),
        }
    }
}

impl Store for FailsOnce {
    async fn query(&self, pk: &str, sk_prefix: Option<&str>) -> Result<Vec<Item>, StoreError> {
        self.inner.query(pk, sk_prefix).await
    }
    async fn put(&self, item: Item, expect: Expect) -> Result<(), StoreError> {
        let fails = self.fails(item::item_key(&item).iter());
        if fails && !self.applied {
            return self.after(true, Ok(()));
        }
        self.after(fails, self.inner.put(item, expect).await)
    }
    async fn delete(&self, key: &ItemKey, expect: Expect) -> Result<(), StoreError> {
        let fails = self.fails(std::iter::once(key));
        if fails && !self.applied {
            return self.after(true, Ok(()));
        }
        self.after(fails, self.inner.delete(key, expect).await)
    }
    async fn find_by_instance(&self, instance_id: &str) -> Result<Vec<ItemKey>, StoreError> {
        self.inner.find_by_instance(instance_id).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let keys: Vec<ItemKey> = writes.iter().filter_map(Write::key).collect();
        let fails = self.fails(keys.iter());
        if fails && !self.applied {
            return self.after(true, Ok(()));
        }
        self.after(fails, self.inner.transact(writes).await)
    }
    async fn scan_page(
        &self,
        sk_prefix: &str,
        start: Option<ItemKey>,
    ) -> Result<ScanPage, StoreError> {
        self.inner.scan_page(sk_prefix, start).await
    }
}

struct World {
    clock: ManualClock,
    store: MemStore,
    ec2: SimEc2,
}

fn world() -> World {
    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().expect("a time"));
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    World {
        store: MemStore::new(shared.clone()),
        ec2: SimEc2::new(Ec2Config::default(), shared),
        clock,
    }
}

impl World {
    fn control_plane<S: Store>(&self, store: S) -> ControlPlane<S, SimEc2, MemBus> {
        let shared: Arc<dyn Clock> = Arc::new(self.clock.clone());
        ControlPlane {
            store,
            compute: self.ec2.clone(),
            bus: MemBus::new(shared.clone(), BusDelivery::default()),
            workload: capstan_runtime::NoWorkload,
            clock: shared,
            entropy: Arc::new(SeededEntropy::new(7)),
            installation: INSTALLATION.to_string(),
            batch_launches: true,
        }
    }

    async fn create(&self, object: &Object) {
        self.store
            .put(encode_desired(object, 1), Expect::Absent)
            .await
            .expect("created");
    }

    fn machines(&self) -> Vec<Machine> {
        let pk = item::partition_key("default", CLUSTER);
        let items: Vec<Item> = self
            .store
            .items()
            .into_iter()
            .filter(|i| item::item_key(i).is_some_and(|k| k.pk == pk))
            .collect();
        Tree::from_items(&items)
            .of_kind(Kind::Machine)
            .filter_map(|s| s.object.as_machine().cloned())
            .collect()
    }

    fn keys(&self, kind: Kind) -> BTreeSet<ObjectKey> {
        self.store
            .items()
            .iter()
            .filter_map(item::item_key)
            .filter_map(|k| k.parse().map(|(key, _)| key))
            .filter(|k| k.kind == kind)
            .collect()
    }

    /// The MachineSet's reconciles until its Machines exist.
    async fn machine_set_creates(&self) {
        let cp = self.control_plane(self.store.clone());
        for _ in 0..3 {
            for key in self.keys(Kind::MachineSet) {
                let _ = cp.reconcile(&key).await;
            }
        }
    }

    /// One invocation of the Machine reconciler with a message for every Machine (one
    /// SQS batch), through `cp`; then EC2's state changes recorded and time moved on.
    async fn machine_batch<S: Store>(&self, cp: &ControlPlane<S, SimEc2, MemBus>) {
        let now = self.clock.now();
        let batch: Vec<Delivery> = self
            .keys(Kind::Machine)
            .iter()
            .enumerate()
            .map(|(n, key)| Delivery {
                message_id: format!("m-{n}"),
                event: resync_event(key, now),
            })
            .collect();
        let _ = cp.handle_batch(Reconciler::Machine, batch).await;
        let recorder = self.control_plane(self.store.clone());
        for event in self.ec2.take_events() {
            if let Some((id, state, at)) = instance_state_change(&event) {
                let _ = recorder.record_state(&id, state, at).await;
            }
        }
        self.clock.advance(Duration::from_secs(5));
        self.ec2.advance();
    }

    fn live_instances(&self) -> Vec<capstan_runtime::Instance> {
        self.ec2
            .instances()
            .into_iter()
            .filter(|i| i.state.is_live())
            .collect()
    }
}

/// A class and a MachineSet of `replicas`, its Machines made and launched (four
/// Machine-reconciler invocations).
async fn launched_pool(replicas: i32) -> World {
    let w = world();
    w.create(&class()).await;
    w.create(&machine_set(replicas)).await;
    w.machine_set_creates().await;
    let cp = w.control_plane(w.store.clone());
    for _ in 0..4 {
        w.machine_batch(&cp).await;
    }
    w
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: "default".into(),
        ..Default::default()
    }
}

fn class() -> Object {
    Object::MachineClass(MachineClass {
        metadata: meta("workers"),
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

fn machine_set(replicas: i32) -> Object {
    Object::MachineSet(MachineSet {
        metadata: meta("web"),
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

/// Every Machine records a distinct instance, which is live and its batch's.
fn assert_one_instance_each(w: &World, machines: &[Machine]) {
    let live: BTreeMap<String, capstan_runtime::Instance> = w
        .live_instances()
        .into_iter()
        .map(|i| (i.instance_id.clone(), i))
        .collect();
    assert_eq!(live.len(), machines.len(), "one live instance per Machine");
    let recorded: BTreeSet<String> = machines
        .iter()
        .map(|m| {
            let id = m.status.instance_id.clone().expect("an instance recorded");
            let batch = m.status.launch_batch.as_ref().expect("a batch member");
            let instance = live.get(&id).expect("the recorded instance is live");
            assert_eq!(instance.tags.get(TAG_LAUNCH_BATCH), Some(&batch.token));
            assert_eq!(instance.launch_index, Some(batch.index));
            id
        })
        .collect();
    assert_eq!(recorded.len(), machines.len(), "no instance recorded twice");
}

#[tokio::test]
async fn ten_machines_of_one_machine_set_launch_in_one_run_instances() {
    let w = world();
    w.create(&class()).await;
    w.create(&machine_set(10)).await;
    w.machine_set_creates().await;
    assert_eq!(w.machines().len(), 10);
    let cp = w.control_plane(w.store.clone());
    for _ in 0..4 {
        w.machine_batch(&cp).await;
    }
    let machines = w.machines();
    assert!(w.ec2.calls().run_instances <= 2, "{:?}", w.ec2.calls());
    assert_eq!(
        w.ec2.calls().run_instances,
        1,
        "one call for ten identical launches"
    );
    assert_one_instance_each(&w, &machines);
    // Member i, sorted by uid, has launch index i.
    let mut by_uid = machines.clone();
    by_uid.sort_by(|a, b| a.metadata.uid.cmp(&b.metadata.uid));
    for (i, m) in by_uid.iter().enumerate() {
        assert_eq!(
            m.status.launch_batch.as_ref().map(|b| b.index),
            u32::try_from(i).ok()
        );
    }
}

#[tokio::test]
async fn a_crash_after_run_instances_before_recording_launches_no_second_instance() {
    let w = world();
    w.create(&class()).await;
    w.create(&machine_set(10)).await;
    w.machine_set_creates().await;
    // The first invocation dies right after its RunInstances.
    let dying = w.control_plane(DiesAfterLaunch {
        inner: w.store.clone(),
        ec2: w.ec2.clone(),
    });
    w.machine_batch(&dying).await;
    assert_eq!(w.ec2.launched_total(), 10);
    assert!(
        w.machines()
            .iter()
            .all(|m| m.status.instance_id.is_none() && m.status.launch_batch.is_some()),
        "nothing recorded but the batch membership"
    );
    // The next invocations find the batch's instances by its tag.
    let cp = w.control_plane(w.store.clone());
    for _ in 0..6 {
        w.machine_batch(&cp).await;
    }
    let machines = w.machines();
    assert_eq!(w.ec2.launched_total(), 10, "nothing launched twice");
    assert_eq!(w.ec2.calls().run_instances, 1);
    assert!(
        machines
            .iter()
            .all(|m| m.status.phase == MachinePhase::Running),
        "{:?}",
        machines.iter().map(|m| m.status.phase).collect::<Vec<_>>()
    );
    assert_one_instance_each(&w, &machines);
}

#[tokio::test]
async fn ten_terminations_of_one_batch_share_one_terminate_instances() {
    let w = launched_pool(10).await;
    let cp = w.control_plane(w.store.clone());
    assert_eq!(w.live_instances().len(), 10);
    let before = w.ec2.calls();
    w.store
        .put(encode_desired(&machine_set(0), 2), Expect::Version(1))
        .await
        .expect("scaled to zero");
    w.machine_set_creates().await;
    for _ in 0..6 {
        w.machine_batch(&cp).await;
    }
    let calls = w.ec2.calls();
    assert!(w.live_instances().is_empty(), "{:?}", w.live_instances());
    assert_eq!(
        calls.terminate_instances - before.terminate_instances,
        1,
        "{calls:?}"
    );
    assert_eq!(
        calls.describe_instances - before.describe_instances,
        1,
        "one DescribeInstances for the cluster, none per Machine: {calls:?}"
    );
}

/// Another writer copies a running batch member's items (its batch record included)
/// under another name in the same partition, without the desired item: the copy reads
/// as a Machine being deleted. Its record proves nothing, so no instance is ended.
#[tokio::test]
async fn a_copy_of_a_batch_members_record_under_another_name_terminates_nothing() {
    let w = launched_pool(4).await;
    let cp = w.control_plane(w.store.clone());
    let machines = w.machines();
    assert_one_instance_each(&w, &machines);
    for (n, victim) in machines.iter().enumerate() {
        let mut copy = victim.clone();
        copy.metadata.name = format!("copy-{n}");
        copy.metadata.owner_references.clear();
        copy.metadata.labels.clear();
        w.store
            .put(
                encode_observed(&Object::Machine(copy), "h", 1),
                Expect::Absent,
            )
            .await
            .expect("the copy");
    }
    for _ in 0..6 {
        w.machine_batch(&cp).await;
    }
    assert!(
        w.ec2.terminated_by_request().is_empty(),
        "{:?}",
        w.ec2.terminated_by_request()
    );
    assert_eq!(w.live_instances().len(), 4);
    let copies = w.machines();
    let copies: Vec<&Machine> = copies
        .iter()
        .filter(|m| m.metadata.name.starts_with("copy-"))
        .collect();
    assert_eq!(copies.len(), 4, "each copy is left in place");
    for copy in copies {
        assert!(
            copy.status
                .conditions
                .get("InstanceOwned")
                .is_some_and(|c| c.reason == "InstanceNotOwned"),
            "{:?}",
            copy.status.conditions
        );
    }
}

/// A member whose record loses to another writer is left out; the others are sealed
/// again without it, launch in one call, and each proves its own instance.
#[tokio::test]
async fn a_member_that_loses_its_record_is_left_out_and_the_rest_launch_together() {
    a_member_whose_record_fails_is_left_out(false).await;
}

/// A member whose record takes effect but times out holds a token no call is made
/// for: it never takes the instance launched for another member (with the index it
/// recorded), and launches its own later.
#[tokio::test]
async fn a_member_whose_record_times_out_never_shares_anothers_instance() {
    a_member_whose_record_fails_is_left_out(true).await;
}

async fn a_member_whose_record_fails_is_left_out(applied: bool) {
    let w = world();
    w.create(&class()).await;
    w.create(&machine_set(5)).await;
    w.machine_set_creates().await;
    let mut by_uid = w.machines();
    by_uid.sort_by(|a, b| a.metadata.uid.cmp(&b.metadata.uid));
    let loser = by_uid[2].metadata.name.clone();
    let losing = w.control_plane(FailsOnce {
        inner: w.store.clone(),
        machine: loser.clone(),
        applied,
        failed: Arc::default(),
    });
    w.machine_batch(&losing).await;
    assert_eq!(w.ec2.calls().run_instances, 1, "{:?}", w.ec2.calls());
    assert_eq!(
        w.ec2.launched_total(),
        4,
        "one instance per recorded member"
    );
    let launched: Vec<Machine> = w
        .machines()
        .into_iter()
        .filter(|m| m.metadata.name != loser)
        .collect();
    assert_one_instance_each(&w, &launched);
    for m in &launched {
        assert!(
            capstan_reconcile::launch_batch::proves_membership(m),
            "{} proves its place",
            m.metadata.name
        );
    }
    let cp = w.control_plane(w.store.clone());
    for _ in 0..40 {
        w.machine_batch(&cp).await;
    }
    let machines = w.machines();
    assert_eq!(
        w.live_instances().len(),
        5,
        "{:?}",
        machines
            .iter()
            .map(|m| (m.status.phase, &m.status.conditions))
            .collect::<Vec<_>>()
    );
    let ids: BTreeSet<Option<String>> = machines
        .iter()
        .map(|m| m.status.instance_id.clone())
        .collect();
    assert_eq!(ids.len(), 5, "five Machines, five instances: {ids:?}");
    assert!(
        machines
            .iter()
            .all(|m| m.status.phase == MachinePhase::Running),
        "{:?}",
        machines.iter().map(|m| m.status.phase).collect::<Vec<_>>()
    );
}
