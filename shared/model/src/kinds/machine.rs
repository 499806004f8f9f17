use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::kinds::{Bootstrap, Market, MetadataOptions, RootVolume};
use crate::meta::Conditions;

/// What a Machine is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Role {
    ControlPlane,
    #[default]
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        }
    }
}

/// The machine part of a MachineDeployment's or MachineSet's template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MachineTemplateSpec {
    pub role: Role,
    pub version: String,
    pub machine_class: String,
    /// Pins every Machine to one subnet; otherwise they spread over the class's subnets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_domain: Option<String>,
    /// Tags put on every instance besides the class's (CAPA's `additionalTags`). Not part
    /// of the template hash: a change is applied to running instances in place
    /// (CreateTags), never by a rollout.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_tags: BTreeMap<String, String>,
    /// Taints for the Machines' Nodes (Cluster API's taint propagation). Not part of
    /// the template hash: applied to Nodes in place, never by a rollout.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<MachineTaint>,
    /// How long each step of taking a Machine's Node out of the cluster may take (Cluster
    /// API v1beta2's `spec.deletion`). Not part of the template hash: propagated to
    /// existing Machines in place, never by a rollout.
    #[serde(skip_serializing_if = "MachineDeletion::is_default")]
    pub deletion: MachineDeletion,
}

/// Timeouts of the steps a Machine's deletion goes through when its Cluster declares
/// `spec.access` (drain, wait for volumes to detach, delete the Node). Cluster API
/// v1beta2's names and meaning: unset or 0 means no limit, except the Node's deletion,
/// which gives up after [`DEFAULT_NODE_DELETION_TIMEOUT_SECONDS`] when unset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MachineDeletion {
    /// How long to evict the Node's pods before terminating anyway. Unset or 0: as long
    /// as it takes (a PodDisruptionBudget may hold it forever).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0)))]
    pub node_drain_timeout_seconds: Option<i32>,
    /// How long to wait for the Node's volumes to detach after the drain. Unset or 0:
    /// as long as it takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0)))]
    pub node_volume_detach_timeout_seconds: Option<i32>,
    /// How long to keep trying to delete the Node once the instance is gone. Unset:
    /// [`DEFAULT_NODE_DELETION_TIMEOUT_SECONDS`]; 0: as long as it takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0)))]
    pub node_deletion_timeout_seconds: Option<i32>,
}

/// The Node deletion timeout when none is set. Cluster API's default is 10 s; a Lambda
/// pass may be throttled or find the API unreachable, so Capstan allows two minutes.
pub const DEFAULT_NODE_DELETION_TIMEOUT_SECONDS: i32 = 120;

impl MachineDeletion {
    pub fn is_default(&self) -> bool {
        *self == MachineDeletion::default()
    }

    /// The drain's limit; None: no limit.
    pub fn node_drain_timeout(&self) -> Option<std::time::Duration> {
        limit(self.node_drain_timeout_seconds)
    }

    /// The wait for volumes to detach's limit; None: no limit.
    pub fn node_volume_detach_timeout(&self) -> Option<std::time::Duration> {
        limit(self.node_volume_detach_timeout_seconds)
    }

    /// The Node deletion's limit; None: no limit.
    pub fn node_deletion_timeout(&self) -> Option<std::time::Duration> {
        limit(Some(
            self.node_deletion_timeout_seconds
                .unwrap_or(DEFAULT_NODE_DELETION_TIMEOUT_SECONDS),
        ))
    }
}

/// Seconds as a limit: unset, 0 or negative (refused by validation) mean none.
fn limit(seconds: Option<i32>) -> Option<std::time::Duration> {
    seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map(std::time::Duration::from_secs)
}

/// A taint Capstan keeps on a Machine's Node (needs the Cluster's `spec.access`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MachineTaint {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: TaintEffect,
    pub propagation: TaintPropagation,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaintEffect {
    #[default]
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// Cluster API's `propagation`: kept on the Node for as long as the Machine wants it
/// (`Always`), or put on once when the Node first appears and then left to others
/// (`OnInitialization`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaintPropagation {
    #[default]
    Always,
    OnInitialization,
}

/// One EC2 instance, owned for its whole life.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MachineSpec {
    pub cluster_name: String,
    pub role: Role,
    pub version: String,
    pub machine_class: String,
    /// The subnet this Machine's instance goes to.
    pub failure_domain: String,
    /// Everything RunInstances needs, written out: how a Machine made by hand says how
    /// to launch it. A MachineSet's Machines carry `launchRef` instead and leave this
    /// unset (read it through [`MachineSpec::launch`]).
    #[serde(skip_serializing_if = "LaunchSpec::is_unset")]
    pub launch: LaunchSpec,
    /// The launch spec by reference: the one `machineClass` resolves to, as it was when
    /// the Machine was made (its hash), instead of a copy on every Machine item. A
    /// later class edit rolls Machines through a new MachineSet; a Machine whose class
    /// no longer resolves to this hash is never launched from the edited class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_ref: Option<LaunchRef>,
    /// `launchRef` resolved against the class as read with the Machine; never stored.
    #[serde(skip)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub resolved_launch: Option<LaunchSpec>,
    /// Tags from the Cluster and pool, kept in step with its MachineSet's template in
    /// place; the instance gets them at launch and through CreateTags after.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_tags: BTreeMap<String, String>,
    /// Taints for the Node, kept in step with the MachineSet's template in place.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<MachineTaint>,
    /// Timeouts of the deletion's steps, kept in step with the MachineSet's template in
    /// place.
    #[serde(skip_serializing_if = "MachineDeletion::is_default")]
    pub deletion: MachineDeletion,
}

