//! Kubelets and the node lifecycle controller: an instance's kubelet registers its Node,
//! posts Ready while it runs, and falls silent when the instance stops; the controller
//! then marks the Node `Unknown` and taints it. Also the API's own Node writes (patch,
//! delete).

use capstan_model::InstanceState;
use capstan_model::labels::{TAG_CLUSTER, TAG_NAMESPACE};
use capstan_model::meta::ConditionStatus;
use capstan_runtime::{NodeCondition, provider_id};

use super::*;
use crate::clock::after;

/// An instance's kubelet.
#[derive(Debug)]
pub(super) struct Kubelet {
    pub cluster: ClusterKey,
    pub zone: String,
    pub instance_type: String,
    pub node_name: String,
    /// Running since (first seen running); None while the instance is not running.
    pub running_since: Option<Timestamp>,
    /// When it stopped, if it ran and no longer does.
    pub stopped_at: Option<Timestamp>,
    /// When it (re)registers its Node, if its Node is not registered by it now.
    pub register_at: Option<Timestamp>,
}

impl Kubelet {
    pub fn is_running(&self) -> bool {
        self.running_since.is_some()
    }
}

/// Allocatable resources of a Node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeResources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u64,
}

const MI: u64 = 1024 * 1024;

/// What an EKS kubelet reports as allocatable on `instance_type` (capacity less the
/// kube and system reservations; pods from the VPC CNI's ENI limits). Types not in the
/// table get 2 cpu, 8 GiB and 110 pods.
pub fn node_resources(instance_type: &str) -> NodeResources {
    let (cpu_millis, memory_mib, pods) = match instance_type {
        "t3.medium" => (1930, 3_388, 17),
        "t3.large" => (1930, 7_220, 35),
        "t3.xlarge" => (3920, 15_136, 58),
        "m5.large" | "m6i.large" | "m7i.large" => (1930, 7_220, 29),
        "m5.xlarge" | "m6i.xlarge" | "m7i.xlarge" => (3920, 15_136, 58),
        "m5.2xlarge" | "m6i.2xlarge" | "m7i.2xlarge" => (7910, 30_756, 58),
        "c5.large" | "c6i.large" | "c7i.large" => (1930, 3_388, 29),
        "c5.xlarge" | "c6i.xlarge" | "c7i.xlarge" => (3920, 7_040, 58),
        "r6i.large" | "r7i.large" => (1930, 15_136, 29),
        _ => (2000, 8 * 1024, 110),
    };
    NodeResources {
        cpu_millis,
        memory_bytes: memory_mib * MI,
        pods,
    }
}

/// The region of an availability zone (`us-east-1a` → `us-east-1`).
fn region_of(zone: &str) -> &str {
    zone.trim_end_matches(|c: char| c.is_ascii_lowercase())
}

/// The Node name an EKS kubelet takes: the instance's private DNS name, or its id.
/// <https://docs.aws.amazon.com/vpc/latest/userguide/vpc-dns.html#vpc-dns-hostnames>
fn node_name(instance: &Instance) -> String {
    let Some(ip) = instance.private_ip.as_deref() else {
        return instance.instance_id.clone();
    };
    let host = format!("ip-{}", ip.replace('.', "-"));
    match region_of(&instance.availability_zone) {
        "us-east-1" => format!("{host}.ec2.internal"),
        region => format!("{host}.{region}.compute.internal"),
    }
}

/// Taints the node lifecycle controller owns (it adds and removes them itself).
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

fn system_taints(node: &Node) -> Vec<Taint> {
    let taint = |key: &str, effect: &str| Taint {
        key: key.into(),
        value: None,
        effect: effect.into(),
    };
    let mut out = Vec::new();
    match node.condition("Ready").map(|c| c.status) {
        Some(ConditionStatus::Unknown) => {
            out.push(taint(UNREACHABLE, "NoSchedule"));
            out.push(taint(UNREACHABLE, "NoExecute"));
        }
        Some(ConditionStatus::False) => {
            out.push(taint(NOT_READY, "NoSchedule"));
            out.push(taint(NOT_READY, "NoExecute"));
        }
        Some(ConditionStatus::True) | None => {}
    }
    if node.unschedulable {
        out.push(taint(UNSCHEDULABLE, "NoSchedule"));
    }
    out
}

