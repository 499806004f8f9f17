use serde::{Deserialize, Serialize};

use crate::kinds::{Deletion, MachineTemplate};
use crate::meta::Conditions;

/// Keeps `replicas` Machines of one template alive, creating and deleting Machines.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MachineSetSpec {
    pub cluster_name: String,
    pub replicas: i32,
    pub template: MachineTemplate,
    pub deletion: Deletion,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MachineSetStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
}