impl MachineSpec {
    /// The launch spec: the inline one, or the one `launchRef` resolved to. None for a
    /// reference whose class is gone or no longer resolves to its hash.
    pub fn launch(&self) -> Option<&LaunchSpec> {
        match &self.launch_ref {
            None => Some(&self.launch),
            Some(_) => self.resolved_launch.as_ref(),
        }
    }
}

/// `spec.launchRef`: which launch spec of the Machine's class the Machine was made with.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LaunchRef {
    /// The hash of the launch spec resolved from the class (16 hex characters).
    pub hash: String,
    /// The pool is pinned to the Machine's failure domain: the class's other subnets
    /// are not capacity fallbacks (the resolved spec lists no subnets).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_subnet: bool,
}

/// A fully resolved launch: no defaults left to apply, nothing left to look up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct LaunchSpec {
    pub image_id: String,
    /// Tried in order.
    pub instance_types: Vec<String>,
    /// The class's subnets, in order: where a launch falls back to when the Machine's
    /// own failure domain has no capacity. Empty on Machines made before fallback existed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    pub root_volume: RootVolume,
    pub market: Market,
    pub metadata_options: MetadataOptions,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// How the instance joins its cluster: Capstan renders the user data at launch
    /// (the cluster's endpoint and certificate authority are read then, not copied here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Bootstrap>,
}

impl LaunchSpec {
    /// Nothing set: how a Machine with a `launchRef` stores its inline spec.
    pub fn is_unset(&self) -> bool {
        *self == LaunchSpec::default()
    }
}

/// Where a Machine is in its life (Cluster API's phases).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum MachinePhase {
    /// Known, nothing launched yet.
    #[default]
    Pending,
    /// Launch requested; the instance id is not recorded yet.
    Provisioning,
    /// Instance id recorded; the instance is not running yet.
    Provisioned,
    Running,
    Deleting,
    Deleted,
    /// Needs a person or a health check: see `failureReason` and `failureMessage`.
    Failed,
}

/// EC2's instance states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => InstanceState::Pending,
            "running" => InstanceState::Running,
            "stopping" => InstanceState::Stopping,
            "stopped" => InstanceState::Stopped,
            "shutting-down" => InstanceState::ShuttingDown,
            "terminated" => InstanceState::Terminated,
            _ => return None,
        })
    }

    /// Terminated instances never come back.
    pub fn is_final(self) -> bool {
        self == InstanceState::Terminated
    }

    /// Still an instance we pay for and must account for.
    pub fn is_live(self) -> bool {
        self != InstanceState::Terminated
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MachineAddress {
    #[serde(rename = "type")]
    pub address_type: String,
    pub address: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct MachineStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    pub phase: MachinePhase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_state: Option<InstanceState>,
    /// When EC2 reported `instanceState`; older reports are ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub instance_state_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<MachineAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub launch_requested_at: Option<Timestamp>,
    /// The batched launch this Machine is (or was launched as) a member of: the
    /// call's ClientToken, which every instance of the call carries as the
    /// `capstan.dev/launch-batch` tag, and the AmiLaunchIndex of this Machine's
    /// instance. Recorded before the call; what proves the instance is this Machine's.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "lenient")]
    pub launch_batch: Option<LaunchBatchMember>,
    /// Launches that failed in a way a retry may fix; drives the backoff.
    #[serde(skip_serializing_if = "is_zero")]
    pub launch_attempts: u32,
    /// No launch before this time (backoff after a failed launch).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub retry_after: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub running_since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    /// The subnet the instance actually runs in: the Machine's failure domain, or
    /// another subnet of its class when capacity ran out there. Failure-domain balance
    /// counts this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_domain: Option<String>,
    /// Offerings (instance type in subnet) that failed with an unfulfillable code, each
    /// skipped until its `until`, so the next pass (stateless) knows what to try next.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unavailable_offerings: Vec<UnavailableOffering>,
    /// The additional tags last applied to the instance (at launch or by CreateTags);
    /// a difference from `spec.additionalTags` means tags to apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_tags: Option<BTreeMap<String, String>>,
    /// The Kubernetes Node the instance became, found by its providerID (only when the
    /// Cluster declares `spec.access`).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "lenient")]
    pub node_ref: Option<NodeRef>,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "lenient")]
    pub node_info: Option<NodeInfo>,
    /// The Node's own conditions as last read (Ready, MemoryPressure, …), which
    /// health checks' `unhealthyNodeConditions` judge.
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    pub node_conditions: Conditions,
    /// The label keys Capstan last put on the Node, so a label dropped from the pool is
    /// removed from the Node too (and nobody else's labels are).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient_vec"
    )]
    pub node_labels: Vec<String>,
    /// The taints (key and effect) Capstan last put on the Node, likewise.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient_vec"
    )]
    pub node_taints: Vec<AppliedTaint>,
    /// Where the Machine's deletion is (the step and since when), so any invocation
    /// picks it up where the last one left it. Only while being deleted.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "lenient")]
    pub deletion: Option<DeletionStatus>,
    #[serde(skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
}

