use serde::{Deserialize, Serialize};

use crate::kinds::{Deletion, MachineTemplate};
use crate::meta::Conditions;

/// Keeps `replicas` Machines of one template alive, creating and deleting Machines.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MachineSetSpec {
    pub cluster_name: String,
    #[cfg_attr(feature = "schema", schemars(range(min = 0)))]
    pub replicas: i32,
    pub template: MachineTemplate,
    pub deletion: Deletion,
    /// A Machine counts as available once Ready this long (from its MachineDeployment).
    #[serde(skip_serializing_if = "is_zero")]
    pub min_ready_seconds: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MachineSetStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    /// Machines made from the current template (all of a MachineSet's are).
    #[serde(skip_serializing_if = "is_zero")]
    pub up_to_date_replicas: i32,
    /// Machines being deleted whose Nodes are being drained now.
    #[serde(skip_serializing_if = "is_zero")]
    pub draining_replicas: i32,
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
}
