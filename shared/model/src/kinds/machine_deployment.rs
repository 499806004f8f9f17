use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::kinds::{IntOrPercent, MachineTemplateSpec};
use crate::meta::Conditions;

/// Keeps `replicas` Machines of one template, rolling to a new MachineSet when the
/// template (or the MachineClass it names) changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MachineDeploymentSpec {
    pub cluster_name: String,
    #[cfg_attr(feature = "schema", schemars(range(min = 0)))]
    pub replicas: i32,
    pub template: MachineTemplate,
    pub rollout: Rollout,
    pub min_ready_seconds: i32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    pub deletion: Deletion,
}

/// What every Machine of a MachineDeployment or MachineSet is made from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MachineTemplate {
    pub metadata: TemplateMetadata,
    pub spec: MachineTemplateSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct TemplateMetadata {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct Rollout {
    pub strategy: RolloutStrategy,
    /// Machines created before this time are rolled, whatever their template.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub after: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct RolloutStrategy {
    #[serde(rename = "type")]
    pub strategy_type: RolloutStrategyType,
    pub rolling_update: RollingUpdate,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum RolloutStrategyType {
    #[default]
    RollingUpdate,
    OnDelete,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct RollingUpdate {
    pub max_surge: IntOrPercent,
    pub max_unavailable: IntOrPercent,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct Deletion {
    pub order: DeletionOrder,
}

/// Which Machines go first when a MachineSet scales down (after annotated, failed and
/// not-yet-running ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum DeletionOrder {
    #[default]
    Random,
    Newest,
    Oldest,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum DeploymentPhase {
    #[default]
    Pending,
    ScalingUp,
    ScalingDown,
    Running,
    Deleting,
    Failed,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MachineDeploymentStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    pub phase: DeploymentPhase,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub up_to_date_replicas: i32,
    /// Machines being deleted (scale-down, rollout, remediation) whose Nodes are being
    /// drained now.
    #[serde(skip_serializing_if = "is_zero")]
    pub draining_replicas: i32,
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// What the autoscaler remembers between its passes (a pool with `autoscaling`
    /// only); written by the autoscaler, kept by the deployment reconciler.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
}

/// The autoscaler's memory for one pool: no invocation keeps anything in between.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct AutoscalingStatus {
    /// When the autoscaler last raised the replicas: no scale-down for the quiet
    /// period after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub last_scale_up: Option<Timestamp>,
    /// When the autoscaler last lowered them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub last_scale_down: Option<Timestamp>,
    /// The pool's Nodes whose pods could all run elsewhere, since when (by Node name).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "schema", schemars(with = "BTreeMap<String, String>"))]
    pub unneeded_since: BTreeMap<String, Timestamp>,
    /// Pending pods a scale-up of this pool is waiting on (by pod uid), since when it
    /// first saw them pending: each leaves once scheduled, its wait reported once.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "schema", schemars(with = "BTreeMap<String, String>"))]
    pub waiting_pods: BTreeMap<String, Timestamp>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}
