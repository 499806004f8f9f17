//! Cluster API semantics, end to end in the embedded control plane: rollouts, health
//! checks, capacity fallback, final launch errors, spot interruptions, a paused
//! cluster, autoscaling bounds and in-place propagation. Each test asserts what a user
//! would see: Machines, instances, conditions.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_embedded::Embedded;
use capstan_model::labels::{AUTOSCALER_MAX_SIZE, AUTOSCALER_MIN_SIZE, TAG_MACHINE};
use capstan_model::meta::condition;
use capstan_model::{
    Autoscaling, ConditionStatus, InstanceState, IntOrPercent, Kind, MachinePhase, MarketType,
    Object, ObjectKey, PoolHealthCheck, Rollout, RolloutStrategyType,
};
use capstan_tests::*;

const NEW_AMI: &str = "ami-0fedcba9876543210";
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

fn key(kind: Kind, name: &str) -> ObjectKey {
    ObjectKey::new("default", "demo", kind, name)
}

/// The quickstart with `workers` replicas in the pool and `edit` applied to the pool.
fn with_pool(replicas: i32, edit: impl Fn(&mut capstan_model::WorkerPool)) -> Vec<Object> {
    edited(&quickstart(), |o| {
        if let Object::Cluster(c) = o {
            c.spec.workers[0].replicas = Some(replicas);
            edit(&mut c.spec.workers[0]);
        }
    })
}

/// `objects` with the worker class changed by `edit`.
fn with_worker_class(
    objects: &[Object],
    edit: impl Fn(&mut capstan_model::MachineClassSpec),
) -> Vec<Object> {
    edited(objects, |o| {
        if let Object::MachineClass(c) = o
            && c.metadata.name == "demo-workers"
        {
            edit(&mut c.spec);
        }
    })
}

fn is_ready(m: &capstan_model::Machine) -> bool {
    m.status.conditions.is_true(condition::READY)
}

/// Worker instances EC2 is running or starting (what the account pays for).
fn live_worker_instances(cp: &Embedded) -> usize {
    cp.ec2
        .instances()
        .iter()
        .filter(|i| matches!(i.state, InstanceState::Pending | InstanceState::Running))
        .filter(|i| {
            i.tags
                .get(TAG_MACHINE)
                .is_some_and(|m| m.starts_with("demo-workers-"))
        })
        .count()
}

fn health_check() -> PoolHealthCheck {
    PoolHealthCheck::default()
}

#[tokio::test]
async fn a_class_ami_change_rolls_five_machines_never_below_five_available_nor_above_six() {
    let mut cp = control_plane(21, |c| c.ec2.boot_delay = Duration::from_secs(20));
    let objects = with_pool(5, |_| {});
    cp.apply(&objects).await.expect("apply");
    converge(&mut cp).await;
    let before: Vec<String> = pool_machines(&cp, "workers")
        .iter()
        .map(|m| m.metadata.name.clone())
        .collect();
    assert_eq!(before.len(), 5);

    cp.apply(&with_worker_class(&objects, |c| {
        c.image_id = NEW_AMI.into()
    }))
    .await
    .expect("apply the new image");
    let (mut most, mut fewest_available, mut most_instances) = (0, usize::MAX, 0);
    run_checked(
        &mut cp,
        CONVERGE_WITHIN,
        |cp| {
            let ms = pool_machines(cp, "workers");
            let done = ms.len() == 5
                && ms
                    .iter()
                    .all(|m| m.spec.launch().is_some_and(|l| l.image_id == NEW_AMI) && is_ready(m))
                && cp.not_converged().is_empty();
            (!done).then(|| vec!["rolling".to_string()])
        },
        |cp| {
            let ms = pool_machines(cp, "workers");
            most = most.max(ms.len());
            fewest_available = fewest_available.min(ms.iter().filter(|m| is_ready(m)).count());
            most_instances = most_instances.max(live_worker_instances(cp));
        },
    )
    .await;
    assert!(most <= 6, "at most 5 + maxSurge 1 Machines, saw {most}");
    assert!(
        most_instances <= 6,
        "at most 6 worker instances, saw {most_instances}"
    );
    assert!(
        fewest_available >= 5,
        "never fewer than 5 available (maxUnavailable 0), saw {fewest_available}"
    );
    let after = pool_machines(&cp, "workers");
    assert!(after.iter().all(|m| !before.contains(&m.metadata.name)));
    assert_eq!(cp.ec2.launched_total(), 3 + 5 + 5);
    // The old MachineSet was emptied and pruned; the deployment says it is up to date.
    let tree = cp.tree("default", "demo");
    let sets: Vec<_> = tree
        .owned_by(Kind::MachineSet, Kind::MachineDeployment, "demo-workers")
        .collect();
    assert_eq!(sets.len(), 1, "{}", cp.describe());
    let md = tree
        .get(Kind::MachineDeployment, "demo-workers")
        .and_then(|s| s.object.as_machine_deployment())
        .expect("deployment");
    assert_eq!(md.status.up_to_date_replicas, 5);
    assert_eq!(md.status.available_replicas, 5);
    assert!(md.status.conditions.is_true(condition::UP_TO_DATE));
    assert!(!md.status.conditions.is_true(condition::ROLLING_OUT));
}

