//! Semantic validation of one object: every error at once, each with its path from
//! the document root, what is wrong and what was found, and how to fix it.
//!
//! The rules follow Cluster API and EC2 where they have one; the limits are public
//! constants so the CLI, the reconcilers and the docs can cite the same numbers.
//! Checks that need other objects (does the named MachineClass exist?) live in
//! `cross`, public as [`crate::manifest::validate_set`].

mod access;
mod bootstrap;
mod counts;
pub(crate) mod cross;
mod deletion;
mod health_check;
mod launch;
mod limits;
mod metadata;
mod rollout;
mod secrets;
mod version;

use std::collections::BTreeMap;
use std::fmt::Display;

use crate::kinds::{
    ClusterSpec, LaunchRef, MachineClassSpec, MachineDeploymentSpec, MachineHealthCheckSpec,
    MachineSetSpec, MachineSpec, MachineTemplate, WorkerPool,
};
use crate::object::Object;
use crate::parse::FieldError;

pub use access::{is_eks_cluster_name, is_secret_arn};
pub use health_check::parse_range;
pub use launch::{is_aws_id, is_instance_type};
pub use limits::{
    EKS_BOOTSTRAP_RESERVED_BYTES, MACHINE_SET_SUFFIX_LEN, MACHINE_SUFFIX_LEN,
    MAX_ANNOTATIONS_BYTES, MAX_CLUSTER_NAME_LEN, MAX_CONTROL_PLANE_REPLICAS,
    MAX_EKS_CLUSTER_NAME_LEN, MAX_GP3_IOPS, MAX_HOP_LIMIT, MAX_INSTANCE_PROFILE_LEN, MAX_IO_IOPS,
    MAX_KEY_PREFIX_LEN, MAX_LABELS_BYTES, MAX_MACHINE_DEPLOYMENT_NAME_LEN,
    MAX_MACHINE_SET_NAME_LEN, MAX_NAME_LEN, MAX_POOL_NAME_LEN, MAX_REPLICAS, MAX_ROOT_VOLUME_GIB,
    MAX_SPEC_BYTES, MAX_TAG_KEY_LEN, MAX_TAG_VALUE_LEN, MAX_TAGS, MAX_USER_DATA_BYTES,
    MIN_GP3_IOPS, MIN_IO_IOPS, MIN_ROOT_VOLUME_GIB, RESERVED_POOL_NAME, RESERVED_TAG_PREFIXES,
    expected_number,
};
pub use secrets::secrets_in;
pub use version::is_kubernetes_version;

use access::access;
use counts::{autoscaling, non_negative, replicas};
pub use deletion::MAX_DELETION_TIMEOUT_SECONDS;
use deletion::deletion;
use health_check::{health_checks, remediation};
use launch::{LaunchFields, failure_domain, launch};
use metadata::{annotations, cluster_name, labels, metadata, name, reference};
use rollout::rollout;
use version::version;

/// One object as a person wrote it, read and checked by [`validate_document`].
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The object, as far as it could be built (values of the wrong type left out).
    pub object: Option<Object>,
    /// True when every value had its schema's type: the object is what was written.
    pub decoded: bool,
    /// Every error: decoding's, then validation's. Valid only when empty.
    pub errors: Vec<FieldError>,
}

/// Reads one object as a person wrote it, and checks it: what `capstan validate` and
/// `capstan apply` do with each document, and what the reconcilers do with each desired
/// item (a raw PutItem gets exactly the same answer as the CLI).
///
/// Decodes with every unknown field an error, drops what the control plane owns
/// (status, uid, generation, timestamps, finalizers), and validates what is left. A
/// value of the wrong type is reported and left out, and the rest is still checked,
/// without repeating what was already said about that field.
pub fn validate_document(value: serde_json::Value) -> Checked {
    match crate::parse::decode_object_lenient(value) {
        (Some(mut object), errors) => {
            object.metadata_mut().clear_system_fields();
            crate::with_resource!(&mut object, r => r.status = Default::default());
            let decoded = errors.is_empty();
            let reported: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
            let more = validate_object(&object).into_iter().filter(|e| {
                !reported.iter().any(|p| {
                    e.path == *p
                        || e.path.starts_with(&format!("{p}."))
                        || e.path.starts_with(&format!("{p}["))
                })
            });
            let mut all = errors;
            all.extend(more);
            Checked {
                object: Some(object),
                decoded,
                errors: all,
            }
        }
        (None, errors) => Checked {
            object: None,
            decoded: false,
            errors,
        },
    }
}

