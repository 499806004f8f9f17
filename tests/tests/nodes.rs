//! Capstan sees Kubernetes nodes (a Cluster with `spec.access`), end to end in the
//! embedded control plane with its in-memory workload cluster: a Machine is Running
//! only once its Node exists, records the Node, puts the pool's labels on it, is
//! remediated when its Node goes NotReady or never joins, and leaves no Node behind.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_embedded::Embedded;
use capstan_model::meta::condition;
use capstan_model::{
    Bootstrap, ConditionStatus, EksBootstrap, MachinePhase, MachineTaint, Object, PoolHealthCheck,
    TaintEffect, TaintPropagation, UnhealthyCondition,
};
use capstan_runtime::ports::Workload;
use capstan_sim::workload::NotReady;
use capstan_tests::*;

fn node_health_check() -> PoolHealthCheck {
    let mut check = PoolHealthCheck::default();
    check.checks.unhealthy_node_conditions = vec![
        UnhealthyCondition {
            type_: "Ready".into(),
            status: ConditionStatus::False,
            timeout_seconds: 120,
        },
        UnhealthyCondition {
            type_: "Ready".into(),
            status: ConditionStatus::Unknown,
            timeout_seconds: 120,
        },
    ];
    check.checks.node_startup_timeout_seconds = 600;
    check
}

fn live_nodes(cp: &Embedded) -> Vec<String> {
    cp.workload
        .nodes(cluster())
        .into_iter()
        .map(|n| n.name)
        .collect()
}

#[tokio::test]
async fn a_machine_is_running_only_once_its_node_joins_and_records_it() {
    let mut cp = control_plane(41, |c| c.workload.join_delay = Duration::from_secs(90));
    cp.apply(&with_access(2, |p| {
        p.metadata.labels = BTreeMap::from([("team".to_string(), "web".to_string())]);
    }))
    .await
    .expect("apply");
    // The instances run within seconds; their Nodes join 90 s later.
    run_for(&mut cp, Duration::from_secs(45)).await;
    let waiting = pool_machines(&cp, "workers");
    assert_eq!(waiting.len(), 2);
    for m in &waiting {
        assert_eq!(m.status.phase, MachinePhase::Provisioned, "{:?}", m.status);
        assert!(m.status.node_ref.is_none());
        let ready = m.status.conditions.get(condition::READY).expect("Ready");
        assert_eq!(ready.status, ConditionStatus::False);
        assert!(ready.message.contains("waiting for"), "{}", ready.message);
    }
    assert!(
        cp.describe().contains("no node: waiting for"),
        "{}",
        cp.describe()
    );

    converge(&mut cp).await;
    let nodes = cp.workload.nodes(cluster());
    for m in pool_machines(&cp, "workers") {
        assert_eq!(m.status.phase, MachinePhase::Running);
        let node_ref = m.status.node_ref.clone().expect("nodeRef");
        let node = nodes
            .iter()
            .find(|n| n.name == node_ref.name)
            .expect("the recorded node exists");
        assert_eq!(node.uid, node_ref.uid);
        let id = m.status.instance_id.clone().expect("instance");
        assert!(
            node.provider_id
                .as_deref()
                .is_some_and(|p| p.ends_with(&id))
        );
        assert!(m.status.node_info.is_some());
        assert!(m.status.conditions.is_true("NodeReady"));
        assert!(m.status.conditions.is_true("NodeHealthy"));
        // The pool's labels, and its role, are on the Node, put there in place.
        assert_eq!(node.labels.get("team").map(String::as_str), Some("web"));
        assert!(node.labels.contains_key("node-role.kubernetes.io/workers"));
        assert!(
            cp.describe().contains(&format!("node {} Ready", node.name)),
            "{}",
            cp.describe()
        );
    }
}

#[tokio::test]
async fn a_node_gone_not_ready_is_remediated_by_unhealthy_node_conditions() {
    let mut cp = control_plane(42, |_| {});
    cp.apply(&with_access(3, |p| {
        p.health_check = Some(node_health_check())
    }))
    .await
    .expect("apply");
    converge(&mut cp).await;
    let victim = pool_machines(&cp, "workers").remove(0);
    let id = victim.status.instance_id.clone().expect("instance");
    cp.workload.set_not_ready(
        &id,
        Some(NotReady {
            at: cp.now(),
            reason: "KubeletNotReady".into(),
        }),
    );
    run_for(&mut cp, Duration::from_secs(400)).await;
    converge(&mut cp).await;

    let workers = pool_machines(&cp, "workers");
    assert_eq!(workers.len(), 3);
    assert!(
        workers
            .iter()
            .all(|m| m.metadata.name != victim.metadata.name)
    );
    assert_eq!(cp.ec2.terminated_by_request(), vec![id.clone()]);
    // The remediated Machine's Node went with its instance: no NotReady ghost (its
    // name may come back: EC2 reuses private IPs, and EKS names nodes by them).
    let gone = victim.status.node_ref.expect("nodeRef");
    let nodes = cp.workload.nodes(cluster());
    assert!(nodes.iter().all(|n| n.uid != gone.uid), "{nodes:?}");
    assert_eq!(nodes.len(), machines(&cp).len(), "one Node per Machine");
    assert!(nodes.iter().all(|n| n.is_ready()));
}

