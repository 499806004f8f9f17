//! Drain before terminate (a Cluster with `spec.access`), end to end in the embedded
//! control plane with its in-memory workload cluster: a Machine leaving its cluster
//! cordons its Node, evicts its pods through the Eviction API (PodDisruptionBudgets
//! hold), and only then has its instance terminated; the Deleting condition says what
//! the drain waits for; the exclude annotation and the drain timeout end a drain.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_embedded::Embedded;
use capstan_model::labels::{DELETE_MACHINE, EXCLUDE_NODE_DRAINING};
use capstan_model::meta::condition;
use capstan_model::{DeletionStep, Kind, Machine, MachineDeletion, Object};
use capstan_sim::workload::{
    Budget, ClusterKey, IntOrPercent, PodDisruptionBudget, PodSpec, WorkloadObject,
    read_workload_objects,
};
use capstan_tests::*;

/// Three workers running a Deployment `web` of six pods (on the workers only), a
/// DaemonSet on every node, and a budget on `web` needing `min_available`.
async fn workers_with_pods(seed: u64, min_available: u32) -> Embedded {
    workers_with_pods_tuned(seed, min_available, |_| {}).await
}

async fn workers_with_pods_tuned(
    seed: u64,
    min_available: u32,
    tune: impl FnOnce(&mut capstan_embedded::EmbeddedConfig),
) -> Embedded {
    let mut cp = control_plane(seed, tune);
    cp.apply(&with_access(3, |_| {})).await.expect("apply");
    converge(&mut cp).await;
    let on_workers = |p: PodSpec| p.node_selector("node-role.kubernetes.io/workers", "");
    cp.workload.add_deployment(
        cluster(),
        "web",
        6,
        on_workers(PodSpec::new("default", "web").requests(200, 256 << 20)),
    );
    cp.workload.add_daemon_set(
        cluster(),
        "fluent-bit",
        PodSpec::new("kube-system", "fluent-bit").requests(50, 64 << 20),
    );
    set_budget(&cp, min_available);
    run_for(&mut cp, Duration::from_secs(60)).await;
    assert_eq!(running_web(&cp), 6, "the pods start");
    cp
}

fn set_budget(cp: &Embedded, min_available: u32) {
    cp.workload.add_pdb(
        cluster(),
        PodDisruptionBudget {
            namespace: "default".into(),
            name: "web".into(),
            selector: BTreeMap::from([("app".to_string(), "web".to_string())]),
            budget: Budget::MinAvailable(IntOrPercent::Int(min_available)),
        },
    );
}

/// `web` pods bound, running and not terminating.
fn running_web(cp: &Embedded) -> usize {
    cp.workload
        .pods(cluster())
        .into_iter()
        .filter(|p| p.labels.get("app").is_some_and(|a| a == "web"))
        .filter(|p| p.phase == "Running" && p.deleting_since.is_none() && p.node_name.is_some())
        .count()
}

/// Marks one worker for deletion (and `extra` annotations on it), returns it.
async fn mark_victim(cp: &Embedded, extra: &[&str]) -> Machine {
    let mut victim = pool_machines(cp, "workers").remove(0);
    victim
        .metadata
        .annotations
        .insert(DELETE_MACHINE.into(), String::new());
    for key in extra {
        victim
            .metadata
            .annotations
            .insert((*key).to_string(), String::new());
    }
    let mut desired = victim.clone();
    desired.status = Default::default();
    cp.apply(&[Object::Machine(desired)])
        .await
        .expect("annotate");
    victim
}

/// The pods on the Node of `instance_id` that a drain must evict before terminating.
fn pods_needing_eviction(cp: &Embedded, instance_id: &str) -> Vec<String> {
    let Some(node) = cp.workload.nodes(cluster()).into_iter().find(|n| {
        n.provider_id
            .as_deref()
            .is_some_and(|p| p.ends_with(instance_id))
    }) else {
        return Vec::new();
    };
    cp.workload
        .pods(cluster())
        .into_iter()
        .filter(|p| p.node_name.as_deref() == Some(node.name.as_str()))
        .filter(|p| capstan_runtime::drain::needs_eviction_on(&node, p, cp.now()))
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect()
}

