//! A replica of a remote installation's control plane, in memory, for `apply
//! --dry-run` and `delete --dry-run`.
//!
//! Built from what is live: every item of the table, and every instance that carries
//! the installation's tag (DescribeInstances), copied with its id, tags and state into
//! the simulated EC2. The replica is first run until it settles — so the plan is the
//! change the files make, not the remainder of whatever was in flight — and then takes
//! the new desired items. The simulated EC2 offers the images, subnets and instance
//! types that the live instances and the MachineClasses (live and in the files) name:
//! the plan assumes they exist; whether AWS agrees shows when applying.

use anyhow::Context as _;
use capstan_embedded::{Embedded, EmbeddedConfig};
use capstan_model::{Item, Object};
use capstan_runtime::ports::Instance;
use capstan_runtime::{Expect, Store};

use crate::target::Local;

/// The seed of every replica.
const REPLICA_SEED: u64 = 1;

/// A replica of a remote installation.
#[cfg(feature = "aws")]
pub async fn of(remote: &crate::target::Remote, objects: &[Object]) -> anyhow::Result<Local> {
    use capstan_aws::Ec2Compute;
    use capstan_model::labels::TAG_INSTALLATION;
    use capstan_runtime::Compute;
    let items = remote.store.scan("").await.with_context(|| {
        format!(
            "reading table {:?} ({}) to plan on a replica",
            remote.table, remote.context
        )
    })?;
    let instances = Ec2Compute::new(remote.clients.ec2.clone())
        .describe_instances(vec![(
            TAG_INSTALLATION.to_string(),
            remote.installation.clone(),
        )])
        .await
        .with_context(|| {
            format!(
                "describing the instances of installation {:?} to plan on a replica",
                remote.installation
            )
        })?;
    build(
        items,
        instances,
        &remote.installation,
        &remote.clients.region,
        objects,
    )
    .await
}

/// A replica of `items` and `instances`: settled, ready to take the plan's writes.
pub async fn build(
    items: Vec<Item>,
    instances: Vec<Instance>,
    installation: &str,
    region: &str,
    objects: &[Object],
) -> anyhow::Result<Local> {
    let mut config = EmbeddedConfig {
        installation: installation.to_string(),
        ..EmbeddedConfig::default()
    };
    config.ec2.region = region.to_string();
    let live = capstan_runtime::table::trees_by_partition(items.iter().cloned());
    let classes = live
        .values()
        .flat_map(|t| t.all().map(|s| s.object.clone()).collect::<Vec<_>>())
        .chain(objects.iter().cloned());
    for object in classes {
        let (image, subnets, types) = match &object {
            Object::MachineClass(c) => (
                c.spec.image_id.clone(),
                c.spec.subnets.clone(),
                c.spec.instance_types.clone(),
            ),
            Object::Machine(m) => match m.spec.launch() {
                Some(l) => (
                    l.image_id.clone(),
                    l.subnets.clone(),
                    l.instance_types.clone(),
                ),
                None => continue,
            },
            _ => continue,
        };
        config.ec2.images.insert(image);
        for subnet in subnets {
            let zone = format!("{}-replica", config.ec2.region);
            config.ec2.subnets.entry(subnet).or_insert(zone);
        }
        config.ec2.instance_types.extend(types);
    }
    for i in &instances {
        config.ec2.instance_types.insert(i.instance_type.clone());
    }
    let cp = Embedded::virtual_time_from(config, REPLICA_SEED, capstan_model::Timestamp::now());
    for instance in instances {
        cp.ec2.restore(instance);
    }
    for item in items {
        put(&cp, item).await?;
    }
    let mut replica = Local::replica(cp);
    replica.settle().await?;
    Ok(replica)
}

async fn put(cp: &Embedded, item: Item) -> anyhow::Result<()> {
    cp.store
        .put(item, Expect::Any)
        .await
        .context("copying an item into the replica")
}
