//! `capstan annotate`: set or remove an object's annotations, as `kubectl annotate`
//! does (`KEY=VALUE`, `KEY-`). While a Machine is being deleted only removals are
//! possible: that is how a deletion hook's owner lets the deletion go on
//! (`pre-drain.delete.hook.capstan.dev/<owner>-`).

use std::process::ExitCode;

use anyhow::bail;
use capstan_model::Object;

use crate::kinds;
use crate::target::Target;

/// One change: set `key` to `value`, or remove `key` (None).
struct Change {
    key: String,
    value: Option<String>,
}

fn changes(words: &[String]) -> anyhow::Result<Vec<Change>> {
    words
        .iter()
        .map(|w| {
            if let Some((key, value)) = w.split_once('=') {
                if key.is_empty() {
                    bail!("{w:?}: write KEY=VALUE to set an annotation");
                }
                Ok(Change {
                    key: key.into(),
                    value: Some(value.into()),
                })
            } else if let Some(key) = w.strip_suffix('-').filter(|k| !k.is_empty()) {
                Ok(Change {
                    key: key.into(),
                    value: None,
                })
            } else {
                bail!("{w:?}: write KEY=VALUE to set an annotation, or KEY- to remove one")
            }
        })
        .collect()
}

pub async fn run(
    target: &mut Target,
    kind: &str,
    name: &str,
    words: &[String],
    namespace: &str,
    cluster: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let changes = changes(words)?;
    if changes.is_empty() {
        bail!("name at least one annotation: KEY=VALUE to set it, KEY- to remove it");
    }
    let kind = kinds::parse(kind)?;
    let trees = target.trees().await?;
    let stored = kinds::find(&trees, kind, name, namespace, cluster)?;
    let key = stored.key();
    if stored.is_deleting() {
        if let Some(set) = changes.iter().find(|c| c.value.is_some()) {
            bail!(
                "{kind}/{name} is being deleted: annotations can only be removed now (e.g. a deletion hook, {}-), not set ({})",
                capstan_model::labels::PRE_DRAIN_HOOK_PREFIX.to_string() + "OWNER",
                set.key
            );
        }
        for c in &changes {
            let removed = target.remove_annotation(&key, &c.key).await?;
            println!(
                "{kind}/{name} {}",
                if removed {
                    format!("annotation {} removed", c.key)
                } else {
                    format!("has no annotation {}", c.key)
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let applied = target
        .edit(&key, &mut |object: &mut Object| {
            let annotations = &mut object.metadata_mut().annotations;
            for c in &changes {
                match &c.value {
                    Some(v) => {
                        annotations.insert(c.key.clone(), v.clone());
                    }
                    None => {
                        annotations.remove(&c.key);
                    }
                }
            }
            crate::edit::revalidate(object)
        })
        .await?;
    println!("{}", crate::apply::applied_line(&applied));
    Ok(ExitCode::SUCCESS)
}