/// After every step: an instance Capstan terminated had no pod left needing eviction
/// (unless `allowed` says the drain may have been cut short for it).
fn check_terminations(cp: &Embedded, seen: &mut BTreeSet<String>, allowed: &BTreeSet<String>) {
    for id in cp.ec2.terminated_by_request() {
        if seen.insert(id.clone()) && !allowed.contains(&id) {
            let left = pods_needing_eviction(cp, &id);
            assert!(
                left.is_empty(),
                "{id} terminated with {left:?} still on its Node"
            );
        }
    }
}

fn deleting_machine(cp: &Embedded, name: &str) -> Option<Machine> {
    cp.tree("default", "demo")
        .get(Kind::Machine, name)
        .and_then(|s| s.object.as_machine().cloned())
}

#[tokio::test]
async fn scale_down_drains_the_node_before_terminating_its_instance() {
    let mut cp = workers_with_pods(51, 5).await;
    let victim = mark_victim(&cp, &[]).await;
    let id = victim.status.instance_id.clone().unwrap_or_default();
    let evictable = pods_needing_eviction(&cp, &id);
    assert!(!evictable.is_empty(), "the victim runs web pods");
    let node = victim.status.node_ref.clone().expect("nodeRef").name;

    cp.apply(&with_access(2, |_| {})).await.expect("scale down");
    let mut seen = BTreeSet::new();
    let mut saw_draining = false;
    run_checked(
        &mut cp,
        CONVERGE_WITHIN,
        |cp| {
            (pool_machines(cp, "workers").len() != 2
                || deleting_machine(cp, &victim.metadata.name).is_some())
            .then(|| vec!["the victim is still there".to_string()])
        },
        |cp| {
            check_terminations(cp, &mut seen, &BTreeSet::new());
            if let Some(m) = deleting_machine(cp, &victim.metadata.name)
                && m.status
                    .deletion
                    .as_ref()
                    .is_some_and(|d| d.step == DeletionStep::DrainingNode)
            {
                saw_draining = true;
                let c = m
                    .status
                    .conditions
                    .get(condition::DELETING)
                    .cloned()
                    .expect("Deleting");
                assert_eq!(c.reason, "DrainingNode");
            }
        },
    )
    .await;
    converge(&mut cp).await;

    assert!(saw_draining, "the Machine reported its drain");
    assert_eq!(cp.ec2.terminated_by_request(), vec![id.clone()]);
    // Its web pods were evicted (none deleted outright), the DaemonSet's were not.
    let evicted: Vec<String> = cp
        .workload
        .evictions_log()
        .into_iter()
        .filter(|e| e.node.as_deref() == Some(node.as_str()))
        .map(|e| format!("{}/{}", e.namespace, e.pod))
        .collect();
    for pod in &evictable {
        assert!(evicted.contains(pod), "{pod} evicted: {evicted:?}");
    }
    assert!(
        evicted.iter().all(|p| !p.starts_with("kube-system/")),
        "{evicted:?}"
    );
    assert!(cp.workload.pdb_violations().is_empty());
    // The pods run again on the two workers left, and the Node is gone.
    assert_eq!(running_web(&cp), 6);
    assert!(cp.workload.nodes(cluster()).iter().all(|n| n.name != node));
}