/// A Machine's place in a batched launch (`status.launchBatch`).
///
/// The token commits to every member's namespace, name and uid in launch order (a
/// Merkle root, salted): `proof` is the path from this Machine's leaf to that root, so
/// only the Machine that really is member `index` can show it. A copy of the item
/// under another name carries the same record and proves nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LaunchBatchMember {
    /// The batch's ClientToken, also its instances' `capstan.dev/launch-batch` tag.
    pub token: String,
    /// The AmiLaunchIndex of the instance that is this Machine's.
    pub index: u32,
    /// The batch's salt (the launching invocation's entropy), hashed into the token.
    #[serde(default)]
    pub salt: String,
    /// The sibling hashes from this Machine's leaf up to the batch's root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proof: Vec<String>,
}

/// The steps of a Machine's deletion when its Cluster declares `spec.access`, in order
/// (Cluster API's "Machine deletion process"). Without access, a Machine goes straight
/// to `Terminating`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum DeletionStep {
    /// `pre-drain.delete.hook.capstan.dev/<owner>` annotations are on the Machine.
    #[default]
    WaitingForPreDrainHook,
    /// Cordoned; evicting the Node's pods.
    DrainingNode,
    /// Drained; waiting for the Node's volumes to detach.
    WaitingForVolumeDetach,
    /// `pre-terminate.delete.hook.capstan.dev/<owner>` annotations are on the Machine.
    WaitingForPreTerminateHook,
    /// Terminating the instance, then deleting the Node.
    Terminating,
}

impl DeletionStep {
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionStep::WaitingForPreDrainHook => "WaitingForPreDrainHook",
            DeletionStep::DrainingNode => "DrainingNode",
            DeletionStep::WaitingForVolumeDetach => "WaitingForVolumeDetach",
            DeletionStep::WaitingForPreTerminateHook => "WaitingForPreTerminateHook",
            DeletionStep::Terminating => "Terminating",
        }
    }
}

/// A Machine's deletion as recorded (Cluster API v1beta2's `status.deletion`, plus the
/// step and what it waits for).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct DeletionStatus {
    pub step: DeletionStep,
    /// When the step began.
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub step_since: Option<Timestamp>,
    /// When the drain began (the drain timeout counts from here).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub node_drain_start_time: Option<Timestamp>,
    /// When the wait for volumes began (the volume detach timeout counts from here).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub wait_for_node_volume_detach_start_time: Option<Timestamp>,
    /// When deleting the Node began, once the instance was gone (the Node deletion
    /// timeout counts from here).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub node_deletion_start_time: Option<Timestamp>,
    /// When a pass last looked at the Node (drained or checked volumes). The next waits
    /// its turn: a status write wakes the Machine at once, and without this every
    /// changed message would start another pass straight away.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub last_node_pass: Option<Timestamp>,
    /// The drain ended without evicting everything: excluded, or out of time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_skipped: Option<String>,
    /// What the step waits for, as the Deleting condition says it (blocking pods and
    /// the budgets that block them, volumes still attached, hooks).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A taint Capstan put on a Node, by its identity (key and effect).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppliedTaint {
    pub key: String,
    pub effect: TaintEffect,
}

/// Which Node a Machine's instance became (Cluster API's `status.nodeRef`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct NodeRef {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// What the Node's kubelet reports about itself (`status.nodeInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct NodeInfo {
    pub kubelet_version: String,
    pub os_image: String,
}

/// One instance type in one subnet that EC2 could not fulfil, remembered for a while
/// (Karpenter skips such an offering for 3 minutes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct UnavailableOffering {
    pub instance_type: String,
    pub subnet: String,
    /// EC2's error code, e.g. `InsufficientInstanceCapacity`.
    pub code: String,
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub until: Option<Timestamp>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Reads a field others may also write (a node agent, an older or newer Capstan) as
/// None when its value is not the shape expected, instead of costing the whole object.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

fn lenient_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(lenient(d)?.unwrap_or_default())
}
