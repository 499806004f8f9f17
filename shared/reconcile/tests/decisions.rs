//! The pure decisions, one situation at a time. Fixtures are built as stored items so
//! every test also goes through the item codec the runtime reads with.

use capstan_model::hash::spec_hash;
use capstan_model::item::{encode_desired, encode_observed};
use capstan_model::labels::{DELETE_MACHINE, TAG_INSTALLATION, TAG_MACHINE_UID};
use capstan_model::meta::{FINALIZER, condition};
use capstan_model::*;
use capstan_reconcile::machine::{LaunchOutcome, after_launch, record_instance_state};
use capstan_reconcile::{Action, Ctx, Tree, decide};

const SUBNETS: [&str; 3] = [
    "subnet-0a1b2c3d4e5f60001",
    "subnet-0a1b2c3d4e5f60002",
    "subnet-0a1b2c3d4e5f60003",
];

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_767_225_600 + secs).unwrap()
}

fn ctx(secs: i64) -> Ctx {
    Ctx {
        now: at(secs),
        entropy: 42 + secs as u128,
        installation: "test".into(),
    }
}

/// How an object is stored: both items (live), only the desired one (new), only the
/// observed one (being deleted).
#[derive(Clone, Copy)]
enum Stored {
    Live,
    New,
    Deleting,
}

fn tree(objects: &[(Object, Stored)]) -> Tree {
    let mut items = Vec::new();
    for (o, how) in objects {
        let hash = spec_hash(&o.spec_json());
        match how {
            Stored::Live => {
                items.push(encode_desired(o, 1));
                items.push(encode_observed(o, &hash, 1));
            }
            Stored::New => items.push(encode_desired(o, 1)),
            Stored::Deleting => items.push(encode_observed(o, &hash, 1)),
        }
    }
    Tree::from_items(&items)
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: "default".into(),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        creation_timestamp: Some(at(0)),
        finalizers: vec![FINALIZER.into()],
        ..Default::default()
    }
}

fn class() -> MachineClass {
    Resource {
        metadata: meta("workers"),
        spec: MachineClassSpec {
            cluster_name: "demo".into(),
            image_id: "ami-0abcdef1234567890".into(),
            instance_types: vec!["m7i.large".into(), "m6i.large".into()],
            subnets: SUBNETS.map(String::from).to_vec(),
            security_groups: vec!["sg-0123456789abcdef0".into()],
            ..Default::default()
        },
        status: Default::default(),
    }
}

fn owned_by(mut m: ObjectMeta, kind: Kind, owner: &str) -> ObjectMeta {
    m.owner_references = vec![OwnerReference {
        kind,
        name: owner.into(),
        uid: format!("uid-{owner}"),
        controller: true,
    }];
    m
}

fn machine(name: &str) -> Machine {
    let c = class();
    Resource {
        metadata: owned_by(meta(name), Kind::MachineSet, "ms"),
        spec: MachineSpec {
            cluster_name: "demo".into(),
            role: Role::Worker,
            version: "v1.31.2".into(),
            machine_class: "workers".into(),
            failure_domain: SUBNETS[0].into(),
            launch: capstan_reconcile::launch::launch_spec(&c.spec),
            additional_tags: Default::default(),
            taints: Vec::new(),
            deletion: Default::default(),
            ..Default::default()
        },
        status: Default::default(),
    }
}

fn launched(mut m: Machine, state: InstanceState) -> Machine {
    m.status.instance_id = Some(format!("i-{}", m.metadata.name));
    m.status.instance_state = Some(state);
    m.status.instance_state_time = Some(at(0));
    m.status.launch_requested_at = Some(at(0));
    m.status.phase = MachinePhase::Provisioned;
    m
}

fn key(o: &Object) -> ObjectKey {
    o.key()
}

fn observed_machine(plan: &capstan_reconcile::Plan) -> Option<&Machine> {
    plan.actions.iter().find_map(|a| match a {
        Action::PutObserved {
            object: Object::Machine(m),
            ..
        } => Some(m),
        _ => None,
    })
}

