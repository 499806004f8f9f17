//! `capstan apply` and `capstan delete` on any target: created / configured /
//! unchanged / pruned / deleted per object, as kubectl reports them, and `--wait`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use capstan_model::{Object, ObjectKey};
use capstan_reconcile::Tree;
use capstan_runtime::apply::Applied;

use crate::kinds;
use crate::target::Target;
use crate::wait::{self, Waited};

pub struct Options {
    /// `--prune --cluster NAME`: delete that cluster's objects the files do not hold.
    pub prune_cluster: Option<String>,
    pub namespace: String,
    pub wait: bool,
    pub timeout: Duration,
}

/// Reads and validates exactly as `capstan validate` does; prints the report and
/// returns None when anything is wrong (nothing is written then).
pub fn read(files: &[PathBuf], done: &str) -> Option<Vec<Object>> {
    match crate::input::read(files) {
        Ok(objects) => Some(objects),
        Err(report) => {
            eprint!("{report}");
            eprintln!("nothing was {done}");
            None
        }
    }
}

pub fn applied_line(applied: &Applied) -> String {
    let (key, verb) = match applied {
        Applied::Created(k) => (k, "created"),
        Applied::Configured(k) => (k, "configured"),
        Applied::Unchanged(k) => (k, "unchanged"),
    };
    format!("{}/{} {verb}", key.kind, key.name)
}

/// The objects of `cluster` in `namespace` that people wrote (no controller owns them),
/// that are not being deleted, and that `keep` does not name: what `--prune` deletes.
pub fn prunable(
    trees: &[Tree],
    namespace: &str,
    cluster: &str,
    keep: &[ObjectKey],
) -> Vec<ObjectKey> {
    let mut keys: Vec<ObjectKey> = trees
        .iter()
        .flat_map(|t| t.all())
        .filter(|s| {
            s.object.metadata().namespace == namespace && s.object.cluster_name() == cluster
        })
        .filter(|s| !s.is_deleting() && s.object.metadata().controller().is_none())
        .map(|s| s.key())
        .filter(|k| !keep.contains(k))
        .collect();
    // Children before the Cluster, which would otherwise take them along first.
    keys.sort_by_key(|k| std::cmp::Reverse(k.kind));
    keys
}

pub async fn apply(
    target: &mut Target,
    objects: &[Object],
    options: &Options,
) -> anyhow::Result<ExitCode> {
    let applied = target.apply(objects).await?;
    for a in &applied {
        println!("{}", applied_line(a));
    }
    let mut touched: Vec<ObjectKey> = objects.iter().map(Object::key).collect();
    if let Some(cluster) = &options.prune_cluster {
        let trees = target.trees().await?;
        let prune = prunable(&trees, &options.namespace, cluster, &touched);
        let found = target.delete(&prune).await?;
        for (key, found) in prune.into_iter().zip(found) {
            if found {
                println!("{}/{} pruned", key.kind, key.name);
            }
            touched.push(key);
        }
    }
    if !options.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let waited = wait::until(target, options.timeout, wait::converged(&touched)).await?;
    if matches!(waited, Waited::Done) {
        println!("converged");
    }
    Ok(waited.exit("the applied objects to converge"))
}

/// `delete KIND NAME` or `delete -f FILE`.
pub async fn delete(
    target: &mut Target,
    keys: Vec<ObjectKey>,
    wait_for_it: bool,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let mut deleted = Vec::new();
    let found = target.delete(&keys).await?;
    for (key, found) in keys.into_iter().zip(found) {
        println!(
            "{}/{} {}",
            key.kind,
            key.name,
            if found { "deleted" } else { "not found" }
        );
        if found {
            deleted.push(key);
        }
    }
    if !wait_for_it || deleted.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let waited = wait::until(target, timeout, wait::gone(&deleted)).await?;
    if matches!(waited, Waited::Done) {
        println!("gone: every instance of the deleted objects is terminated");
    }
    Ok(waited.exit("the deleted objects to be gone"))
}

/// The key of `KIND NAME`, looked up so that a Machine's cluster is found.
pub async fn key_of(
    target: &Target,
    words: &[String],
    namespace: &str,
    cluster: Option<&str>,
) -> anyhow::Result<ObjectKey> {
    let (kind, name) = kinds::kind_and_name(words)?;
    let kind = kinds::parse(&kind)?;
    let trees = target.trees().await?;
    Ok(kinds::find(&trees, kind, &name, namespace, cluster)?.key())
}
