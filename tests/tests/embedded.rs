//! The walking skeleton, end to end in the embedded control plane: the quickstart
//! converges, pools scale, clusters delete, and delivery faults change nothing.

use std::collections::{BTreeMap, BTreeSet};

use capstan_model::labels::{
    TAG_CLUSTER, TAG_INSTALLATION, TAG_MACHINE, TAG_MACHINE_UID, TAG_NAMESPACE,
};
use capstan_model::{InstanceState, MachinePhase, Object};
use capstan_tests::*;

#[tokio::test]
async fn quickstart_converges_to_six_running_tagged_instances() {
    let mut cp = control_plane(1, |_| {});
    cp.apply(&quickstart()).await.expect("apply");
    converge(&mut cp).await;

    let machines = machines(&cp);
    assert_eq!(machines.len(), 6, "{}", cp.describe());
    let instances = cp.ec2.instances();
    let running: Vec<_> = instances
        .iter()
        .filter(|i| i.state == InstanceState::Running)
        .collect();
    assert_eq!(running.len(), 6);
    assert_eq!(cp.ec2.launched_total(), 6, "exactly one launch per Machine");
    for m in &machines {
        assert_eq!(m.status.phase, MachinePhase::Running, "{}", m.metadata.name);
        let id = m
            .status
            .instance_id
            .as_deref()
            .expect("instance id recorded");
        let instance = cp.ec2.instance(id).expect("instance exists");
        assert_eq!(instance.state, InstanceState::Running);
        assert_eq!(instance.tags[TAG_INSTALLATION], "embedded");
        assert_eq!(instance.tags[TAG_NAMESPACE], "default");
        assert_eq!(instance.tags[TAG_CLUSTER], "demo");
        assert_eq!(instance.tags[TAG_MACHINE], m.metadata.name);
        assert_eq!(
            Some(&instance.tags[TAG_MACHINE_UID]),
            m.metadata.uid.as_ref()
        );
        assert_eq!(instance.subnet_id, m.spec.failure_domain);
        assert!(
            m.status
                .provider_id
                .as_deref()
                .is_some_and(|p| p.ends_with(id))
        );
    }
    // Each pool of three spreads over the class's three subnets.
    let mut per_pool: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &machines {
        per_pool
            .entry(m.metadata.labels["capstan.dev/pool"].clone())
            .or_default()
            .insert(m.spec.failure_domain.clone());
    }
    assert!(
        per_pool.values().all(|subnets| subnets.len() == 3),
        "{per_pool:?}"
    );
    let tree = cp.describe();
    println!("{tree}\n{:?} now={}", cp.stats(), cp.now());
    assert!(
        tree.contains("Cluster/demo") && tree.contains("Provisioned"),
        "{tree}"
    );
}

fn with_workers(objects: &[Object], replicas: i32) -> Vec<Object> {
    objects
        .iter()
        .map(|o| match o {
            Object::Cluster(c) => {
                let mut c = c.clone();
                c.spec.workers[0].replicas = Some(replicas);
                Object::Cluster(c)
            }
            other => other.clone(),
        })
        .collect()
}