#[tokio::test]
async fn on_delete_rolls_nothing_until_a_machine_is_deleted() {
    let mut cp = control_plane(22, |_| {});
    let objects = with_pool(3, |p| {
        let mut rollout = Rollout::default();
        rollout.strategy.strategy_type = RolloutStrategyType::OnDelete;
        p.rollout = Some(rollout);
    });
    cp.apply(&objects).await.expect("apply");
    converge(&mut cp).await;
    cp.apply(&with_worker_class(&objects, |c| {
        c.image_id = NEW_AMI.into()
    }))
    .await
    .expect("new image");
    run_for(&mut cp, Duration::from_secs(20 * 60)).await;
    let workers = pool_machines(&cp, "workers");
    assert_eq!(workers.len(), 3);
    assert!(
        workers
            .iter()
            .all(|m| m.spec.launch().is_none_or(|l| l.image_id != NEW_AMI)),
        "OnDelete rolls nothing by itself"
    );
    assert_eq!(cp.ec2.launched_total(), 6);

    let victim = workers[0].metadata.name.clone();
    assert!(
        cp.delete(&key(Kind::Machine, &victim))
            .await
            .expect("delete")
    );
    run_for(&mut cp, Duration::from_secs(10 * 60)).await;
    let workers = pool_machines(&cp, "workers");
    assert_eq!(workers.len(), 3, "{}", cp.describe());
    let new: Vec<_> = workers
        .iter()
        .filter(|m| m.spec.launch().is_some_and(|l| l.image_id == NEW_AMI))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "the deleted Machine came back from the new template"
    );
    assert!(workers.iter().all(|m| m.metadata.name != victim));
    assert!(workers.iter().all(is_ready));
    assert_eq!(cp.ec2.launched_total(), 7);
}

#[tokio::test]
async fn a_stopped_instance_is_remediated() {
    let mut cp = control_plane(23, |_| {});
    cp.apply(&with_pool(3, |p| p.health_check = Some(health_check())))
        .await
        .expect("apply");
    converge(&mut cp).await;
    let victim = pool_machines(&cp, "workers").remove(0);
    let id = victim.status.instance_id.clone().expect("instance");
    assert!(cp.ec2.stop_instance(&id));
    converge(&mut cp).await;

    let workers = pool_machines(&cp, "workers");
    assert_eq!(workers.len(), 3);
    assert!(
        workers
            .iter()
            .all(|m| m.metadata.name != victim.metadata.name)
    );
    assert!(
        workers
            .iter()
            .all(|m| m.status.phase == MachinePhase::Running)
    );
    assert_eq!(cp.ec2.terminated_by_request(), vec![id.clone()]);
    assert_eq!(
        cp.ec2.instance(&id).map(|i| i.state),
        Some(InstanceState::Terminated)
    );
}