/// Every semantic error of one object, each with its path from the document root.
pub fn validate_object(obj: &Object) -> Vec<FieldError> {
    let mut v = Errors::default();
    metadata(&mut v, obj.kind(), obj.metadata());
    let spec_bytes = serde_json::to_vec(&obj.spec_json()).map_or(0, |b| b.len());
    if spec_bytes > MAX_SPEC_BYTES {
        v.push(
            "spec",
            format!("is {spec_bytes} bytes as JSON, more than {MAX_SPEC_BYTES}"),
            "keep large data (user data, long lists) out of the spec: reference it instead",
        );
    }
    match obj {
        Object::Cluster(r) => cluster(&mut v, &r.spec),
        Object::MachineClass(r) => machine_class(&mut v, &r.spec),
        Object::MachineDeployment(r) => machine_deployment(&mut v, &r.spec),
        Object::MachineSet(r) => machine_set(&mut v, &r.spec),
        Object::Machine(r) => machine(&mut v, &r.spec),
        Object::MachineHealthCheck(r) => machine_health_check(&mut v, &r.spec),
    }
    v.0
}

/// Collects errors.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Display, message: impl Into<String>, hint: impl Into<String>) {
        self.0
            .push(FieldError::new(path.to_string(), message, hint));
    }
}

// ---- kinds -----------------------------------------------------------------------

fn cluster(v: &mut Errors, spec: &ClusterSpec) {
    version(v, "spec.version", &spec.version);
    reference(
        v,
        "spec.controlPlane.machineClass",
        &spec.control_plane.machine_class,
        "MachineClass",
        MAX_NAME_LEN,
    );
    let n = spec.control_plane.replicas;
    if !(1..=MAX_CONTROL_PLANE_REPLICAS).contains(&n) || n % 2 == 0 {
        v.push(
            "spec.controlPlane.replicas",
            format!("must be 1, 3, 5 or 7, found {n}"),
            "etcd needs an odd number of members for a quorum: 3 survives the loss of one, 5 of two",
        );
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, pool) in spec.workers.iter().enumerate() {
        let at = format!("spec.workers[{i}]");
        worker_pool(v, &at, pool);
        taints(v, &format!("{at}.taints"), &pool.taints);
        deletion(v, &format!("{at}.deletion"), &pool.deletion);
        if !pool.deletion.is_default() && spec.access.is_none() {
            v.push(
                format!("{at}.deletion"),
                "deletion timeouts bound the drain of Nodes, and this Cluster declares no spec.access to reach them",
                "declare spec.access (eks.clusterName or kubeconfig.secretArn), or leave deletion out: without access, instances are terminated without a drain",
            );
        }
        if !pool.taints.is_empty() && spec.access.is_none() {
            v.push(
                format!("{at}.taints"),
                "taints go on Nodes, and this Cluster declares no spec.access to reach them",
                "declare spec.access (eks.clusterName or kubeconfig.secretArn), or register the taints through the nodes' own kubelet flags",
            );
        }
        reserved_pool_keys(v, &at, pool);
        if pool.name.is_empty() {
            continue;
        }
        if let Some(first) = seen.get(pool.name.as_str()) {
            v.push(
                format!("{at}.name"),
                format!(
                    "duplicate pool name {:?}: spec.workers[{first}] has it too",
                    pool.name
                ),
                "give every pool its own name",
            );
        } else {
            seen.insert(&pool.name, i);
        }
    }
    if let Some(a) = &spec.access {
        access(v, "spec.access", a);
    }
}

