//! What a person does outside the CLI, and what goes wrong outside Capstan: raw
//! PutItem and DeleteItem, instances changed behind its back, lost events.

use capstan_model::item::{self, encode_desired};
use capstan_model::meta::condition;
use capstan_model::{AttrValue, InstanceState, Item, Kind, MachinePhase, ObjectKey};
use capstan_runtime::{Expect, Store};
use capstan_tests::*;

/// What a person writes with a raw PutItem: key, kind and spec, nothing the CLI adds.
fn raw_item(object: &capstan_model::Object) -> Item {
    let full = encode_desired(object, 1);
    ["pk", "sk", "kind", "spec"]
        .into_iter()
        .filter_map(|k| full.get(k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

#[tokio::test]
async fn raw_put_items_converge_like_an_apply() {
    let mut cp = control_plane(21, |_| {});
    for object in quickstart() {
        cp.store
            .put(raw_item(&object), Expect::Absent)
            .await
            .expect("raw put");
    }
    converge(&mut cp).await;
    assert_eq!(machines(&cp).len(), 6);
    let cluster = cp
        .get(&cluster_key())
        .await
        .expect("read")
        .expect("cluster");
    assert!(
        cluster.metadata().uid.is_some(),
        "the controller filled in the uid"
    );
    assert_eq!(cluster.metadata().generation, Some(1));
}

#[tokio::test]
async fn a_raw_put_with_an_invalid_spec_is_reported_not_acted_on() {
    let mut cp = control_plane(22, |_| {});
    let objects = quickstart();
    cp.apply(&objects).await.expect("apply");
    converge(&mut cp).await;
    // Someone edits the Cluster's item by hand and breaks it.
    let ck = item::ItemKey::of(&cluster_key(), item::Part::Desired);
    let mut broken = cp.store.get(&ck).expect("cluster item");
    if let Some(AttrValue::M(spec)) = broken.get_mut("spec") {
        spec.insert("workers".into(), AttrValue::S("three please".into()));
    }
    cp.store.put(broken, Expect::Any).await.expect("raw put");
    // Run until nothing is left to do.
    cp.run_until(CONVERGE_WITHIN, |_| None, |_| {})
        .await
        .expect("run");
    let cluster = cp
        .get(&cluster_key())
        .await
        .expect("read")
        .expect("cluster");
    let c = cluster
        .conditions()
        .get(condition::SPEC_VALID)
        .expect("SpecValid condition");
    assert!(c.message.contains("spec.workers"), "{}", c.message);
    assert_eq!(machines(&cp).len(), 6, "nothing torn down or launched");
    assert_eq!(cp.ec2.launched_total(), 6);
}

#[tokio::test]
async fn a_raw_delete_item_of_a_machine_still_terminates_its_instance_and_the_set_replaces_it() {
    let mut cp = control_plane(23, |_| {});
    cp.apply(&quickstart()).await.expect("apply");
    converge(&mut cp).await;
    let victim = machines(&cp).into_iter().next().expect("a machine");
    let key = ObjectKey::new("default", "demo", Kind::Machine, &victim.metadata.name);
    cp.store
        .delete(&item::ItemKey::of(&key, item::Part::Desired), Expect::Any)
        .await
        .expect("raw delete");
    converge(&mut cp).await;
    let id = victim.status.instance_id.expect("had an instance");
    assert_eq!(
        cp.ec2.instance(&id).map(|i| i.state),
        Some(InstanceState::Terminated)
    );
    assert_eq!(machines(&cp).len(), 6, "replaced");
    assert_eq!(cp.ec2.launched_total(), 7);
}

#[tokio::test]
async fn an_instance_terminated_behind_our_back_fails_its_machine_with_the_reason() {
    let mut cp = control_plane(24, |_| {});
    cp.apply(&quickstart()).await.expect("apply");
    converge(&mut cp).await;
    let victim = machines(&cp).into_iter().next().expect("a machine");
    let id = victim.status.instance_id.clone().expect("instance");
    assert!(cp.ec2.terminate_externally(&id));
    // A minute of virtual time: the state-change events arrive and are acted on.
    cp.run_until(std::time::Duration::from_secs(60), |_| Some(vec![]), |_| {})
        .await
        .expect("run");
    let key = ObjectKey::new("default", "demo", Kind::Machine, &victim.metadata.name);
    let m = cp.get(&key).await.expect("read").expect("machine");
    let m = m.as_machine().expect("a Machine");
    assert_eq!(m.status.phase, MachinePhase::Failed);
    assert_eq!(
        m.status.failure_reason.as_deref(),
        Some("InstanceTerminated")
    );
    assert!(!m.status.conditions.is_true(condition::READY));
    let cluster = cp
        .get(&cluster_key())
        .await
        .expect("read")
        .expect("cluster");
    assert!(
        !cluster.conditions().is_true(condition::READY),
        "the cluster reports the loss"
    );
}

#[tokio::test]
async fn lost_events_are_repaired_by_the_drift_sweep() {
    let mut cp = control_plane(25, |_| {});
    cp.apply(&quickstart()).await.expect("apply");
    // Every change event of the apply is lost.
    let lost = cp.store.take_stream();
    assert!(!lost.is_empty());
    converge(&mut cp).await;
    assert_eq!(machines(&cp).len(), 6);
    assert!(
        cp.stats().sweeps >= 1,
        "only the sweep could have found them"
    );
    assert_eq!(cp.ec2.launched_total(), 6);
}
