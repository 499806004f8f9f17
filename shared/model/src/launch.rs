//! One launch, as the Machine reconciler asks for it and the Compute port performs it.

use std::collections::BTreeMap;

use crate::kinds::{Market, MetadataOptions, RootVolume};

/// Everything one RunInstances needs for one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchRequest {
    /// Idempotency token: the Machine's uid. A repeated token returns the first launch.
    pub client_token: String,
    pub image_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub security_groups: Vec<String>,
    pub instance_profile: Option<String>,
    pub root_volume: RootVolume,
    pub market: Market,
    pub metadata_options: MetadataOptions,
    /// Applied at launch (TagSpecifications), so the instance is never untagged.
    pub tags: BTreeMap<String, String>,
    pub user_data: Option<String>,
}