/// A pool's labels and annotations under `capstan.dev/` would be dropped (Capstan
/// selects and tags by its own): refused, but for the drain opt-outs.
fn reserved_pool_keys(v: &mut Errors, at: &str, pool: &WorkerPool) {
    let reserved = crate::labels::RESERVED_PREFIX;
    for key in pool.metadata.labels.keys() {
        if key.starts_with(reserved) {
            v.push(
                format!("{at}.metadata.labels.{key}"),
                format!("{reserved} labels are Capstan's own: it sets them on every Machine"),
                "choose a key outside capstan.dev/",
            );
        }
    }
    let allowed = crate::labels::POOL_ANNOTATIONS;
    for key in pool.metadata.annotations.keys() {
        if key.starts_with(reserved) && !allowed.contains(&key.as_str()) {
            v.push(
                format!("{at}.metadata.annotations.{key}"),
                format!("{reserved} annotations are Capstan's own"),
                format!(
                    "choose a key outside capstan.dev/; a pool may set only {}",
                    allowed.join(" and ")
                ),
            );
        }
    }
}

fn worker_pool(v: &mut Errors, at: &str, pool: &WorkerPool) {
    let name_path = format!("{at}.name");
    name(
        v,
        &name_path,
        &pool.name,
        MAX_POOL_NAME_LEN,
        "the pool's MachineDeployment is named <cluster>-<pool> and its Machines add 15 more characters, within 63",
    );
    if pool.name == RESERVED_POOL_NAME {
        v.push(
            &name_path,
            format!("{RESERVED_POOL_NAME:?} is reserved for the control plane"),
            "choose another pool name, e.g. \"workers\"",
        );
    }
    reference(
        v,
        &format!("{at}.machineClass"),
        &pool.machine_class,
        "MachineClass",
        MAX_NAME_LEN,
    );
    if let Some(n) = pool.replicas {
        replicas(v, &format!("{at}.replicas"), n);
    }
    if let Some(scaling) = &pool.autoscaling {
        autoscaling(v, at, scaling, pool.replicas);
    }
    if let Some(r) = &pool.rollout {
        rollout(v, &format!("{at}.rollout"), r);
    }
    if let Some(hc) = &pool.health_check {
        health_checks(v, &format!("{at}.healthCheck.checks"), &hc.checks);
        remediation(v, &format!("{at}.healthCheck.remediation"), &hc.remediation);
    }
}

fn machine_class(v: &mut Errors, spec: &MachineClassSpec) {
    cluster_name(v, &spec.cluster_name);
    launch(
        v,
        "spec",
        &LaunchFields {
            image_id: &spec.image_id,
            instance_types: &spec.instance_types,
            security_groups: &spec.security_groups,
            instance_profile: spec.instance_profile.as_deref(),
            root_volume: &spec.root_volume,
            market: &spec.market,
            metadata_options: &spec.metadata_options,
            tags: &spec.tags,
            user_data: spec.user_data.as_deref(),
            bootstrap: spec.bootstrap.as_ref(),
            subnets: Some(&spec.subnets),
        },
    );
}

fn machine_template(v: &mut Errors, base: &str, template: &MachineTemplate) {
    labels(
        v,
        &format!("{base}.metadata.labels"),
        &template.metadata.labels,
    );
    annotations(
        v,
        &format!("{base}.metadata.annotations"),
        &template.metadata.annotations,
    );
    let spec = &template.spec;
    reference(
        v,
        &format!("{base}.spec.machineClass"),
        &spec.machine_class,
        "MachineClass",
        MAX_NAME_LEN,
    );
    version(v, &format!("{base}.spec.version"), &spec.version);
    if let Some(subnet) = &spec.failure_domain {
        failure_domain(v, &format!("{base}.spec.failureDomain"), subnet);
    }
    deletion(v, &format!("{base}.spec.deletion"), &spec.deletion);
}

fn machine_deployment(v: &mut Errors, spec: &MachineDeploymentSpec) {
    cluster_name(v, &spec.cluster_name);
    replicas(v, "spec.replicas", spec.replicas);
    machine_template(v, "spec.template", &spec.template);
    rollout(v, "spec.rollout", &spec.rollout);
    non_negative(
        v,
        "spec.minReadySeconds",
        spec.min_ready_seconds,
        "set seconds, 0 or more",
    );
}