#[tokio::test]
async fn four_of_five_unhealthy_past_40_percent_remediates_none_and_says_so() {
    let mut cp = control_plane(24, |_| {});
    cp.apply(&with_pool(5, |p| {
        let mut hc = health_check();
        hc.remediation.trigger_if.unhealthy_less_than_or_equal_to = Some(IntOrPercent::Percent(40));
        p.health_check = Some(hc);
    }))
    .await
    .expect("apply");
    converge(&mut cp).await;
    let stopped: Vec<String> = pool_machines(&cp, "workers")
        .iter()
        .take(4)
        .map(|m| m.status.instance_id.clone().expect("instance"))
        .collect();
    for id in &stopped {
        assert!(cp.ec2.stop_instance(id));
    }
    run_for(&mut cp, Duration::from_secs(20 * 60)).await;

    assert!(
        cp.ec2.terminated_by_request().is_empty(),
        "nothing remediated"
    );
    assert_eq!(pool_machines(&cp, "workers").len(), 5);
    let hc = cp
        .get(&key(Kind::MachineHealthCheck, "demo-workers"))
        .await
        .expect("read")
        .and_then(|o| o.as_health_check().cloned())
        .expect("health check");
    let allowed = hc
        .status
        .conditions
        .get(condition::REMEDIATION_ALLOWED)
        .expect("RemediationAllowed");
    assert_eq!(allowed.status, ConditionStatus::False);
    assert_eq!(allowed.reason, "TooManyUnhealthy");
    assert!(allowed.message.contains("4 of 5"), "{}", allowed.message);
    assert_eq!(hc.status.current_healthy, 1);
    assert_eq!(hc.status.unhealthy_machines.len(), 4);
}

#[tokio::test]
async fn insufficient_capacity_on_the_first_type_lands_on_the_second() {
    let mut cp = control_plane(25, |_| {});
    for zone in ZONES {
        cp.ec2.set_capacity("m7i.xlarge", zone, false);
    }
    cp.apply(&quickstart()).await.expect("apply");
    converge(&mut cp).await;
    let workers = pool_machines(&cp, "workers");
    assert_eq!(workers.len(), 3);
    for m in &workers {
        assert_eq!(m.status.instance_type.as_deref(), Some("m6i.xlarge"));
        let instance = cp
            .ec2
            .instance(m.status.instance_id.as_deref().expect("id"))
            .expect("instance");
        assert_eq!(instance.instance_type, "m6i.xlarge");
        assert_eq!(instance.subnet_id, m.spec.failure_domain, "same subnet");
    }
    assert_eq!(cp.ec2.launched_total(), 6);
}

#[tokio::test]
async fn a_zone_without_any_capacity_falls_back_to_the_next_subnet_and_balance_counts_it() {
    let mut cp = control_plane(26, |_| {});
    for t in ["m7i.xlarge", "m6i.xlarge", "m5.xlarge"] {
        cp.ec2.set_capacity(t, "us-east-1a", false);
    }
    cp.apply(&quickstart()).await.expect("apply");
    converge(&mut cp).await;
    let workers = pool_machines(&cp, "workers");
    assert_eq!(workers.len(), 3);
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    for m in &workers {
        let instance = cp
            .ec2
            .instance(m.status.instance_id.as_deref().expect("id"))
            .expect("instance");
        assert_ne!(instance.availability_zone, "us-east-1a");
        assert_eq!(
            m.status.failure_domain.as_deref(),
            Some(instance.subnet_id.as_str())
        );
        *landed.entry(instance.subnet_id).or_default() += 1;
    }
    assert_eq!(landed.values().sum::<usize>(), 3);
}

