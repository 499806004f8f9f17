//! Checks across objects: no two with the same kind, namespace and name, and every
//! MachineClass and Cluster an object names exists (in the set, or already stored).

use std::collections::BTreeMap;

use crate::object::{Kind, MachineClass, Object, ObjectKey};
use crate::parse::FieldError;

/// Checks a set of objects together: no two with the same kind, namespace and name
/// (the later one is reported, naming the earlier one's document), and every
/// reference resolves (see [`check_references`]). `objects` pairs each object with its
/// 1-based document number; `stored` looks up objects already in the table (for an
/// apply; `&|_| None` for a file alone). Returns errors by index into `objects`.
pub fn validate_set(
    objects: &[(usize, Object)],
    stored: &dyn Fn(&ObjectKey) -> Option<Object>,
) -> Vec<(usize, FieldError)> {
    let mut errors = duplicates(objects, &|_, document| format!("document {document}"));
    let plain: Vec<Object> = objects.iter().map(|(_, o)| o.clone()).collect();
    errors.extend(references(&plain, stored, true));
    errors
}

/// Checks that every name an object uses resolves, in `objects` or else in `stored`:
/// a Cluster's `spec.controlPlane.machineClass` and `spec.workers[i].machineClass`,
/// and a MachineDeployment's or MachineSet's `spec.template.spec.machineClass`, name a
/// MachineClass in the same namespace whose `spec.clusterName` is that cluster (and a
/// template's `failureDomain` is one of its subnets); every other kind's
/// `spec.clusterName` names a Cluster. Returns errors by index into `objects`.
pub fn check_references(
    objects: &[Object],
    stored: &dyn Fn(&ObjectKey) -> Option<Object>,
) -> Vec<(usize, FieldError)> {
    references(objects, stored, true)
}

/// Reports the later of two objects with the same kind, namespace and name; `earlier`
/// says where the first one is, given the indices of both in `objects`.
pub(crate) fn duplicates(
    objects: &[(usize, Object)],
    earlier: &dyn Fn(usize, usize) -> String,
) -> Vec<(usize, FieldError)> {
    let mut first: BTreeMap<(Kind, &str, &str), usize> = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, (later, object)) in objects.iter().enumerate() {
        let meta = object.metadata();
        let key = (object.kind(), meta.namespace.as_str(), meta.name.as_str());
        match first.get(&key) {
            Some(&j) => {
                let place = objects
                    .get(j)
                    .map_or_else(String::new, |(e, _)| earlier(*later, *e));
                errors.push((
                    i,
                    FieldError::new(
                        "metadata.name",
                        format!(
                            "duplicate {} {}/{}: {place} defines it too",
                            object.kind(),
                            meta.namespace,
                            meta.name
                        ),
                        "rename one of them, or remove the copy",
                    ),
                ));
            }
            None => {
                first.insert(key, i);
            }
        }
    }
    errors
}

/// Finds objects by kind, namespace and name: in the set first, then in the store.
struct Resolver<'a> {
    objects: &'a [Object],
    stored: &'a dyn Fn(&ObjectKey) -> Option<Object>,
}

impl Resolver<'_> {
    fn find(&self, kind: Kind, namespace: &str, cluster: &str, name: &str) -> Option<Object> {
        self.objects
            .iter()
            .find(|o| o.kind() == kind && o.metadata().namespace == namespace && o.name() == name)
            .cloned()
            .or_else(|| (self.stored)(&ObjectKey::new(namespace, cluster, kind, name)))
    }

    /// Names of the MachineClasses of `cluster` in the set, for hints.
    fn classes_of(&self, namespace: &str, cluster: &str) -> Vec<&str> {
        self.objects
            .iter()
            .filter_map(|o| match o {
                Object::MachineClass(c)
                    if c.metadata.namespace == namespace && c.spec.cluster_name == cluster =>
                {
                    Some(c.metadata.name.as_str())
                }
                _ => None,
            })
            .collect()
    }
}

pub(crate) fn references(
    objects: &[Object],
    stored: &dyn Fn(&ObjectKey) -> Option<Object>,
    report_missing: bool,
) -> Vec<(usize, FieldError)> {
    let resolver = Resolver { objects, stored };
    let mut errors = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        let mut push = |e: FieldError| errors.push((i, e));
        let namespace = object.metadata().namespace.as_str();
        match object {
            Object::Cluster(c) => {
                let cluster = c.metadata.name.as_str();
                let pools = c.spec.workers.iter().enumerate().map(|(j, pool)| {
                    (
                        format!("spec.workers[{j}].machineClass"),
                        pool.machine_class.as_str(),
                    )
                });
                let control_plane = std::iter::once((
                    "spec.controlPlane.machineClass".to_string(),
                    c.spec.control_plane.machine_class.as_str(),
                ));
                for (path, class) in control_plane.chain(pools) {
                    if let Some(e) = class_ref(
                        &resolver,
                        namespace,
                        cluster,
                        &path,
                        class,
                        None,
                        report_missing,
                    ) {
                        push(e);
                    }
                }
            }
            Object::MachineDeployment(d) => {
                let spec = &d.spec.template.spec;
                if let Some(e) = class_ref(
                    &resolver,
                    namespace,
                    &d.spec.cluster_name,
                    "spec.template.spec.machineClass",
                    &spec.machine_class,
                    spec.failure_domain.as_deref(),
                    report_missing,
                ) {
                    push(e);
                }
            }
            Object::MachineSet(s) => {
                let spec = &s.spec.template.spec;
                if let Some(e) = class_ref(
                    &resolver,
                    namespace,
                    &s.spec.cluster_name,
                    "spec.template.spec.machineClass",
                    &spec.machine_class,
                    spec.failure_domain.as_deref(),
                    report_missing,
                ) {
                    push(e);
                }
            }
            Object::MachineClass(class) => {
                if let Some(e) = eks_bootstrap_access(&resolver, namespace, class) {
                    push(e);
                }
            }
            _ => {}
        }
        if object.kind() != Kind::Cluster && report_missing {
            let cluster = object.cluster_name();
            if !cluster.is_empty()
                && resolver
                    .find(Kind::Cluster, namespace, cluster, cluster)
                    .is_none()
            {
                push(FieldError::new(
                    "spec.clusterName",
                    format!("Cluster {cluster:?} not found in namespace {namespace:?}"),
                    format!("define Cluster {cluster} in this file, or apply it first"),
                ));
            }
        }
    }
    errors
}