#[test]
fn a_new_machine_is_taken_in_and_launched_once_with_its_uid_as_token() {
    let mut m = machine("ms-w1");
    m.metadata.uid = None;
    let o = Object::Machine(m);
    let plan = decide(&key(&o), &tree(&[(o.clone(), Stored::New)]), &ctx(5));
    let [
        Action::PutObserved {
            object: Object::Machine(written),
            expect,
        },
        Action::Launch {
            request,
            observed_rv,
            recover,
            ..
        },
    ] = plan.actions.as_slice()
    else {
        panic!("expected status write then launch: {plan:#?}");
    };
    assert_eq!(*expect, Expect::Absent);
    assert_eq!(*observed_rv, 1);
    assert!(!recover);
    assert_eq!(
        written.status.phase,
        MachinePhase::Provisioning,
        "launch recorded as requested before it is made"
    );
    let uid = written.metadata.uid.clone().expect("uid assigned");
    assert_eq!(request.client_token, uid);
    assert_eq!(request.tags[TAG_MACHINE_UID], uid);
    assert_eq!(request.tags[TAG_INSTALLATION], "test");
    assert_eq!(request.instance_type, "m7i.large");
    assert!(
        request.metadata_options.http_tokens == HttpTokens::Required
            && request.root_volume.encrypted
    );
}

#[test]
fn a_launch_requested_but_never_recorded_is_looked_up_before_launching_again() {
    let mut m = machine("ms-w1");
    m.status.phase = MachinePhase::Provisioning;
    m.status.launch_requested_at = Some(at(0));
    let o = Object::Machine(m);
    let plan = decide(&key(&o), &tree(&[(o.clone(), Stored::Live)]), &ctx(60));
    assert!(
        matches!(plan.actions.as_slice(), [Action::FindInstance { .. }]),
        "never launched blind: {plan:#?}"
    );
    // Nothing found after DescribeInstances' grace since the latest call: launch again.
    let Object::Machine(m) = o else {
        unreachable!()
    };
    let cleared = capstan_reconcile::machine::record_found(&m, None, at(121));
    assert_eq!(cleared.status.launch_requested_at, None);
    let o = Object::Machine(cleared);
    let plan = decide(&key(&o), &tree(&[(o, Stored::Live)]), &ctx(121));
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::Launch { recover: false, .. })),
        "{plan:#?}"
    );
}

#[test]
fn machine_phase_follows_the_instance_state() {
    for (state, phase, ready) in [
        (InstanceState::Pending, MachinePhase::Provisioned, false),
        (InstanceState::Running, MachinePhase::Running, true),
        (InstanceState::Stopped, MachinePhase::Failed, false),
        (InstanceState::Terminated, MachinePhase::Failed, false),
    ] {
        let o = Object::Machine(launched(machine("ms-w1"), state));
        let plan = decide(&key(&o), &tree(&[(o, Stored::Live)]), &ctx(10));
        let m = observed_machine(&plan).expect("status written");
        assert_eq!(m.status.phase, phase, "{state:?}");
        assert_eq!(
            m.status.conditions.is_true(condition::READY),
            ready,
            "{state:?}"
        );
        assert!(
            !plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::Launch { .. } | Action::Terminate { .. })),
            "{state:?}: no EC2 call"
        );
    }
}

#[test]
fn a_deleted_machine_keeps_its_finalizer_until_its_instance_is_terminated() {
    let o = Object::Machine(launched(machine("ms-w1"), InstanceState::Running));
    let plan = decide(&key(&o), &tree(&[(o.clone(), Stored::Deleting)]), &ctx(10));
    assert!(
        plan.actions.iter().any(
            |a| matches!(a, Action::Terminate { instance_id, .. } if instance_id == "i-ms-w1")
        )
    );
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::DeleteObserved { .. }))
    );
    assert!(
        plan.requeue_after.is_some(),
        "looks again in case the terminated event is lost"
    );

    let o = Object::Machine(launched(machine("ms-w1"), InstanceState::Terminated));
    let plan = decide(&key(&o), &tree(&[(o, Stored::Deleting)]), &ctx(10));
    assert!(
        matches!(plan.actions.as_slice(), [Action::DeleteObserved { .. }]),
        "{plan:#?}"
    );
}

