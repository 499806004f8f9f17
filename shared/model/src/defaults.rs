//! Every default in one place. Spec structs carry `#[serde(default)]`, so a field a
//! manifest leaves out takes its value from the `Default` impls below, whether the
//! object came from `capstan apply`, a raw PutItem, or a controller.
//!
//! Secure by default: IMDSv2 required with a hop limit of 1 (containers cannot reach
//! the instance's credentials), encrypted gp3 root volumes.

use crate::kinds::{
    ControlPlaneTopology, HealthCheckChecks, HttpTokens, InstanceState, IntOrPercent,
    MetadataOptions, RollingUpdate, RolloutStrategy, RolloutStrategyType, RootVolume, VolumeType,
};

/// Cluster API's default control plane size: an etcd quorum that survives one loss.
pub const CONTROL_PLANE_REPLICAS: i32 = 3;
/// Root volume size when a MachineClass names none.
pub const ROOT_VOLUME_GIB: i32 = 20;
/// Cluster API's default node startup timeout (10 minutes).
pub const NODE_STARTUP_TIMEOUT_SECONDS: i32 = 600;

impl Default for ControlPlaneTopology {
    fn default() -> Self {
        ControlPlaneTopology {
            machine_class: String::new(),
            replicas: CONTROL_PLANE_REPLICAS,
        }
    }
}

impl Default for RootVolume {
    fn default() -> Self {
        RootVolume {
            size_gib: ROOT_VOLUME_GIB,
            volume_type: VolumeType::Gp3,
            encrypted: true,
            kms_key_id: None,
            iops: None,
        }
    }
}

impl Default for MetadataOptions {
    fn default() -> Self {
        MetadataOptions {
            http_tokens: HttpTokens::Required,
            http_put_response_hop_limit: 1,
            instance_metadata_tags: false,
        }
    }
}

impl Default for RolloutStrategy {
    fn default() -> Self {
        RolloutStrategy {
            strategy_type: RolloutStrategyType::RollingUpdate,
            rolling_update: RollingUpdate::default(),
        }
    }
}

/// Cluster API's defaults: surge one, never drop below the desired count.
impl Default for RollingUpdate {
    fn default() -> Self {
        RollingUpdate {
            max_surge: IntOrPercent::Int(1),
            max_unavailable: IntOrPercent::Int(0),
        }
    }
}

impl Default for HealthCheckChecks {
    fn default() -> Self {
        HealthCheckChecks {
            node_startup_timeout_seconds: NODE_STARTUP_TIMEOUT_SECONDS,
            unhealthy_instance_states: vec![InstanceState::Stopped, InstanceState::Terminated],
            unhealthy_machine_conditions: Vec::new(),
            unhealthy_node_conditions: Vec::new(),
        }
    }
}