#[tokio::test]
async fn a_node_that_never_joins_is_remediated_after_the_startup_timeout() {
    let mut cp = control_plane(43, |_| {});
    let mut check = node_health_check();
    check.checks.node_startup_timeout_seconds = 300;
    cp.apply(&with_access(2, move |p| {
        p.health_check = Some(check.clone())
    }))
    .await
    .expect("apply");
    // The first instance's kubelet never registers.
    run_for(&mut cp, Duration::from_secs(2)).await;
    let first = pool_machines(&cp, "workers")
        .into_iter()
        .find_map(|m| m.status.instance_id)
        .expect("an instance");
    cp.workload.never_join(&first);
    run_for(&mut cp, Duration::from_secs(900)).await;
    converge(&mut cp).await;

    assert!(cp.ec2.terminated_by_request().contains(&first));
    let workers = pool_machines(&cp, "workers");
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|m| m.status.node_ref.is_some()));
}

#[tokio::test]
async fn deleting_the_cluster_leaves_no_node_behind() {
    let mut cp = control_plane(44, |_| {});
    cp.apply(&with_access(2, |_| {})).await.expect("apply");
    converge(&mut cp).await;
    assert_eq!(
        live_nodes(&cp).len(),
        machines(&cp).len(),
        "one Node per Machine"
    );
    cp.delete(&cluster_key()).await.expect("delete");
    drain(&mut cp).await;
    assert!(live_nodes(&cp).is_empty(), "{:?}", live_nodes(&cp));
    // And the port itself says so.
    let nodes = cp
        .workload
        .list_nodes(&cluster().target())
        .await
        .expect("listed");
    assert!(nodes.is_empty());
}

fn taint(key: &str, propagation: TaintPropagation) -> MachineTaint {
    MachineTaint {
        key: key.into(),
        value: Some("yes".into()),
        effect: TaintEffect::NoSchedule,
        propagation,
    }
}

fn node_taints(cp: &Embedded) -> Vec<Vec<String>> {
    let names: Vec<String> = pool_machines(cp, "workers")
        .into_iter()
        .filter_map(|m| m.status.node_ref.map(|r| r.name))
        .collect();
    cp.workload
        .nodes(cluster())
        .into_iter()
        .filter(|n| names.contains(&n.name))
        .map(|n| {
            let mut keys: Vec<String> = n.taints.into_iter().map(|t| t.key).collect();
            keys.sort();
            keys
        })
        .collect()
}

#[tokio::test]
async fn pool_labels_and_taints_reach_the_nodes_in_place_without_a_rollout() {
    let mut cp = control_plane(45, |_| {});
    let pool = |labels: &[(&str, &str)], taints: Vec<MachineTaint>| {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        with_access(2, move |p| {
            p.metadata.labels = labels.clone();
            p.taints = taints.clone();
        })
    };
    cp.apply(&pool(
        &[("team", "web")],
        vec![
            taint("example.com/dedicated", TaintPropagation::Always),
            taint("example.com/warming", TaintPropagation::OnInitialization),
        ],
    ))
    .await
    .expect("apply");
    converge(&mut cp).await;
    let launched = cp.ec2.launched_total();
    assert_eq!(
        node_taints(&cp),
        vec![
            vec!["example.com/dedicated", "example.com/warming"],
            vec!["example.com/dedicated", "example.com/warming"]
        ]
    );

    // The pool gets another label, drops its Always taint and adds another taint.
    cp.apply(&pool(
        &[("tier", "front")],
        vec![taint("example.com/gpu", TaintPropagation::Always)],
    ))
    .await
    .expect("apply");
    converge(&mut cp).await;
    run_for(&mut cp, Duration::from_secs(120)).await;

    assert_eq!(cp.ec2.launched_total(), launched, "no rollout");
    // The OnInitialization taint was put on once and is left to others.
    assert_eq!(
        node_taints(&cp),
        vec![
            vec!["example.com/gpu", "example.com/warming"],
            vec!["example.com/gpu", "example.com/warming"]
        ]
    );
    for node in cp.workload.nodes(cluster()) {
        if node.labels.contains_key("node-role.kubernetes.io/workers") {
            // Added in place. (A label the pool drops stays on its Machines, as
            // Capstan propagates labels by adding them, so it stays on the Node too.)
            assert_eq!(node.labels.get("tier").map(String::as_str), Some("front"));
        }
    }
}