#[test]
fn a_final_launch_error_fails_the_machine_and_a_retryable_one_backs_off() {
    let m = machine("ms-w1");
    let failed = after_launch(
        &m,
        LaunchOutcome::Final {
            code: "InvalidAMIID.NotFound".into(),
            message: "no such image".into(),
        },
        at(1),
    );
    assert_eq!(failed.status.phase, MachinePhase::Failed);
    assert_eq!(
        failed.status.failure_reason.as_deref(),
        Some("InvalidAMIID.NotFound")
    );
    let o = Object::Machine(failed);
    let plan = decide(&key(&o), &tree(&[(o, Stored::Live)]), &ctx(100));
    assert!(!launches(&plan), "no hot retry of a final error");

    let waiting = after_launch(
        &m,
        LaunchOutcome::Retryable {
            code: "InsufficientInstanceCapacity".into(),
            message: "none".into(),
        },
        at(1),
    );
    assert_eq!(waiting.status.phase, MachinePhase::Pending);
    assert_eq!(waiting.status.retry_after, Some(at(11)));
    let o = Object::Machine(waiting);
    let plan = decide(&key(&o), &tree(&[(o.clone(), Stored::Live)]), &ctx(5));
    assert!(!launches(&plan));
    assert_eq!(plan.requeue_after, Some(std::time::Duration::from_secs(6)));
    let plan = decide(&key(&o), &tree(&[(o, Stored::Live)]), &ctx(11));
    assert!(launches(&plan));
}

#[test]
fn throttled_launches_come_back_spread_out_not_at_one_instant() {
    let throttled = || LaunchOutcome::Throttled {
        code: "RequestLimitExceeded".into(),
        message: "Request limit exceeded.".into(),
    };
    let waits: Vec<i64> = (0..200)
        .map(|n| {
            let mut m = machine(&format!("web-{n}"));
            m.metadata.uid = Some(format!("uid-{n}"));
            let after = after_launch(&m, throttled(), at(0));
            assert_eq!(after.status.phase, MachinePhase::Pending);
            assert_eq!(after.status.launch_attempts, 1);
            let retry = after.status.retry_after.expect("a retry time");
            retry.duration_since(at(0)).as_millis() as i64
        })
        .collect();
    // Within the first backoff's second half (5-10 s), spread out over it.
    assert!(
        waits.iter().all(|w| (5_000..10_000).contains(w)),
        "{waits:?}"
    );
    let distinct: std::collections::BTreeSet<i64> = waits.iter().map(|w| w / 500).collect();
    assert_eq!(
        distinct.len(),
        10,
        "every half second of the window is used"
    );
    // Pure: the same Machine and attempt always wait the same.
    let mut m = machine("ms-web0");
    m.metadata.uid = Some("uid-0".into());
    assert_eq!(
        after_launch(&m, throttled(), at(0)).status.retry_after,
        Some(at(0) + std::time::Duration::from_millis(waits[0] as u64))
    );
    // Later attempts wait longer, up to the cap.
    m.status.launch_attempts = 30;
    let capped = after_launch(&m, throttled(), at(0))
        .status
        .retry_after
        .unwrap();
    let capped = capped.duration_since(at(0)).as_secs();
    assert!((150..=300).contains(&capped), "{capped}");
}

#[test]
fn instance_state_reports_never_go_back_in_time_or_past_terminated() {
    let m = launched(machine("ms-w1"), InstanceState::Running);
    assert!(
        record_instance_state(&m, "i-ms-w1", InstanceState::Pending, at(-5)).is_none(),
        "older report ignored"
    );
    assert!(
        record_instance_state(&m, "i-other", InstanceState::Stopped, at(5)).is_none(),
        "another instance"
    );
    let t =
        record_instance_state(&m, "i-ms-w1", InstanceState::Terminated, at(5)).expect("recorded");
    assert!(
        record_instance_state(&t, "i-ms-w1", InstanceState::Running, at(9)).is_none(),
        "terminated is final"
    );
}

fn machine_set(replicas: i32) -> MachineSet {
    let mut ms = MachineSet {
        metadata: meta("ms"),
        ..Default::default()
    };
    ms.spec.cluster_name = "demo".into();
    ms.spec.replicas = replicas;
    ms.spec.template.spec.machine_class = "workers".into();
    ms.spec.template.spec.version = "v1.31.2".into();
    ms
}

