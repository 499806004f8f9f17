//! Manifests in and out: multi-document YAML (and JSON, which is YAML) to objects, with
//! every error of every document reported at once, and objects back to YAML or JSON.
//!
//! Reading is bounded: a text over [`MAX_MANIFEST_BYTES`] or with more than
//! [`MAX_DOCUMENTS`] documents is refused before parsing, and each document is parsed
//! with a tight serde-saphyr budget (depth, nodes, aliases, anchors, scalar bytes,
//! events), so an alias bomb or a runaway nesting fails fast with a clear error.
//!
//! Input is read as YAML 1.2: only `true`/`false` are booleans (`yes`, `no`, `on` stay
//! strings), and `017` or `1_000` stay strings rather than becoming numbers.
//!
//! What the control plane owns is dropped from input, as `kubectl apply` ignores it:
//! `status`, and metadata `uid`, `generation`, `resourceVersion`,
//! `creationTimestamp`, `deletionTimestamp` and `finalizers`. So the output of
//! `capstan get -o yaml` can be applied again as it is.

mod documents;
mod entry;
mod errors;
mod limits;
mod output;
mod text;
mod yaml;

use crate::object::Object;
use crate::parse::FieldError;
use crate::validate::cross::{duplicates, references};

use text::read_text;

pub use crate::validate::cross::{check_references, validate_set};
pub use errors::{DocumentError, ManifestErrors};
pub use limits::{
    MAX_ALIASES, MAX_ANCHORS, MAX_DEPTH, MAX_DOCUMENTS, MAX_EVENTS, MAX_MANIFEST_BYTES, MAX_NODES,
    MAX_SCALAR_BYTES,
};
pub use output::{to_json, to_yaml};

/// Reads every object of a manifest text, or every error in it.
///
/// The text holds YAML documents separated by `---` (JSON is YAML too); a document may
/// also be a sequence of objects or a `kind: List` with `items`, each item then read as
/// an object of its own. Each object is decoded (unknown fields are errors), stripped of
/// what the control plane owns (see the module doc), validated, and the set is checked
/// as a whole: no duplicates, and every MachineClass and Cluster it names is in it.
/// `source` names the text in errors (a file name, or `-` for standard input).
pub fn read_manifests(source: &str, text: &str) -> Result<Vec<Object>, ManifestErrors> {
    read_sources(&[(source, text)])
}

/// Reads several texts (`(source, text)` pairs, e.g. every file of a directory) as
/// one set: as [`read_manifests`] does each, with duplicates and references checked
/// across all of them, so a Cluster in one file may name a MachineClass in another.
pub fn read_sources<S: AsRef<str>, T: AsRef<str>>(
    sources: &[(S, T)],
) -> Result<Vec<Object>, ManifestErrors> {
    read_all(sources, false).map(|m| m.objects)
}

/// What `capstan up` reads: Capstan's objects and, beside them, the Kubernetes
/// workload objects it runs in its in-memory workload clusters.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    pub objects: Vec<Object>,
    /// Deployments, DaemonSets, PodDisruptionBudgets and Pods, as read (JSON).
    pub workload: Vec<serde_json::Value>,
}

/// The Kubernetes kinds [`read_with_workload`] keeps: `(apiVersion, kind)`.
pub const WORKLOAD_KINDS: [(&str, &str); 4] = [
    ("apps/v1", "Deployment"),
    ("apps/v1", "DaemonSet"),
    ("policy/v1", "PodDisruptionBudget"),
    ("v1", "Pod"),
];

/// The kind of a Kubernetes workload object, if `value` is one of [`WORKLOAD_KINDS`].
pub fn workload_kind(value: &serde_json::Value) -> Option<&'static str> {
    let field = |f: &str| value.get(f).and_then(serde_json::Value::as_str);
    let (api_version, kind) = (field("apiVersion")?, field("kind")?);
    WORKLOAD_KINDS
        .iter()
        .find(|(a, k)| *a == api_version && *k == kind)
        .map(|(_, k)| *k)
}

/// Reads as [`read_sources`] does, and keeps the Kubernetes workload objects beside
/// Capstan's instead of refusing them.
pub fn read_with_workload<S: AsRef<str>, T: AsRef<str>>(
    sources: &[(S, T)],
) -> Result<Manifests, ManifestErrors> {
    read_all(sources, true)
}

fn read_all<S: AsRef<str>, T: AsRef<str>>(
    sources: &[(S, T)],
    keep_workload: bool,
) -> Result<Manifests, ManifestErrors> {
    let mut entries = Vec::new();
    for (index, (_, text)) in sources.iter().enumerate() {
        read_text(index, text.as_ref(), &mut entries);
    }

    // Cross-object checks over everything that decoded, valid or not, so one error
    // does not cascade into "not found" elsewhere. If some document did not decode at
    // all, what it defined is unknown: skip "not found" rather than guess.
    let complete = entries
        .iter()
        .all(|e| e.object.is_some() || e.workload.is_some());
    let source_name = |i: usize| sources.get(i).map_or("", |(s, _)| s.as_ref());
    let decoded: Vec<(usize, Object)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.object.clone().map(|o| (i, o)))
        .collect();
    let mut set_errors = duplicates(&decoded, &|later, earlier| match (
        entries.get(later),
        entries.get(earlier),
    ) {
        (Some(l), Some(e)) if l.source == e.source => format!("document {}", e.document),
        (_, Some(e)) => format!("{} document {}", source_name(e.source), e.document),
        _ => "another document".to_string(),
    });
    let objects: Vec<Object> = decoded.iter().map(|(_, o)| o.clone()).collect();
    set_errors.extend(references(&objects, &|_| None, complete));
    for (index, error) in set_errors {
        if let Some((position, _)) = decoded.get(index)
            && let Some(entry) = entries.get_mut(*position)
        {
            entry.errors.push(error);
        }
    }
    if !keep_workload {
        for entry in entries.iter_mut().filter(|e| e.workload.is_some()) {
            let kind = entry.kind.clone().unwrap_or_default();
            entry.errors.push(FieldError::new(
                "kind",
                format!("{kind} is a Kubernetes object, not one of Capstan's"),
                "apply it to the workload cluster with kubectl (only `capstan up` takes it, for its simulated workload cluster), or leave it out of these files",
            ));
        }
    }

    let errors: Vec<DocumentError> = entries
        .iter()
        .filter(|e| !e.errors.is_empty())
        .map(|e| e.to_error(source_name(e.source)))
        .collect();
    if errors.is_empty() {
        let mut manifests = Manifests::default();
        for entry in entries {
            manifests.objects.extend(entry.object);
            manifests.workload.extend(entry.workload);
        }
        Ok(manifests)
    } else {
        Err(ManifestErrors(errors))
    }
}
