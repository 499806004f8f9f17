//! Semantic validation of one object: every error at once, each with its path from
//! the document root, what is wrong and what was found, and how to fix it.
//!
//! The rules follow Cluster API and EC2 where they have one; the limits are public
//! constants so the CLI, the reconcilers and the docs can cite the same numbers.
//! Checks that need other objects (does the named MachineClass exist?) live in
//! [`crate::manifest::validate_set`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use crate::kinds::{
    Autoscaling, ClusterSpec, HealthCheckChecks, HealthCheckRemediation, IntOrPercent, LaunchSpec,
    MachineClassSpec, MachineDeploymentSpec, MachineHealthCheckSpec, MachineSetSpec, MachineSpec,
    MachineTemplate, Market, MarketType, MetadataOptions, Rollout, RolloutStrategyType, RootVolume,
    VolumeType, WorkerPool,
};
use crate::meta::ObjectMeta;
use crate::object::{Kind, Object};
use crate::parse::FieldError;

/// Longest Kubernetes object name (a DNS-1123 label), and longest label value.
pub const MAX_NAME_LEN: usize = 63;
/// Longest Cluster name. The cluster reconciler names MachineDeployments
/// `<cluster>-control-plane` and `<cluster>-<pool>`, MachineSets add `-<8 hex>`,
/// Machines add `-<5 chars>`: 20 + 14 + 9 + 6 = 49 leaves room within 63.
pub const MAX_CLUSTER_NAME_LEN: usize = 20;
/// Longest worker pool name (see [`MAX_CLUSTER_NAME_LEN`]): 20 + 1 + 15 + 9 + 6 = 51.
pub const MAX_POOL_NAME_LEN: usize = 15;
/// What a MachineSet adds to its MachineDeployment's name: `-` and 8 hex digits.
pub const MACHINE_SET_SUFFIX_LEN: usize = 9;
/// What a Machine adds to its MachineSet's name: `-` and 5 characters.
pub const MACHINE_SUFFIX_LEN: usize = 6;
/// Longest MachineSet name, so its Machines' names fit.
pub const MAX_MACHINE_SET_NAME_LEN: usize = MAX_NAME_LEN - MACHINE_SUFFIX_LEN;
/// Longest MachineDeployment name, so its MachineSets' and Machines' names fit.
pub const MAX_MACHINE_DEPLOYMENT_NAME_LEN: usize =
    MAX_MACHINE_SET_NAME_LEN - MACHINE_SET_SUFFIX_LEN;
/// The pool name the cluster reconciler uses for the control plane's MachineDeployment.
pub const RESERVED_POOL_NAME: &str = crate::labels::CONTROL_PLANE_POOL;
/// Most Machines one MachineDeployment, MachineSet or pool may ask for.
pub const MAX_REPLICAS: i32 = 1000;
/// Largest control plane: etcd gains nothing past seven members and loses write speed.
pub const MAX_CONTROL_PLANE_REPLICAS: i32 = 7;
/// Longest label or annotation key prefix (a DNS-1123 subdomain).
pub const MAX_KEY_PREFIX_LEN: usize = 253;
/// Total size of an object's annotations. Kubernetes allows 256 KiB; a DynamoDB item
/// holds 400 KB in all, spec included, so Capstan keeps annotations smaller.
pub const MAX_ANNOTATIONS_BYTES: usize = 64 * 1024;
/// EBS root volume size bounds (gp3/io1/io2 allow up to 16 TiB; an AMI needs ~8 GiB).
pub const MIN_ROOT_VOLUME_GIB: i32 = 8;
pub const MAX_ROOT_VOLUME_GIB: i32 = 16_384;
/// Provisioned IOPS bounds for io1 and io2.
pub const MIN_IO_IOPS: i32 = 100;
pub const MAX_IO_IOPS: i32 = 64_000;
/// gp3 IOPS bounds (3000 is the included baseline).
pub const MIN_GP3_IOPS: i32 = 3_000;
pub const MAX_GP3_IOPS: i32 = 16_000;
/// EC2's bounds for the IMDSv2 PUT response hop limit.
pub const MAX_HOP_LIMIT: i32 = 64;
/// EC2 allows 50 tags per resource; Capstan keeps ten for its own.
pub const MAX_TAGS: usize = 40;
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;
/// Tag key prefixes people may not use: AWS's own, and Capstan's (the tags it uses to
/// find its instances and that its IAM policies are conditioned on).
pub const RESERVED_TAG_PREFIXES: [&str; 2] = ["aws:", crate::labels::RESERVED_PREFIX];
/// EC2's limit on user data, before base64.
pub const MAX_USER_DATA_BYTES: usize = 16 * 1024;
/// Longest IAM instance profile name.
pub const MAX_INSTANCE_PROFILE_LEN: usize = 128;