#[tokio::test]
async fn a_disruption_budget_blocks_the_drain_until_it_allows_the_eviction() {
    // Six pods, the budget needs all six: no eviction is allowed.
    let mut cp = workers_with_pods(52, 6).await;
    let victim = mark_victim(&cp, &[]).await;
    let id = victim.status.instance_id.clone().unwrap_or_default();
    cp.apply(&with_access(2, |_| {})).await.expect("scale down");
    let mut seen = BTreeSet::new();
    let none = BTreeSet::new();
    let deadline = cp
        .now()
        .checked_add(Duration::from_secs(600))
        .expect("time");
    while cp.now() < deadline {
        while cp.step().await.expect("step") {
            check_terminations(&cp, &mut seen, &none);
        }
        if !cp.skip_to_next_wakeup(deadline) {
            break;
        }
    }
    assert!(
        cp.ec2.terminated_by_request().is_empty(),
        "held by the budget"
    );
    let held = deleting_machine(&cp, &victim.metadata.name).expect("still deleting");
    let c = held
        .status
        .conditions
        .get(condition::DELETING)
        .cloned()
        .expect("Deleting");
    assert_eq!(c.reason, "DrainingNode");
    assert!(c.message.contains("cannot evict"), "{}", c.message);
    assert!(c.message.contains("default/web-"), "{}", c.message);
    assert!(c.message.contains("web"), "names the budget: {}", c.message);
    assert!(cp.describe().contains("DrainingNode"), "{}", cp.describe());
    // Its MachineDeployment counts it as draining.
    let md = cp
        .tree("default", "demo")
        .get(Kind::MachineDeployment, "demo-workers")
        .and_then(|s| match &s.object {
            Object::MachineDeployment(d) => Some(d.status.draining_replicas),
            _ => None,
        });
    assert_eq!(md, Some(1));
    assert!(cp.describe().contains("1 draining"), "{}", cp.describe());

    // The budget relaxes: the drain completes and the instance goes.
    set_budget(&cp, 4);
    run_checked(
        &mut cp,
        CONVERGE_WITHIN,
        |cp| deleting_machine(cp, &victim.metadata.name).map(|_| vec!["still deleting".into()]),
        |cp| check_terminations(cp, &mut seen, &none),
    )
    .await;
    assert_eq!(cp.ec2.terminated_by_request(), vec![id]);
    assert!(cp.workload.pdb_violations().is_empty());
}

/// The pool asks it for all its Machines (`spec.workers[].metadata.annotations`): it
/// reaches the Machines in place, and a scale-down then terminates without a drain.
#[tokio::test]
async fn a_pool_annotated_exclude_node_draining_scales_down_without_a_drain() {
    let mut cp = workers_with_pods(57, 5).await;
    let exclude = |p: &mut capstan_model::WorkerPool| {
        p.metadata
            .annotations
            .insert(EXCLUDE_NODE_DRAINING.into(), String::new());
    };
    cp.apply(&with_access(3, exclude))
        .await
        .expect("annotate the pool");
    run_for(&mut cp, Duration::from_secs(30)).await;
    let workers = pool_machines(&cp, "workers");
    assert_eq!(workers.len(), 3);
    assert!(
        workers
            .iter()
            .all(|m| m.metadata.annotations.contains_key(EXCLUDE_NODE_DRAINING)),
        "the pool's annotation reaches its Machines without a rollout"
    );
    let before: BTreeSet<String> = workers.iter().map(|m| m.metadata.name.clone()).collect();
    let evictions = cp.workload.evictions_log().len();
    cp.apply(&with_access(2, exclude))
        .await
        .expect("scale down");
    converge(&mut cp).await;
    let after: BTreeSet<String> = pool_machines(&cp, "workers")
        .iter()
        .map(|m| m.metadata.name.clone())
        .collect();
    assert!(
        after.is_subset(&before),
        "no rollout: {before:?} → {after:?}"
    );
    assert_eq!(after.len(), 2);
    assert_eq!(cp.ec2.terminated_by_request().len(), 1);
    assert_eq!(
        cp.workload.evictions_log().len(),
        evictions,
        "nothing evicted"
    );
}

#[tokio::test]
async fn a_machine_annotated_exclude_node_draining_is_terminated_without_a_drain() {
    let mut cp = workers_with_pods(53, 6).await;
    let victim = mark_victim(&cp, &[EXCLUDE_NODE_DRAINING]).await;
    let id = victim.status.instance_id.clone().unwrap_or_default();
    run_for(&mut cp, Duration::from_secs(5)).await;
    let evictions = cp.workload.evictions_log().len();
    cp.apply(&with_access(2, |_| {})).await.expect("scale down");
    run_checked(
        &mut cp,
        CONVERGE_WITHIN,
        |cp| deleting_machine(cp, &victim.metadata.name).map(|_| vec!["still deleting".into()]),
        |_| {},
    )
    .await;
    assert_eq!(cp.ec2.terminated_by_request(), vec![id]);
    assert_eq!(
        cp.workload.evictions_log().len(),
        evictions,
        "nothing evicted"
    );
}

