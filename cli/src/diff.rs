//! `capstan diff -f FILE`: what the files say against what the table holds, as a
//! unified diff of each object's desired state (metadata people set, and spec).

use std::process::ExitCode;

use anyhow::Context as _;
use capstan_model::Object;

use crate::target::Target;

/// What a person wrote of an object, as YAML: the part `apply` writes.
fn desired_yaml(object: &Object) -> anyhow::Result<String> {
    let mut value = object.to_json();
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
        if let Some(serde_json::Value::Object(meta)) = map.get_mut("metadata") {
            meta.retain(|k, _| {
                matches!(k.as_str(), "name" | "namespace" | "labels" | "annotations")
            });
        }
    }
    serde_saphyr::to_string(&value).context("printing YAML")
}

/// Prints a unified diff per object that differs; exit 1 when any does (as `kubectl
/// diff` and diff(1) do), 0 when none.
pub async fn run(target: &Target, objects: &[Object]) -> anyhow::Result<ExitCode> {
    let trees = target.trees().await?;
    let mut differ = false;
    for object in objects {
        let key = object.key();
        let live = trees
            .iter()
            .filter_map(|t| t.get(key.kind, &key.name))
            .find(|s| s.key() == key && !s.is_deleting());
        let old = match live {
            Some(s) => desired_yaml(&s.object)?,
            None => String::new(),
        };
        let new = desired_yaml(object)?;
        if old == new {
            continue;
        }
        differ = true;
        let name = format!("{}/{}/{}", key.namespace, key.kind, key.name);
        print!(
            "{}",
            unified(&old, &new, &format!("live/{name}"), &format!("file/{name}"))
        );
    }
    Ok(if differ {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A unified diff of two texts, three lines of context.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Longest common subsequence, by dynamic programming: manifests are small.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // The edit script: (' ' | '-' | '+', old line index, new line index, text).
    let mut ops: Vec<(char, usize, usize, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', i, j, a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i, j, a[i]));
            i += 1;
        } else {
            ops.push(('+', i, j, b[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 3;
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = (changed[k] + CONTEXT + 1).min(ops.len());
        while k + 1 < changed.len() && changed[k + 1] <= end + CONTEXT {
            k += 1;
            end = (changed[k] + CONTEXT + 1).min(ops.len());
        }
        let hunk = &ops[start..end];
        let old_len = hunk.iter().filter(|o| o.0 != '+').count();
        let new_len = hunk.iter().filter(|o| o.0 != '-').count();
        let old_start = if old_len == 0 {
            hunk[0].1
        } else {
            hunk[0].1 + 1
        };
        let new_start = if new_len == 0 {
            hunk[0].2
        } else {
            hunk[0].2 + 1
        };
        out.push_str(&format!(
            "@@ -{old_start},{old_len} +{new_start},{new_len} @@\n"
        ));
        for (op, _, _, text) in hunk {
            out.push_str(&format!("{op}{text}\n"));
        }
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_one_hunk_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\n";
        let d = unified(old, new, "old", "new");
        assert_eq!(
            d,
            "--- old\n+++ new\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n"
        );
    }

    #[test]
    fn a_new_object_is_all_additions() {
        let d = unified("", "x\ny\n", "old", "new");
        assert_eq!(d, "--- old\n+++ new\n@@ -0,0 +1,2 @@\n+x\n+y\n");
    }
}
