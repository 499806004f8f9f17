//! Kind names as kubectl accepts them (singular, plural, short, any case), and
//! finding objects by name across a namespace's cluster partitions.

use anyhow::bail;
use capstan_model::{Kind, StoredObject};
use capstan_reconcile::Tree;

/// (kind, plural, short name), as `kubectl api-resources` would list them.
pub const NAMES: [(Kind, &str, &str); 6] = [
    (Kind::Cluster, "clusters", "cl"),
    (Kind::MachineClass, "machineclasses", "mc"),
    (Kind::MachineDeployment, "machinedeployments", "md"),
    (Kind::MachineSet, "machinesets", "ms"),
    (Kind::Machine, "machines", "ma"),
    (Kind::MachineHealthCheck, "machinehealthchecks", "mhc"),
];

/// The kind `s` names: `Machine`, `machine`, `machines` and `ma` are the same.
pub fn parse(s: &str) -> anyhow::Result<Kind> {
    let lower = s.to_ascii_lowercase();
    for (kind, plural, short) in NAMES {
        if lower == kind.as_str().to_ascii_lowercase() || lower == plural || lower == short {
            return Ok(kind);
        }
    }
    bail!(
        "unknown kind {s:?}: use one of {}",
        NAMES
            .iter()
            .map(|(_, plural, short)| format!("{plural} ({short})"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `KIND NAME` or `KIND/NAME` (one or two words), as kubectl takes them.
pub fn kind_and_name(words: &[String]) -> anyhow::Result<(String, String)> {
    match words {
        [one] => match one.split_once('/') {
            Some((kind, name)) if !name.is_empty() => Ok((kind.to_string(), name.to_string())),
            _ => bail!("{one:?}: name the object as KIND/NAME or KIND NAME, e.g. md/demo-workers"),
        },
        [kind, name] => Ok((kind.clone(), name.clone())),
        _ => bail!("name one object: KIND/NAME or KIND NAME, e.g. machine/demo-workers-x7k2p"),
    }
}

/// The lower-case singular, as `-o name` prints it.
pub fn lower(kind: Kind) -> String {
    kind.as_str().to_ascii_lowercase()
}

/// The one object of `kind` called `name` in `namespace` (in any of its clusters, or
/// in `cluster` when given). An error names what was looked for and what to do.
pub fn find<'a>(
    trees: &'a [Tree],
    kind: Kind,
    name: &str,
    namespace: &str,
    cluster: Option<&str>,
) -> anyhow::Result<&'a StoredObject> {
    let found: Vec<&StoredObject> = trees
        .iter()
        .filter_map(|t| t.get(kind, name))
        .filter(|s| s.object.metadata().namespace == namespace)
        .filter(|s| cluster.is_none_or(|c| s.object.cluster_name() == c))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "{kind} {name:?} not found in namespace {namespace:?}: list them with `capstan get {} -n {namespace}`",
            lower(kind)
        ),
        many => bail!(
            "{kind} {name:?} exists in {} clusters of namespace {namespace:?} ({}): pick one with --cluster",
            many.len(),
            many.iter()
                .map(|s| s.object.cluster_name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plural_short_and_singular_name_the_same_kind() {
        for s in ["machines", "ma", "Machine", "machine", "MACHINES"] {
            assert_eq!(parse(s).ok(), Some(Kind::Machine), "{s}");
        }
        assert_eq!(parse("md").ok(), Some(Kind::MachineDeployment));
        assert_eq!(parse("mhc").ok(), Some(Kind::MachineHealthCheck));
        assert!(parse("pods").is_err());
    }
}