#[tokio::test]
async fn the_drain_timeout_ends_a_drain_a_budget_holds_and_is_set_in_place() {
    let mut cp = workers_with_pods(54, 6).await;
    let launched = cp.ec2.launched_total();
    // Set on the pool after the Machines exist: propagated in place, no rollout.
    let timeout = |p: &mut capstan_model::WorkerPool| {
        p.deletion = MachineDeletion {
            node_drain_timeout_seconds: Some(120),
            ..MachineDeletion::default()
        }
    };
    cp.apply(&with_access(3, timeout)).await.expect("apply");
    converge(&mut cp).await;
    assert_eq!(cp.ec2.launched_total(), launched, "no rollout");
    for m in pool_machines(&cp, "workers") {
        assert_eq!(m.spec.deletion.node_drain_timeout_seconds, Some(120));
    }

    let victim = mark_victim(&cp, &[]).await;
    let id = victim.status.instance_id.clone().unwrap_or_default();
    let asked = cp.now();
    cp.apply(&with_access(2, timeout))
        .await
        .expect("scale down");
    let mut skipped = None;
    run_checked(
        &mut cp,
        CONVERGE_WITHIN,
        |cp| deleting_machine(cp, &victim.metadata.name).map(|_| vec!["still deleting".into()]),
        |cp| {
            if let Some(d) =
                deleting_machine(cp, &victim.metadata.name).and_then(|m| m.status.deletion)
                && d.drain_skipped.is_some()
            {
                skipped = d.drain_skipped.clone();
            }
        },
    )
    .await;
    assert_eq!(cp.ec2.terminated_by_request(), vec![id]);
    let skipped = skipped.expect("the drain was cut short");
    assert!(
        skipped.contains("nodeDrainTimeoutSeconds (120s)"),
        "{skipped}"
    );
    let took = cp.now().duration_since(asked);
    assert!(took >= jiff::SignedDuration::from_secs(120), "{took:?}");
    assert!(cp.workload.pdb_violations().is_empty());
}

#[tokio::test]
async fn without_access_a_machine_is_terminated_at_once_as_before() {
    let mut cp = control_plane(55, |_| {});
    cp.apply(&quickstart()).await.expect("apply");
    converge(&mut cp).await;
    let scaled = edited(&quickstart(), |o| {
        if let Object::Cluster(c) = o {
            c.spec.workers[0].replicas = Some(2);
        }
    });
    cp.apply(&scaled).await.expect("scale down");
    converge(&mut cp).await;
    assert_eq!(cp.ec2.terminated_by_request().len(), 1);
    assert_eq!(cp.workload.evictions_log().len(), 0);
}

#[tokio::test]
async fn a_rollout_drains_old_nodes_only_while_three_new_or_old_ones_are_ready() {
    let mut cp = workers_with_pods(56, 5).await;
    let old: BTreeSet<String> = pool_machines(&cp, "workers")
        .into_iter()
        .filter_map(|m| m.status.instance_id)
        .collect();
    let rolled = edited(&with_access(3, |_| {}), |o| {
        if let Object::MachineClass(c) = o
            && c.metadata.name == "demo-workers"
        {
            c.spec.image_id = "ami-0fedcba9876543210".into();
        }
    });
    cp.apply(&rolled).await.expect("roll");
    let mut seen = BTreeSet::new();
    let mut most_draining = 0;
    run_checked(
        &mut cp,
        CONVERGE_WITHIN,
        |cp| {
            let left = cp
                .ec2
                .terminated_by_request()
                .iter()
                .filter(|id| old.contains(*id))
                .count();
            (left != old.len() || !cp.not_converged().is_empty())
                .then(|| vec![format!("{left} of {} old workers gone", old.len())])
        },
        |cp| {
            check_terminations(cp, &mut seen, &BTreeSet::new());
            let tree = cp.tree("default", "demo");
            let workers: Vec<Machine> = tree
                .of_kind(Kind::Machine)
                .filter_map(|s| s.object.as_machine().cloned())
                .filter(|m| {
                    m.metadata
                        .labels
                        .get("capstan.dev/pool")
                        .is_some_and(|p| p == "workers")
                })
                .collect();
            let draining = workers
                .iter()
                .filter(|m| capstan_reconcile::drain::is_draining(m))
                .count();
            most_draining = most_draining.max(draining);
            if draining > 0 {
                // maxUnavailable 0: three Ready workers whose Nodes are Ready while any drains.
                let ready = workers
                    .iter()
                    .filter(|m| m.status.deletion.is_none())
                    .filter(|m| m.status.conditions.is_true(condition::READY))
                    .count();
                assert!(ready >= 3, "{ready} Ready workers while one drains");
            }
        },
    )
    .await;
    // A Machine being deleted no longer counts against maxSurge (as in Cluster API), so
    // a second may start draining once the next new one is Ready: never below three.
    assert!(most_draining >= 1, "the old workers were drained");
    assert!(cp.workload.pdb_violations().is_empty());
    let evicted_from_old = cp.workload.evictions_log().len();
    assert!(evicted_from_old >= 6, "{evicted_from_old} evictions");
    assert_eq!(running_web(&cp), 6);
}

