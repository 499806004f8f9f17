//! Kubernetes workload manifests (`apps/v1` Deployment and DaemonSet, `policy/v1`
//! PodDisruptionBudget, `v1` Pod) read into what an in-memory workload cluster runs,
//! so `capstan up -f` can show a rollout draining real-looking pods. Only what the
//! simulated scheduler and drain look at is read (labels, requests, nodeSelector,
//! tolerations, volumes, grace); every other field is accepted and ignored, as the
//! fields a real cluster would act on but this one does not model.

use serde_json::Value;

use super::*;

/// Which Capstan Cluster's workload cluster an object goes to, when the files hold
/// more than one Cluster.
pub const CLUSTER_ANNOTATION: &str = "capstan.dev/cluster";

/// One Kubernetes object, ready to be added to a workload cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkloadObject {
    Deployment {
        name: String,
        replicas: u32,
        template: PodSpec,
    },
    DaemonSet {
        name: String,
        template: PodSpec,
    },
    Budget(PodDisruptionBudget),
    Pod(PodSpec),
}

/// A workload object that cannot be read: the object, the field, what is wrong, and
/// the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {problem}; {fix}")]
pub struct WorkloadManifestError {
    pub object: String,
    pub field: String,
    pub problem: String,
    pub fix: String,
}

/// Reads `value` (one object of [`capstan_model::manifest::WORKLOAD_KINDS`]) and the
/// cluster it is for, among the Capstan Clusters `clusters` of the same files: the one
/// its [`CLUSTER_ANNOTATION`] names (`NAME`, or `NAMESPACE/NAME` — the Capstan
/// Cluster's namespace, not the object's), else the only one.
pub fn read_workload_object(
    value: &Value,
    clusters: &[ClusterKey],
) -> Result<(ClusterKey, WorkloadObject), WorkloadManifestError> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("?");
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let err = |field: &str, problem: String, fix: &str| WorkloadManifestError {
        object: format!("{kind}/{namespace}/{name}"),
        field: field.to_string(),
        problem,
        fix: fix.to_string(),
    };
    if name.is_empty() {
        return Err(err("metadata.name", "is missing".into(), "name the object"));
    }
    let cluster = match meta
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(CLUSTER_ANNOTATION))
        .and_then(Value::as_str)
    {
        Some(target) => match target.split_once('/') {
            Some((ns, cluster)) => ClusterKey::new(ns, cluster),
            None => {
                let mut named = clusters.iter().filter(|c| c.cluster == target);
                match (named.next(), named.next()) {
                    (Some(one), None) => one.clone(),
                    (None, _) => ClusterKey::new(capstan_model::meta::DEFAULT_NAMESPACE, target),
                    (Some(_), Some(_)) => {
                        return Err(err(
                            &format!("metadata.annotations.{CLUSTER_ANNOTATION}"),
                            format!("{target:?} names Clusters in several namespaces"),
                            "write NAMESPACE/NAME",
                        ));
                    }
                }
            }
        },
        None => match clusters {
            [one] => Ok(one.clone()),
            _ => Err(()),
        }
        .map_err(|()| {
            err(
                &format!("metadata.annotations.{CLUSTER_ANNOTATION}"),
                "is missing, and the files do not hold exactly one Cluster".into(),
                "annotate the object with the Capstan Cluster (NAME or NAMESPACE/NAME) whose workload cluster runs it",
            )
        })?,
    };
    let spec = value.get("spec").unwrap_or(&Value::Null);
    let object = match kind {
        "Deployment" => {
            let replicas = match spec.get("replicas") {
                None | Some(Value::Null) => 1,
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n <= 10_000)
                    .ok_or_else(|| {
                        err(
                            "spec.replicas",
                            format!("is {v}"),
                            "write a whole number from 0 to 10000",
                        )
                    })?,
            };
            let template = pod_template(spec.get("template"), &namespace, &name)
                .map_err(|(f, p, fix)| err(&format!("spec.template.{f}"), p, fix))?;
            WorkloadObject::Deployment {
                name,
                replicas,
                template,
            }
        }
        "DaemonSet" => {
            let template = pod_template(spec.get("template"), &namespace, &name)
                .map_err(|(f, p, fix)| err(&format!("spec.template.{f}"), p, fix))?;
            WorkloadObject::DaemonSet { name, template }
        }
        "Pod" => {
            let pod = Value::Object(
                [
                    ("metadata".to_string(), meta.cloned().unwrap_or(Value::Null)),
                    ("spec".to_string(), spec.clone()),
                ]
                .into_iter()
                .collect(),
            );
            let mut template = pod_template(Some(&pod), &namespace, &name)
                .map_err(|(f, p, fix)| err(&f, p, fix))?;
            template.name = name;
            WorkloadObject::Pod(template)
        }
        "PodDisruptionBudget" => {
            let selector = string_map(spec.get("selector").and_then(|s| s.get("matchLabels")))
                .map_err(|p| {
                    err(
                        "spec.selector.matchLabels",
                        p,
                        "write label keys and string values",
                    )
                })?;
            let amount = |field: &str| -> Result<Option<IntOrPercent>, WorkloadManifestError> {
                match spec.get(field) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => int_or_percent(v).map(Some).ok_or_else(|| {
                        err(
                            &format!("spec.{field}"),
                            format!("is {v}"),
                            "write a whole number or a percentage such as \"50%\"",
                        )
                    }),
                }
            };
            let budget = match (amount("minAvailable")?, amount("maxUnavailable")?) {
                (Some(n), None) => Budget::MinAvailable(n),
                (None, Some(n)) => Budget::MaxUnavailable(n),
                _ => {
                    return Err(err(
                        "spec",
                        "needs exactly one of minAvailable and maxUnavailable".into(),
                        "set one of them",
                    ));
                }
            };
            WorkloadObject::Budget(PodDisruptionBudget {
                namespace,
                name,
                selector,
                budget,
            })
        }
        other => {
            return Err(err(
                "kind",
                format!("{other} is not run by the in-memory workload cluster"),
                "use a Deployment, DaemonSet, PodDisruptionBudget or Pod",
            ));
        }
    };
    Ok((cluster, object))
}