/// Checks that `class` names a MachineClass of `cluster` (and has `failure_domain`
/// among its subnets).
fn class_ref(
    resolver: &Resolver<'_>,
    namespace: &str,
    cluster: &str,
    path: &str,
    class: &str,
    failure_domain: Option<&str>,
    report_missing: bool,
) -> Option<FieldError> {
    if class.is_empty() || cluster.is_empty() {
        return None; // validate_object reports a missing name
    }
    match resolver.find(Kind::MachineClass, namespace, cluster, class) {
        Some(Object::MachineClass(found)) => {
            // A class without a cluster has its own error; do not repeat it here.
            if !found.spec.cluster_name.is_empty() && found.spec.cluster_name != cluster {
                return Some(FieldError::new(
                    path,
                    format!(
                        "MachineClass {class:?} belongs to cluster {:?}, not {cluster:?}",
                        found.spec.cluster_name
                    ),
                    format!("name a MachineClass whose spec.clusterName is {cluster}"),
                ));
            }
            let subnets = &found.spec.subnets;
            match failure_domain {
                Some(subnet) if !subnets.iter().any(|s| s == subnet) => Some(FieldError::new(
                    path.replace("machineClass", "failureDomain"),
                    format!("{subnet:?} is not one of MachineClass {class:?}'s subnets"),
                    format!("use one of {}", subnets.join(", ")),
                )),
                _ => None,
            }
        }
        Some(_) => None,
        None if report_missing => {
            let known = resolver.classes_of(namespace, cluster);
            let closest = known
                .iter()
                .filter(|k| class.len() <= 63 && k.len() <= 63)
                .map(|k| (crate::parse::edit_distance(class, k), *k))
                .filter(|(d, _)| *d <= 3)
                .min_by_key(|(d, _)| *d);
            let hint = match closest {
                Some((_, k)) => format!(
                    "did you mean {k:?}? MachineClasses of cluster {cluster} here: {}",
                    known.join(", ")
                ),
                None if known.is_empty() => format!(
                    "define MachineClass {class} with spec.clusterName: {cluster} in this file, or apply it first"
                ),
                None => format!(
                    "MachineClasses of cluster {cluster} here: {}; or define {class}",
                    known.join(", ")
                ),
            };
            Some(FieldError::new(
                path,
                format!("MachineClass {class:?} not found in namespace {namespace:?}"),
                hint,
            ))
        }
        None => None,
    }
}

/// A class with `bootstrap.eks` needs its Cluster's `spec.access.eks`: the NodeConfig's
/// endpoint, certificate authority and service CIDR come from DescribeCluster of that
/// EKS cluster. A Cluster not found is reported on its own.
fn eks_bootstrap_access(
    resolver: &Resolver<'_>,
    namespace: &str,
    class: &MachineClass,
) -> Option<FieldError> {
    class.spec.bootstrap.as_ref()?.eks.as_ref()?;
    let cluster = class.spec.cluster_name.as_str();
    if cluster.is_empty() {
        return None;
    }
    let Some(Object::Cluster(found)) = resolver.find(Kind::Cluster, namespace, cluster, cluster)
    else {
        return None;
    };
    match &found.spec.access {
        Some(access) if access.eks.is_some() => None,
        Some(access) if access.kubeconfig.is_some() => Some(FieldError::new(
            "spec.bootstrap.eks",
            format!(
                "Cluster {cluster:?} is reached through a kubeconfig, not spec.access.eks: bootstrap.eks reads the EKS cluster's endpoint and certificate authority with DescribeCluster"
            ),
            format!(
                "for an EKS cluster, set spec.access.eks.clusterName on Cluster {cluster} instead of kubeconfig; otherwise remove bootstrap.eks and join nodes with your own userData"
            ),
        )),
        _ => Some(FieldError::new(
            "spec.bootstrap.eks",
            format!(
                "Cluster {cluster:?} has no spec.access.eks: bootstrap.eks reads the EKS cluster's endpoint and certificate authority with DescribeCluster"
            ),
            format!(
                "set spec.access.eks.clusterName on Cluster {cluster}, or remove bootstrap.eks and join nodes with your own userData"
            ),
        )),
    }
}
