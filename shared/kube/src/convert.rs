//! k8s-openapi objects as the port's types: only what the Machine lifecycle reads.

use std::collections::BTreeMap;

use capstan_model::Timestamp;
use capstan_model::meta::ConditionStatus;
use capstan_runtime::ports::{
    MatchExpression, Node, NodeCondition, NodePatch, NodeSelectorTerm, Operator, Pod, Taint,
    Toleration, VolumeAttachment,
};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::storage::v1 as storage;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Map, Value, json};

use capstan_model::quantity;

/// The annotation the kubelet puts on the API mirror of a static pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// k8s-openapi's time (jiff 0.2) as Capstan's (jiff 1): same instant.
fn timestamp(t: &Time) -> Option<Timestamp> {
    Timestamp::new(t.0.as_second(), t.0.subsec_nanosecond()).ok()
}

/// `True`/`False`, anything else (including a missing status) `Unknown`, as kubectl reads it.
fn condition_status(s: &str) -> ConditionStatus {
    match s {
        "True" => ConditionStatus::True,
        "False" => ConditionStatus::False,
        _ => ConditionStatus::Unknown,
    }
}

pub fn node(n: core::Node) -> Node {
    let meta = n.metadata;
    let spec = n.spec.unwrap_or_default();
    let status = n.status.unwrap_or_default();
    let info = status.node_info.unwrap_or_default();
    Node {
        name: meta.name.unwrap_or_default(),
        uid: meta.uid.unwrap_or_default(),
        resource_version: meta.resource_version.unwrap_or_default(),
        provider_id: spec.provider_id,
        labels: meta.labels.unwrap_or_default(),
        annotations: meta.annotations.unwrap_or_default(),
        taints: spec
            .taints
            .unwrap_or_default()
            .into_iter()
            .map(|t| Taint {
                key: t.key,
                value: t.value,
                effect: t.effect,
            })
            .collect(),
        unschedulable: spec.unschedulable.unwrap_or(false),
        conditions: status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .map(|c| NodeCondition {
                status: condition_status(&c.status),
                type_: c.type_,
                reason: c.reason.unwrap_or_default(),
                message: c.message.unwrap_or_default(),
                last_transition_time: c.last_transition_time.as_ref().and_then(timestamp),
            })
            .collect(),
        kubelet_version: info.kubelet_version,
        os_image: info.os_image,
        allocatable: status
            .allocatable
            .unwrap_or_default()
            .into_iter()
            .map(|(k, q)| (k, q.0))
            .collect(),
        volumes_attached: status
            .volumes_attached
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect(),
        created: meta.creation_timestamp.as_ref().and_then(timestamp),
        deleting: meta.deletion_timestamp.is_some(),
    }
}

pub fn pod(p: core::Pod) -> Pod {
    let meta = p.metadata;
    let spec = p.spec.unwrap_or_default();
    let status = p.status.unwrap_or_default();
    let annotations = meta.annotations.unwrap_or_default();
    let (cpu_millis, memory_bytes) = requests(&spec);
    let conditions = status.conditions.unwrap_or_default();
    Pod {
        namespace: meta.namespace.unwrap_or_default(),
        name: meta.name.unwrap_or_default(),
        uid: meta.uid.unwrap_or_default(),
        node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
        labels: meta.labels.unwrap_or_default(),
        controller_kind: meta
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.controller == Some(true))
            .map(|o| o.kind),
        mirror: annotations.contains_key(MIRROR_ANNOTATION),
        annotations,
        deleting_since: meta.deletion_timestamp.as_ref().and_then(timestamp),
        phase: status.phase.unwrap_or_else(|| "Unknown".to_owned()),
        unschedulable: conditions.iter().any(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        }),
        created: meta.creation_timestamp.as_ref().and_then(timestamp),
        scheduled_at: conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "True")
            .and_then(|c| c.last_transition_time.as_ref())
            .and_then(timestamp),
        cpu_millis,
        memory_bytes,
        node_selector: spec.node_selector.clone().unwrap_or_default(),
        affinity: required_affinity(&spec),
        tolerations: spec
            .tolerations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|t| Toleration {
                key: t.key,
                operator: t.operator.unwrap_or_else(|| "Equal".to_owned()),
                value: t.value,
                effect: t.effect,
            })
            .collect(),
        local_volumes: spec
            .volumes
            .unwrap_or_default()
            .iter()
            .any(|v| v.empty_dir.is_some() || v.host_path.is_some()),
    }
}

