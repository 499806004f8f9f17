//! One pending requeue per object (issue 16), through the reconcilers' queue handler
//! over the in-memory AWS: a requeue that a later decision superseded is dropped on
//! arrival without a reconcile, and the current one is acted on.

use std::sync::Arc;
use std::time::Duration;

use capstan_model::item::{self, Part, encode_desired};
use capstan_model::manifest::read_manifests;
use capstan_model::{Expect, Kind, Object, ObjectKey, Timestamp};
use capstan_runtime::events::requeue_event;
use capstan_runtime::requeue::{Chain, marker_item, marker_key};
use capstan_runtime::routes::Reconciler;
use capstan_runtime::{Clock, ControlPlane, Delivery, Store};
use capstan_sim::bus::Delivery as BusDelivery;
use capstan_sim::{Ec2Config, ManualClock, MemBus, MemStore, SeededEntropy, SimEc2};

struct World {
    clock: ManualClock,
    store: MemStore,
    bus: MemBus,
    cp: ControlPlane<MemStore, SimEc2, MemBus>,
    cluster: ObjectKey,
}

async fn world() -> World {
    let clock = ManualClock::new(Timestamp::from_second(1_800_000_000).expect("a valid time"));
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let store = MemStore::new(shared.clone());
    let bus = MemBus::new(shared.clone(), BusDelivery::default());
    let ec2 = SimEc2::new(Ec2Config::default(), shared.clone());
    let objects = read_manifests(
        "quickstart.yaml",
        include_str!("../../../examples/quickstart.yaml"),
    )
    .expect("the quickstart reads");
    let cluster: &Object = objects
        .iter()
        .find(|o| o.kind() == Kind::Cluster)
        .expect("the quickstart has a Cluster");
    store
        .put(encode_desired(cluster, 1), Expect::Absent)
        .await
        .expect("created");
    let key = cluster.key();
    World {
        cp: ControlPlane {
            store: store.clone(),
            compute: ec2,
            bus: bus.clone(),
            workload: capstan_runtime::NoWorkload,
            clock: shared,
            entropy: Arc::new(SeededEntropy::new(7)),
            installation: "test".to_string(),
            batch_launches: true,
        },
        clock,
        store,
        bus,
        cluster: key,
    }
}

impl World {
    /// The Cluster's requeue asked for by a reconcile that began at `requested_at`,
    /// delivered to the cluster reconciler.
    async fn deliver_requeue(&self, requested_at: Timestamp) -> Vec<String> {
        let event = requeue_event(
            &self.cluster,
            Chain::Reconcile,
            requested_at,
            self.clock.now(),
        );
        let batch = vec![Delivery {
            message_id: "m-1".into(),
            event,
        }];
        self.cp
            .handle_batch(Reconciler::Cluster, batch)
            .await
            .failed
    }

    /// Writes the marker of the Cluster's `chain`: a look due at `due`, asked for by a
    /// decision that began at `requested_at`.
    async fn put_marker(&self, chain: Chain, due: Timestamp, requested_at: Timestamp) {
        let key = marker_key(&self.cluster, chain);
        self.store
            .put(marker_item(&key, due, requested_at, 0), Expect::Absent)
            .await
            .expect("the marker is written");
    }

    /// Whether the Cluster has been reconciled: its reconciler wrote the observed item.
    fn reconciled(&self) -> bool {
        let key = item::ItemKey::of(&self.cluster, Part::Observed);
        self.store
            .items()
            .iter()
            .any(|i| item::item_key(i).as_ref() == Some(&key))
    }
}

#[tokio::test]
async fn a_requeue_a_later_decision_superseded_is_dropped_and_the_current_one_acted_on() {
    let w = world().await;
    let now = w.clock.now();
    // A decision that began now asked for a look in a minute; its message is on the way.
    w.put_marker(Chain::Reconcile, now + Duration::from_secs(60), now)
        .await;

    // An older decision's requeue arrives: dropped, not failed, nothing reconciled.
    let failed = w.deliver_requeue(now - Duration::from_secs(10)).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(!w.reconciled(), "a superseded requeue reconciles nothing");

    // The current decision's requeue is acted on.
    w.clock.advance(Duration::from_secs(60));
    let failed = w.deliver_requeue(now).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(w.reconciled(), "the current requeue reconciles the Cluster");
    assert_eq!(w.bus.requeues().redundant, 0);
}

#[tokio::test]
async fn a_requeue_is_acted_on_when_its_marker_is_missing_or_unreadable() {
    let w = world().await;
    let now = w.clock.now();
    let marker = marker_key(&w.cluster, Chain::Reconcile);
    let mut broken = marker_item(&marker, now + Duration::from_secs(60), now, 0);
    broken.insert("requestedAt".into(), item::AttrValue::S("later".into()));
    w.store
        .put(broken, Expect::Absent)
        .await
        .expect("another writer's item is written");
    let failed = w.deliver_requeue(now - Duration::from_secs(10)).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        w.reconciled(),
        "an unreadable marker supersedes nothing: the look happens"
    );
}

#[tokio::test]
async fn the_sweep_removes_a_marker_long_past_due_and_keeps_a_pending_one() {
    let w = world().await;
    let now = w.clock.now();
    let old = marker_key(&w.cluster, Chain::Reconcile);
    let pending = marker_key(&w.cluster, Chain::Autoscale);
    w.put_marker(Chain::Reconcile, now, now).await;
    w.clock.advance(Duration::from_secs(20 * 60));
    let later = w.clock.now();
    w.put_marker(Chain::Autoscale, later + Duration::from_secs(60), later)
        .await;
    let report = w.cp.sweep().await.expect("the sweep runs");
    assert_eq!(report.markers_removed, 1);
    let keys: Vec<_> = w.store.items().iter().filter_map(item::item_key).collect();
    assert!(!keys.contains(&old), "the outlived marker is gone");
    assert!(keys.contains(&pending), "a pending look's marker stays");
}
