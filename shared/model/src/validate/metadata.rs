//! Metadata syntax: DNS-1123 names (an object's own, sized so derived names fit, and
//! the names it references), and label and annotation keys and values.

use std::collections::BTreeMap;

use super::Errors;
use super::limits::{
    MAX_ANNOTATIONS_BYTES, MAX_CLUSTER_NAME_LEN, MAX_KEY_PREFIX_LEN, MAX_LABELS_BYTES,
    MAX_MACHINE_DEPLOYMENT_NAME_LEN, MAX_MACHINE_SET_NAME_LEN, MAX_NAME_LEN,
};
use crate::meta::{ObjectMeta, set_machine_name_prefix};
use crate::object::Kind;

pub(super) fn metadata(v: &mut Errors, kind: Kind, meta: &ObjectMeta) {
    let (max, why) = name_limit(kind);
    name(v, "metadata.name", &meta.name, max, why);
    name(v, "metadata.namespace", &meta.namespace, MAX_NAME_LEN, "");
    labels(v, "metadata.labels", &meta.labels);
    let total: usize = meta.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_LABELS_BYTES {
        v.push(
            "metadata.labels",
            format!("labels take {total} bytes, more than {MAX_LABELS_BYTES}"),
            "keep labels for selecting; put other data in annotations",
        );
    }
    annotations(v, "metadata.annotations", &meta.annotations);
    if kind == Kind::Machine {
        set_machine_name(v, meta);
    }
}

/// A Machine a MachineSet controls is named `<set>-<suffix>`: the set reads its
/// Machines by that prefix, so under any other name it would neither count nor delete it.
fn set_machine_name(v: &mut Errors, meta: &ObjectMeta) {
    let Some(set) = meta
        .controller()
        .filter(|o| o.kind == Kind::MachineSet && !o.name.is_empty())
    else {
        return;
    };
    let prefix = set_machine_name_prefix(&set.name);
    if !meta.name.starts_with(&prefix) {
        v.push(
            "metadata.name",
            format!(
                "{:?} is controlled by MachineSet {:?}, so its name must start with {prefix:?}",
                meta.name, set.name
            ),
            format!(
                "name it {prefix}<suffix>, or drop the controller ownerReference to MachineSet {:?} (a MachineSet finds its Machines by their names)",
                set.name
            ),
        );
    }
}

/// The longest name a kind allows, and why, so derived names stay within 63.
fn name_limit(kind: Kind) -> (usize, &'static str) {
    match kind {
        Kind::Cluster => (
            MAX_CLUSTER_NAME_LEN,
            "Capstan derives names from it, up to <cluster>-control-plane-<8 hex>-<5 chars>, that must stay within 63 characters",
        ),
        Kind::MachineDeployment => (
            MAX_MACHINE_DEPLOYMENT_NAME_LEN,
            "its MachineSets add -<8 hex> and their Machines -<5 chars>, within 63 characters",
        ),
        Kind::MachineSet => (
            MAX_MACHINE_SET_NAME_LEN,
            "its Machines add -<5 chars>, within 63 characters",
        ),
        _ => (MAX_NAME_LEN, ""),
    }
}

/// A required DNS-1123 label of at most `max` characters.
pub(super) fn name(v: &mut Errors, path: &str, value: &str, max: usize, why: &str) {
    if value.is_empty() {
        v.push(
            path,
            "is required",
            "set a name: lowercase letters, digits and '-'",
        );
        return;
    }
    if let Some(problem) = dns_label_problem(value) {
        let hint = match suggest_name(value, max) {
            Some(s) => format!(
                "use a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, e.g. {s:?}"
            ),
            None => "use a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit".to_string(),
        };
        v.push(
            path,
            format!("{value:?} is not a valid name: {problem}"),
            hint,
        );
    }
    let len = value.chars().count();
    if len > max {
        let hint = if why.is_empty() {
            format!("shorten it to {max} characters or fewer")
        } else {
            format!("shorten it to {max} characters or fewer: {why}")
        };
        v.push(
            path,
            format!("{value:?} is {len} characters long, more than {max}"),
            hint,
        );
    }
}