/// A class with `bootstrap.eks` launches instances whose user data joins them to the
/// EKS cluster: nodeadm's NodeConfig with the endpoint and authority DescribeCluster
/// gives, the pool's labels and taints as kubelet flags, the class's own script as a
/// further part. The simulated kubelet joins only with a NodeConfig that reaches its
/// cluster, and registers with those flags.
#[tokio::test]
async fn a_class_with_eks_bootstrap_launches_nodes_that_join_their_cluster() {
    let mut cp = control_plane(47, |_| {});
    let objects = edited(
        &with_access(2, |p| {
            p.metadata.labels = BTreeMap::from([("team".to_string(), "web".to_string())]);
            p.taints = vec![taint(
                "example.com/warming",
                TaintPropagation::OnInitialization,
            )];
        }),
        |o| {
            if let Object::MachineClass(c) = o {
                c.spec.bootstrap = Some(Bootstrap {
                    eks: Some(EksBootstrap {}),
                });
                c.spec.user_data = Some("#!/bin/bash\necho capstan-was-here\n".into());
            }
        },
    );
    cp.apply(&objects).await.expect("apply");
    converge(&mut cp).await;

    let described = cp
        .workload
        .eks_cluster(&cluster().target())
        .await
        .expect("described");
    let machines = pool_machines(&cp, "workers");
    assert_eq!(machines.len(), 2);
    for m in machines {
        assert_eq!(m.status.phase, MachinePhase::Running, "{:?}", m.status);
        assert!(m.status.node_ref.is_some(), "joined: {:?}", m.status);
        let id = m.status.instance_id.clone().expect("instance");
        let user_data = cp
            .ec2
            .launch_request(&id)
            .and_then(|r| r.user_data)
            .expect("launched with user data");
        assert!(user_data.starts_with("MIME-Version: 1.0"), "{user_data}");
        for expected in [
            "Content-Type: application/node.eks.aws".to_string(),
            "name: \"demo\"".to_string(),
            format!("apiServerEndpoint: \"{}\"", described.endpoint),
            format!(
                "certificateAuthority: \"{}\"",
                described.certificate_authority
            ),
            format!("cidr: \"{}\"", described.service_cidr),
            "team=web".to_string(),
            "--register-with-taints=example.com/warming=yes:NoSchedule".to_string(),
            "Content-Type: text/x-shellscript".to_string(),
            "echo capstan-was-here".to_string(),
        ] {
            assert!(user_data.contains(&expected), "{expected} in:\n{user_data}");
        }
    }
    assert_eq!(
        node_taints(&cp),
        vec![vec!["example.com/warming"], vec!["example.com/warming"]]
    );
}

/// A Machine whose instance was terminated from outside long before anyone deletes the
/// Machine (no health check remediates it; a person does, ten minutes on) still takes
/// its Node with it: the Node's deletion is bounded from when it began, not from when
/// the instance went.
#[tokio::test]
async fn a_machine_deleted_long_after_its_instance_went_still_deletes_its_node() {
    let mut cp = control_plane(49, |_| {});
    cp.apply(&with_access(1, |_| {})).await.expect("apply");
    converge(&mut cp).await;
    let machine = pool_machines(&cp, "workers").remove(0);
    let node = machine.status.node_ref.clone().expect("nodeRef").name;
    let id = machine.status.instance_id.clone().expect("instance");
    assert!(cp.ec2.terminate_externally(&id));
    run_for(&mut cp, Duration::from_secs(600)).await;
    let failed = pool_machines(&cp, "workers")
        .into_iter()
        .find(|m| m.metadata.name == machine.metadata.name)
        .expect("the Machine stays, Failed");
    assert_eq!(failed.status.phase, MachinePhase::Failed);
    assert!(
        live_nodes(&cp).contains(&node),
        "the ghost Node is still there"
    );
    let _ = node;

    cp.delete(&Object::Machine(failed).key())
        .await
        .expect("delete");
    converge(&mut cp).await;
    // (Its replacement may get the same private IP, and so the same Node name: the
    // ghost is told apart by its providerID.)
    let ghosts: Vec<String> = cp
        .workload
        .nodes(cluster())
        .into_iter()
        .filter(|n| n.provider_id.as_deref().is_some_and(|p| p.ends_with(&id)))
        .map(|n| n.name)
        .collect();
    assert!(
        ghosts.is_empty(),
        "the Node went with its Machine: {ghosts:?}"
    );
}