fn worker_instances(cp: &capstan_embedded::Embedded) -> BTreeMap<String, String> {
    machines(cp)
        .into_iter()
        .filter(|m| m.metadata.labels["capstan.dev/pool"] == "workers")
        .map(|m| {
            (
                m.metadata.name.clone(),
                m.status.instance_id.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn worker_pool_scales_3_to_5_to_1_terminating_exactly_the_deleted_machines() {
    let mut cp = control_plane(2, |_| {});
    let objects = quickstart();
    cp.apply(&objects).await.expect("apply");
    converge(&mut cp).await;
    let before = worker_instances(&cp);
    assert_eq!(before.len(), 3);

    cp.apply(&with_workers(&objects, 5))
        .await
        .expect("scale up");
    converge(&mut cp).await;
    let five = worker_instances(&cp);
    assert_eq!(five.len(), 5);
    assert!(
        before.iter().all(|(m, i)| five.get(m) == Some(i)),
        "scale-up keeps existing machines"
    );
    assert_eq!(cp.ec2.launched_total(), 8);

    cp.apply(&with_workers(&objects, 1))
        .await
        .expect("scale down");
    converge(&mut cp).await;
    let one = worker_instances(&cp);
    assert_eq!(one.len(), 1);
    let deleted: BTreeSet<String> = five
        .iter()
        .filter(|(m, _)| !one.contains_key(*m))
        .map(|(_, i)| i.clone())
        .collect();
    let terminated: BTreeSet<String> = cp.ec2.terminated_by_request().into_iter().collect();
    assert_eq!(
        deleted, terminated,
        "terminated instances are exactly those of deleted Machines"
    );
    for id in &deleted {
        assert_eq!(
            cp.ec2.instance(id).map(|i| i.state),
            Some(InstanceState::Terminated)
        );
    }
    let running = cp
        .ec2
        .instances()
        .iter()
        .filter(|i| i.state == InstanceState::Running)
        .count();
    assert_eq!(running, 4, "3 control plane + 1 worker");
}

#[tokio::test]
async fn deleting_the_cluster_terminates_every_instance_and_removes_every_item() {
    let mut cp = control_plane(3, |_| {});
    cp.apply(&quickstart()).await.expect("apply");
    converge(&mut cp).await;
    assert!(cp.delete(&cluster_key()).await.expect("delete"));
    drain(&mut cp).await;
    assert!(cp.store.is_empty());
    let instances = cp.ec2.instances();
    assert_eq!(instances.len(), 6);
    assert!(
        instances
            .iter()
            .all(|i| i.state == InstanceState::Terminated),
        "{instances:?}"
    );
}

/// Every object woken by several events while a look at it is already on its way
/// (the cluster's deletion wakes each Machine by its own change, its set's, and EC2's
/// state changes) keeps one requeue pending, even with every event delivered twice in
/// shuffled order; and the markers that keep it so leave with the objects.
#[tokio::test]
async fn an_object_keeps_one_requeue_pending_and_its_markers_leave_with_it() {
    for duplicate in [false, true] {
        let mut cp = control_plane(5, |c| {
            c.ec2.shutdown_delay = std::time::Duration::from_secs(30);
            c.delivery.duplicate = duplicate;
            c.delivery.shuffle_seed = duplicate.then_some(5);
        });
        cp.apply(&quickstart()).await.expect("apply");
        converge(&mut cp).await;
        assert!(cp.delete(&cluster_key()).await.expect("delete"));
        drain(&mut cp).await;
        let requeues = cp.bus.requeues();
        assert!(requeues.sent > 0, "the deletion waits on EC2 by requeues");
        assert_eq!(
            requeues.redundant, 0,
            "duplicate={duplicate}: {} of {} requeues sent while one no later was pending",
            requeues.redundant, requeues.sent
        );
        assert!(cp.store.is_empty(), "no requeue marker is left behind");
    }
}

/// A summary of the end state that does not depend on generated names.
fn end_state(cp: &capstan_embedded::Embedded) -> Vec<String> {
    let mut out: Vec<String> = machines(cp)
        .iter()
        .map(|m| {
            format!(
                "{} {} {:?} {}",
                m.metadata.labels["capstan.dev/pool"],
                m.spec.failure_domain,
                m.status.phase,
                m.status.instance_state.map_or("-", |s| s.as_str())
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn duplicated_and_shuffled_delivery_change_neither_end_state_nor_launch_count() {
    let mut plain = control_plane(4, |_| {});
    plain.apply(&quickstart()).await.expect("apply");
    converge(&mut plain).await;
    let expected = end_state(&plain);

    for (name, seed) in [
        ("duplicated", 0u64),
        ("shuffled", 11),
        ("shuffled", 12),
        ("duplicated+shuffled", 13),
    ] {
        let mut cp = control_plane(4, |c| {
            c.delivery.duplicate = name.contains("duplicated");
            if name.contains("shuffled") {
                c.delivery.shuffle_seed = Some(seed);
            }
        });
        cp.apply(&quickstart()).await.expect("apply");
        converge(&mut cp).await;
        assert_eq!(end_state(&cp), expected, "{name} delivery (seed {seed})");
        assert_eq!(
            cp.ec2.launched_total(),
            6,
            "{name} delivery launched extra instances"
        );
    }
}