/// What makes `s` not a DNS-1123 label (length aside), if anything.
fn dns_label_problem(s: &str) -> Option<String> {
    if let Some(c) = s.chars().find(|c| c.is_ascii_uppercase()) {
        return Some(format!("it contains the uppercase letter '{c}'"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!("it contains {c:?}"));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("it starts or ends with '-'".to_string());
    }
    None
}

fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && dns_label_problem(s).is_none()
}

/// A valid name close to `s`, to put in a hint.
fn suggest_name(s: &str, max: usize) -> Option<String> {
    let mapped: String = s
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(max)
        .collect();
    let trimmed = mapped.trim_matches('-').to_string();
    is_dns_label(&trimmed, max).then_some(trimmed)
}

/// A reference to another object by name (a MachineClass, a Cluster).
pub(super) fn reference(v: &mut Errors, path: &str, value: &str, what: &str, max: usize) {
    if value.is_empty() {
        v.push(path, "is required", format!("name the {what}"));
    } else if value.len() > max && dns_label_problem(value).is_none() {
        v.push(
            path,
            format!(
                "{value:?} is {} characters long, more than a {what} name may be ({max})",
                value.len()
            ),
            format!("name an existing {what}"),
        );
    } else if !is_dns_label(value, max) {
        v.push(
            path,
            format!("{value:?} is not a valid {what} name"),
            format!("name an existing {what}: lowercase letters, digits and '-', at most {max} characters"),
        );
    }
}

pub(super) fn cluster_name(v: &mut Errors, value: &str) {
    reference(
        v,
        "spec.clusterName",
        value,
        "Cluster",
        MAX_CLUSTER_NAME_LEN,
    );
}

pub(super) fn labels(v: &mut Errors, path: &str, labels: &BTreeMap<String, String>) {
    for (key, value) in labels {
        let at = format!("{path}[{key:?}]");
        qualified_key(v, &at, key);
        if value.len() > MAX_NAME_LEN {
            v.push(
                &at,
                format!(
                    "label value is {} characters long, more than {MAX_NAME_LEN}",
                    value.len()
                ),
                "shorten it, or make it an annotation",
            );
        } else if !value.is_empty() && !is_qualified_name_part(value) {
            v.push(
                &at,
                format!("label value {value:?} is not valid"),
                "use letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            );
        }
    }
}

pub(super) fn annotations(v: &mut Errors, path: &str, annotations: &BTreeMap<String, String>) {
    let mut total = 0;
    for (key, value) in annotations {
        qualified_key(v, &format!("{path}[{key:?}]"), key);
        total += key.len() + value.len();
    }
    if total > MAX_ANNOTATIONS_BYTES {
        v.push(
            path,
            format!("annotations take {total} bytes, more than {MAX_ANNOTATIONS_BYTES}"),
            "keep large data elsewhere, in S3 or SSM, and annotate a reference to it",
        );
    }
}

/// A Kubernetes qualified name: `[prefix/]name`, the prefix a DNS subdomain.
fn qualified_key(v: &mut Errors, path: &str, key: &str) {
    let hint = "use [prefix/]name: name up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit; prefix a DNS subdomain such as example.com";
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= MAX_KEY_PREFIX_LEN
            && p.split('.').all(|part| is_dns_label(part, MAX_NAME_LEN))
    });
    if !prefix_ok || name.len() > MAX_NAME_LEN || !is_qualified_name_part(name) {
        v.push(
            path,
            format!("key {key:?} is not a valid qualified name"),
            hint,
        );
    }
}

fn is_qualified_name_part(s: &str) -> bool {
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    ends_ok(s.chars().next())
        && ends_ok(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
