//! The DynamoDB item codec: every kind, with populated status, survives
//! `encode_desired` + `encode_observed` + `decode`; raw PutItems people write decode
//! with defaults; an observed item alone means "being deleted".

use std::collections::BTreeMap;

use capstan_model::hash::spec_hash;
use capstan_model::item::{self, AttrValue, DecodeError, Item};
use capstan_model::{
    Autoscaling, Cluster, ClusterPhase, ClusterSpec, ClusterStatus, ConditionStatus, Conditions,
    ControlPlaneTopology, DeploymentPhase, HealthCheckChecks, HealthCheckRemediation,
    InstanceState, IntOrPercent, LabelSelector, LaunchSpec, Machine, MachineAddress, MachineClass,
    MachineClassSpec, MachineClassStatus, MachineDeployment, MachineDeploymentSpec,
    MachineDeploymentStatus, MachineHealthCheck, MachineHealthCheckSpec, MachineHealthCheckStatus,
    MachinePhase, MachineSet, MachineSetSpec, MachineSetStatus, MachineSpec, MachineStatus,
    MachineTemplate, MachineTemplateSpec, Market, MarketType, Object, ObjectMeta, OwnerReference,
    Resource, Role, Timestamp, TriggerIf, UnhealthyCondition, WorkerPool,
};
use proptest::prelude::*;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + second).expect("a valid time")
}

fn conditions() -> Conditions {
    let mut c = Conditions::default();
    c.set_true("Ready", "Running", "instance i-0123 is running", at(10));
    c.set_false(
        "UpToDate",
        "TemplateChanged",
        "template hash differs",
        at(20),
    );
    c
}

/// Metadata as the control plane keeps it: everything set.
fn meta(name: &str, owner: Option<(capstan_model::Kind, &str)>) -> ObjectMeta {
    ObjectMeta {
        name: name.to_string(),
        namespace: "team-a".to_string(),
        labels: BTreeMap::from([("capstan.dev/cluster-name".to_string(), "demo".to_string())]),
        annotations: BTreeMap::from([("note".to_string(), "hello: world".to_string())]),
        uid: Some(format!("uid-{name}")),
        generation: Some(4),
        resource_version: None,
        creation_timestamp: Some(at(0)),
        deletion_timestamp: None,
        owner_references: owner
            .map(|(kind, owner)| {
                vec![OwnerReference {
                    kind,
                    name: owner.to_string(),
                    uid: format!("uid-{owner}"),
                    controller: true,
                }]
            })
            .into_iter()
            .flatten()
            .collect(),
        finalizers: vec!["capstan.dev/finalizer".to_string()],
    }
}

fn template() -> MachineTemplate {
    MachineTemplate {
        metadata: Default::default(),
        spec: MachineTemplateSpec {
            role: Role::Worker,
            version: "v1.31.2".to_string(),
            machine_class: "demo-workers".to_string(),
            failure_domain: None,
            ..Default::default()
        },
    }
}

