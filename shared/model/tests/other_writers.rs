//! Reading what other writers put in the table: observed items decode leniently (a
//! node agent's condition, a newer function version's status field), desired items are
//! checked exactly as `capstan validate` checks a manifest, and what cannot be read at
//! all is reported as such, never as absent.

use std::collections::BTreeMap;

use capstan_model::item::{self, AttrValue, DecodeError, Item};
use capstan_model::meta::{MAX_CONDITION_MESSAGE_BYTES, MAX_CONDITIONS};
use capstan_model::{
    ConditionStatus, InstanceState, LaunchSpec, Machine, MachinePhase, MachineSpec, MachineStatus,
    Object, ObjectMeta, OwnerReference, Resource, Timestamp,
};

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + second).expect("a valid time")
}

fn running_machine() -> Object {
    let mut status = MachineStatus {
        phase: MachinePhase::Running,
        instance_id: Some("i-0123456789abcdef0".into()),
        instance_state: Some(InstanceState::Running),
        instance_state_time: Some(at(40)),
        ..Default::default()
    };
    status
        .conditions
        .set_true("Ready", "InstanceRunning", "running", at(10));
    Object::Machine(Machine {
        metadata: ObjectMeta {
            name: "web-abcde".into(),
            namespace: "team-a".into(),
            uid: Some("uid-web-abcde".into()),
            generation: Some(1),
            owner_references: vec![OwnerReference {
                kind: capstan_model::Kind::MachineSet,
                name: "web".into(),
                uid: "uid-web".into(),
                controller: true,
            }],
            finalizers: vec!["capstan.dev/finalizer".into()],
            ..Default::default()
        },
        spec: MachineSpec {
            cluster_name: "demo".into(),
            version: "v1.31.2".into(),
            machine_class: "workers".into(),
            failure_domain: "subnet-0a1b2c3d4e5f60001".into(),
            launch: LaunchSpec {
                image_id: "ami-0abcdef1234567890".into(),
                instance_types: vec!["m7i.large".into()],
                security_groups: vec!["sg-0123456789abcdef0".into()],
                ..Default::default()
            },
            ..Default::default()
        },
        status,
    })
}

fn s(v: &str) -> AttrValue {
    AttrValue::S(v.to_string())
}

fn status_map(observed: &mut Item) -> &mut BTreeMap<String, AttrValue> {
    match observed.get_mut("status") {
        Some(AttrValue::M(m)) => m,
        _ => panic!("the observed item has a status"),
    }
}

/// A condition as a node agent writes it, with Kubernetes' own fields.
fn node_ready(status: &str) -> AttrValue {
    AttrValue::M(BTreeMap::from([
        ("type".into(), s("NodeReady")),
        ("status".into(), s(status)),
        ("reason".into(), s("KubeletReady")),
        ("message".into(), s("kubelet is posting ready status")),
        ("lastTransitionTime".into(), s("2025-01-31T12:00:00Z")),
        ("observedGeneration".into(), AttrValue::N("3".into())),
    ]))
}

fn with_condition(condition: AttrValue) -> (Item, Item) {
    let machine = running_machine();
    let desired = item::encode_desired(&machine, 1);
    let mut observed = item::encode_observed(&machine, "h", 2);
    let status = status_map(&mut observed);
    let mut conditions = match status.remove("conditions") {
        Some(AttrValue::L(l)) => l,
        _ => Vec::new(),
    };
    conditions.push(condition);
    status.insert("conditions".into(), AttrValue::L(conditions));
    (desired, observed)
}

fn machine_of(stored: &item::StoredObject) -> &Machine {
    stored.object.as_machine().expect("a Machine")
}

#[test]
fn a_node_agents_condition_with_observed_generation_is_read() {
    let (desired, observed) = with_condition(node_ready("True"));
    let stored = item::decode(Some(&desired), Some(&observed)).unwrap_or_else(|e| panic!("{e}"));
    let m = machine_of(&stored);
    assert_eq!(m.metadata.uid.as_deref(), Some("uid-web-abcde"));
    assert_eq!(m.status.instance_id.as_deref(), Some("i-0123456789abcdef0"));
    let node = m
        .status
        .conditions
        .get("NodeReady")
        .expect("NodeReady kept");
    assert_eq!(node.status, ConditionStatus::True);
    assert!(m.status.conditions.is_true("Ready"));
}