#[tokio::test]
async fn a_remediated_machine_is_drained_before_its_instance_goes() {
    // The NotReady Node's pods are not Ready: a budget of 4 of 6 still has them to
    // spare (IfHealthyBudget), so they are evicted rather than waited out.
    let mut cp = workers_with_pods(57, 4).await;
    let check = |p: &mut capstan_model::WorkerPool| {
        let mut hc = capstan_model::PoolHealthCheck::default();
        hc.checks.unhealthy_node_conditions = vec![capstan_model::UnhealthyCondition {
            type_: "Ready".into(),
            status: capstan_model::ConditionStatus::False,
            timeout_seconds: 30,
        }];
        p.health_check = Some(hc);
    };
    cp.apply(&with_access(3, check))
        .await
        .expect("health check");
    converge(&mut cp).await;
    let victim = pool_machines(&cp, "workers")
        .into_iter()
        .find(|m| {
            let id = m.status.instance_id.clone().unwrap_or_default();
            !pods_needing_eviction(&cp, &id).is_empty()
        })
        .expect("a worker running web pods");
    let id = victim.status.instance_id.clone().unwrap_or_default();
    cp.workload.set_not_ready(
        &id,
        Some(capstan_sim::workload::NotReady {
            at: cp.now(),
            reason: "KubeletNotReady".into(),
        }),
    );
    let mut seen = BTreeSet::new();
    run_checked(
        &mut cp,
        CONVERGE_WITHIN,
        |cp| {
            (!cp.ec2.terminated_by_request().contains(&id) || !cp.not_converged().is_empty())
                .then(|| vec!["the victim is not replaced yet".into()])
        },
        |cp| check_terminations(cp, &mut seen, &BTreeSet::new()),
    )
    .await;
    assert!(cp.workload.pdb_violations().is_empty());
    let evicted_from_victim = cp
        .workload
        .evictions_log()
        .iter()
        .filter(|e| e.outcome == capstan_runtime::ports::Eviction::Started)
        .count();
    assert!(evicted_from_victim > 0, "its pods were evicted");
    assert_eq!(running_web(&cp), 6);
}