/// Every workload object of `values`, each with its cluster among the Clusters of
/// `objects` (see [`read_workload_object`]), or every error.
pub fn read_workload_objects(
    objects: &[capstan_model::Object],
    values: &[Value],
) -> Result<Vec<(ClusterKey, WorkloadObject)>, Vec<WorkloadManifestError>> {
    let clusters: Vec<ClusterKey> = objects
        .iter()
        .filter_map(capstan_model::Object::as_cluster)
        .map(|c| ClusterKey::new(&c.metadata.namespace, &c.metadata.name))
        .collect();
    let (read, errors): (Vec<_>, Vec<_>) = values
        .iter()
        .map(|v| read_workload_object(v, &clusters))
        .partition(Result::is_ok);
    if errors.is_empty() {
        Ok(read.into_iter().filter_map(Result::ok).collect())
    } else {
        Err(errors.into_iter().filter_map(Result::err).collect())
    }
}

impl MemWorkload {
    /// Adds a read workload object to `key`'s cluster.
    pub fn add_object(&self, key: ClusterKey, object: WorkloadObject) {
        match object {
            WorkloadObject::Deployment {
                name,
                replicas,
                template,
            } => self.add_deployment(key, &name, replicas, template),
            WorkloadObject::DaemonSet { name, template } => {
                self.add_daemon_set(key, &name, template)
            }
            WorkloadObject::Budget(pdb) => self.add_pdb(key, pdb),
            WorkloadObject::Pod(pod) => self.add_pod(key, pod),
        }
    }
}