#[test]
fn a_bad_condition_costs_only_that_condition() {
    let (desired, observed) = with_condition(node_ready("Maybe"));
    let stored = item::decode(Some(&desired), Some(&observed)).unwrap_or_else(|e| panic!("{e}"));
    let m = machine_of(&stored);
    assert!(m.status.conditions.get("NodeReady").is_none());
    assert!(m.status.conditions.is_true("Ready"), "the others stay");
    assert_eq!(m.status.phase, MachinePhase::Running);
}

#[test]
fn unknown_status_and_metadata_fields_are_ignored_in_observed_items() {
    let machine = running_machine();
    let mut observed = item::encode_observed(&machine, "h", 2);
    status_map(&mut observed).insert("drainedAt".into(), s("2025-01-31T12:00:00Z"));
    observed.insert("managedBy".into(), s("capstan v2"));
    observed.insert(
        "ownerReferences".into(),
        AttrValue::L(vec![AttrValue::M(BTreeMap::from([
            ("kind".into(), s("MachineSet")),
            ("name".into(), s("web")),
            ("uid".into(), s("uid-web")),
            ("controller".into(), AttrValue::Bool(true)),
            ("blockOwnerDeletion".into(), AttrValue::Bool(true)),
        ]))]),
    );
    let stored = item::decode(None, Some(&observed)).unwrap_or_else(|e| panic!("{e}"));
    let m = machine_of(&stored);
    assert_eq!(m.status.instance_id.as_deref(), Some("i-0123456789abcdef0"));
    assert_eq!(
        m.metadata.controller().map(|o| o.name.as_str()),
        Some("web")
    );
}

#[test]
fn conditions_that_are_not_a_list_cost_only_the_conditions() {
    let machine = running_machine();
    let mut observed = item::encode_observed(&machine, "h", 2);
    status_map(&mut observed).insert("conditions".into(), s("all good"));
    let stored = item::decode(None, Some(&observed)).unwrap_or_else(|e| panic!("{e}"));
    let m = machine_of(&stored);
    assert!(m.status.conditions.is_empty());
    assert_eq!(m.status.instance_id.as_deref(), Some("i-0123456789abcdef0"));
}

#[test]
fn conditions_read_are_bounded_in_number_and_size() {
    let machine = running_machine();
    let mut observed = item::encode_observed(&machine, "h", 2);
    // Under DynamoDB's 400 KB as written, but more and longer than Capstan keeps.
    let many: Vec<AttrValue> = (0..60)
        .map(|i| {
            AttrValue::M(BTreeMap::from([
                ("type".into(), s(&format!("Stray{i:03}"))),
                ("status".into(), s("True")),
                (
                    "message".into(),
                    s(&"x".repeat(if i < 5 { 20_000 } else { 100 })),
                ),
                ("lastTransitionTime".into(), s("2025-01-31T12:00:00Z")),
            ]))
        })
        .collect();
    status_map(&mut observed).insert("conditions".into(), AttrValue::L(many));
    let stored = item::decode(None, Some(&observed)).unwrap_or_else(|e| panic!("{e}"));
    let m = machine_of(&stored);
    assert_eq!(m.status.conditions.0.len(), MAX_CONDITIONS);
    assert!(
        m.status
            .conditions
            .0
            .iter()
            .all(|c| c.message.len() <= MAX_CONDITION_MESSAGE_BYTES)
    );
    // Written back, the item stays far under DynamoDB's 400 KB.
    let again = item::encode_observed(&stored.object, "h", 3);
    assert!(
        item::item_size(&again) < 300 * 1024,
        "{}",
        item::item_size(&again)
    );
}

#[test]
fn a_known_status_field_of_the_wrong_type_makes_the_object_unreadable_not_absent() {
    let machine = running_machine();
    let desired = item::encode_desired(&machine, 1);
    let mut observed = item::encode_observed(&machine, "h", 2);
    status_map(&mut observed).insert("phase".into(), s("Draining"));
    match item::decode(Some(&desired), Some(&observed)) {
        Err(DecodeError::Unreadable { key, errors }) => {
            assert_eq!(key, "Machine/team-a/web-abcde");
            assert_eq!(errors[0].path, "status.phase", "{errors:?}");
        }
        other => panic!("expected Unreadable, got {other:?}"),
    }
}

