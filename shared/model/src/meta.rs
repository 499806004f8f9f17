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
    pub creation_timestamp: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
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

/// Points from a child to the object that created it and cascades its deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One observation about an object, with a machine-readable reason and a human message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
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

/// A set of conditions keyed by type. Setting one keeps its `lastTransitionTime`
/// unless its status really changes, so the time says when it last flipped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
        let message = message.into();
        match self.0.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now;
                }
                c.status = status;
                c.reason = reason.to_string();
                c.message = message;
            }
            None => {
                self.0.push(Condition {
                    type_: type_.to_string(),
                    status,
                    reason: reason.to_string(),
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
}

/// Label selector (matchLabels only: every pair must be present).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
