use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::Conditions;

/// How to launch one EC2 instance (CAPA's AWSMachineTemplate). Its subnets are the
/// failure domains; its instance types are tried in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MachineClassSpec {
    pub cluster_name: String,
    pub image_id: String,
    pub instance_types: Vec<String>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    pub root_volume: RootVolume,
    pub market: Market,
    pub metadata_options: MetadataOptions,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Cloud-init or script text. Never a secret: fetch those at boot from SSM or Secrets Manager.
    /// With `bootstrap`, a further part after the one Capstan writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// How the instance joins its Kubernetes cluster, written by Capstan into the user
    /// data. None: the class's `userData` alone does it (or nothing does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Bootstrap>,
}

/// A way for an instance to join its cluster. Exactly one is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct Bootstrap {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eks: Option<EksBootstrap>,
}

/// Join an EKS cluster with `nodeadm` (Amazon Linux 2023 EKS AMIs): Capstan writes the
/// `NodeConfig` (cluster name, API endpoint, certificate authority and service CIDR from
/// DescribeCluster, the Machine's labels and taints as kubelet flags) as the first part
/// of a MIME multi-part user data. Needs the Cluster's `spec.access.eks`. Secrets the
/// node needs at boot are fetched by the class's own part, by ARN, never written here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct EksBootstrap {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct RootVolume {
    #[serde(rename = "sizeGiB")]
    pub size_gib: i32,
    #[serde(rename = "type")]
    pub volume_type: VolumeType,
    pub encrypted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iops: Option<i32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    #[default]
    Gp3,
    Gp2,
    Io1,
    Io2,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct Market {
    #[serde(rename = "type")]
    pub market_type: MarketType,
    /// Highest hourly price for spot, in USD; none means the on-demand price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spot_max_price: Option<String>,
    /// Spot only: treat an "EC2 Instance Rebalance Recommendation" like an interruption
    /// warning and replace the Machine early (Karpenter's opt-in behaviour).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replace_on_rebalance_recommendation: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum MarketType {
    #[default]
    OnDemand,
    Spot,
}

/// Instance metadata service settings; IMDSv2 with a hop limit of 1 unless told otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MetadataOptions {
    pub http_tokens: HttpTokens,
    pub http_put_response_hop_limit: i32,
    pub instance_metadata_tags: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum HttpTokens {
    #[default]
    Required,
    Optional,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MachineClassStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
}