impl State {
    /// Takes in what EC2 says of one instance.
    pub(super) fn observe(&mut self, instance: &Instance, now: Timestamp) {
        let (Some(namespace), Some(cluster)) = (
            instance.tags.get(TAG_NAMESPACE),
            instance.tags.get(TAG_CLUSTER),
        ) else {
            return;
        };
        let join_delay = self.config.join_delay;
        let kubelet = self
            .kubelets
            .entry(instance.instance_id.clone())
            .or_insert_with(|| Kubelet {
                cluster: ClusterKey::new(namespace.clone(), cluster.clone()),
                zone: instance.availability_zone.clone(),
                instance_type: instance.instance_type.clone(),
                node_name: node_name(instance),
                running_since: None,
                stopped_at: None,
                register_at: None,
            });
        if kubelet.running_since.is_none() && instance.private_ip.is_some() {
            kubelet.node_name = node_name(instance);
        }
        match instance.state {
            InstanceState::Running => {
                if kubelet.running_since.is_none() {
                    kubelet.running_since = Some(now);
                    kubelet.stopped_at = None;
                    kubelet.register_at = Some(after(now, join_delay));
                }
            }
            InstanceState::Pending => {}
            InstanceState::Stopping
            | InstanceState::Stopped
            | InstanceState::ShuttingDown
            | InstanceState::Terminated => {
                if kubelet.running_since.take().is_some() {
                    kubelet.stopped_at = Some(now);
                    kubelet.register_at = None;
                }
            }
        }
        self.clusters.entry(kubelet.cluster.clone()).or_default();
    }