#[test]
fn scale_up_spreads_new_machines_over_the_least_populated_subnets() {
    let mut existing = launched(machine("ms-aaaaa"), InstanceState::Running);
    existing.spec.failure_domain = SUBNETS[0].into();
    let ms = Object::MachineSet(machine_set(4));
    let t = tree(&[
        (ms.clone(), Stored::Live),
        (Object::MachineClass(class()), Stored::Live),
        (Object::Machine(existing), Stored::Live),
    ]);
    let plan = decide(&key(&ms), &t, &ctx(1));
    let mut domains: Vec<String> = created(&plan)
        .into_iter()
        .map(|m| m.spec.failure_domain)
        .collect();
    domains.sort();
    assert_eq!(
        domains,
        SUBNETS.map(String::from).to_vec(),
        "one new Machine per subnet keeps 4 Machines within one of balanced"
    );
}

/// The Machines a set creates, as the plan writes them.
/// Whether the plan launches an instance.
fn launches(plan: &capstan_reconcile::Plan) -> bool {
    plan.actions
        .iter()
        .any(|a| matches!(a, Action::Launch { .. }))
}

fn created(plan: &capstan_reconcile::Plan) -> Vec<Machine> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::PutDesired {
                object: Object::Machine(m),
                expect: Expect::Absent,
            } => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_sets_machines_name_their_launch_spec_and_launch_from_the_class_as_it_was() {
    let ms = Object::MachineSet(machine_set(2));
    let t = tree(&[
        (ms.clone(), Stored::Live),
        (Object::MachineClass(class()), Stored::Live),
    ]);
    let made = created(&decide(&key(&ms), &t, &ctx(1)));
    assert_eq!(made.len(), 2);
    let m = made[0].clone();
    assert!(m.spec.launch_ref.is_some() && m.spec.launch.is_unset());
    let item = encode_desired(&Object::Machine(m.clone()), 1);
    let Some(AttrValue::M(spec)) = item.get("spec") else {
        panic!("a spec: {item:?}");
    };
    assert!(
        !spec.contains_key("launch") && spec.contains_key("launchRef"),
        "the item names the spec instead of copying it: {spec:?}"
    );

    // Read back with its class: the spec the class resolves to, and a launch from it.
    let o = Object::Machine(m);
    let with_class = |c: MachineClass| {
        tree(&[
            (o.clone(), Stored::New),
            (Object::MachineClass(c), Stored::Live),
        ])
    };
    let t = with_class(class());
    let read = t
        .get(Kind::Machine, o.name())
        .and_then(|s| s.object.as_machine())
        .expect("the Machine");
    assert_eq!(
        read.spec.launch(),
        Some(&capstan_reconcile::launch::launch_spec(&class().spec))
    );
    let plan = decide(&key(&o), &t, &ctx(5));
    let Some(Action::Launch { request, .. }) = plan.actions.last() else {
        panic!("a launch: {plan:#?}");
    };
    assert_eq!(request.image_id, "ami-0abcdef1234567890");

    // The class edited since: the Machine is not launched from a spec it was not made
    // with, and says why.
    let mut edited = class();
    edited.spec.image_id = "ami-0fedcba9876543210".into();
    let plan = decide(&key(&o), &with_class(edited), &ctx(5));
    assert!(!launches(&plan), "{plan:#?}");
    let waiting = observed_machine(&plan).expect("the Machine says why");
    assert_eq!(
        waiting
            .status
            .conditions
            .get(condition::READY)
            .map(|c| c.reason.as_str()),
        Some("LaunchSpecUnresolved")
    );
    assert_ne!(waiting.status.phase, MachinePhase::Failed);
}