fn every_kind() -> Vec<Object> {
    let cluster = Cluster {
        metadata: meta("demo", None),
        spec: ClusterSpec {
            version: "v1.31.2".to_string(),
            paused: false,
            control_plane: ControlPlaneTopology {
                machine_class: "demo-control-plane".to_string(),
                replicas: 3,
            },
            workers: vec![WorkerPool {
                name: "workers".to_string(),
                machine_class: "demo-workers".to_string(),
                replicas: Some(3),
                autoscaling: Some(Autoscaling { min: 1, max: 10 }),
                rollout: None,
                health_check: None,
                ..Default::default()
            }],
            ..Default::default()
        },
        status: ClusterStatus {
            observed_generation: Some(4),
            phase: ClusterPhase::Provisioned,
            control_plane: capstan_model::ReplicaSummary {
                desired: 3,
                ready: 2,
            },
            workers: capstan_model::ReplicaSummary {
                desired: 3,
                ready: 3,
            },
            conditions: conditions(),
        },
    };
    let class = MachineClass {
        metadata: meta("demo-workers", None),
        spec: MachineClassSpec {
            cluster_name: "demo".to_string(),
            image_id: "ami-0abcdef1234567890".to_string(),
            instance_types: vec!["m7i.xlarge".to_string(), "m6i.xlarge".to_string()],
            subnets: vec!["subnet-0a1b2c3d4e5f60001".to_string()],
            security_groups: vec!["sg-0123456789abcdef0".to_string()],
            instance_profile: Some("nodes".to_string()),
            market: Market {
                market_type: MarketType::Spot,
                spot_max_price: Some("0.12".to_string()),
                ..Default::default()
            },
            tags: BTreeMap::from([("team".to_string(), "web".to_string())]),
            user_data: Some("#cloud-config\nruncmd: [\"true\"]\n".to_string()),
            ..Default::default()
        },
        status: MachineClassStatus {
            observed_generation: Some(4),
            conditions: conditions(),
        },
    };
    let deployment = MachineDeployment {
        metadata: meta("demo-workers", Some((capstan_model::Kind::Cluster, "demo"))),
        spec: MachineDeploymentSpec {
            cluster_name: "demo".to_string(),
            replicas: 3,
            template: template(),
            min_ready_seconds: 30,
            ..Default::default()
        },
        status: MachineDeploymentStatus {
            observed_generation: Some(4),
            phase: DeploymentPhase::ScalingUp,
            replicas: 2,
            ready_replicas: 1,
            available_replicas: 1,
            up_to_date_replicas: 2,
            draining_replicas: 1,
            conditions: conditions(),
            autoscaling: Some(capstan_model::AutoscalingStatus {
                last_scale_up: Some("2026-01-01T00:00:00Z".parse().expect("time")),
                last_scale_down: None,
                unneeded_since: [(
                    "ip-10-0-1-11.ec2.internal".to_string(),
                    "2026-01-01T00:05:00Z".parse().expect("time"),
                )]
                .into(),
                waiting_pods: [(
                    "0b6f6a52-3c1e-4d8e-9a57-1f2d3c4b5a69".to_string(),
                    "2026-01-01T00:00:00Z".parse().expect("time"),
                )]
                .into(),
            }),
        },
    };
    let set = MachineSet {
        metadata: meta(
            "demo-workers-0a1b2c3d",
            Some((capstan_model::Kind::MachineDeployment, "demo-workers")),
        ),
        spec: MachineSetSpec {
            cluster_name: "demo".to_string(),
            replicas: 2,
            template: template(),
            deletion: Default::default(),
            ..Default::default()
        },
        status: MachineSetStatus {
            observed_generation: Some(4),
            replicas: 2,
            ready_replicas: 2,
            available_replicas: 2,
            conditions: conditions(),
            ..Default::default()
        },
    };
    let machine = Machine {
        metadata: meta(
            "demo-workers-0a1b2c3d-x7k2p",
            Some((capstan_model::Kind::MachineSet, "demo-workers-0a1b2c3d")),
        ),
        spec: MachineSpec {
            cluster_name: "demo".to_string(),
            role: Role::Worker,
            version: "v1.31.2".to_string(),
            machine_class: "demo-workers".to_string(),
            failure_domain: "subnet-0a1b2c3d4e5f60001".to_string(),
            launch: LaunchSpec {
                image_id: "ami-0abcdef1234567890".to_string(),
                instance_types: vec!["m7i.xlarge".to_string()],
                ..Default::default()
            },
            ..Default::default()
        },
        status: MachineStatus {
            observed_generation: Some(4),
            phase: MachinePhase::Running,
            instance_id: Some("i-0123456789abcdef0".to_string()),
            provider_id: Some("aws:///us-east-1a/i-0123456789abcdef0".to_string()),
            instance_type: Some("m7i.xlarge".to_string()),
            instance_state: Some(InstanceState::Running),
            instance_state_time: Some(at(40)),
            addresses: vec![MachineAddress {
                address_type: "InternalIP".to_string(),
                address: "10.0.0.17".to_string(),
            }],
            launch_requested_at: Some(at(30)),
            running_since: Some(at(45)),
            failure_reason: None,
            failure_message: None,
            conditions: conditions(),
            // Fields added later round-trip too, from their defaults.
            ..Default::default()
        },
    };
    let health_check = MachineHealthCheck {
        metadata: meta("demo-workers", Some((capstan_model::Kind::Cluster, "demo"))),
        spec: MachineHealthCheckSpec {
            cluster_name: "demo".to_string(),
            selector: LabelSelector {
                match_labels: BTreeMap::from([(
                    "capstan.dev/pool".to_string(),
                    "workers".to_string(),
                )]),
            },
            checks: HealthCheckChecks {
                unhealthy_machine_conditions: vec![UnhealthyCondition {
                    type_: "Ready".to_string(),
                    status: ConditionStatus::False,
                    timeout_seconds: 300,
                }],
                ..Default::default()
            },
            remediation: HealthCheckRemediation {
                trigger_if: TriggerIf {
                    unhealthy_less_than_or_equal_to: Some(IntOrPercent::Percent(40)),
                    unhealthy_in_range: None,
                },
                max_in_flight: Some(IntOrPercent::Int(1)),
            },
        },
        status: MachineHealthCheckStatus {
            observed_generation: Some(4),
            expected_machines: 3,
            current_healthy: 2,
            conditions: conditions(),
            ..Default::default()
        },
    };
    vec![
        Object::Cluster(cluster),
        Object::MachineClass(class),
        Object::MachineDeployment(deployment),
        Object::MachineSet(set),
        Object::Machine(machine),
        Object::MachineHealthCheck(health_check),
    ]
}