const SECRET_HINT: &str = "fetch secrets at boot from SSM Parameter Store or Secrets Manager; \
user data is readable by anyone who can describe the instance";

/// Every semantic error of one object, each with its path from the document root.
pub fn validate_object(obj: &Object) -> Vec<FieldError> {
    let mut v = Errors::default();
    metadata(&mut v, obj.kind(), obj.metadata());
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

/// What a number field expects, for errors about numbers a type cannot hold
/// (`spec.replicas: 99999999999 is too large: expected ...`).
pub fn expected_number(path: &str) -> Option<String> {
    let field = path.rsplit('.').next().unwrap_or(path);
    Some(match field {
        "replicas" if path.ends_with("controlPlane.replicas") => {
            format!("an odd number from 1 to {MAX_CONTROL_PLANE_REPLICAS}")
        }
        "replicas" | "min" | "max" => format!("a whole number from 0 to {MAX_REPLICAS}"),
        "sizeGiB" => {
            format!("a whole number of GiB from {MIN_ROOT_VOLUME_GIB} to {MAX_ROOT_VOLUME_GIB}")
        }
        "iops" => format!("a whole number from {MIN_IO_IOPS} to {MAX_IO_IOPS}"),
        "httpPutResponseHopLimit" => format!("a whole number from 1 to {MAX_HOP_LIMIT}"),
        "minReadySeconds" | "nodeStartupTimeoutSeconds" | "timeoutSeconds" => {
            "a whole number of seconds, 0 or more".to_string()
        }
        "maxSurge" | "maxUnavailable" | "maxInFlight" | "unhealthyLessThanOrEqualTo" => {
            "a whole number, 0 or more, or a percentage such as \"25%\"".to_string()
        }
        _ => return None,
    })
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

// ---- metadata and names ----------------------------------------------------------

fn metadata(v: &mut Errors, kind: Kind, meta: &ObjectMeta) {
    let (max, why) = name_limit(kind);
    name(v, "metadata.name", &meta.name, max, why);
    name(v, "metadata.namespace", &meta.namespace, MAX_NAME_LEN, "");
    labels(v, "metadata.labels", &meta.labels);
    annotations(v, "metadata.annotations", &meta.annotations);
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
fn name(v: &mut Errors, path: &str, value: &str, max: usize, why: &str) {
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
fn reference(v: &mut Errors, path: &str, value: &str, what: &str, max: usize) {
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

fn cluster_name(v: &mut Errors, value: &str) {
    reference(
        v,
        "spec.clusterName",
        value,
        "Cluster",
        MAX_CLUSTER_NAME_LEN,
    );
}

fn labels(v: &mut Errors, path: &str, labels: &BTreeMap<String, String>) {
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

fn annotations(v: &mut Errors, path: &str, annotations: &BTreeMap<String, String>) {
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

/// `v<major>.<minor>.<patch>`, e.g. v1.31.2.
pub fn is_kubernetes_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let parts: Vec<&str> = rest.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 9
                && p.chars().all(|c| c.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

fn version(v: &mut Errors, path: &str, value: &str) {
    if value.is_empty() {
        v.push(
            path,
            "is required",
            "set the Kubernetes version, e.g. v1.31.2",
        );
    } else if !is_kubernetes_version(value) {
        v.push(
            path,
            format!("{value:?} is not a version of the form v<major>.<minor>.<patch>"),
            "write it like v1.31.2",
        );
    }
}

// ---- counts, rollouts, health checks (shared by several kinds) ---------------------

fn replicas(v: &mut Errors, path: &str, n: i32) {
    if n < 0 {
        v.push(
            path,
            format!("must be 0 or more, found {n}"),
            "set a count of 0 or more",
        );
    } else if n > MAX_REPLICAS {
        v.push(
            path,
            format!("{n} is too large: expected a whole number from 0 to {MAX_REPLICAS}"),
            format!("set a count from 0 to {MAX_REPLICAS}; split larger fleets into several pools"),
        );
    }
}

fn non_negative(v: &mut Errors, path: &str, n: i32, hint: &str) {
    if n < 0 {
        v.push(path, format!("must be 0 or more, found {n}"), hint);
    }
}

fn non_negative_count(v: &mut Errors, path: &str, value: Option<IntOrPercent>) {
    if let Some(IntOrPercent::Int(n)) = value {
        non_negative(
            v,
            path,
            n,
            "set a count of 0 or more, or a percentage such as \"25%\"",
        );
    }
}

fn is_zero(value: IntOrPercent) -> bool {
    matches!(value, IntOrPercent::Int(0) | IntOrPercent::Percent(0))
}

fn rollout(v: &mut Errors, base: &str, rollout: &Rollout) {
    if rollout.strategy.strategy_type != RolloutStrategyType::RollingUpdate {
        return;
    }
    let at = format!("{base}.strategy.rollingUpdate");
    let update = &rollout.strategy.rolling_update;
    non_negative_count(v, &format!("{at}.maxSurge"), Some(update.max_surge));
    non_negative_count(
        v,
        &format!("{at}.maxUnavailable"),
        Some(update.max_unavailable),
    );
    // Cluster API (as Kubernetes Deployments) refuses a rolling update that can neither
    // add a Machine nor remove one: it could never make progress.
    if is_zero(update.max_surge) && is_zero(update.max_unavailable) {
        v.push(
            format!("{at}.maxUnavailable"),
            "may not be 0 when maxSurge is 0",
            "let the rollout add a Machine first with maxSurge: 1, or take one down first with maxUnavailable: 1",
        );
    }
}

fn health_checks(v: &mut Errors, base: &str, checks: &HealthCheckChecks) {
    non_negative(
        v,
        &format!("{base}.nodeStartupTimeoutSeconds"),
        checks.node_startup_timeout_seconds,
        "set seconds, 0 or more; 0 disables the startup check",
    );
    for (i, condition) in checks.unhealthy_machine_conditions.iter().enumerate() {
        let at = format!("{base}.unhealthyMachineConditions[{i}]");
        if condition.type_.trim().is_empty() {
            v.push(
                format!("{at}.type"),
                "is required",
                "name a condition type, e.g. Ready",
            );
        }
        non_negative(
            v,
            &format!("{at}.timeoutSeconds"),
            condition.timeout_seconds,
            "set how many seconds the condition may hold before the Machine is unhealthy, 0 or more",
        );
    }
}

fn remediation(v: &mut Errors, base: &str, remediation: &HealthCheckRemediation) {
    let trigger = &remediation.trigger_if;
    let at = format!("{base}.triggerIf");
    if trigger.unhealthy_less_than_or_equal_to.is_some() && trigger.unhealthy_in_range.is_some() {
        v.push(
            &at,
            "sets both unhealthyLessThanOrEqualTo and unhealthyInRange",
            "keep one of the two",
        );
    }
    non_negative_count(
        v,
        &format!("{at}.unhealthyLessThanOrEqualTo"),
        trigger.unhealthy_less_than_or_equal_to,
    );
    if let Some(range) = &trigger.unhealthy_in_range
        && parse_range(range).is_none()
    {
        v.push(
            format!("{at}.unhealthyInRange"),
            format!("{range:?} is not a range of the form [min-max] with min <= max"),
            "write it like \"[1-3]\"",
        );
    }
    non_negative_count(v, &format!("{base}.maxInFlight"), remediation.max_in_flight);
}

/// Parses Cluster API's `"[a-b]"` with 0 <= a <= b.
pub fn parse_range(s: &str) -> Option<(u32, u32)> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    let (a, b) = inner.split_once('-')?;
    let digits = |t: &str| {
        let t = t.trim();
        (!t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
            .then(|| t.parse::<u32>().ok())
            .flatten()
    };
    let (a, b) = (digits(a)?, digits(b)?);
    (a <= b).then_some((a, b))
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

fn autoscaling(v: &mut Errors, at: &str, scaling: &Autoscaling, replicas: Option<i32>) {
    let (min, max) = (scaling.min, scaling.max);
    let base = format!("{at}.autoscaling");
    non_negative(v, &format!("{base}.min"), min, "set a count of 0 or more");
    if max < 1 {
        v.push(
            format!("{base}.max"),
            format!("must be 1 or more, found {max}"),
            "set the largest size the autoscaler may grow the pool to",
        );
    } else if max > MAX_REPLICAS {
        v.push(
            format!("{base}.max"),
            format!("{max} is too large: expected a whole number from 1 to {MAX_REPLICAS}"),
            format!("set at most {MAX_REPLICAS}"),
        );
    }
    if min > max {
        v.push(
            format!("{base}.min"),
            format!("{min} is more than max ({max})"),
            "set min <= max",
        );
    }
    if let Some(n) = replicas
        && min <= max
        && !(min..=max).contains(&n)
    {
        v.push(
            format!("{at}.replicas"),
            format!("{n} is outside autoscaling's range [{min}, {max}]"),
            "set replicas within [min, max], or leave it out to start at min",
        );
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
            subnets: Some(&spec.subnets),
        },
    );
}

/// The launch fields a MachineClass and a Machine's resolved launch spec share.
struct LaunchFields<'a> {
    image_id: &'a str,
    instance_types: &'a [String],
    security_groups: &'a [String],
    instance_profile: Option<&'a str>,
    root_volume: &'a RootVolume,
    market: &'a Market,
    metadata_options: &'a MetadataOptions,
    tags: &'a BTreeMap<String, String>,
    user_data: Option<&'a str>,
    /// A MachineClass's failure domains; a Machine has one, checked on its own.
    subnets: Option<&'a [String]>,
}

impl<'a> From<&'a LaunchSpec> for LaunchFields<'a> {
    fn from(l: &'a LaunchSpec) -> Self {
        LaunchFields {
            image_id: &l.image_id,
            instance_types: &l.instance_types,
            security_groups: &l.security_groups,
            instance_profile: l.instance_profile.as_deref(),
            root_volume: &l.root_volume,
            market: &l.market,
            metadata_options: &l.metadata_options,
            tags: &l.tags,
            user_data: l.user_data.as_deref(),
            subnets: None,
        }
    }
}

fn launch(v: &mut Errors, base: &str, l: &LaunchFields) {
    let at = |field: &str| format!("{base}.{field}");
    if l.image_id.is_empty() {
        v.push(
            at("imageId"),
            "is required",
            "set the AMI to launch, e.g. ami-0abcdef1234567890",
        );
    } else if !is_aws_id(l.image_id, "ami-") {
        v.push(
            at("imageId"),
            format!("{:?} is not an AMI id", l.image_id),
            "use ami- followed by 8 or 17 hexadecimal digits, e.g. ami-0abcdef1234567890",
        );
    }
    instance_types(v, &at("instanceTypes"), l.instance_types);
    if let Some(subnets) = l.subnets {
        if subnets.is_empty() {
            v.push(
                at("subnets"),
                "must name at least one subnet",
                "list the subnets to spread Machines over, one per availability zone, e.g. [subnet-0a1b2c3d4e5f60001]",
            );
        }
        aws_ids(v, &at("subnets"), subnets, "subnet-", "subnet");
    }
    aws_ids(
        v,
        &at("securityGroups"),
        l.security_groups,
        "sg-",
        "security group",
    );
    if let Some(profile) = l.instance_profile {
        instance_profile(v, &at("instanceProfile"), profile);
    }
    root_volume(v, &at("rootVolume"), l.root_volume);
    market(v, &at("market"), l.market);
    let hops = l.metadata_options.http_put_response_hop_limit;
    if !(1..=MAX_HOP_LIMIT).contains(&hops) {
        v.push(
            at("metadataOptions.httpPutResponseHopLimit"),
            format!("must be from 1 to {MAX_HOP_LIMIT}, found {hops}"),
            "keep 1 so containers cannot reach the instance's credentials; 2 if pods need IMDS",
        );
    }
    tags(v, &at("tags"), l.tags);
    if let Some(data) = l.user_data {
        user_data(v, &at("userData"), data);
    }
}

fn instance_types(v: &mut Errors, path: &str, types: &[String]) {
    if types.is_empty() {
        v.push(
            path,
            "must name at least one instance type",
            "list instance types in order of preference, e.g. [m7i.large, m6i.large]",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, t) in types.iter().enumerate() {
        if !is_instance_type(t) {
            v.push(
                format!("{path}[{i}]"),
                format!("{t:?} is not an instance type"),
                "write family.size, e.g. m7i.large",
            );
        } else if !seen.insert(t.as_str()) {
            v.push(
                format!("{path}[{i}]"),
                format!("{t:?} is listed twice"),
                "list each instance type once",
            );
        }
    }
}

/// `family.size`, e.g. `m7i.large`, `u-6tb1.metal`, `c7gn.metal-48xl`.
pub fn is_instance_type(s: &str) -> bool {
    let Some((family, size)) = s.split_once('.') else {
        return false;
    };
    let part_ok = |p: &str| {
        p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && p.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
    };
    family.starts_with(|c: char| c.is_ascii_lowercase()) && part_ok(family) && part_ok(size)
}

/// `<prefix>` followed by 8 or 17 lowercase hexadecimal digits, as EC2 ids are.
pub fn is_aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17)
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

fn aws_ids(v: &mut Errors, path: &str, ids: &[String], prefix: &str, what: &str) {
    let mut seen = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        if !is_aws_id(id, prefix) {
            v.push(
                format!("{path}[{i}]"),
                format!("{id:?} is not a {what} id"),
                format!("use {prefix} followed by 8 or 17 hexadecimal digits, e.g. {prefix}0a1b2c3d4e5f60001"),
            );
        } else if !seen.insert(id.as_str()) {
            v.push(
                format!("{path}[{i}]"),
                format!("{id:?} is listed twice"),
                format!("list each {what} once"),
            );
        }
    }
}

fn instance_profile(v: &mut Errors, path: &str, profile: &str) {
    if profile.starts_with("arn:") {
        v.push(
            path,
            "is an ARN; Capstan takes the instance profile's name",
            "set the name alone, the part after instance-profile/, e.g. capstan-nodes",
        );
    } else if profile.is_empty() || profile.len() > MAX_INSTANCE_PROFILE_LEN {
        v.push(
            path,
            format!(
                "must be 1 to {MAX_INSTANCE_PROFILE_LEN} characters, found {}",
                profile.len()
            ),
            "set the instance profile's name, or remove the field",
        );
    } else if !profile
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        v.push(
            path,
            format!("{profile:?} is not a valid instance profile name"),
            "IAM names use letters, digits and +=,.@_-",
        );
    }
}

fn root_volume(v: &mut Errors, base: &str, volume: &RootVolume) {
    let size = volume.size_gib;
    if !(MIN_ROOT_VOLUME_GIB..=MAX_ROOT_VOLUME_GIB).contains(&size) {
        v.push(
            format!("{base}.sizeGiB"),
            format!(
                "must be from {MIN_ROOT_VOLUME_GIB} to {MAX_ROOT_VOLUME_GIB} GiB, found {size}"
            ),
            format!("set a size from {MIN_ROOT_VOLUME_GIB} to {MAX_ROOT_VOLUME_GIB}"),
        );
    }
    let iops_path = format!("{base}.iops");
    match (volume.volume_type, volume.iops) {
        (VolumeType::Io1 | VolumeType::Io2, None) => v.push(
            iops_path,
            "is required for io1 and io2 volumes",
            format!("set iops from {MIN_IO_IOPS} to {MAX_IO_IOPS}"),
        ),
        (VolumeType::Io1 | VolumeType::Io2, Some(n))
            if !(MIN_IO_IOPS..=MAX_IO_IOPS).contains(&n) =>
        {
            v.push(
                iops_path,
                format!("must be from {MIN_IO_IOPS} to {MAX_IO_IOPS} for io1 and io2, found {n}"),
                format!("set iops from {MIN_IO_IOPS} to {MAX_IO_IOPS}"),
            )
        }
        (VolumeType::Gp2, Some(_)) => v.push(
            iops_path,
            "cannot be set for gp2 volumes: their IOPS follow their size",
            "remove iops, or use type gp3",
        ),
        (VolumeType::Gp3, Some(n)) if !(MIN_GP3_IOPS..=MAX_GP3_IOPS).contains(&n) => v.push(
            iops_path,
            format!("must be from {MIN_GP3_IOPS} to {MAX_GP3_IOPS} for gp3, found {n}"),
            format!(
                "set iops from {MIN_GP3_IOPS} to {MAX_GP3_IOPS}, or remove it for the 3000 baseline"
            ),
        ),
        _ => {}
    }
    if volume.kms_key_id.is_some() && !volume.encrypted {
        v.push(
            format!("{base}.kmsKeyId"),
            "is set but encrypted is false",
            "set encrypted: true, or remove kmsKeyId",
        );
    }
}

fn market(v: &mut Errors, base: &str, market: &Market) {
    let Some(price) = &market.spot_max_price else {
        return;
    };
    let path = format!("{base}.spotMaxPrice");
    if market.market_type != MarketType::Spot {
        v.push(
            &path,
            "is set but market type is OnDemand",
            "set type: Spot, or remove spotMaxPrice",
        );
    }
    if !is_positive_decimal(price) {
        v.push(
            &path,
            format!("{price:?} is not a positive price"),
            "write the hourly price in USD as a decimal, e.g. \"0.12\"",
        );
    }
}

fn is_positive_decimal(s: &str) -> bool {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    !(whole.is_empty() && fraction.is_empty())
        && digits(whole)
        && digits(fraction)
        && (!s.contains('.') || !fraction.is_empty())
        && s.chars().any(|c| ('1'..='9').contains(&c))
}

fn tags(v: &mut Errors, base: &str, tags: &BTreeMap<String, String>) {
    if tags.len() > MAX_TAGS {
        v.push(
            base,
            format!("has {} tags, more than {MAX_TAGS}", tags.len()),
            format!("keep at most {MAX_TAGS}: EC2 allows 50 per instance and Capstan adds its own"),
        );
    }
    for (key, value) in tags {
        let path = format!("{base}[{key:?}]");
        let key_len = key.chars().count();
        if key_len == 0 || key_len > MAX_TAG_KEY_LEN {
            v.push(
                &path,
                format!("tag key must be 1 to {MAX_TAG_KEY_LEN} characters, found {key_len}"),
                "shorten the key",
            );
        }
        let lower = key.to_ascii_lowercase();
        if let Some(prefix) = RESERVED_TAG_PREFIXES.iter().find(|p| lower.starts_with(*p)) {
            v.push(
                &path,
                format!("tag key {key:?} uses the reserved prefix {prefix}"),
                "choose another key: aws: is AWS's, and Capstan sets capstan.dev/ tags itself to find and protect its instances",
            );
        }
        if value.chars().count() > MAX_TAG_VALUE_LEN {
            v.push(
                &path,
                format!(
                    "tag value is {} characters long, more than {MAX_TAG_VALUE_LEN}",
                    value.chars().count()
                ),
                "shorten the value",
            );
        }
    }
}

fn user_data(v: &mut Errors, path: &str, data: &str) {
    if data.len() > MAX_USER_DATA_BYTES {
        v.push(
            path,
            format!(
                "is {} bytes, more than EC2's limit of {MAX_USER_DATA_BYTES}",
                data.len()
            ),
            "keep user data small: download larger scripts at boot, e.g. from S3",
        );
    }
    for finding in secrets_in(data) {
        v.push(path, finding, SECRET_HINT);
    }
}

/// Lines of user data that look like they carry a secret. The secret itself is never
/// repeated in the message.
pub fn secrets_in(data: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, line) in data.lines().enumerate() {
        let n = i + 1;
        if has_access_key_id(line) {
            found.push(format!("line {n} contains an AWS access key id"));
        }
        if line.contains("-----BEGIN ") && line.contains("PRIVATE KEY-----") {
            found.push(format!("line {n} begins a private key"));
        }
        if let Some(name) = secret_assignment(line) {
            found.push(format!("line {n} sets {name} to a literal value"));
        }
    }
    found
}

/// `AKIA` or `ASIA` and 16 uppercase letters or digits, standing alone.
fn has_access_key_id(line: &str) -> bool {
    let bytes = line.as_bytes();
    let key_char = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
    (0..bytes.len()).any(|start| {
        let rest = &bytes[start..];
        (rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA"))
            && rest.len() >= 20
            && rest[4..20].iter().all(|b| key_char(*b))
            && rest.get(20).is_none_or(|b| !key_char(*b))
            && (start == 0 || !bytes[start - 1].is_ascii_alphanumeric())
    })
}

/// `password=...`, `DB_PASSWORD: ...`, `--token abc`: a secret-named key given a literal.
fn secret_assignment(line: &str) -> Option<String> {
    let ident_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    for (pos, delimiter) in line.char_indices().filter(|(_, c)| matches!(c, '=' | ':')) {
        let before = line[..pos].trim_end();
        let start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| ident_char(*c))
            .last()
            .map_or(before.len(), |(i, _)| i);
        let name = before[start..].trim_start_matches('-');
        if delimiter == ':' && line[pos + 1..].starts_with("//") {
            continue; // a URL
        }
        if is_secret_name(name) && is_literal(&line[pos + 1..]) {
            return Some(name.to_string());
        }
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    for pair in words.windows(2) {
        if let Some(flag) = pair[0].strip_prefix("--")
            && !flag.contains('=')
            && is_secret_name(flag)
            && is_literal(pair[1])
        {
            return Some(pair[0].to_string());
        }
    }
    None
}

/// Whether a key's last word names a secret (`DB_PASSWORD`, `apiKey`, `auth-token`).
fn is_secret_name(name: &str) -> bool {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if matches!(c, '_' | '-' | '.') {
            words.push(std::mem::take(&mut word));
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower {
            words.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c.to_ascii_lowercase());
    }
    words.push(word);
    words.retain(|w| !w.is_empty());
    let last = words.last().map(String::as_str);
    let last_two = match words.as_slice() {
        [.., a, b] => Some((a.as_str(), b.as_str())),
        _ => None,
    };
    matches!(
        last,
        Some("password" | "passwd" | "secret" | "token" | "apikey" | "credentials")
    ) || matches!(
        last_two,
        Some(("api" | "secret" | "private" | "access" | "auth", "key"))
            | Some(("client" | "shared", "secret"))
    )
}

/// A value written out, not fetched: not empty, not a variable or command substitution,
/// not a template placeholder.
fn is_literal(value: &str) -> bool {
    let v = value.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    !(v.is_empty()
        || v.starts_with('$')
        || v.starts_with("{{")
        || v.starts_with('<')
        || v.starts_with('#')
        || matches!(v, "|" | ">" | "~" | "null" | "{}" | "[]"))
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
}

fn failure_domain(v: &mut Errors, path: &str, subnet: &str) {
    if subnet.is_empty() {
        v.push(path, "is required", "name the subnet the Machine goes to");
    } else if !is_aws_id(subnet, "subnet-") {
        v.push(
            path,
            format!("{subnet:?} is not a subnet id"),
            "use subnet- followed by 8 or 17 hexadecimal digits, one of the MachineClass's subnets",
        );
    }
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
    launch(v, "spec.launch", &LaunchFields::from(&spec.launch));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{PoolHealthCheck, UnhealthyCondition};
    use crate::meta::ConditionStatus;
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
    fn harmless_boot_scripts_are_not_secrets() {
        let script = "\
#!/bin/bash
set -euo pipefail
TOKEN=$(curl -sX PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600')
DB_PASSWORD=\"$(aws ssm get-parameter --name /demo/db --with-decryption --query Parameter.Value --output text)\"
aws secretsmanager get-secret-value --secret-id demo/join --query SecretString
export API_TOKEN=${API_TOKEN}
password: {{ db_password }}
chpasswd: {expire: false}
kubeadm join --token-ttl 0 --discovery-token-ca-cert-hash sha256:abc
url: https://example.com:443/token
";
        assert_eq!(secrets_in(script), Vec::<String>::new());
    }

    #[test]
    fn literal_secrets_are_found_by_line() {
        let script = "\
#cloud-config
write_files:
  - content: |
      clientSecret: s3cr3t
runcmd:
  - kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef
  - export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI
  - echo apiKey=123
";
        assert_eq!(
            secrets_in(script),
            [
                "line 4 sets clientSecret to a literal value",
                "line 6 sets --token to a literal value",
                "line 7 sets AWS_SECRET_ACCESS_KEY to a literal value",
                "line 8 sets apiKey to a literal value",
            ]
        );
    }

    #[test]
    fn formats() {
        assert!(is_kubernetes_version("v1.31.2"));
        for bad in ["1.31.2", "v1.31", "v1.31.02", "v1.31.2-eks", "v1..2"] {
            assert!(!is_kubernetes_version(bad), "{bad}");
        }
        for good in ["m7i.large", "c7gn.metal-48xl", "u-6tb1.metal", "t3.2xlarge"] {
            assert!(is_instance_type(good), "{good}");
        }
        for bad in ["large", "M7i.large", "m7i.", ".large", "m7i.large.x"] {
            assert!(!is_instance_type(bad), "{bad}");
        }
        assert!(is_aws_id("subnet-0a1b2c3d", "subnet-"));
        assert!(!is_aws_id("subnet-0A1B2C3D", "subnet-"));
        assert_eq!(parse_range("[1-3]"), Some((1, 3)));
        for bad in ["1-3", "[3-1]", "[-1-3]", "[a-b]", "[1-]"] {
            assert_eq!(parse_range(bad), None, "{bad}");
        }
        assert!(is_positive_decimal("0.12") && is_positive_decimal("1"));
        for bad in ["0", "0.0", "-1", ".", "1.", "abc", ""] {
            assert!(!is_positive_decimal(bad), "{bad}");
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
                "spec.launch.rootVolume.kmsKeyId",
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

    #[test]
    fn expected_numbers_cover_the_number_fields() {
        assert_eq!(
            expected_number("spec.controlPlane.replicas").as_deref(),
            Some("an odd number from 1 to 7")
        );
        assert_eq!(
            expected_number("spec.workers[2].replicas").as_deref(),
            Some("a whole number from 0 to 1000")
        );
        assert_eq!(expected_number("spec.version"), None);
    }
}