fn machine_set(v: &mut Errors, spec: &MachineSetSpec) {
    cluster_name(v, &spec.cluster_name);
    replicas(v, "spec.replicas", spec.replicas);
    machine_template(v, "spec.template", &spec.template);
}

fn machine(v: &mut Errors, spec: &MachineSpec) {
    cluster_name(v, &spec.cluster_name);
    version(v, "spec.version", &spec.version);
    if !spec.machine_class.is_empty() {
        reference(
            v,
            "spec.machineClass",
            &spec.machine_class,
            "MachineClass",
            MAX_NAME_LEN,
        );
    }
    failure_domain(v, "spec.failureDomain", &spec.failure_domain);
    match &spec.launch_ref {
        None => launch(v, "spec.launch", &LaunchFields::from(&spec.launch)),
        Some(reference) => launch_ref(v, spec, reference),
    }
    deletion(v, "spec.deletion", &spec.deletion);
}

/// A launch spec by reference: a hash that can be one, resolved against a named class,
/// and no inline spec beside it.
fn launch_ref(v: &mut Errors, spec: &MachineSpec, reference: &LaunchRef) {
    if !spec.launch.is_unset() {
        v.push(
            "spec.launch",
            "is set beside spec.launchRef",
            "set one: spec.launch (the launch spec written out) or spec.launchRef (the one spec.machineClass resolves to)",
        );
    }
    if spec.machine_class.is_empty() {
        v.push(
            "spec.machineClass",
            "is required with spec.launchRef",
            "name the MachineClass the reference resolves against",
        );
    }
    let hash = &reference.hash;
    if hash.len() != 16 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        v.push(
            "spec.launchRef.hash",
            format!("must be 16 hex characters, found {hash:?}"),
            "leave launchRef to the MachineSet that made the Machine, or write spec.launch out instead",
        );
    }
}

fn machine_health_check(v: &mut Errors, spec: &MachineHealthCheckSpec) {
    cluster_name(v, &spec.cluster_name);
    if spec.selector.match_labels.is_empty() {
        v.push(
            "spec.selector.matchLabels",
            "must name at least one label",
            "an empty selector would select every Machine; match a pool's labels instead",
        );
    }
    labels(v, "spec.selector.matchLabels", &spec.selector.match_labels);
    health_checks(v, "spec.checks", &spec.checks);
    remediation(v, "spec.remediation", &spec.remediation);
}

