//! Kubernetes-style object metadata and status conditions, shared by every kind.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The namespace an object lands in when its manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The finalizer every Capstan-managed object carries while its observed item lives.
pub const FINALIZER: &str = "capstan.dev/finalizer";

/// Metadata as Kubernetes shapes it. People set `name`, `namespace`, `labels` and
/// `annotations`; everything else is the control plane's and is ignored on input.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub creation_timestamp: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub deletion_timestamp: Option<Timestamp>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

impl ObjectMeta {
    /// The owner that controls this object, if any (at most one may).
    pub fn controller(&self) -> Option<&OwnerReference> {
        self.owner_references.iter().find(|o| o.controller)
    }
}

/// What the name of every Machine a MachineSet controls starts with: `<set>-`. The set
/// creates its Machines so, reads them by that sort-key prefix, and a Machine written
/// with the set as controller under another name is refused (its spec is invalid: it
/// never gets an instance, and the set does not count it).
pub fn set_machine_name_prefix(set: &str) -> String {
    format!("{set}-")
}

/// Points from a child to the object that created it and cascades its deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    pub kind: crate::Kind,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default)]
    pub controller: bool,
}

/// `True`, `False` or `Unknown`, as in Kubernetes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One observation about an object, with a machine-readable reason and a human message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub last_transition_time: Timestamp,
}

/// Condition types, named as Cluster API v1beta2 names them.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const AVAILABLE: &str = "Available";
    pub const UP_TO_DATE: &str = "UpToDate";
    pub const SCALING_UP: &str = "ScalingUp";
    pub const SCALING_DOWN: &str = "ScalingDown";
    pub const ROLLING_OUT: &str = "RollingOut";
    pub const REMEDIATING: &str = "Remediating";
    pub const PAUSED: &str = "Paused";
    pub const DELETING: &str = "Deleting";
    pub const INFRASTRUCTURE_READY: &str = "InfrastructureReady";
    pub const CONTROL_PLANE_AVAILABLE: &str = "ControlPlaneAvailable";
    pub const WORKERS_AVAILABLE: &str = "WorkersAvailable";
    pub const SPEC_VALID: &str = "SpecValid";
    pub const REMEDIATION_ALLOWED: &str = "RemediationAllowed";
}

/// Longest condition message kept, in bytes: longer ones are cut (at a character
/// boundary) and end in "…". Keeps every status write far under DynamoDB's 400 KB item
/// limit whatever a condition says (a node agent's message, a list of spec errors).
pub const MAX_CONDITION_MESSAGE_BYTES: usize = 8 * 1024;
/// Longest condition type and reason kept, in bytes (Kubernetes: 316 and 1024).
pub const MAX_CONDITION_TYPE_BYTES: usize = 316;
pub const MAX_CONDITION_REASON_BYTES: usize = 1024;
/// Most conditions read from an observed item: others' beyond these are dropped.
pub const MAX_CONDITIONS: usize = 32;

/// `s` cut to at most `max` bytes at a character boundary, ending in "…" when cut.
pub fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let ellipsis = "…";
    let mut cut = max.saturating_sub(ellipsis.len());
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ellipsis}", &s[..cut])
}

/// A set of conditions keyed by type. Setting one keeps its `lastTransitionTime`
/// unless its status really changes, so the time says when it last flipped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct Conditions(pub Vec<Condition>);

impl Conditions {
    pub fn get(&self, type_: &str) -> Option<&Condition> {
        self.0.iter().find(|c| c.type_ == type_)
    }

    pub fn is_true(&self, type_: &str) -> bool {
        self.get(type_)
            .is_some_and(|c| c.status == ConditionStatus::True)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets a condition; `now` becomes its transition time only if the status changed.
    pub fn set(
        &mut self,
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        now: Timestamp,
    ) {
        let message = truncate_bytes(&message.into(), MAX_CONDITION_MESSAGE_BYTES);
        let reason = truncate_bytes(reason, MAX_CONDITION_REASON_BYTES);
        match self.0.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now;
                }
                c.status = status;
                c.reason = reason;
                c.message = message;
            }
            None => {
                self.0.push(Condition {
                    type_: type_.to_string(),
                    status,
                    reason,
                    message,
                    last_transition_time: now,
                });
                self.0.sort_by(|a, b| a.type_.cmp(&b.type_));
            }
        }
    }

    pub fn set_true(
        &mut self,
        type_: &str,
        reason: &str,
        message: impl Into<String>,
        now: Timestamp,
    ) {
        self.set(type_, ConditionStatus::True, reason, message, now);
    }

    pub fn set_false(
        &mut self,
        type_: &str,
        reason: &str,
        message: impl Into<String>,
        now: Timestamp,
    ) {
        self.set(type_, ConditionStatus::False, reason, message, now);
    }

    pub fn remove(&mut self, type_: &str) {
        self.0.retain(|c| c.type_ != type_);
    }

    /// Reads conditions as others write them: each one that decodes is kept (its
    /// unknown fields, such as Kubernetes' `observedGeneration`, ignored; its message
    /// cut to [`MAX_CONDITION_MESSAGE_BYTES`]); one that does not (a bad `status`, a
    /// missing `type`) costs only itself; a value that is not a list costs the list.
    /// At most [`MAX_CONDITIONS`] are kept. Returns the conditions and how many were
    /// dropped.
    pub fn read_lenient(value: &serde_json::Value) -> (Conditions, usize) {
        let Some(items) = value.as_array() else {
            return (Conditions::default(), 1);
        };
        let mut kept: Vec<Condition> = Vec::new();
        let mut dropped = 0;
        for item in items {
            match serde_json::from_value::<Condition>(item.clone()) {
                Ok(mut c)
                    if kept.len() < MAX_CONDITIONS
                        && !c.type_.is_empty()
                        && c.type_.len() <= MAX_CONDITION_TYPE_BYTES
                        && !kept.iter().any(|k| k.type_ == c.type_) =>
                {
                    c.message = truncate_bytes(&c.message, MAX_CONDITION_MESSAGE_BYTES);
                    c.reason = truncate_bytes(&c.reason, MAX_CONDITION_REASON_BYTES);
                    kept.push(c);
                }
                _ => dropped += 1,
            }
        }
        (Conditions(kept), dropped)
    }
}

/// Label selector (matchLabels only: every pair must be present).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelector {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }
}