#[test]
fn scale_down_takes_annotated_then_failed_then_unready_machines_first() {
    let mut annotated = launched(machine("ms-aaaaa"), InstanceState::Running);
    annotated.status.phase = MachinePhase::Running;
    annotated
        .metadata
        .annotations
        .insert(DELETE_MACHINE.into(), "true".into());
    let mut failed = launched(machine("ms-bbbbb"), InstanceState::Stopped);
    failed.status.phase = MachinePhase::Failed;
    let pending = launched(machine("ms-ccccc"), InstanceState::Pending);
    let mut healthy = launched(machine("ms-ddddd"), InstanceState::Running);
    healthy.status.phase = MachinePhase::Running;
    let ms = Object::MachineSet(machine_set(1));
    let mut objects = vec![
        (ms.clone(), Stored::Live),
        (Object::MachineClass(class()), Stored::Live),
    ];
    for m in [annotated, failed, pending, healthy] {
        objects.push((Object::Machine(m), Stored::Live));
    }
    let plan = decide(&key(&ms), &tree(&objects), &ctx(1));
    let mut deleted: Vec<String> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteDesired { key, .. } => Some(key.name.clone()),
            _ => None,
        })
        .collect();
    deleted.sort();
    assert_eq!(deleted, vec!["ms-aaaaa", "ms-bbbbb", "ms-ccccc"]);
}

fn cluster() -> Cluster {
    let mut c = Cluster {
        metadata: meta("demo"),
        ..Default::default()
    };
    c.spec.version = "v1.31.2".into();
    c.spec.control_plane.machine_class = "workers".into();
    c.spec.workers = vec![WorkerPool {
        name: "pool".into(),
        machine_class: "workers".into(),
        replicas: Some(2),
        ..Default::default()
    }];
    c
}

#[test]
fn a_cluster_expands_into_a_control_plane_and_one_deployment_per_pool() {
    let c = Object::Cluster(cluster());
    let plan = decide(
        &key(&c),
        &tree(&[
            (c.clone(), Stored::Live),
            (Object::MachineClass(class()), Stored::Live),
        ]),
        &ctx(1),
    );
    let created: Vec<(String, i32, Role)> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::PutDesired {
                object: Object::MachineDeployment(md),
                expect: Expect::Absent,
            } => Some((
                md.metadata.name.clone(),
                md.spec.replicas,
                md.spec.template.spec.role,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        created,
        vec![
            ("demo-control-plane".to_string(), 3, Role::ControlPlane),
            ("demo-pool".to_string(), 2, Role::Worker)
        ]
    );
}

#[test]
fn a_deleted_cluster_cascades_and_stays_until_its_partition_is_empty() {
    let c = Object::Cluster(cluster());
    let mut md = MachineDeployment {
        metadata: owned_by(meta("demo-pool"), Kind::Cluster, "demo"),
        ..Default::default()
    };
    md.spec.cluster_name = "demo".into();
    let md = Object::MachineDeployment(md);
    let plan = decide(
        &key(&c),
        &tree(&[
            (c.clone(), Stored::Deleting),
            (md.clone(), Stored::Live),
            (Object::MachineClass(class()), Stored::Live),
        ]),
        &ctx(1),
    );
    let deleted: Vec<Kind> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteDesired { key, .. } => Some(key.kind),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, vec![Kind::MachineClass, Kind::MachineDeployment]);
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::DeleteObserved { .. }))
    );

    let plan = decide(&key(&c), &tree(&[(c.clone(), Stored::Deleting)]), &ctx(2));
    assert!(
        matches!(plan.actions.as_slice(), [Action::DeleteObserved { .. }]),
        "{plan:#?}"
    );
}

#[test]
fn a_paused_cluster_reports_paused_and_does_nothing_else() {
    let mut c = cluster();
    c.spec.paused = true;
    let c = Object::Cluster(c);
    let ms = Object::MachineSet(machine_set(3));
    let t = tree(&[
        (c, Stored::Live),
        (ms.clone(), Stored::Live),
        (Object::MachineClass(class()), Stored::Live),
    ]);
    let plan = decide(&key(&ms), &t, &ctx(1));
    let [Action::PutObserved { object, .. }] = plan.actions.as_slice() else {
        panic!("only a status write: {plan:#?}");
    };
    assert!(object.conditions().is_true(condition::PAUSED));
}

