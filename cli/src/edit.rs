//! `capstan scale` and `capstan rollout`: read an object's desired state, change one
//! field, write it back conditionally on the version read (`Target::edit`): two edits
//! at once both land, the later one re-applied on top of the earlier.
//!
//! What a person edits is what a person wrote: a worker pool lives in its Cluster's
//! spec, so `scale pool demo/workers` edits the Cluster; a MachineDeployment that a
//! Cluster controls is rewritten by the cluster reconciler, so editing it directly is
//! refused with the command that works.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use capstan_model::{Kind, Object, StoredObject};
use capstan_reconcile::Tree;
use capstan_reconcile::cluster::deployment_name;

use crate::apply::applied_line;
use crate::kinds;
use crate::target::Target;
use crate::wait::{self, Waited};

/// One edit of an object's desired state.
type Change = Box<dyn FnMut(&mut Object) -> anyhow::Result<()>>;

/// What `scale` and `rollout` act on.
enum Subject {
    /// A worker pool of a Cluster: (cluster, pool).
    Pool(String, String),
    Deployment(String),
    Cluster(String),
}

fn subject(words: &[String]) -> anyhow::Result<Subject> {
    let (kind, name) = kinds::kind_and_name(words)?;
    if kind.eq_ignore_ascii_case("pool") || kind.eq_ignore_ascii_case("pools") {
        return match name.split_once('/') {
            Some((cluster, pool)) if !cluster.is_empty() && !pool.is_empty() => {
                Ok(Subject::Pool(cluster.into(), pool.into()))
            }
            _ => bail!("pool {name:?}: name a pool as CLUSTER/POOL, e.g. pool demo/workers"),
        };
    }
    match kinds::parse(&kind)? {
        Kind::MachineDeployment => Ok(Subject::Deployment(name)),
        Kind::Cluster => Ok(Subject::Cluster(name)),
        other => bail!(
            "{other} cannot be scaled or rolled: use a pool (pool CLUSTER/POOL) or a machinedeployment"
        ),
    }
}

/// The desired state of a MachineDeployment people may edit, or the command to use.
fn own_deployment<'a>(
    trees: &'a [Tree],
    name: &str,
    namespace: &str,
) -> anyhow::Result<&'a StoredObject> {
    let s = kinds::find(trees, Kind::MachineDeployment, name, namespace, None)?;
    if let Some(owner) = s.object.metadata().controller()
        && owner.kind == Kind::Cluster
    {
        let cluster = &owner.name;
        let pool = name.strip_prefix(&format!("{cluster}-")).unwrap_or(name);
        bail!(
            "MachineDeployment {name:?} belongs to Cluster {cluster:?}, whose reconciler would undo the edit: use `capstan scale pool {cluster}/{pool} --replicas N` or `capstan rollout restart pool/{cluster}/{pool}`"
        );
    }
    Ok(s)
}

fn pool_of<'a>(
    object: &'a mut Object,
    cluster: &str,
    pool: &str,
) -> anyhow::Result<&'a mut capstan_model::WorkerPool> {
    let Object::Cluster(c) = object else {
        bail!("Cluster {cluster:?} is not a Cluster");
    };
    let names: Vec<String> = c.spec.workers.iter().map(|p| p.name.clone()).collect();
    match c.spec.workers.iter_mut().find(|p| p.name == pool) {
        Some(p) => Ok(p),
        None if pool == "control-plane" => bail!(
            "the control plane of {cluster:?} is not a worker pool: set spec.controlPlane.replicas in the Cluster's manifest and apply it"
        ),
        None => bail!(
            "Cluster {cluster:?} has no worker pool {pool:?} (it has: {})",
            names.join(", ")
        ),
    }
}