type FieldProblem = (String, String, &'static str);

/// A pod template (`metadata` + `spec`) as a [`PodSpec`]: requests summed over the
/// containers (init containers' largest, as the scheduler counts them).
fn pod_template(
    template: Option<&Value>,
    namespace: &str,
    name: &str,
) -> Result<PodSpec, FieldProblem> {
    let template = template.unwrap_or(&Value::Null);
    let mut pod = PodSpec::new(namespace, name);
    pod.labels =
        string_map(template.get("metadata").and_then(|m| m.get("labels"))).map_err(|p| {
            (
                "metadata.labels".into(),
                p,
                "write label keys and string values",
            )
        })?;
    let spec = template.get("spec").unwrap_or(&Value::Null);
    pod.node_selector = string_map(spec.get("nodeSelector")).map_err(|p| {
        (
            "spec.nodeSelector".into(),
            p,
            "write label keys and string values",
        )
    })?;
    let requests = |list: &str| -> Result<Vec<(u64, u64)>, FieldProblem> {
        let mut out = Vec::new();
        let containers = spec.get(list).and_then(Value::as_array);
        for (i, c) in containers.into_iter().flatten().enumerate() {
            let requests = c.get("resources").and_then(|r| r.get("requests"));
            let read = |resource: &str, parse: fn(&str) -> Option<u64>| match requests
                .and_then(|r| r.get(resource))
            {
                None | Some(Value::Null) => Ok(0),
                Some(v) => quantity_text(v).and_then(|t| parse(&t)).ok_or_else(|| {
                    (
                        format!("spec.{list}[{i}].resources.requests.{resource}"),
                        format!("is {v}, not a quantity"),
                        "write a Kubernetes quantity such as 250m, 1, 512Mi or 2Gi",
                    )
                }),
            };
            out.push((
                read("cpu", capstan_model::quantity::millis)?,
                read("memory", capstan_model::quantity::units)?,
            ));
        }
        Ok(out)
    };
    let containers = requests("containers")?;
    let init = requests("initContainers")?;
    let sum = containers.iter().fold((0u64, 0u64), |(c, m), (dc, dm)| {
        (c.saturating_add(*dc), m.saturating_add(*dm))
    });
    let init_max = init
        .iter()
        .fold((0u64, 0u64), |(c, m), (dc, dm)| (c.max(*dc), m.max(*dm)));
    pod.cpu_millis = sum.0.max(init_max.0);
    pod.memory_bytes = sum.1.max(init_max.1);
    for (i, t) in spec
        .get("tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let text = |f: &str| t.get(f).and_then(Value::as_str).map(str::to_string);
        let operator = text("operator").unwrap_or_else(|| "Equal".into());
        if operator != "Equal" && operator != "Exists" {
            return Err((
                format!("spec.tolerations[{i}].operator"),
                format!("is {operator:?}"),
                "write Equal or Exists",
            ));
        }
        pod.tolerations.push(Toleration {
            key: text("key"),
            operator,
            value: text("value"),
            effect: text("effect"),
        });
    }
    for v in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if v.get("emptyDir").is_some() || v.get("hostPath").is_some() {
            pod.local_volumes = true;
        }
        if let Some(claim) = v
            .get("persistentVolumeClaim")
            .and_then(|c| c.get("claimName"))
            .and_then(Value::as_str)
        {
            pod.persistent_volumes.push(claim.to_string());
        }
    }
    if let Some(grace) = spec.get("terminationGracePeriodSeconds") {
        let seconds = grace.as_u64().ok_or_else(|| {
            (
                "spec.terminationGracePeriodSeconds".to_string(),
                format!("is {grace}"),
                "write a whole number of seconds",
            )
        })?;
        pod.grace = Some(Duration::from_secs(seconds));
    }
    if let Some(node) = spec.get("nodeName").and_then(Value::as_str) {
        pod.node_name = Some(node.to_string());
    }
    Ok(pod)
}

