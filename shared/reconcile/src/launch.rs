//! How a Machine's instance is described to EC2: the launch spec resolved from its
//! MachineClass when the Machine is made, and the one RunInstances request built from
//! it, with the tags that make the instance provably Capstan's.

use std::collections::BTreeMap;

use capstan_model::labels::{
    RESERVED_PREFIX, TAG_CLUSTER, TAG_INSTALLATION, TAG_LAUNCH_BATCH, TAG_MACHINE, TAG_MACHINE_UID,
    TAG_NAMESPACE,
};
use capstan_model::{LaunchRef, LaunchRequest, LaunchSpec, Machine, MachineClassSpec};

/// The launch spec a class resolves to: what a MachineSet's Machines name by hash
/// ([`launch_ref`]), so a later class edit rolls Machines through a new MachineSet
/// instead of changing live ones.
pub fn launch_spec(class: &MachineClassSpec) -> LaunchSpec {
    LaunchSpec {
        image_id: class.image_id.clone(),
        instance_types: class.instance_types.clone(),
        subnets: class.subnets.clone(),
        security_groups: class.security_groups.clone(),
        instance_profile: class.instance_profile.clone(),
        root_volume: class.root_volume.clone(),
        market: class.market.clone(),
        metadata_options: class.metadata_options.clone(),
        tags: class.tags.clone(),
        user_data: class.user_data.clone(),
        bootstrap: class.bootstrap.clone(),
    }
}

/// The hash a [`LaunchRef`] names: of the resolved spec, so equal specs hash equal.
pub fn launch_hash(launch: &LaunchSpec) -> String {
    capstan_model::hash::short_hash(launch, 16)
}

/// The reference a MachineSet's new Machine carries instead of a copy of `launch`
/// (the class's spec, without its subnets when `single_subnet`).
pub fn launch_ref(launch: &LaunchSpec, single_subnet: bool) -> LaunchRef {
    LaunchRef {
        hash: launch_hash(launch),
        single_subnet,
    }
}

/// The launch spec `reference` names, if `class` still resolves to it. A class edited
/// since the Machine was made resolves to another hash: None, and the Machine waits
/// for the rollout that replaces it rather than launch from a spec it was not made
/// with.
pub fn resolve_launch(class: &MachineClassSpec, reference: &LaunchRef) -> Option<LaunchSpec> {
    let mut launch = launch_spec(class);
    if reference.single_subnet {
        launch.subnets.clear();
    }
    (launch_hash(&launch) == reference.hash).then_some(launch)
}

/// The tags every instance carries from launch: the class's own, then the Cluster's and
/// pool's (`additionalTags`), then Capstan's, which win. Nothing without
/// `capstan.dev/installation` is ever terminated.
pub fn instance_tags(machine: &Machine, installation: &str) -> BTreeMap<String, String> {
    let m = &machine.metadata;
    let mut tags = machine
        .spec
        .launch()
        .map(|l| l.tags.clone())
        .unwrap_or_default();
    tags.extend(additional_tags(machine));
    tags.entry("Name".to_string())
        .or_insert_with(|| m.name.clone());
    tags.insert(
        format!("kubernetes.io/cluster/{}", machine.spec.cluster_name),
        "owned".to_string(),
    );
    tags.insert(TAG_INSTALLATION.to_string(), installation.to_string());
    tags.insert(TAG_NAMESPACE.to_string(), m.namespace.clone());
    tags.insert(TAG_CLUSTER.to_string(), machine.spec.cluster_name.clone());
    tags.insert(TAG_MACHINE.to_string(), m.name.clone());
    tags.insert(
        TAG_MACHINE_UID.to_string(),
        m.uid.clone().unwrap_or_default(),
    );
    tags
}

/// The tags an in-place retag sends (CreateTags): [`instance_tags`] without the
/// `capstan.dev/` keys. Those are the instance's identity, set at launch and never
/// changed; the installation tag among them is the guard IAM and the EC2 adapter
/// refuse to let anyone set again.
pub fn retag_tags(machine: &Machine, installation: &str) -> BTreeMap<String, String> {
    let mut tags = instance_tags(machine, installation);
    tags.retain(|k, _| !k.starts_with(RESERVED_PREFIX));
    tags
}