#[test]
fn an_oversize_observed_item_is_unreadable() {
    let machine = running_machine();
    let mut observed = item::encode_observed(&machine, "h", 2);
    observed.insert("junk".into(), s(&"x".repeat(350 * 1024)));
    assert!(matches!(
        item::decode(None, Some(&observed)),
        Err(DecodeError::Unreadable { .. })
    ));
}

#[test]
fn a_desired_item_is_checked_as_capstan_validate_checks_it() {
    let mut machine = running_machine();
    if let Object::Machine(m) = &mut machine {
        m.spec.launch.user_data = Some("#!/bin/sh\nexport KEY=AKIAABCDEFGHIJKLMNOP\n".into());
        m.spec
            .launch
            .tags
            .insert("capstan.dev/namespace".into(), "team-b".into());
    }
    let desired = item::encode_desired(&machine, 1);
    let from_item = match item::decode(Some(&desired), None) {
        Err(DecodeError::Invalid { errors, .. }) => errors,
        other => panic!("expected Invalid, got {other:?}"),
    };
    // The same object as a manifest document: the same errors, in the same order.
    let document = serde_json::json!({
        "apiVersion": capstan_model::API_VERSION,
        "kind": "Machine",
        "metadata": {"name": "web-abcde", "namespace": "team-a", "ownerReferences": machine.metadata().owner_references},
        "spec": machine.spec_json(),
    });
    let from_cli = capstan_model::validate::validate_document(document).errors;
    assert!(!from_cli.is_empty());
    assert_eq!(from_item, from_cli);
    for path in [
        "spec.launch.userData",
        "spec.launch.tags[\"capstan.dev/namespace\"]",
    ] {
        assert!(
            from_item.iter().any(|e| e.path == path),
            "{path}: {from_item:?}"
        );
    }
}

#[test]
fn a_raw_replicas_beyond_the_limit_is_invalid() {
    let spec = BTreeMap::from([
        ("clusterName".to_string(), s("demo")),
        ("replicas".to_string(), AttrValue::N("2147483647".into())),
        (
            "template".to_string(),
            AttrValue::M(BTreeMap::from([(
                "spec".to_string(),
                AttrValue::M(BTreeMap::from([
                    ("version".to_string(), s("v1.31.2")),
                    ("machineClass".to_string(), s("workers")),
                ])),
            )])),
        ),
    ]);
    let desired = Item::from([
        ("pk".to_string(), s("team-a#demo")),
        ("sk".to_string(), s("MachineSet#web#spec")),
        ("spec".to_string(), AttrValue::M(spec)),
    ]);
    match item::decode(Some(&desired), None) {
        Err(DecodeError::Invalid { errors, .. }) => {
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].path, "spec.replicas");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn the_partition_and_the_spec_must_name_the_same_cluster() {
    let machine = running_machine();
    let mut desired = item::encode_desired(&machine, 1);
    desired.insert("pk".into(), s("team-a#other"));
    match item::decode(Some(&desired), None) {
        Err(DecodeError::Invalid { errors, .. }) => {
            assert_eq!(errors[0].path, "spec.clusterName", "{errors:?}");
            assert!(errors[0].message.contains("\"team-a#other\""), "{errors:?}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    // An observed item out of its partition is not acted on either.
    let mut observed = item::encode_observed(&machine, "h", 2);
    observed.insert("pk".into(), s("team-a#other"));
    assert!(matches!(
        item::decode(None, Some(&observed)),
        Err(DecodeError::Unreadable { .. })
    ));
}

#[test]
fn a_condition_message_set_is_bounded() {
    let mut c = capstan_model::Conditions::default();
    c.set_false("SpecValid", "InvalidSpec", "é".repeat(10_000), at(0));
    let message = &c.get("SpecValid").expect("set").message;
    assert!(message.len() <= MAX_CONDITION_MESSAGE_BYTES);
    assert!(message.ends_with('…'));
    let _ = Resource::<MachineSpec, MachineStatus>::default();
}