/// The pod's required node affinity terms. `Gt`/`Lt` (numeric label comparisons) and
/// `matchFields` are not modelled: an expression using them becomes `In` with no values,
/// which matches no node, so such a pod scales nothing rather than a pool that may not
/// fit it.
fn required_affinity(spec: &core::PodSpec) -> Vec<NodeSelectorTerm> {
    let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return Vec::new();
    };
    let nothing = || MatchExpression {
        key: String::new(),
        operator: Operator::In,
        values: Vec::new(),
    };
    required
        .node_selector_terms
        .iter()
        .map(|term| {
            let mut match_expressions: Vec<MatchExpression> = term
                .match_expressions
                .iter()
                .flatten()
                .map(|e| {
                    let operator = match e.operator.as_str() {
                        "In" => Operator::In,
                        "NotIn" => Operator::NotIn,
                        "Exists" => Operator::Exists,
                        "DoesNotExist" => Operator::DoesNotExist,
                        _ => return nothing(),
                    };
                    MatchExpression {
                        key: e.key.clone(),
                        operator,
                        values: e.values.clone().unwrap_or_default(),
                    }
                })
                .collect();
            if term.match_fields.as_ref().is_some_and(|f| !f.is_empty()) {
                match_expressions.push(nothing());
            }
            NodeSelectorTerm { match_expressions }
        })
        .collect()
}

/// What the scheduler reserves for a pod (`resource.PodRequests`): the containers'
/// requests summed, at least the largest init container's (init containers run one
/// at a time, before the others), plus the RuntimeClass overhead. Quantities that do
/// not parse count as zero.
fn requests(spec: &core::PodSpec) -> (u64, u64) {
    let of = |c: &core::Container| {
        let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let get = |k: &str, f: fn(&str) -> Option<u64>| {
            r.and_then(|r| r.get(k)).and_then(|q| f(&q.0)).unwrap_or(0)
        };
        (get("cpu", quantity::millis), get("memory", quantity::units))
    };
    let (mut cpu, mut mem) = spec.containers.iter().map(of).fold((0u64, 0u64), |a, b| {
        (a.0.saturating_add(b.0), a.1.saturating_add(b.1))
    });
    for (c, m) in spec.init_containers.iter().flatten().map(of) {
        cpu = cpu.max(c);
        mem = mem.max(m);
    }
    if let Some(overhead) = &spec.overhead {
        let get = |k: &str, f: fn(&str) -> Option<u64>| {
            overhead.get(k).and_then(|q| f(&q.0)).unwrap_or(0)
        };
        cpu = cpu.saturating_add(get("cpu", quantity::millis));
        mem = mem.saturating_add(get("memory", quantity::units));
    }
    (cpu, mem)
}

pub fn volume_attachment(v: storage::VolumeAttachment) -> VolumeAttachment {
    VolumeAttachment {
        name: v.metadata.name.unwrap_or_default(),
        node_name: v.spec.node_name,
        attached: v.status.is_some_and(|s| s.attached),
    }
}

/// The JSON merge patch (RFC 7386) for `patch`: a label set to null is removed, and
/// `spec.taints` is a list, so a merge patch replaces it whole.
pub fn merge_patch(patch: &NodePatch) -> Value {
    let mut body = Map::new();
    if !patch.labels.is_empty() {
        let labels: Map<String, Value> = patch
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().map_or(Value::Null, Value::String)))
            .collect();
        body.insert("metadata".into(), json!({ "labels": labels }));
    }
    let mut spec = Map::new();
    if let Some(taints) = &patch.taints {
        let taints: Vec<Value> = taints
            .iter()
            .map(|t| {
                let mut o = BTreeMap::new();
                o.insert("key", Value::String(t.key.clone()));
                if let Some(v) = &t.value {
                    o.insert("value", Value::String(v.clone()));
                }
                o.insert("effect", Value::String(t.effect.clone()));
                json!(o)
            })
            .collect();
        spec.insert("taints".into(), Value::Array(taints));
    }
    if let Some(u) = patch.unschedulable {
        spec.insert("unschedulable".into(), Value::Bool(u));
    }
    if !spec.is_empty() {
        body.insert("spec".into(), Value::Object(spec));
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn container(cpu: &str, mem: &str) -> core::Container {
        core::Container {
            name: "c".into(),
            resources: Some(core::ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".into(), Quantity(cpu.into())),
                    ("memory".into(), Quantity(mem.into())),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_requests_sum_containers_and_cover_the_largest_init_container() {
        let spec = core::PodSpec {
            containers: vec![container("100m", "128Mi"), container("0.5", "1e9")],
            init_containers: Some(vec![container("2", "1Mi")]),
            ..Default::default()
        };
        assert_eq!(requests(&spec), (2000, 128 * 1024 * 1024 + 1_000_000_000));
    }

    #[test]
    fn merge_patch_removes_labels_with_null_and_replaces_taints() {
        let patch = NodePatch {
            labels: BTreeMap::from([("a".into(), Some("1".into())), ("b".into(), None)]),
            taints: Some(vec![Taint {
                key: "k".into(),
                value: None,
                effect: "NoSchedule".into(),
            }]),
            unschedulable: Some(true),
        };
        assert_eq!(
            merge_patch(&patch),
            json!({
                "metadata": {"labels": {"a": "1", "b": null}},
                "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}], "unschedulable": true}
            })
        );
        assert_eq!(merge_patch(&NodePatch::default()), json!({}));
    }
}