/// The tags that prove an instance is `machine`'s: the installation's, and the
/// Machine's namespace, cluster, name and uid, exactly as [`instance_tags`] put them at
/// launch. None for a Machine without a uid (nothing can be proven for it).
///
/// Every call on an existing instance (terminate, tag, adopt by tag, record a state)
/// first finds the instance carrying all of them: a raw item in one namespace that
/// names another namespace's instance, or a forged uid, matches none.
///
/// A Machine launched in a batch ([`crate::launch_batch`]) records the batch's token,
/// its instance's AmiLaunchIndex and its proof of membership instead: its tags are the
/// installation's, namespace, cluster and `capstan.dev/launch-batch = token`, and the
/// instance must also have the recorded launch index, which the proof must bind to
/// this Machine's name and uid ([`owns_launch_index`]).
pub fn ownership_tags(machine: &Machine, installation: &str) -> Option<Vec<(String, String)>> {
    let m = &machine.metadata;
    let uid = m.uid.clone().filter(|u| !u.is_empty())?;
    if let Some(batch) = &machine.status.launch_batch {
        return Some(vec![
            (TAG_INSTALLATION.to_string(), installation.to_string()),
            (TAG_NAMESPACE.to_string(), m.namespace.clone()),
            (TAG_CLUSTER.to_string(), machine.spec.cluster_name.clone()),
            (TAG_LAUNCH_BATCH.to_string(), batch.token.clone()),
        ]);
    }
    Some(vec![
        (TAG_INSTALLATION.to_string(), installation.to_string()),
        (TAG_NAMESPACE.to_string(), m.namespace.clone()),
        (TAG_CLUSTER.to_string(), machine.spec.cluster_name.clone()),
        (TAG_MACHINE.to_string(), m.name.clone()),
        (TAG_MACHINE_UID.to_string(), uid),
    ])
}

/// Whether an instance whose AmiLaunchIndex is `launch_index` can be `machine`'s: any
/// for a Machine launched alone; for a batch member, exactly the recorded index, and
/// only when the Machine's record proves the batch's token was sealed with this
/// Machine at that index ([`crate::launch_batch::proves_membership`]).
pub fn owns_launch_index(machine: &Machine, launch_index: Option<u32>) -> bool {
    machine
        .status
        .launch_batch
        .as_ref()
        .is_none_or(|b| launch_index == Some(b.index))
        && crate::launch_batch::proves_membership(machine)
}

/// Whether an instance carrying `tags`, launched at `launch_index`, provably belongs
/// to `machine` (see [`ownership_tags`] and [`owns_launch_index`]).
pub fn proves_ownership(
    tags: &BTreeMap<String, String>,
    launch_index: Option<u32>,
    machine: &Machine,
    installation: &str,
) -> bool {
    owns_launch_index(machine, launch_index)
        && ownership_tags(machine, installation)
            .is_some_and(|want| want.iter().all(|(k, v)| tags.get(k) == Some(v)))
}

/// Whether an instance's Capstan tags agree with one another, as a launch by Capstan
/// leaves them: namespace, cluster, machine and machine-uid all present and non-empty,
/// and the `kubernetes.io/cluster/<cluster>` tag naming the same cluster. Only such an
/// instance may be collected as an orphan.
pub fn tags_consistent(tags: &BTreeMap<String, String>) -> bool {
    let present = |k: &str| tags.get(k).is_some_and(|v| !v.is_empty());
    [TAG_NAMESPACE, TAG_CLUSTER, TAG_MACHINE, TAG_MACHINE_UID]
        .iter()
        .all(|k| present(k))
        && tags.get(TAG_CLUSTER).is_some_and(|cluster| {
            tags.get(&format!("kubernetes.io/cluster/{cluster}"))
                .is_some_and(|v| v == "owned")
        })
}

/// The additional tags a Machine's instance should carry, without the reserved
/// `capstan.dev/` keys (those are Capstan's contract with IAM and cannot be overridden).
pub fn additional_tags(machine: &Machine) -> BTreeMap<String, String> {
    machine
        .spec
        .additional_tags
        .iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One place an instance can be launched: an instance type in a subnet.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Offering {
    pub instance_type: String,
    pub subnet: String,
}

/// Every offering of a Machine in the order a launch tries them: each instance type of
/// the class in the Machine's own failure domain, then each type in the class's next
/// subnet, and so on. A Machine made before subnets were recorded only has its own.
pub fn offerings(machine: &Machine) -> Vec<Offering> {
    let Some(launch) = machine.spec.launch() else {
        return Vec::new();
    };
    let own = &machine.spec.failure_domain;
    let subnets = std::iter::once(own).chain(launch.subnets.iter().filter(|s| *s != own));
    subnets
        .flat_map(|subnet| {
            launch.instance_types.iter().map(move |t| Offering {
                instance_type: t.clone(),
                subnet: subnet.clone(),
            })
        })
        .collect()
}

/// The RunInstances request for `machine`'s instance in `offering`: the idempotency
/// token is the Machine's uid, so a repeated launch returns the first instance.
pub fn launch_request(machine: &Machine, offering: &Offering, installation: &str) -> LaunchRequest {
    let unset = LaunchSpec::default();
    let launch = machine.spec.launch().unwrap_or(&unset);
    LaunchRequest {
        client_token: machine.metadata.uid.clone().unwrap_or_default(),
        image_id: launch.image_id.clone(),
        instance_type: offering.instance_type.clone(),
        subnet_id: offering.subnet.clone(),
        security_groups: launch.security_groups.clone(),
        instance_profile: launch.instance_profile.clone(),
        root_volume: launch.root_volume.clone(),
        market: launch.market.clone(),
        metadata_options: launch.metadata_options.clone(),
        tags: instance_tags(machine, installation),
        user_data: launch.user_data.clone(),
    }
}