#[tokio::test]
async fn an_invalid_ami_fails_the_machine_with_the_reason_and_never_retries_hot() {
    let mut cp = control_plane(27, |_| {});
    cp.apply(&with_worker_class(&quickstart(), |c| {
        c.image_id = "ami-00000000000000bad".into()
    }))
    .await
    .expect("apply");
    run_for(&mut cp, Duration::from_secs(5 * 60)).await;
    let calls = cp.ec2.calls().run_instances;
    let workers = pool_machines(&cp, "workers");
    assert_eq!(workers.len(), 3);
    for m in &workers {
        assert_eq!(m.status.phase, MachinePhase::Failed);
        assert_eq!(
            m.status.failure_reason.as_deref(),
            Some("InvalidAMIID.NotFound")
        );
        assert!(
            m.status
                .failure_message
                .as_deref()
                .is_some_and(|msg| msg.contains("ami-00000000000000bad")),
            "{:?}",
            m.status.failure_message
        );
        let ready = m.status.conditions.get(condition::READY).expect("Ready");
        assert_eq!(ready.reason, "InvalidAMIID.NotFound");
    }
    run_for(&mut cp, Duration::from_secs(60 * 60)).await;
    assert_eq!(
        cp.ec2.calls().run_instances,
        calls,
        "no launch is retried in the hour after a final error"
    );
    assert_eq!(calls, 6, "three control plane launches and one per worker");
}

#[tokio::test]
async fn a_spot_interruption_is_replaced_before_the_old_instance_goes() {
    let mut cp = control_plane(28, |c| c.ec2.boot_delay = Duration::from_secs(30));
    cp.apply(&with_worker_class(&quickstart(), |c| {
        c.market.market_type = MarketType::Spot
    }))
    .await
    .expect("apply");
    converge(&mut cp).await;
    let workers = pool_machines(&cp, "workers");
    assert!(
        workers.iter().all(|m| cp
            .ec2
            .is_spot(m.status.instance_id.as_deref().unwrap_or_default())),
        "a spot class launches spot instances"
    );
    let victim = workers[0].clone();
    let id = victim.status.instance_id.clone().expect("id");
    assert!(cp.ec2.interrupt_spot(&id));

    let mut ready_when_it_went: Option<usize> = None;
    run_checked(
        &mut cp,
        CONVERGE_WITHIN,
        |cp| {
            let ws = pool_machines(cp, "workers");
            let done = ws.len() == 3
                && ws.iter().all(|m| m.metadata.name != victim.metadata.name)
                && cp.not_converged().is_empty()
                && cp
                    .ec2
                    .instance(&id)
                    .is_some_and(|i| i.state == InstanceState::Terminated);
            (!done).then(|| vec!["replacing".to_string()])
        },
        |cp| {
            let state = cp.ec2.instance(&id).map(|i| i.state);
            if ready_when_it_went.is_none() && state != Some(InstanceState::Running) {
                let others = pool_machines(cp, "workers")
                    .into_iter()
                    .filter(|m| m.metadata.name != victim.metadata.name && is_ready(m))
                    .count();
                ready_when_it_went = Some(others);
            }
        },
    )
    .await;
    assert_eq!(
        ready_when_it_went,
        Some(3),
        "three other Machines were Ready when the interrupted instance went"
    );
    assert!(
        cp.ec2.terminated_by_request().contains(&id),
        "Capstan let it go first"
    );
    assert_eq!(cp.ec2.launched_total(), 7);
}