#[tokio::test]
async fn a_spot_interruption_drains_within_the_two_minute_notice() {
    let mut cp = control_plane(58, |_| {});
    let spot = edited(&with_access(3, |_| {}), |o| {
        if let Object::MachineClass(c) = o
            && c.metadata.name == "demo-workers"
        {
            c.spec.market.market_type = capstan_model::MarketType::Spot;
        }
    });
    cp.apply(&spot).await.expect("apply");
    converge(&mut cp).await;
    let on_workers = |p: PodSpec| p.node_selector("node-role.kubernetes.io/workers", "");
    cp.workload.add_deployment(
        cluster(),
        "web",
        6,
        on_workers(PodSpec::new("default", "web").requests(200, 256 << 20)),
    );
    // A budget that blocks every eviction: only the notice ends the drain.
    set_budget(&cp, 6);
    run_for(&mut cp, Duration::from_secs(60)).await;
    let victim = pool_machines(&cp, "workers")
        .into_iter()
        .find(|m| {
            let id = m.status.instance_id.clone().unwrap_or_default();
            !pods_needing_eviction(&cp, &id).is_empty()
        })
        .expect("a worker running web pods");
    let id = victim.status.instance_id.clone().unwrap_or_default();
    let warned = cp.now();
    assert!(cp.ec2.interrupt_spot(&id));
    let mut skipped = None;
    run_checked(
        &mut cp,
        CONVERGE_WITHIN,
        |cp| deleting_machine(cp, &victim.metadata.name).map(|_| vec!["still deleting".into()]),
        |cp| {
            if let Some(d) =
                deleting_machine(cp, &victim.metadata.name).and_then(|m| m.status.deletion)
                && d.drain_skipped.is_some()
            {
                skipped = d.drain_skipped;
            }
        },
    )
    .await;
    let skipped = skipped.expect("the drain was cut short by the notice");
    assert!(skipped.contains("spot instance"), "{skipped}");
    assert!(cp.workload.pdb_violations().is_empty());
    // The replacement was asked for first and runs.
    converge(&mut cp).await;
    assert_eq!(pool_machines(&cp, "workers").len(), 3);
    assert!(cp.now() > warned);
}

#[tokio::test]
async fn the_instance_waits_for_the_nodes_volumes_to_detach() {
    // Volumes take a minute to detach once their pod is gone.
    let mut cp =
        workers_with_pods_tuned(59, 5, |c| c.workload.detach_delay = Duration::from_secs(60)).await;
    let victim = pool_machines(&cp, "workers").remove(0);
    let node = victim.status.node_ref.clone().expect("nodeRef").name;
    // A pod with a persistent volume, on the victim's Node.
    cp.workload.add_pod(
        cluster(),
        PodSpec::new("default", "db-0")
            .on_node(node.clone())
            .persistent_volume("pvc-db-0")
            .requests(100, 128 << 20),
    );
    run_for(&mut cp, Duration::from_secs(30)).await;
    assert!(
        cp.workload
            .attachments(cluster())
            .iter()
            .any(|a| a.node_name == node && a.attached),
        "the volume is attached"
    );
    let victim = mark_victim(&cp, &[]).await;
    let id = victim.status.instance_id.clone().unwrap_or_default();
    cp.apply(&with_access(2, |_| {})).await.expect("scale down");
    let mut waited = None;
    let mut attached_at_termination = None;
    let mut seen = BTreeSet::new();
    run_checked(
        &mut cp,
        CONVERGE_WITHIN,
        |cp| deleting_machine(cp, &victim.metadata.name).map(|_| vec!["still deleting".into()]),
        |cp| {
            check_terminations(cp, &mut seen, &BTreeSet::new());
            if let Some(d) =
                deleting_machine(cp, &victim.metadata.name).and_then(|m| m.status.deletion)
                && d.step == DeletionStep::WaitingForVolumeDetach
                && d.message.contains("still attached")
            {
                waited = Some(d.message);
            }
            if attached_at_termination.is_none() && cp.ec2.terminated_by_request().contains(&id) {
                attached_at_termination = Some(
                    cp.workload
                        .attachments(cluster())
                        .iter()
                        .any(|a| a.node_name == node && a.attached),
                );
            }
        },
    )
    .await;
    let waited = waited.expect("the Machine said it waits for the volume");
    assert!(waited.contains("1 volume(s) still attached"), "{waited}");
    assert_eq!(attached_at_termination, Some(false), "detached first");
}

/// `examples/rollout-drain/` as `capstan up -f` reads it: the Capstan objects and the
/// workload cluster's Deployment, budget and DaemonSet, with `edit` applied to the text.
fn rollout_drain_example(
    edit: impl Fn(&str) -> String,
) -> (Vec<Object>, Vec<(ClusterKey, WorkloadObject)>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rollout-drain");
    let sources: Vec<(String, String)> = ["cluster.yaml", "workload.yaml"]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(dir.join(f)).expect("the example");
            (f.to_string(), edit(&text))
        })
        .collect();
    let manifests = capstan_model::manifest::read_with_workload(&sources)
        .unwrap_or_else(|e| panic!("the example must be valid:\n{e}"));
    let workload = read_workload_objects(&manifests.objects, &manifests.workload)
        .unwrap_or_else(|e| panic!("the example's workload must be valid: {e:?}"));
    (manifests.objects, workload)
}