    /// Kubelets whose registration is due register their Node, or adopt the one of
    /// that name.
    pub(super) fn register_kubelets(&mut self, now: Timestamp) {
        let due: Vec<String> = self
            .kubelets
            .iter()
            .filter(|(_, k)| k.is_running() && k.register_at.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let faults = self.instance_faults.get(&id);
            if faults.is_some_and(|f| f.never_join) {
                continue;
            }
            let (mut extra_labels, mut extra_taints) = faults
                .map(|f| (f.labels.clone(), f.taints.clone()))
                .unwrap_or_default();
            let Some(k) = self.kubelets.get_mut(&id) else {
                continue;
            };
            if let Some(boot) = self.boots.get(&id) {
                // A NodeConfig for another cluster, or an endpoint this one does not
                // have: the kubelet never gets in (it retries, as a real one does).
                let reaches = self
                    .clusters
                    .get(&k.cluster)
                    .and_then(|c| c.eks.as_ref())
                    .is_some_and(|(name, described)| boot.joins(name, described));
                if !reaches {
                    continue;
                }
                extra_labels.extend(boot.labels.clone());
                extra_taints.extend(boot.taints.clone());
            }
            let at = k.register_at.take().unwrap_or(now);
            let (cluster, name) = (k.cluster.clone(), k.node_name.clone());
            let res = node_resources(&k.instance_type);
            let mut labels: BTreeMap<String, String> = [
                ("kubernetes.io/hostname", name.as_str()),
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/arch", "amd64"),
                ("node.kubernetes.io/instance-type", &k.instance_type),
                ("topology.kubernetes.io/zone", &k.zone),
                ("topology.kubernetes.io/region", region_of(&k.zone)),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
            let pid = provider_id(&k.zone, &id);
            let (kubelet_version, os_image) = (
                self.config.kubelet_version.clone(),
                self.config.os_image.clone(),
            );
            let uid = self.uid();
            let rv = self.next_resource_version();
            let nodes = &mut self.clusters.entry(cluster).or_default().nodes;
            match nodes.get_mut(&name) {
                // The kubelet finds a Node of its name: it takes it over and reconciles
                // its default labels; the providerID cannot change.
                Some(existing) => {
                    existing.kubelet = id.clone();
                    existing.node.labels.extend(labels);
                    existing.node.resource_version = rv;
                }
                None => {
                    labels.extend(extra_labels);
                    let node = Node {
                        name: name.clone(),
                        uid,
                        resource_version: rv,
                        provider_id: Some(pid),
                        labels,
                        annotations: [
                            ("node.alpha.kubernetes.io/ttl", "0"),
                            (
                                "volumes.kubernetes.io/controller-managed-attach-detach",
                                "true",
                            ),
                        ]
                        .into_iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect(),
                        taints: extra_taints,
                        unschedulable: false,
                        conditions: Vec::new(),
                        kubelet_version,
                        os_image,
                        allocatable: [
                            ("cpu".to_string(), format!("{}m", res.cpu_millis)),
                            (
                                "memory".to_string(),
                                format!("{}Ki", res.memory_bytes / 1024),
                            ),
                            ("pods".to_string(), res.pods.to_string()),
                            ("ephemeral-storage".to_string(), "18242267924".to_string()),
                        ]
                        .into(),
                        volumes_attached: Vec::new(),
                        created: Some(at),
                        deleting: false,
                    };
                    nodes.insert(name, SimNode { node, kubelet: id });
                }
            }
        }
    }

    /// The Ready condition each Node's kubelet posts (or, once it is silent for the
    /// grace period, the Unknown the node lifecycle controller sets), and the taints
    /// that follow from it.
    pub(super) fn refresh_nodes(&mut self, now: Timestamp) {
        let grace = self.config.node_monitor_grace;
        let mut changed = Vec::new();
        for (key, cluster) in &mut self.clusters {
            for (name, sim) in &mut cluster.nodes {
                let kubelet = self.kubelets.get(&sim.kubelet);
                let faults = self.instance_faults.get(&sim.kubelet);
                let ready = match kubelet {
                    Some(k) if k.is_running() && k.register_at.is_none() => {
                        match faults.and_then(|f| f.not_ready.as_ref()) {
                            Some(nr) if nr.at <= now => Some((
                                ConditionStatus::False,
                                nr.reason.clone(),
                                format!("container runtime not ready: {}", nr.reason),
                                now.max(nr.at),
                            )),
                            _ => Some((
                                ConditionStatus::True,
                                "KubeletReady".to_string(),
                                "kubelet is posting ready status".to_string(),
                                now,
                            )),
                        }
                    }
                    Some(k) => match k.stopped_at {
                        Some(stopped) if after(stopped, grace) <= now => Some((
                            ConditionStatus::Unknown,
                            "NodeStatusUnknown".to_string(),
                            "Kubelet stopped posting node status.".to_string(),
                            after(stopped, grace),
                        )),
                        _ => None,
                    },
                    None => None,
                };
                let mut node = sim.node.clone();
                if let Some((status, reason, message, at)) = ready {
                    set_conditions(&mut node, status, &reason, &message, at);
                }
                let owned = [UNREACHABLE, NOT_READY, UNSCHEDULABLE];
                node.taints.retain(|t| !owned.contains(&t.key.as_str()));
                node.taints.extend(system_taints(&node));
                if node != sim.node {
                    changed.push((key.clone(), name.clone(), node));
                }
            }
        }
        for (key, name, mut node) in changed {
            node.resource_version = self.next_resource_version();
            if let Some(sim) = self
                .clusters
                .get_mut(&key)
                .and_then(|c| c.nodes.get_mut(&name))
            {
                sim.node = node;
            }
        }
    }

    pub(super) fn patch_node(
        &mut self,
        key: &ClusterKey,
        name: &str,
        patch: NodePatch,
        now: Timestamp,
    ) -> Result<Node, WorkloadError> {
        let rv = self.next_resource_version();
        let sim = self
            .clusters
            .get_mut(key)
            .and_then(|c| c.nodes.get_mut(name))
            .ok_or_else(|| not_found("nodes", name))?;
        let node = &mut sim.node;
        for (k, v) in patch.labels {
            match v {
                Some(v) => node.labels.insert(k, v),
                None => node.labels.remove(&k),
            };
        }
        if let Some(taints) = patch.taints {
            node.taints = taints;
        }
        if let Some(u) = patch.unschedulable {
            node.unschedulable = u;
        }
        node.resource_version = rv;
        // The node lifecycle controller puts its taints back (or removes them) at once.
        self.refresh_nodes(now);
        self.clusters
            .get(key)
            .and_then(|c| c.nodes.get(name))
            .map(|n| n.node.clone())
            .ok_or_else(|| not_found("nodes", name))
    }

    /// Deletes the Node object. Its pods stay bound until the pod GC removes them; its
    /// kubelet, if still running, registers it again.
    pub(super) fn delete_node(&mut self, key: &ClusterKey, name: &str, now: Timestamp) {
        let Some(sim) = self
            .clusters
            .get_mut(key)
            .and_then(|c| c.nodes.remove(name))
        else {
            return;
        };
        let delay = self.config.reregister_delay;
        if let Some(k) = self.kubelets.get_mut(&sim.kubelet)
            && k.is_running()
            && k.register_at.is_none()
        {
            k.register_at = Some(after(now, delay));
        }
    }
}

/// Sets Ready and the pressure conditions that go with it, keeping each condition's
/// transition time unless its status changes.
fn set_conditions(
    node: &mut Node,
    ready: ConditionStatus,
    reason: &str,
    message: &str,
    at: Timestamp,
) {
    let pressure = match ready {
        ConditionStatus::Unknown => ConditionStatus::Unknown,
        ConditionStatus::True | ConditionStatus::False => ConditionStatus::False,
    };
    let wanted = [
        ("Ready", ready, reason.to_string(), message.to_string()),
        (
            "MemoryPressure",
            pressure,
            pressure_reason(pressure, "KubeletHasSufficientMemory"),
            String::new(),
        ),
        (
            "DiskPressure",
            pressure,
            pressure_reason(pressure, "KubeletHasNoDiskPressure"),
            String::new(),
        ),
        (
            "PIDPressure",
            pressure,
            pressure_reason(pressure, "KubeletHasSufficientPID"),
            String::new(),
        ),
    ];
    for (type_, status, reason, message) in wanted {
        match node.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = Some(at);
                }
                c.status = status;
                c.reason = reason;
                c.message = message;
            }
            None => node.conditions.push(NodeCondition {
                type_: type_.to_string(),
                status,
                reason,
                message,
                last_transition_time: Some(at),
            }),
        }
    }
}

fn pressure_reason(status: ConditionStatus, healthy: &str) -> String {
    match status {
        ConditionStatus::Unknown => "NodeStatusUnknown".into(),
        ConditionStatus::True | ConditionStatus::False => healthy.into(),
    }
}