/// `capstan scale pool CLUSTER/POOL --replicas N`, `scale md NAME --replicas N`.
pub async fn scale(
    target: &mut Target,
    words: &[String],
    replicas: i32,
    namespace: &str,
) -> anyhow::Result<ExitCode> {
    if replicas < 0 {
        bail!("--replicas {replicas}: a count of machines is 0 or more");
    }
    let trees = target.trees().await?;
    let (key, mut change): (_, Change) = match subject(words)? {
        Subject::Pool(cluster, pool) => {
            let key = kinds::find(&trees, Kind::Cluster, &cluster, namespace, None)?.key();
            let change = move |object: &mut Object| {
                let p = pool_of(object, &cluster, &pool)?;
                if p.autoscaling.is_some() {
                    bail!(
                        "pool {cluster}/{pool} is autoscaled: its size belongs to the autoscaler; change autoscaling.min/max in the Cluster's manifest instead"
                    );
                }
                p.replicas = Some(replicas);
                Ok(())
            };
            (key, Box::new(change))
        }
        Subject::Deployment(name) => {
            let key = own_deployment(&trees, &name, namespace)?.key();
            let change = move |object: &mut Object| {
                if let Object::MachineDeployment(d) = object {
                    d.spec.replicas = replicas;
                }
                Ok(())
            };
            (key, Box::new(change))
        }
        Subject::Cluster(name) => bail!(
            "a Cluster has no size of its own: scale one of its pools, `capstan scale pool {name}/POOL --replicas N`"
        ),
    };
    let applied = target
        .edit(&key, &mut |object| {
            change(object)?;
            revalidate(object)
        })
        .await?;
    println!("{}", applied_line(&applied));
    Ok(ExitCode::SUCCESS)
}