/// The example's rollout with the default timings (instances boot in 3 s, kubelets join
/// 20 s later): each old node is drained only after its replacement's Node is Ready,
/// one at a time; the budget lets one web pod go at a time and is never broken; all six
/// web pods run at the end.
#[tokio::test]
async fn the_rollout_drain_example_drains_its_nodes_one_by_one() {
    let shop = ClusterKey::new("default", "shop");
    let mut cp = control_plane(61, |c| c.ec2.boot_delay = Duration::from_secs(3));
    let (objects, workload) = rollout_drain_example(str::to_string);
    cp.apply(&objects).await.expect("apply");
    for (key, object) in workload {
        cp.workload.add_object(key, object);
    }
    converge(&mut cp).await;
    run_for(&mut cp, Duration::from_secs(60)).await;
    let web_running = |cp: &Embedded| {
        cp.workload
            .pods(shop.clone())
            .into_iter()
            .filter(|p| p.labels.get("app").is_some_and(|a| a == "web"))
            .filter(|p| p.phase == "Running" && p.deleting_since.is_none())
            .count()
    };
    assert_eq!(web_running(&cp), 6, "the web pods start");
    let old: BTreeSet<String> = cp
        .tree("default", "shop")
        .of_kind(Kind::Machine)
        .filter(|s| s.object.name().starts_with("shop-web-"))
        .map(|s| s.object.name().to_string())
        .collect();
    assert_eq!(old.len(), 3);

    let (new_image, _) =
        rollout_drain_example(|t| t.replace("ami-0abcdef1234567890", "ami-0fedcba9876543210"));
    cp.apply(&new_image).await.expect("the new image");
    let mut drained = Vec::<String>::new();
    run_checked(
        &mut cp,
        CONVERGE_WITHIN,
        |cp| {
            let left: Vec<String> = cp
                .tree("default", "shop")
                .of_kind(Kind::Machine)
                .filter(|s| old.contains(s.object.name()))
                .map(|s| format!("{} is still there", s.object.name()))
                .collect();
            let mut problems = cp.not_converged();
            problems.extend(left);
            Some(problems).filter(|p| !p.is_empty())
        },
        |cp| {
            let draining: Vec<String> = cp
                .tree("default", "shop")
                .of_kind(Kind::Machine)
                .filter_map(|s| s.object.as_machine())
                .filter(|m| {
                    m.metadata.name.starts_with("shop-web-")
                        && m.status
                            .deletion
                            .as_ref()
                            .is_some_and(|d| d.step == DeletionStep::DrainingNode)
                })
                .map(|m| m.metadata.name.clone())
                .collect();
            assert!(
                draining.len() <= 1,
                "two nodes drained at once: {draining:?}"
            );
            for name in draining {
                if !drained.contains(&name) {
                    drained.push(name);
                }
            }
            assert!(
                cp.workload.pdb_violations().is_empty(),
                "a budget was broken: {:?}",
                cp.workload.pdb_violations()
            );
        },
    )
    .await;
    assert_eq!(
        drained.iter().cloned().collect::<BTreeSet<_>>(),
        old,
        "every old worker was drained, in turn: {drained:?}"
    );
    run_for(&mut cp, Duration::from_secs(60)).await;
    assert_eq!(web_running(&cp), 6, "the web pods run on the new nodes");
}

