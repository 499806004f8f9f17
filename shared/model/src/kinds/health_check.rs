use serde::{Deserialize, Serialize};

use crate::kinds::{InstanceState, IntOrPercent};
use crate::meta::{ConditionStatus, Conditions, LabelSelector};

/// Says when a Machine is unhealthy and how many may be remediated at once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MachineHealthCheckSpec {
    pub cluster_name: String,
    pub selector: LabelSelector,
    pub checks: HealthCheckChecks,
    pub remediation: HealthCheckRemediation,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct HealthCheckChecks {
    /// A Machine not Ready this long after its instance runs is unhealthy.
    pub node_startup_timeout_seconds: i32,
    pub unhealthy_instance_states: Vec<InstanceState>,
    pub unhealthy_machine_conditions: Vec<UnhealthyCondition>,
    /// Judged against the Node's own conditions (Cluster API v1beta2), e.g. Ready
    /// False or Unknown for 300 s. Needs the Cluster's `spec.access`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unhealthy_node_conditions: Vec<UnhealthyCondition>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UnhealthyCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    pub timeout_seconds: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct HealthCheckRemediation {
    pub trigger_if: TriggerIf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<IntOrPercent>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct TriggerIf {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_less_than_or_equal_to: Option<IntOrPercent>,
    /// "[min-max]", e.g. "[1-3]".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_in_range: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MachineHealthCheckStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    pub expected_machines: i32,
    pub current_healthy: i32,
    /// How many more Machines may be remediated now (Cluster API's `remediationsAllowed`).
    pub remediations_allowed: i32,
    /// The selected Machines found unhealthy on the last pass, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unhealthy_machines: Vec<UnhealthyMachine>,
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
}

/// One Machine a health check found unhealthy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct UnhealthyMachine {
    pub name: String,
    pub reason: String,
    pub message: String,
}