#[test]
fn an_unreadable_spec_is_reported_on_the_object_and_nothing_is_done() {
    let mut item = encode_desired(&Object::MachineSet(machine_set(3)), 1);
    item.insert(
        "spec".into(),
        AttrValue::M([("replicas".to_string(), AttrValue::S("three".into()))].into()),
    );
    let t = Tree::from_items(&[item]);
    let k = ObjectKey::new("default", "demo", Kind::MachineSet, "ms");
    let plan = decide(&k, &t, &ctx(1));
    let [
        Action::PutObserved {
            object,
            expect: Expect::Absent,
        },
    ] = plan.actions.as_slice()
    else {
        panic!("only a status write: {plan:#?}");
    };
    let c = object
        .conditions()
        .get(condition::SPEC_VALID)
        .expect("SpecValid");
    assert_eq!(c.status, ConditionStatus::False);
    assert!(c.message.contains("spec.replicas"), "{}", c.message);
}

#[test]
fn a_machine_with_eks_bootstrap_launches_through_its_clusters_access_or_waits_for_it() {
    let mut m = machine("ms-w1");
    m.spec.launch.bootstrap = Some(Bootstrap {
        eks: Some(EksBootstrap {}),
    });
    let o = Object::Machine(m);

    // No Cluster with spec.access.eks: nothing is launched, and the Machine says why.
    let plan = decide(&key(&o), &tree(&[(o.clone(), Stored::New)]), &ctx(5));
    assert!(!launches(&plan), "{plan:#?}");
    let waiting = observed_machine(&plan).expect("status written");
    assert_eq!(waiting.status.phase, MachinePhase::Pending);
    let ready = waiting
        .status
        .conditions
        .get(condition::READY)
        .expect("Ready");
    assert_eq!(ready.reason, "BootstrapNeedsAccess");
    assert!(
        ready.message.contains("spec.access.eks"),
        "{}",
        ready.message
    );
    assert!(plan.requeue_after.is_some());

    // With the Cluster's EKS access: launched, with the access to render the user data.
    let mut c = cluster();
    c.spec.access = Some(ClusterAccess {
        eks: Some(EksAccess {
            cluster_name: "prod-eks".into(),
            region: None,
        }),
        kubeconfig: None,
    });
    let c = Object::Cluster(c);
    let plan = decide(
        &key(&o),
        &tree(&[(c, Stored::Live), (o.clone(), Stored::New)]),
        &ctx(5),
    );
    let launch = plan.actions.iter().find_map(|a| match a {
        Action::Launch { bootstrap, .. } => Some(bootstrap),
        _ => None,
    });
    let Some(Some(access)) = launch else {
        panic!("launched with the cluster's access: {plan:#?}");
    };
    assert_eq!(
        access.eks.as_ref().map(|e| e.cluster_name.as_str()),
        Some("prod-eks")
    );
}

/// A termination learnt late (its event lost, the sweep repairing it long after) still
/// leaves the Machine its whole node deletion timeout to delete the Node: the timeout
/// counts from the first pass that tried, not from when EC2 says the instance went.
#[test]
fn a_termination_learnt_late_still_deletes_the_node_before_letting_go() {
    let access = ClusterAccess {
        eks: Some(EksAccess {
            cluster_name: "demo".into(),
            region: None,
        }),
        kubeconfig: None,
    };
    let mut m = Machine::default();
    m.metadata.name = "web-1".into();
    m.status.phase = MachinePhase::Deleting;
    m.status.instance_id = Some("i-0123456789abcdef0".into());
    m.status.instance_state = Some(InstanceState::Terminated);
    m.status.instance_state_time = Some(ctx(0).now);
    let later = ctx(3600);
    let d = capstan_reconcile::machine::decide(&mut m, Some(&access), &later, true, false);
    assert!(
        matches!(
            d.external,
            Some(capstan_reconcile::lifecycle::External::DeleteNode { .. })
        ),
        "{d:?}"
    );
    assert!(!d.remove);
    let deletion = m.status.deletion.clone().expect("recorded");
    assert_eq!(deletion.node_deletion_start_time, Some(later.now));
    // Still trying within the timeout; let go after it.
    let d =
        capstan_reconcile::machine::decide(&mut m, Some(&access), &ctx(3600 + 119), true, false);
    assert!(!d.remove);
    let d =
        capstan_reconcile::machine::decide(&mut m, Some(&access), &ctx(3600 + 120), true, false);
    assert!(d.remove, "{d:?}");
}
