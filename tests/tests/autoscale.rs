//! Autoscaling by the loop that launches the nodes, end to end in the embedded control
//! plane with its in-memory workload cluster: pods the scheduler cannot place raise an
//! autoscaled pool's replicas once, by what they need; the pods run once the nodes
//! join; once they are gone, the nodes nobody needs go one at a time after the quiet
//! period, drained, never below the pool's min.

use std::collections::BTreeSet;
use std::time::Duration;

use capstan_embedded::Embedded;
use capstan_model::{Autoscaling, ClusterAccess, EksAccess, Kind, Object};
use capstan_reconcile::autoscale_pools::AUTOSCALING;
use capstan_sim::workload::PodSpec;
use capstan_tests::*;

fn autoscaled(min: i32, max: i32) -> Vec<Object> {
    edited(&quickstart(), |o| match o {
        Object::Cluster(c) => {
            c.spec.access = Some(ClusterAccess {
                eks: Some(EksAccess {
                    cluster_name: "demo".into(),
                    region: None,
                }),
                kubeconfig: None,
            });
            c.spec.workers[0].replicas = None;
            c.spec.workers[0].autoscaling = Some(Autoscaling { min, max });
        }
        // One worker size (2 vCPU, 1930m allocatable): three 500m pods to a node.
        Object::MachineClass(class) if class.metadata.name == "demo-workers" => {
            class.spec.instance_types = vec!["m7i.large".into()];
        }
        _ => {}
    })
}

/// The workers pool's MachineDeployment replicas, as the table says.
fn pool_replicas(cp: &Embedded) -> i32 {
    cp.trees()
        .iter()
        .find_map(|t| t.get(Kind::MachineDeployment, "demo-workers"))
        .and_then(|s| s.object.as_machine_deployment())
        .map_or(-1, |md| md.spec.replicas)
}

fn autoscaling_message(cp: &Embedded) -> String {
    cp.trees()
        .iter()
        .find_map(|t| t.get(Kind::MachineDeployment, "demo-workers"))
        .and_then(|s| s.object.as_machine_deployment())
        .and_then(|md| md.status.conditions.get(AUTOSCALING).cloned())
        .map(|c| format!("{}: {}", c.reason, c.message))
        .unwrap_or_default()
}

/// `burst` pods, bound and running.
fn running_burst(cp: &Embedded) -> usize {
    cp.workload
        .pods(cluster())
        .into_iter()
        .filter(|p| p.labels.get("app").is_some_and(|a| a == "burst"))
        .filter(|p| p.phase == "Running" && p.deleting_since.is_none())
        .count()
}

/// Nodes of the workers pool that are in the cluster and Ready.
fn ready_worker_nodes(cp: &Embedded) -> usize {
    cp.workload
        .nodes(cluster())
        .into_iter()
        .filter(|n| n.labels.contains_key("node-role.kubernetes.io/workers") && n.is_ready())
        .count()
}

/// Ten pods of 500m on the workers only, as Deployment `burst`: the one worker of
/// the tests' pool takes three, seven wait.
fn add_burst(cp: &Embedded) {
    cp.workload.add_deployment(
        cluster(),
        "burst",
        10,
        PodSpec::new("default", "burst")
            .requests(500, 256 << 20)
            .node_selector("node-role.kubernetes.io/workers", ""),
    );
}

#[tokio::test]
async fn a_burst_of_pending_pods_scales_the_pool_once_and_emptied_it_shrinks_to_min_drained() {
    let mut cp = control_plane(17, |_| {});
    cp.apply(&autoscaled(1, 5)).await.expect("apply");
    converge(&mut cp).await;
    assert_eq!(
        pool_replicas(&cp),
        1,
        "an autoscaled pool starts at its min"
    );
    run_for(&mut cp, Duration::from_secs(60)).await;

    // Ten pods of 500m on the workers only: the one worker takes three, seven wait.
    add_burst(&cp);
    let mut seen: Vec<i32> = vec![pool_replicas(&cp)];
    let mut message = String::new();
    run_checked(
        &mut cp,
        Duration::from_secs(15 * 60),
        |cp| (running_burst(cp) < 10).then(|| vec![format!("{} of 10 running", running_burst(cp))]),
        |cp| {
            let r = pool_replicas(cp);
            if seen.last() != Some(&r) {
                seen.push(r);
            }
            let m = autoscaling_message(cp);
            if m.starts_with("ScalingUp") {
                message = m;
            }
        },
    )
    .await;
    assert_eq!(
        seen,
        [1, 4],
        "one scale-up, by what the seven waiting pods need (three to a node)"
    );
    assert_eq!(
        message, "ScalingUp: 7 pods unschedulable need 3 nodes",
        "the MachineDeployment says why"
    );
    assert_eq!(ready_worker_nodes(&cp), 4);
    assert!(
        cp.describe().contains("autoscaling: "),
        "describe shows the decision:\n{}",
        cp.describe()
    );

    // The pods go: after the quiet period the nodes go, one at a time, to the min.
    let emptied = cp.now();
    assert!(
        cp.workload
            .scale_deployment(cluster(), "default", "burst", 0)
    );
    let mut seen_down: Vec<(i32, jiff::Timestamp)> = vec![(pool_replicas(&cp), cp.now())];
    run_checked(
        &mut cp,
        Duration::from_secs(60 * 60),
        |cp| {
            (pool_replicas(cp) > 1 || ready_worker_nodes(cp) > 1).then(|| {
                vec![format!(
                    "replicas {}, {} worker nodes",
                    pool_replicas(cp),
                    ready_worker_nodes(cp)
                )]
            })
        },
        |cp| {
            let r = pool_replicas(cp);
            assert!(r >= 1, "never below min");
            if seen_down.last().map(|(n, _)| *n) != Some(r) {
                seen_down.push((r, cp.now()));
            }
        },
    )
    .await;
    let steps: Vec<i32> = seen_down.iter().map(|(r, _)| *r).collect();
    assert_eq!(steps, [4, 3, 2, 1], "one node at a time");
    let first_down = seen_down[1].1;
    let quiet = Duration::try_from(first_down.duration_since(emptied)).unwrap_or_default();
    assert!(
        quiet >= Duration::from_secs(10 * 60),
        "nothing removed within the quiet period ({quiet:?})"
    );
    // Each removed worker's Node was drained and deleted; none is left behind.
    let names: BTreeSet<String> = cp
        .workload
        .nodes(cluster())
        .into_iter()
        .filter(|n| n.labels.contains_key("node-role.kubernetes.io/workers"))
        .map(|n| n.name)
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // The next scheduled check finds the pool at its min and says so.
    run_for(&mut cp, Duration::from_secs(6 * 60)).await;
    assert_eq!(pool_replicas(&cp), 1);
    assert!(
        autoscaling_message(&cp).starts_with("AtMin"),
        "{}",
        autoscaling_message(&cp)
    );
    // An hour and more of passes asked EC2 for the instance type's capacity once: the
    // answer is kept in the table.
    assert_eq!(cp.ec2.calls().describe_instance_types, 1);
}