/// Node taints: a qualified key, a label-like value, each (key, effect) once.
fn taints(v: &mut Errors, path: &str, taints: &[crate::kinds::MachineTaint]) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in taints.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let value = t.value.clone().unwrap_or_default();
        metadata::labels(v, &at, &BTreeMap::from([(t.key.clone(), value)]));
        if !seen.insert((t.key.as_str(), t.effect)) {
            v.push(
                &at,
                format!("taint {}:{} is listed twice", t.key, t.effect.as_str()),
                "keep one entry per key and effect",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{
        Autoscaling, HealthCheckChecks, HealthCheckRemediation, IntOrPercent, LaunchSpec,
        PoolHealthCheck, RootVolume, UnhealthyCondition, VolumeType,
    };
    use crate::meta::{ConditionStatus, ObjectMeta};
    use crate::object::Resource;

    fn paths(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: name.to_string(),
            namespace: "default".to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn health_check_rules() {
        let check = Object::MachineHealthCheck(Resource {
            metadata: meta("web"),
            spec: MachineHealthCheckSpec {
                cluster_name: "demo".to_string(),
                checks: HealthCheckChecks {
                    node_startup_timeout_seconds: -1,
                    unhealthy_machine_conditions: vec![UnhealthyCondition {
                        type_: " ".to_string(),
                        status: ConditionStatus::False,
                        timeout_seconds: -5,
                    }],
                    ..Default::default()
                },
                remediation: HealthCheckRemediation {
                    trigger_if: crate::kinds::TriggerIf {
                        unhealthy_less_than_or_equal_to: Some(IntOrPercent::Int(-1)),
                        unhealthy_in_range: Some("[5-2]".to_string()),
                    },
                    max_in_flight: Some(IntOrPercent::Int(-2)),
                },
                ..Default::default()
            },
            status: Default::default(),
        });
        let errors = validate_object(&check);
        assert_eq!(
            paths(&errors),
            [
                "spec.selector.matchLabels",
                "spec.checks.nodeStartupTimeoutSeconds",
                "spec.checks.unhealthyMachineConditions[0].type",
                "spec.checks.unhealthyMachineConditions[0].timeoutSeconds",
                "spec.remediation.triggerIf",
                "spec.remediation.triggerIf.unhealthyLessThanOrEqualTo",
                "spec.remediation.triggerIf.unhealthyInRange",
                "spec.remediation.maxInFlight",
            ]
        );
        assert!(errors[0].hint.contains("every Machine"));
    }

    #[test]
    fn worker_pool_rules() {
        let pool = |name: &str, replicas: Option<i32>, min: i32, max: i32| WorkerPool {
            name: name.to_string(),
            machine_class: "demo-workers".to_string(),
            replicas,
            autoscaling: Some(Autoscaling { min, max }),
            rollout: None,
            health_check: Some(PoolHealthCheck {
                checks: HealthCheckChecks {
                    node_startup_timeout_seconds: -1,
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let cluster = Object::Cluster(Resource {
            metadata: meta("demo"),
            spec: ClusterSpec {
                version: "v1.31.2".to_string(),
                control_plane: crate::kinds::ControlPlaneTopology {
                    machine_class: "demo-control-plane".to_string(),
                    replicas: 9,
                },
                workers: vec![
                    pool("a-pool-name-too-long", Some(20), 1, 10),
                    pool("b", None, 5, 2),
                    pool("c", None, -1, 0),
                ],
                ..Default::default()
            },
            status: Default::default(),
        });
        let errors = validate_object(&cluster);
        assert_eq!(
            paths(&errors),
            [
                "spec.controlPlane.replicas",
                "spec.workers[0].name",
                "spec.workers[0].replicas",
                "spec.workers[0].healthCheck.checks.nodeStartupTimeoutSeconds",
                "spec.workers[1].autoscaling.min",
                "spec.workers[1].healthCheck.checks.nodeStartupTimeoutSeconds",
                "spec.workers[2].autoscaling.min",
                "spec.workers[2].autoscaling.max",
                "spec.workers[2].healthCheck.checks.nodeStartupTimeoutSeconds",
            ]
        );
    }

    #[test]
    fn machine_rules() {
        let machine = Object::Machine(Resource {
            metadata: meta("demo-workers-0a1b2c3d-x7k2p"),
            spec: MachineSpec {
                cluster_name: "demo".to_string(),
                version: "v1.31.2".to_string(),
                launch: LaunchSpec {
                    root_volume: RootVolume {
                        volume_type: VolumeType::Gp2,
                        iops: Some(100),
                        encrypted: false,
                        kms_key_id: Some("alias/x".to_string()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                ..Default::default()
            },
            status: Default::default(),
        });
        assert_eq!(
            paths(&validate_object(&machine)),
            [
                "spec.failureDomain",
                "spec.launch.imageId",
                "spec.launch.instanceTypes",
                "spec.launch.rootVolume.iops",
                "spec.launch.rootVolume.encrypted",
            ]
        );
    }

    #[test]
    fn machine_set_name_leaves_room_for_machines() {
        let set = |name: &str| {
            Object::MachineSet(Resource {
                metadata: meta(name),
                spec: MachineSetSpec {
                    cluster_name: "demo".to_string(),
                    replicas: 1,
                    template: MachineTemplate {
                        spec: crate::kinds::MachineTemplateSpec {
                            version: "v1.31.2".to_string(),
                            machine_class: "demo-workers".to_string(),
                            failure_domain: Some("us-east-1a".to_string()),
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                    ..Default::default()
                },
                status: Default::default(),
            })
        };
        let errors = validate_object(&set(&"a".repeat(MAX_MACHINE_SET_NAME_LEN + 1)));
        assert_eq!(
            paths(&errors),
            ["metadata.name", "spec.template.spec.failureDomain"]
        );
        assert!(
            errors[0]
                .message
                .contains("58 characters long, more than 57")
        );
    }
}