/// Runs the same validation `capstan validate` runs on the edited object.
pub fn revalidate(object: &Object) -> anyhow::Result<()> {
    let errors = capstan_model::validate_object(object);
    if errors.is_empty() {
        return Ok(());
    }
    bail!(
        "{}/{} would not be valid: {}",
        object.kind(),
        object.name(),
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RolloutVerb {
    /// Follow the rollout until every machine runs the current template.
    Status,
    /// Replace every machine (sets rollout.after to now).
    Restart,
    /// Stop reconciling the MachineDeployment (or the whole Cluster).
    Pause,
    /// Undo pause.
    Resume,
}

pub async fn rollout(
    target: &mut Target,
    verb: RolloutVerb,
    words: &[String],
    namespace: &str,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let subject = subject(words)?;
    if verb == RolloutVerb::Status {
        return status(target, subject, namespace, timeout).await;
    }
    let trees = target.trees().await?;
    let now = target.now();
    let (key, mut change): (_, Change) = match (subject, verb) {
        (Subject::Pool(cluster, pool), RolloutVerb::Restart) => {
            let key = kinds::find(&trees, Kind::Cluster, &cluster, namespace, None)?.key();
            let change = move |object: &mut Object| {
                let p = pool_of(object, &cluster, &pool)?;
                p.rollout.get_or_insert_with(Default::default).after = Some(now);
                Ok(())
            };
            (key, Box::new(change))
        }
        (Subject::Pool(cluster, _), _) => bail!(
            "a pool cannot be paused on its own: pause the whole cluster with `capstan rollout {} cluster/{cluster}`",
            if verb == RolloutVerb::Pause {
                "pause"
            } else {
                "resume"
            }
        ),
        (Subject::Deployment(name), verb) => {
            let key = own_deployment(&trees, &name, namespace)?.key();
            let change = move |object: &mut Object| {
                if let Object::MachineDeployment(d) = object {
                    match verb {
                        RolloutVerb::Restart => d.spec.rollout.after = Some(now),
                        RolloutVerb::Pause => d.spec.paused = true,
                        _ => d.spec.paused = false,
                    }
                }
                Ok(())
            };
            (key, Box::new(change))
        }
        (Subject::Cluster(name), RolloutVerb::Restart) => {
            bail!("restart one pool at a time: `capstan rollout restart pool/{name}/POOL`")
        }
        (Subject::Cluster(name), verb) => {
            let key = kinds::find(&trees, Kind::Cluster, &name, namespace, None)?.key();
            let change = move |object: &mut Object| {
                if let Object::Cluster(c) = object {
                    c.spec.paused = verb == RolloutVerb::Pause;
                }
                Ok(())
            };
            (key, Box::new(change))
        }
    };
    let applied = target
        .edit(&key, &mut |object| {
            change(object)?;
            revalidate(object)
        })
        .await?;
    println!("{}", applied_line(&applied));
    Ok(ExitCode::SUCCESS)
}

/// Follows a MachineDeployment's rollout until every replica is up to date and
/// available, printing progress as kubectl does.
async fn status(
    target: &Target,
    subject: Subject,
    namespace: &str,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    // A pool's rollout starts in its Cluster: until the cluster reconciler has taken
    // the latest change in, the MachineDeployment does not know of it yet.
    let (name, cluster) = match subject {
        Subject::Pool(cluster, pool) => (deployment_name(&cluster, &pool), Some(cluster)),
        Subject::Deployment(name) => (name, None),
        Subject::Cluster(name) => {
            bail!("follow one pool's rollout: `capstan rollout status pool/{name}/POOL`")
        }
    };
    let trees = target.trees().await?;
    let key = kinds::find(&trees, Kind::MachineDeployment, &name, namespace, None)
        .with_context(|| format!("following the rollout of {name:?}"))?
        .key();
    let waited = wait::until(target, timeout, |trees| {
        if let Some(cluster) = &cluster
            && trees
                .iter()
                .filter_map(|t| t.get(Kind::Cluster, cluster))
                .any(|c| c.key().namespace == key.namespace && (c.is_new() || c.spec_changed()))
        {
            return Err(format!(
                "Waiting for Cluster {cluster:?} to take in its latest change"
            ));
        }
        let Some(s) = trees
            .iter()
            .filter_map(|t| t.get(Kind::MachineDeployment, &key.name))
            .find(|s| s.key() == key)
        else {
            return Err(format!("MachineDeployment {name:?} is gone"));
        };
        let Some(d) = s.object.as_machine_deployment() else {
            return Err("not a MachineDeployment".into());
        };
        let want = d.spec.replicas;
        let st = &d.status;
        if s.is_new() || s.spec_changed() {
            return Err(format!(
                "Waiting for deployment {name:?} rollout to start: its latest change is not yet reconciled"
            ));
        }
        // The MachineSet the template and its class roll to now: until it exists, the
        // rollout of the latest change (say, a MachineClass edit) has not started, and
        // the status still describes the one before.
        let class = trees
            .iter()
            .filter_map(|t| t.get(Kind::MachineClass, &d.spec.template.spec.machine_class))
            .filter(|c| c.key().namespace == key.namespace)
            .find_map(|s| s.object.as_machine_class().map(|c| (c.spec.clone(), s)));
        if let Some((class_spec, _)) = &class {
            let current = capstan_reconcile::deployment::current_set_name(
                d,
                class_spec,
                target.now(),
            );
            if !trees
                .iter()
                .filter_map(|t| t.get(Kind::MachineSet, &current))
                .any(|ms| ms.key().namespace == key.namespace)
            {
                return Err(format!(
                    "Waiting for deployment {name:?} rollout to start: MachineSet {current:?} is not there yet"
                ));
            }
        }
        if class.is_some_and(|(_, c)| c.is_new() || c.spec_changed()) {
            return Err(format!(
                "Waiting for deployment {name:?} rollout to start: its MachineClass's latest change is not yet reconciled"
            ));
        }
        if st.up_to_date_replicas < want {
            return Err(format!(
                "Waiting for deployment {name:?} rollout to finish: {} out of {want} new replicas have been updated...",
                st.up_to_date_replicas
            ));
        }
        if st.replicas > st.up_to_date_replicas {
            return Err(format!(
                "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
                st.replicas - st.up_to_date_replicas
            ));
        }
        // Old Machines still leaving (draining, detaching volumes, terminating): the
        // rollout is not done while they hold their instances.
        let leaving = trees
            .iter()
            .filter(|t| t.get(Kind::MachineDeployment, &key.name).is_some_and(|m| m.key() == key))
            .flat_map(|t| {
                t.owned_by(Kind::MachineSet, Kind::MachineDeployment, &key.name)
                    .flat_map(move |ms| t.owned_by(Kind::Machine, Kind::MachineSet, ms.object.name()))
            })
            .filter(|m| m.is_deleting())
            .count();
        if leaving > 0 {
            let draining = match st.draining_replicas {
                0 => String::new(),
                n => format!(", {n} draining"),
            };
            return Err(format!(
                "Waiting for deployment {name:?} rollout to finish: {leaving} old replicas are being deleted{draining}..."
            ));
        }
        if st.available_replicas < want {
            return Err(format!(
                "Waiting for deployment {name:?} rollout to finish: {} of {want} updated replicas are available...",
                st.available_replicas
            ));
        }
        Ok(())
    })
    .await?;
    if matches!(waited, Waited::Done) {
        println!("deployment {name:?} successfully rolled out");
    }
    Ok(waited.exit(&format!("the rollout of {name:?}")))
}