#[tokio::test]
async fn pods_that_fit_no_pool_scale_nothing_and_the_pool_says_why() {
    let mut cp = control_plane(18, |_| {});
    cp.apply(&autoscaled(1, 5)).await.expect("apply");
    converge(&mut cp).await;
    cp.workload.add_pod(
        cluster(),
        PodSpec::new("default", "gpu-0")
            .requests(500, 256 << 20)
            .node_selector("gpu", "yes"),
    );
    run_for(&mut cp, Duration::from_secs(5 * 60)).await;
    assert_eq!(
        pool_replicas(&cp),
        1,
        "nothing scaled for a pod no pool can run"
    );
    let message = autoscaling_message(&cp);
    assert!(
        message.contains("1 pending pod gets no node: default/gpu-0: fits no pool: workers: nodeSelector gpu=yes does not match"),
        "{message}"
    );
}

/// The `PendingToScheduled` values of the metric lines written since the last call,
/// each with when it was read.
fn pending_to_scheduled(cp: &Embedded, into: &mut Vec<(f64, jiff::Timestamp)>) {
    for line in cp.take_metric_lines() {
        if let Some(values) = line.get("PendingToScheduled").and_then(|v| v.as_array()) {
            into.extend(
                values
                    .iter()
                    .filter_map(|v| v.as_f64())
                    .map(|v| (v, cp.now())),
            );
        }
    }
}

#[tokio::test]
async fn each_pod_a_scale_up_waited_on_reports_its_wait_for_a_node_once() {
    let boot = Duration::from_secs(30);
    let join = Duration::from_secs(20);
    let mut cp = control_plane(19, |c| {
        c.ec2.boot_delay = boot;
        c.workload.join_delay = join;
    });
    cp.apply(&autoscaled(1, 5)).await.expect("apply");
    converge(&mut cp).await;
    run_for(&mut cp, Duration::from_secs(60)).await;
    let mut waits = Vec::new();
    pending_to_scheduled(&cp, &mut waits);
    assert!(waits.is_empty(), "no pod waited yet: {waits:?}");

    // Ten pods, three fit the one worker: seven wait for the nodes the scale-up asks for.
    let burst_at = cp.now();
    add_burst(&cp);
    run_checked(
        &mut cp,
        Duration::from_secs(15 * 60),
        |cp| (running_burst(cp) < 10).then(|| vec![format!("{} of 10 running", running_burst(cp))]),
        |cp| pending_to_scheduled(cp, &mut waits),
    )
    .await;
    // Ten minutes of later passes (the minute check, sweeps) report nothing again.
    let settled = cp.now();
    run_checked(
        &mut cp,
        Duration::from_secs(15 * 60),
        |cp| {
            let ran = Duration::try_from(cp.now().duration_since(settled)).unwrap_or_default();
            (ran < Duration::from_secs(10 * 60)).then(|| vec!["running on".to_string()])
        },
        |cp| pending_to_scheduled(cp, &mut waits),
    )
    .await;
    assert_eq!(
        waits.len(),
        7,
        "one value per pod the scale-up waited on, reported once: {waits:?}"
    );
    for (seconds, seen_at) in &waits {
        let ran = Duration::try_from(seen_at.duration_since(burst_at)).unwrap_or_default();
        assert!(
            *seconds >= (boot + join).as_secs_f64(),
            "a pod waited at least for an instance to boot and join: {seconds}s"
        );
        assert!(
            *seconds <= ran.as_secs_f64(),
            "a pod waited no longer than the test ran ({ran:?}): {seconds}s"
        );
    }
}