#[tokio::test]
async fn a_paused_cluster_does_nothing_and_says_so() {
    let mut cp = control_plane(29, |_| {});
    let paused = edited(&quickstart(), |o| {
        if let Object::Cluster(c) = o {
            c.spec.paused = true;
        }
    });
    cp.apply(&paused).await.expect("apply");
    run_for(&mut cp, Duration::from_secs(10 * 60)).await;
    assert_eq!(cp.ec2.calls().run_instances, 0);
    assert!(machines(&cp).is_empty());
    let cluster = cp
        .get(&cluster_key())
        .await
        .expect("read")
        .expect("cluster");
    assert!(cluster.conditions().is_true(condition::PAUSED));

    cp.apply(&quickstart()).await.expect("unpause");
    converge(&mut cp).await;
    assert_eq!(machines(&cp).len(), 6);

    // Paused again with a bigger pool: nothing scales, nothing is replaced.
    cp.apply(&edited(&paused, |o| {
        if let Object::Cluster(c) = o {
            c.spec.workers[0].replicas = Some(5);
        }
    }))
    .await
    .expect("pause and scale");
    let id = pool_machines(&cp, "workers")[0]
        .status
        .instance_id
        .clone()
        .expect("id");
    cp.ec2.terminate_externally(&id);
    run_for(&mut cp, Duration::from_secs(10 * 60)).await;
    assert_eq!(cp.ec2.launched_total(), 6);
    assert_eq!(pool_machines(&cp, "workers").len(), 3);
}

#[tokio::test]
async fn autoscaling_bounds_are_published_for_the_cluster_autoscaler() {
    let mut cp = control_plane(30, |_| {});
    let objects = edited(&quickstart(), |o| {
        if let Object::Cluster(c) = o {
            c.spec.workers[0].replicas = None;
            c.spec.workers[0].autoscaling = Some(Autoscaling { min: 2, max: 6 });
        }
    });
    cp.apply(&objects).await.expect("apply");
    converge(&mut cp).await;
    let md = cp
        .get(&key(Kind::MachineDeployment, "demo-workers"))
        .await
        .expect("read")
        .and_then(|o| o.as_machine_deployment().cloned())
        .expect("deployment");
    assert_eq!(md.metadata.annotations[AUTOSCALER_MIN_SIZE], "2");
    assert_eq!(md.metadata.annotations[AUTOSCALER_MAX_SIZE], "6");
    assert_eq!(md.spec.replicas, 2);
    assert_eq!(pool_machines(&cp, "workers").len(), 2);
}

#[tokio::test]
async fn labels_annotations_and_tags_propagate_in_place_without_a_rollout() {
    let mut cp = control_plane(31, |_| {});
    cp.apply(&quickstart()).await.expect("apply");
    converge(&mut cp).await;
    let before: Vec<String> = machines(&cp)
        .iter()
        .map(|m| m.metadata.name.clone())
        .collect();

    let changed = edited(&quickstart(), |o| {
        if let Object::Cluster(c) = o {
            c.metadata.labels.insert("env".into(), "prod".into());
            c.metadata
                .annotations
                .insert("example.com/owner".into(), "team-a".into());
            c.spec
                .additional_tags
                .insert("cost-center".into(), "42".into());
            let pool = &mut c.spec.workers[0];
            pool.metadata.labels.insert("tier".into(), "web".into());
            pool.additional_tags.insert("app".into(), "shop".into());
        }
    });
    cp.apply(&changed).await.expect("apply labels");
    converge(&mut cp).await;

    let after = machines(&cp);
    assert_eq!(
        after
            .iter()
            .map(|m| m.metadata.name.clone())
            .collect::<Vec<_>>(),
        before,
        "no Machine was replaced"
    );
    assert_eq!(cp.ec2.launched_total(), 6);
    for m in &after {
        assert_eq!(
            m.metadata.labels.get("env").map(String::as_str),
            Some("prod")
        );
        assert_eq!(
            m.metadata
                .annotations
                .get("example.com/owner")
                .map(String::as_str),
            Some("team-a")
        );
        let tags = cp
            .ec2
            .instance(m.status.instance_id.as_deref().expect("id"))
            .expect("instance")
            .tags;
        assert_eq!(
            tags.get("cost-center").map(String::as_str),
            Some("42"),
            "{tags:?}"
        );
        let worker = m.metadata.labels["capstan.dev/pool"] == "workers";
        assert_eq!(m.metadata.labels.contains_key("tier"), worker);
        assert_eq!(tags.contains_key("app"), worker, "{tags:?}");
    }
}