/// Encodes both items at `rv` and decodes them back.
fn round_trip(object: &Object, rv: u64) -> item::StoredObject {
    let hash = spec_hash(&object.spec_json());
    let desired = item::encode_desired(object, rv);
    let observed = item::encode_observed(object, &hash, rv + 1);
    item::decode(Some(&desired), Some(&observed)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_kind_round_trips_with_its_status() {
    for object in every_kind() {
        let stored = round_trip(&object, 7);
        let mut expected = object.clone();
        expected.metadata_mut().resource_version = Some("7".to_string());
        assert_eq!(stored.object, expected, "{}", object.kind());
        assert_eq!(stored.desired_rv, Some(7));
        assert_eq!(stored.observed_rv, Some(8));
        assert!(!stored.is_deleting());
        assert!(
            !stored.spec_changed(),
            "{}: same spec, same hash",
            object.kind()
        );
    }
}

#[test]
fn machine_observed_item_carries_the_instance_index_key() {
    let machine = every_kind().remove(4);
    let observed = item::encode_observed(&machine, "h", 1);
    assert_eq!(
        observed.get(item::INSTANCE_ID),
        Some(&AttrValue::S("i-0123456789abcdef0".to_string()))
    );
    assert!(!item::encode_desired(&machine, 1).contains_key(item::INSTANCE_ID));
}

/// Found by the simulator's health-check invariant: a Machine being deleted (its
/// desired item gone) lost its labels, so a health check no longer selected it and never
/// counted it in flight: `maxInFlight` did not hold across passes.
#[test]
fn an_object_being_deleted_keeps_its_labels_and_the_desired_labels_win() {
    let machine = every_kind()
        .into_iter()
        .find(|o| o.kind() == capstan_model::Kind::Machine)
        .expect("a Machine");
    let labels = machine.metadata().labels.clone();
    assert!(!labels.is_empty(), "the sample Machine has labels");
    let observed = item::encode_observed(&machine, "h", 3);
    let deleting = item::decode(None, Some(&observed)).expect("decodes");
    assert!(deleting.is_deleting());
    assert_eq!(deleting.object.metadata().labels, labels);

    let mut unlabelled = machine.clone();
    unlabelled.metadata_mut().labels.clear();
    let desired = item::encode_desired(&unlabelled, 4);
    let live = item::decode(Some(&desired), Some(&observed)).expect("decodes");
    assert!(live.object.metadata().labels.is_empty());
}

#[test]
fn a_spec_edit_is_seen_through_the_hash() {
    let object = every_kind().remove(2);
    let hash = spec_hash(&object.spec_json());
    let observed = item::encode_observed(&object, &hash, 3);
    let mut edited = object.clone();
    if let Object::MachineDeployment(d) = &mut edited {
        d.spec.replicas = 9;
    }
    // A raw writer changed the spec without bumping anything but the item itself.
    let desired = item::encode_desired(&edited, 0);
    let stored = item::decode(Some(&desired), Some(&observed)).expect("decodes");
    assert!(stored.spec_changed());
    let Object::MachineDeployment(d) = &stored.object else {
        panic!("a MachineDeployment");
    };
    assert_eq!(d.spec.replicas, 9, "the desired spec wins");
    assert_eq!(d.status.replicas, 2, "the status stays the observed one");
}

/// Decodes are remembered per thread (`capstan_model::decode_memo`), but only for the
/// very items they were made from: a raw writer's edit that keeps every version is
/// decoded afresh, and going back gives back the original.
#[test]
fn a_remembered_decode_never_hides_an_edit() {
    let replicas = |stored: &item::StoredObject| match &stored.object {
        Object::MachineDeployment(d) => d.spec.replicas,
        other => panic!("a MachineDeployment, not {}", other.kind()),
    };
    let object = every_kind().remove(2);
    let observed = item::encode_observed(&object, &spec_hash(&object.spec_json()), 3);
    let desired = item::encode_desired(&object, 4);
    let first = item::decode(Some(&desired), Some(&observed)).expect("decodes");
    let again = item::decode(Some(&desired), Some(&observed)).expect("decodes");
    assert_eq!(first, again);
    assert!(capstan_model::decode_memo::len() >= 1, "remembered");

    let mut edited = object.clone();
    if let Object::MachineDeployment(d) = &mut edited {
        d.spec.replicas = replicas(&first) + 7;
    }
    let edited_desired = item::encode_desired(&edited, 4);
    assert_eq!(
        edited_desired.get(item::RV),
        desired.get(item::RV),
        "same version"
    );
    let seen = item::decode(Some(&edited_desired), Some(&observed)).expect("decodes");
    assert_eq!(replicas(&seen), replicas(&first) + 7);
    let back = item::decode(Some(&desired), Some(&observed)).expect("decodes");
    assert_eq!(back, first);
}

fn s(v: &str) -> AttrValue {
    AttrValue::S(v.to_string())
}

fn raw_put_item(sk: &str, kind: &str, spec: BTreeMap<String, AttrValue>) -> Item {
    Item::from([
        ("pk".to_string(), s("default#demo")),
        ("sk".to_string(), s(sk)),
        ("kind".to_string(), s(kind)),
        ("spec".to_string(), AttrValue::M(spec)),
    ])
}

#[test]
fn raw_put_item_with_only_key_kind_and_spec_decodes_with_defaults() {
    let spec = BTreeMap::from([
        ("clusterName".to_string(), s("demo")),
        ("imageId".to_string(), s("ami-0abcdef1234567890")),
        (
            "instanceTypes".to_string(),
            AttrValue::L(vec![s("m7i.large")]),
        ),
        (
            "subnets".to_string(),
            AttrValue::L(vec![s("subnet-0a1b2c3d4e5f60001")]),
        ),
    ]);
    let desired = raw_put_item("MachineClass#raw#spec", "MachineClass", spec);
    let stored = item::decode(Some(&desired), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.desired_rv, Some(0), "no rv attribute: version 0");
    assert!(stored.is_new());
    assert!(stored.spec_changed(), "never observed: a spec to act on");
    let Object::MachineClass(class) = &stored.object else {
        panic!("a MachineClass");
    };
    assert_eq!(class.metadata.name, "raw");
    assert_eq!(class.metadata.namespace, "default");
    assert_eq!(class.metadata.uid, None);
    assert_eq!(
        class.spec.root_volume.size_gib,
        capstan_model::defaults::ROOT_VOLUME_GIB
    );
    assert!(class.spec.root_volume.encrypted);
    assert_eq!(class.spec.metadata_options.http_put_response_hop_limit, 1);
    assert_eq!(class.spec.market.market_type, MarketType::OnDemand);
    assert!(capstan_model::validate_object(&stored.object).is_empty());
}

#[test]
fn raw_put_item_numbers_arrive_as_dynamodb_numbers() {
    let spec = BTreeMap::from([
        ("clusterName".to_string(), s("demo")),
        ("replicas".to_string(), AttrValue::N("4".to_string())),
        (
            "template".to_string(),
            AttrValue::M(BTreeMap::from([(
                "spec".to_string(),
                AttrValue::M(BTreeMap::from([
                    ("version".to_string(), s("v1.31.2")),
                    ("machineClass".to_string(), s("demo-workers")),
                ])),
            )])),
        ),
    ]);
    let desired = raw_put_item("MachineDeployment#web#spec", "MachineDeployment", spec);
    let stored = item::decode(Some(&desired), None).unwrap_or_else(|e| panic!("{e}"));
    let Object::MachineDeployment(d) = &stored.object else {
        panic!("a MachineDeployment");
    };
    assert_eq!(d.spec.replicas, 4);
    assert_eq!(
        d.spec.rollout,
        Default::default(),
        "Cluster API's rollout defaults"
    );
}

#[test]
fn observed_item_alone_is_being_deleted() {
    let object = every_kind().remove(4);
    let observed = item::encode_observed(&object, &spec_hash(&object.spec_json()), 5);
    let stored = item::decode(None, Some(&observed)).unwrap_or_else(|e| panic!("{e}"));
    assert!(stored.is_deleting());
    assert_eq!(stored.desired_rv, None);
    assert_eq!(stored.observed_rv, Some(5));
    let Object::Machine(m) = &stored.object else {
        panic!("a Machine");
    };
    assert_eq!(m.status.instance_id.as_deref(), Some("i-0123456789abcdef0"));
    assert_eq!(
        m.spec.failure_domain, "subnet-0a1b2c3d4e5f60001",
        "the last spec is kept"
    );
    assert_eq!(
        m.metadata.labels,
        object.metadata().labels,
        "labels are kept, so selectors still find it"
    );
}

#[test]
fn invalid_desired_spec_names_the_field() {
    let spec = BTreeMap::from([
        ("clusterName".to_string(), s("demo")),
        ("replicas".to_string(), s("three")),
    ]);
    let desired = raw_put_item("MachineDeployment#web#spec", "MachineDeployment", spec);
    match item::decode(Some(&desired), None) {
        Err(DecodeError::Invalid { key, errors }) => {
            assert_eq!(key, "MachineDeployment/default/web");
            // The type error first, then what validation says of the rest, exactly as
            // `capstan validate` reports the same document.
            let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(
                paths,
                [
                    "spec.replicas",
                    "spec.template.spec.machineClass",
                    "spec.template.spec.version"
                ],
                "{errors:?}"
            );
            assert!(
                errors[0].message.contains("\"three\""),
                "{}",
                errors[0].message
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn unknown_attribute_in_a_spec_is_invalid() {
    let spec = BTreeMap::from([
        ("clusterName".to_string(), s("demo")),
        ("replica".to_string(), AttrValue::N("3".to_string())),
    ]);
    let desired = raw_put_item("MachineSet#web#spec", "MachineSet", spec);
    match item::decode(Some(&desired), None) {
        Err(DecodeError::Invalid { errors, .. }) => {
            assert_eq!(errors[0].path, "spec.replica");
            assert!(errors[0].hint.contains("replicas"), "{}", errors[0].hint);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn a_key_outside_the_layout_is_bad() {
    let item = Item::from([
        ("pk".to_string(), s("default#demo")),
        ("sk".to_string(), s("Pod#x#spec")),
    ]);
    assert!(matches!(
        item::decode(Some(&item), None),
        Err(DecodeError::BadKey(_))
    ));
    assert!(matches!(
        item::decode(None, None),
        Err(DecodeError::BadKey(_))
    ));
}

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?"
}

proptest! {
    #[test]
    fn deployments_round_trip(
        name in dns_label(),
        namespace in dns_label(),
        cluster in dns_label(),
        replicas in 0..=capstan_model::validate::MAX_REPLICAS,
        labels in proptest::collection::btree_map("[a-z]{1,10}(/[a-z]{1,5})?", "([a-z0-9]([a-z0-9._-]{0,18}[a-z0-9])?)?", 0..5),
        rv in 0u64..1_000_000,
    ) {
        let mut object = every_kind().remove(2);
        if let Object::MachineDeployment(d) = &mut object {
            d.metadata.name = name.clone();
            d.metadata.namespace = namespace;
            d.metadata.labels = labels;
            d.spec.cluster_name = cluster;
            d.spec.replicas = replicas;
        }
        let stored = round_trip(&object, rv);
        let mut expected = object;
        expected.metadata_mut().resource_version = Some(rv.to_string());
        prop_assert_eq!(stored.object, expected);
    }
}

#[test]
fn resource_wrapper_defaults_are_what_a_blank_object_has() {
    let key =
        capstan_model::ObjectKey::new("default", "demo", capstan_model::Kind::MachineSet, "x");
    let blank = Object::blank(&key);
    // A blank desired item is not a valid object (no template): only its observed item
    // (which is read leniently) decodes back into it.
    let stored = item::decode(None, Some(&item::encode_observed(&blank, "h", 1))).expect("decodes");
    assert_eq!(stored.object, blank);
    let _ = Resource::<MachineSetSpec, MachineSetStatus>::default();
}