/// Deleting the Cluster deletes every Machine at once: each Node is still cordoned and
/// drained through the Eviction API (pods get their graceful termination, budgets
/// hold), and the table empties: a budget that no node is left to satisfy does not
/// hold the deletion forever.
#[tokio::test]
async fn deleting_the_cluster_drains_every_node_and_finishes() {
    let mut cp = workers_with_pods(59, 5).await;
    let before = cp.workload.evictions_log().len();
    cp.delete(&cluster_key()).await.expect("delete the cluster");
    let mut seen = BTreeSet::new();
    let mut cordoned_before_terminated = true;
    run_checked(
        &mut cp,
        CONVERGE_WITHIN,
        |cp| (!cp.store.is_empty()).then(|| vec![format!("{} items left", cp.store.len())]),
        |cp| {
            for id in cp.ec2.terminated_by_request() {
                if seen.insert(id.clone())
                    && let Some(node) = cp
                        .workload
                        .nodes(cluster())
                        .into_iter()
                        .find(|n| n.provider_id.as_deref().is_some_and(|p| p.ends_with(&id)))
                {
                    cordoned_before_terminated &= node.unschedulable;
                }
            }
            assert!(
                cp.workload.pdb_violations().is_empty(),
                "a budget was broken: {:?}",
                cp.workload.pdb_violations()
            );
        },
    )
    .await;
    assert!(cordoned_before_terminated, "every Node was cordoned first");
    assert!(
        cp.workload.evictions_log().len() > before,
        "the pods were evicted, not just lost"
    );
    assert!(
        cp.ec2
            .instances()
            .iter()
            .all(|i| i.state == capstan_model::InstanceState::Terminated),
        "every instance terminated"
    );
}

/// The Machine `name`, being deleted and held where `reason` says, by the hook `owner`.
fn held_by(cp: &Embedded, name: &str, reason: &str, owner: &str) -> Machine {
    let held = deleting_machine(cp, name).expect("still there");
    let c = held
        .status
        .conditions
        .get(condition::DELETING)
        .expect("Deleting");
    assert_eq!(c.reason, reason);
    assert!(c.message.contains(owner), "{}", c.message);
    held
}

/// Hooks hold the deletion where they say, until their owners remove them: a pre-drain
/// hook before the cordon, a pre-terminate hook after the drain, before the instance
/// goes; each is named on the Deleting condition.
#[tokio::test]
async fn hooks_hold_the_deletion_until_their_owners_remove_them() {
    let mut cp = workers_with_pods(63, 5).await;
    let pre_drain = format!("{}backup", capstan_model::labels::PRE_DRAIN_HOOK_PREFIX);
    let pre_terminate = format!(
        "{}lb-deregister",
        capstan_model::labels::PRE_TERMINATE_HOOK_PREFIX
    );
    let victim = mark_victim(&cp, &[&pre_drain, &pre_terminate]).await;
    let id = victim.status.instance_id.clone().unwrap_or_default();
    let node = victim.status.node_ref.clone().expect("nodeRef").name;
    let evictions = cp.workload.evictions_log().len();
    cp.apply(&with_access(2, |_| {})).await.expect("scale down");
    run_for(&mut cp, Duration::from_secs(600)).await;

    let held = held_by(
        &cp,
        &victim.metadata.name,
        "WaitingForPreDrainHook",
        "backup",
    );
    assert!(
        !cp.workload
            .node(cluster(), &node)
            .expect("the Node")
            .unschedulable,
        "not cordoned while a pre-drain hook holds"
    );
    assert_eq!(cp.workload.evictions_log().len(), evictions);

    // The backup's owner lets go: the drain runs, then the pre-terminate hook holds.
    // Its desired item is gone: the owner removes the hook from the observed item.
    let key = Object::Machine(held.clone()).key();
    assert!(
        cp.remove_annotation(&key, &pre_drain)
            .await
            .expect("remove the hook")
    );
    run_for(&mut cp, Duration::from_secs(600)).await;
    held_by(
        &cp,
        &victim.metadata.name,
        "WaitingForPreTerminateHook",
        "lb-deregister",
    );
    assert!(cp.workload.evictions_log().len() > evictions, "drained");
    assert!(pods_needing_eviction(&cp, &id).is_empty());
    assert!(
        !cp.ec2.terminated_by_request().contains(&id),
        "not yet terminated"
    );

    assert!(
        cp.remove_annotation(&key, &pre_terminate)
            .await
            .expect("remove the hook")
    );
    assert!(
        !cp.remove_annotation(&key, &pre_terminate)
            .await
            .expect("again"),
        "gone already"
    );
    converge(&mut cp).await;
    assert!(deleting_machine(&cp, &victim.metadata.name).is_none());
    assert!(cp.ec2.terminated_by_request().contains(&id));
}