/// A quantity as text: `"500m"`, or a bare number such as `1` or `0.5`.
fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int_or_percent(v: &Value) -> Option<IntOrPercent> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(IntOrPercent::Int),
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|p| *p <= 100)
            .map(IntOrPercent::Percent),
        _ => None,
    }
}

fn string_map(v: Option<&Value>) -> Result<BTreeMap<String, String>, String> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!("{k} is {other}, not a string")),
            })
            .collect(),
        Some(other) => Err(format!("is {other}, not a map")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_saphyr::from_str(text).unwrap_or(Value::Null)
    }

    #[test]
    fn a_deployment_reads_its_template() {
        let v = yaml(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  replicas: 6\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      nodeSelector: {pool: workers}\n      tolerations: [{key: dedicated, operator: Exists, effect: NoSchedule}]\n      containers:\n        - {name: a, resources: {requests: {cpu: 250m, memory: 256Mi}}}\n        - {name: b, resources: {requests: {cpu: 1, memory: 1Gi}}}\n      volumes: [{name: cache, emptyDir: {}}]\n",
        );
        let key = ClusterKey::new("default", "demo");
        let (cluster, object) =
            read_workload_object(&v, std::slice::from_ref(&key)).expect("reads");
        assert_eq!(cluster, key);
        let WorkloadObject::Deployment {
            name,
            replicas,
            template,
        } = object
        else {
            panic!("a Deployment");
        };
        assert_eq!((name.as_str(), replicas), ("web", 6));
        assert_eq!(template.namespace, "shop");
        assert_eq!(template.cpu_millis, 1250);
        assert_eq!(template.memory_bytes, (256 + 1024) << 20);
        assert_eq!(
            template.node_selector.get("pool").map(String::as_str),
            Some("workers")
        );
        assert_eq!(template.tolerations.len(), 1);
        assert!(template.local_volumes);
    }

    #[test]
    fn a_budget_needs_exactly_one_amount() {
        let v = yaml(
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\nspec: {minAvailable: \"80%\", selector: {matchLabels: {app: web}}}\n",
        );
        let key = ClusterKey::new("default", "demo");
        let (_, object) = read_workload_object(&v, std::slice::from_ref(&key)).expect("reads");
        assert_eq!(
            object,
            WorkloadObject::Budget(PodDisruptionBudget {
                namespace: "default".into(),
                name: "web".into(),
                selector: [("app".to_string(), "web".to_string())].into(),
                budget: Budget::MinAvailable(IntOrPercent::Percent(80)),
            })
        );
        let both = yaml(
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\nspec: {minAvailable: 1, maxUnavailable: 1}\n",
        );
        let e = read_workload_object(&both, std::slice::from_ref(&key)).expect_err("refused");
        assert_eq!(e.field, "spec");
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let v = yaml(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers: [{name: a, resources: {requests: {cpu: lots}}}]\n",
        );
        let key = ClusterKey::new("default", "demo");
        let e = read_workload_object(&v, std::slice::from_ref(&key)).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "Deployment/default/web: spec.template.spec.containers[0].resources.requests.cpu: is \"lots\", not a quantity; write a Kubernetes quantity such as 250m, 1, 512Mi or 2Gi"
        );
        let e = read_workload_object(&v, &[]).expect_err("no cluster");
        assert!(e.field.contains(CLUSTER_ANNOTATION), "{e}");
    }

    #[test]
    fn the_annotation_names_a_capstan_cluster_not_the_objects_namespace() {
        let v = yaml(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: exporter, namespace: monitoring, annotations: {capstan.dev/cluster: shop}}\nspec: {}\n",
        );
        let shop = ClusterKey::new("team-a", "shop");
        let other = ClusterKey::new("default", "demo");
        let (cluster, _) = read_workload_object(&v, &[other, shop.clone()]).expect("reads");
        assert_eq!(cluster, shop);
        let (cluster, _) = read_workload_object(&v, &[]).expect("reads");
        assert_eq!(cluster, ClusterKey::new("default", "shop"));
    }
}
