//! `capstan describe`: a cluster's tree with what is not Ready and since when, or one
//! object in full (spec, status, conditions with their times).

use std::process::ExitCode;

use anyhow::Context as _;
use capstan_model::meta::condition;
use capstan_model::{ConditionStatus, Kind, StoredObject, Timestamp};
use capstan_reconcile::Tree;

use crate::kinds;
use crate::output::{age, paint, table};
use crate::target::Target;

pub async fn run(
    target: &Target,
    kind: &str,
    name: &str,
    namespace: &str,
    cluster: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let kind = kinds::parse(kind)?;
    let trees = target.trees().await?;
    let found = kinds::find(&trees, kind, name, namespace, cluster)?;
    let now = target.now();
    if kind == Kind::Cluster {
        let tree = trees
            .iter()
            .find(|t| {
                t.get(Kind::Cluster, name)
                    .is_some_and(|s| s.key() == found.key())
            })
            .context("the cluster's tree went missing")?;
        print!("{}", cluster_view(tree, now));
    } else {
        print!("{}", object_view(found, now)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The tree (as `clusterctl describe cluster`), the cluster's conditions, and every
/// object that is not Ready: why, and since when.
pub fn cluster_view(tree: &Tree, now: Timestamp) -> String {
    let mut out = capstan_runtime::describe::render(tree);
    if let Some(cluster) = tree.of_kind(Kind::Cluster).next() {
        out.push_str("\nConditions:\n");
        out.push_str(&indent(&conditions(cluster, now), 2));
    }
    let mut waiting = Vec::new();
    for s in tree.all() {
        let o = &s.object;
        let what = format!("{}/{}", o.kind(), o.name());
        if s.is_deleting() {
            waiting.push(format!("{what}: being deleted"));
            continue;
        }
        if s.is_new() || s.spec_changed() {
            waiting.push(format!("{what}: not yet reconciled since its last change"));
            continue;
        }
        match o.conditions().get(condition::READY) {
            Some(c) if c.status == ConditionStatus::True => {}
            Some(c) => waiting.push(format!(
                "{what}: Ready={:?} since {} ({} ago): {}: {}",
                c.status,
                c.last_transition_time,
                age(Some(c.last_transition_time), now),
                c.reason,
                c.message
            )),
            None => waiting.push(format!("{what}: no Ready condition yet")),
        }
    }
    if waiting.is_empty() {
        out.push_str("\nEvery object is Ready.\n");
    } else {
        out.push_str("\nNot Ready:\n");
        for w in waiting {
            out.push_str(&format!("  {}\n", paint(&w, 33)));
        }
    }
    out
}

fn conditions(s: &StoredObject, now: Timestamp) -> String {
    let list = &s.object.conditions().0;
    if list.is_empty() {
        return "<none>\n".to_string();
    }
    let mut rows = vec![vec![
        "TYPE".to_string(),
        "STATUS".to_string(),
        "SINCE".to_string(),
        "REASON".to_string(),
        "MESSAGE".to_string(),
    ]];
    for c in list {
        rows.push(vec![
            c.type_.clone(),
            format!("{:?}", c.status),
            format!("{} ago", age(Some(c.last_transition_time), now)),
            c.reason.clone(),
            c.message.clone(),
        ]);
    }
    table(&rows)
}

fn indent(text: &str, by: usize) -> String {
    text.lines().map(|l| format!("{:by$}{l}\n", "")).collect()
}

/// One object: identity, spec and status as YAML, conditions as a table.
pub fn object_view(s: &StoredObject, now: Timestamp) -> anyhow::Result<String> {
    let o = &s.object;
    let m = o.metadata();
    let mut out = String::new();
    out.push_str(&format!("Name:         {}\n", m.name));
    out.push_str(&format!("Namespace:    {}\n", m.namespace));
    out.push_str(&format!("Kind:         {}\n", o.kind()));
    out.push_str(&format!("Cluster:      {}\n", o.cluster_name()));
    let pairs = |map: &std::collections::BTreeMap<String, String>| {
        if map.is_empty() {
            "<none>".to_string()
        } else {
            map.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    out.push_str(&format!("Labels:       {}\n", pairs(&m.labels)));
    out.push_str(&format!("Annotations:  {}\n", pairs(&m.annotations)));
    if let Some(owner) = m.controller() {
        out.push_str(&format!("Controlled By: {}/{}\n", owner.kind, owner.name));
    }
    if let Some(t) = m.creation_timestamp {
        out.push_str(&format!("Created:      {t} ({} ago)\n", age(Some(t), now)));
    }
    if s.is_deleting() {
        out.push_str(
            "Deleting:     yes: its desired item is gone; its reconciler is tearing it down\n",
        );
    }
    if s.spec_changed() {
        out.push_str("Reconciled:   not since its spec last changed\n");
    }
    let yaml = |v: serde_json::Value| -> anyhow::Result<String> {
        Ok(indent(
            &serde_saphyr::to_string(&v).context("printing YAML")?,
            2,
        ))
    };
    out.push_str("Spec:\n");
    out.push_str(&yaml(o.spec_json())?);
    let mut status = o.status_json();
    if let Some(map) = status.as_object_mut() {
        map.remove("conditions");
    }
    out.push_str("Status:\n");
    out.push_str(&yaml(status)?);
    out.push_str("Conditions:\n");
    out.push_str(&indent(&conditions(s, now), 2));
    Ok(out)
}
