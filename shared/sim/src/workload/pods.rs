//! Pods and the controllers that move them: termination, the pod garbage collector,
//! the ReplicaSet and DaemonSet controllers, the scheduler, the kubelet starting pods,
//! and the attach-detach controller.

use capstan_model::meta::ConditionStatus;

use super::*;
use crate::clock::after;
use crate::rng::mix;

/// Who keeps a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    None,
    Mirror,
    Deployment(String),
    DaemonSet(String),
}

#[derive(Debug)]
pub(super) struct SimPod {
    pub pod: Pod,
    pub persistent_volumes: Vec<String>,
    pub grace: Option<Duration>,
    pub owner: Owner,
    /// When termination completes (if the kubelet is there to confirm it).
    pub delete_at: Option<Timestamp>,
    pub bound_at: Option<Timestamp>,
    /// Bound to a Node that does not exist, since.
    pub orphaned_since: Option<Timestamp>,
    /// Creation order: the scheduler's queue.
    pub seq: u64,
}

impl SimPod {
    /// Sets the deletion timestamp; a second deletion may only shorten the grace.
    pub fn start_deleting(&mut self, now: Timestamp, grace: Duration) {
        let at = after(now, grace);
        self.pod.deleting_since.get_or_insert(now);
        self.delete_at = Some(self.delete_at.map_or(at, |t| t.min(at)));
    }
}

#[derive(Debug)]
pub(super) struct SimAttachment {
    pub attachment: VolumeAttachment,
    pub volume: String,
    /// When it is gone (its last pod left the node).
    pub detach_at: Option<Timestamp>,
}

/// A ReplicaSet's pod-template-hash, from the Deployment's name.
pub(super) fn template_hash(name: &str) -> String {
    suffix(fnv(name), 10)
}

/// Kubernetes' generated-name alphabet (no vowels, no confusable digits).
fn suffix(mut bits: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::with_capacity(len);
    for _ in 0..len {
        out.push(char::from(
            ALPHABET[(bits % ALPHABET.len() as u64) as usize],
        ));
        bits /= ALPHABET.len() as u64;
        if bits == 0 {
            bits = mix(out.len() as u64 + 1);
        }
    }
    out
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The EBS volume id a persistent volume is backed by, and the name Kubernetes gives it
/// in `volumesAttached`.
fn attached_name(volume: &str) -> String {
    format!(
        "kubernetes.io/csi/ebs.csi.aws.com^vol-{:017x}",
        mix(fnv(volume)) >> 4
    )
}

/// Whether `tolerations` tolerate `taint` (core/v1 `Toleration.ToleratesTaint`).
pub(super) fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok = match t.key.as_deref() {
            None | Some("") => t.operator == "Exists",
            Some(k) => k == taint.key,
        };
        let value_ok = match t.operator.as_str() {
            "Exists" => true,
            _ => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        };
        effect_ok && key_ok && value_ok
    })
}

/// Whether a pod with these tolerations may be placed on `node` by its taints.
fn taints_allow(tolerations: &[Toleration], node: &Node, daemon: bool) -> bool {
    node.taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| (daemon && t.key.starts_with("node.kubernetes.io/")) || tolerates(tolerations, t))
}

/// Required node affinity: no term, or any term whose expressions all match (an empty
/// term matches nothing, as in Kubernetes).
fn affinity_matches(terms: &[NodeSelectorTerm], labels: &BTreeMap<String, String>) -> bool {
    use capstan_runtime::Operator;
    terms.is_empty()
        || terms.iter().any(|t| {
            !t.match_expressions.is_empty()
                && t.match_expressions.iter().all(|e| {
                    let v = labels.get(&e.key);
                    match e.operator {
                        Operator::In => v.is_some_and(|v| e.values.contains(v)),
                        Operator::NotIn => v.is_none_or(|v| !e.values.contains(v)),
                        Operator::Exists => v.is_some(),
                        Operator::DoesNotExist => v.is_none(),
                    }
                })
        })
}

fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl State {
    /// Creates a pod from `spec`, replacing any of that name.
    pub(super) fn create_pod(&mut self, key: &ClusterKey, spec: PodSpec, owner: Owner) {
        let uid = self.uid();
        self.pod_seq += 1;
        let seq = self.pod_seq;
        let now = self.now;
        let controller_kind = match &owner {
            Owner::Mirror => Some("Node".to_string()),
            Owner::None => spec.controller_kind.clone(),
            Owner::Deployment(_) => Some("ReplicaSet".to_string()),
            Owner::DaemonSet(_) => Some("DaemonSet".to_string()),
        };
        let mut annotations = spec.annotations;
        if owner == Owner::Mirror {
            annotations.insert("kubernetes.io/config.mirror".into(), uid.clone());
        }
        let bound = spec.node_name.is_some();
        let pod = Pod {
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
            uid,
            node_name: spec.node_name,
            labels: spec.labels,
            annotations,
            controller_kind,
            mirror: owner == Owner::Mirror,
            deleting_since: None,
            phase: "Pending".into(),
            unschedulable: false,
            created: Some(now),
            scheduled_at: bound.then_some(now),
            cpu_millis: spec.cpu_millis,
            memory_bytes: spec.memory_bytes,
            node_selector: spec.node_selector,
            affinity: spec.affinity,
            tolerations: spec.tolerations,
            local_volumes: spec.local_volumes,
        };
        self.clusters.entry(key.clone()).or_default().pods.insert(
            (spec.namespace, spec.name),
            SimPod {
                pod,
                persistent_volumes: spec.persistent_volumes,
                grace: spec.grace,
                owner,
                delete_at: None,
                bound_at: bound.then_some(now),
                orphaned_since: None,
                seq,
            },
        );
    }

    /// Whether the kubelet behind Node `name` is running and registered.
    fn kubelet_alive(&self, cluster: &Cluster, name: &str) -> bool {
        cluster
            .nodes
            .get(name)
            .and_then(|n| self.kubelets.get(&n.kubelet))
            .is_some_and(|k| k.is_running() && k.register_at.is_none())
    }

    pub(super) fn settle_pods(&mut self, key: &ClusterKey, now: Timestamp) {
        self.evict_for_taints(key, now);
        self.finish_terminations(key, now);
        self.run_controllers(key);
        self.schedule(key);
        self.start_pods(key, now);
        if let Some(cluster) = self.clusters.get_mut(key) {
            cluster.detach_volumes(now);
            cluster.report_volumes();
        }
    }

    /// The taint manager: a Node tainted `NoExecute` by the node lifecycle controller
    /// (unreachable, not-ready) since its Ready condition changed has its pods deleted
    /// `taint_eviction_delay` later (the default `tolerationSeconds`), unless they
    /// tolerate the taint outright (DaemonSet pods do; mirror pods are the kubelet's).
    /// Disruption budgets do not hold it back: it deletes, it does not evict.
    fn evict_for_taints(&mut self, key: &ClusterKey, now: Timestamp) {
        let delay = self.config.taint_eviction_delay;
        let default_grace = self.config.default_grace;
        let Some(cluster) = self.clusters.get_mut(key) else {
            return;
        };
        let mut due: BTreeMap<String, Vec<Taint>> = BTreeMap::new();
        for (name, sim) in &cluster.nodes {
            let node = &sim.node;
            let tainted: Vec<Taint> = node
                .taints
                .iter()
                .filter(|t| t.effect == "NoExecute" && t.key.starts_with("node.kubernetes.io/"))
                .cloned()
                .collect();
            let since = node.condition("Ready").and_then(|c| c.last_transition_time);
            if !tainted.is_empty() && since.is_some_and(|t| after(t, delay) <= now) {
                due.insert(name.clone(), tainted);
            }
        }
        for p in cluster.pods.values_mut() {
            let Some(taints) = p.pod.node_name.as_ref().and_then(|n| due.get(n)) else {
                continue;
            };
            let exempt = matches!(p.owner, Owner::DaemonSet(_) | Owner::Mirror)
                || p.pod.deleting_since.is_some()
                || taints.iter().all(|t| tolerates(&p.pod.tolerations, t));
            if !exempt {
                let grace = p.grace.unwrap_or(default_grace);
                p.start_deleting(now, grace);
            }
        }
    }

    /// Terminating pods whose grace is over go, when a kubelet confirms it (or they are
    /// unbound); pods bound to a Node that no longer exists go `pod_gc_delay` later.
    /// A mirror pod deleted while its kubelet runs is posted again.
    fn finish_terminations(&mut self, key: &ClusterKey, now: Timestamp) {
        let Some(cluster) = self.clusters.get(key) else {
            return;
        };
        let gc_delay = self.config.pod_gc_delay;
        let mut gone = Vec::new();
        let mut orphaned = Vec::new();
        for (id, p) in &cluster.pods {
            let node = p.pod.node_name.as_deref();
            let node_exists = node.is_some_and(|n| cluster.nodes.contains_key(n));
            if node.is_some() && !node_exists {
                let since = p.orphaned_since.unwrap_or(now);
                orphaned.push((id.clone(), Some(since)));
                if after(since, gc_delay) <= now {
                    gone.push(id.clone());
                }
                continue;
            }
            if p.orphaned_since.is_some() {
                orphaned.push((id.clone(), None));
            }
            let confirmed = node.is_none_or(|n| self.kubelet_alive(cluster, n));
            if p.delete_at.is_some_and(|t| t <= now) && confirmed {
                gone.push(id.clone());
            }
        }
        let mut reposted = Vec::new();
        let mut left = Vec::new();
        if let Some(cluster) = self.clusters.get_mut(key) {
            for (id, since) in orphaned {
                if let Some(p) = cluster.pods.get_mut(&id) {
                    p.orphaned_since = since;
                }
            }
            for id in gone {
                if let Some(p) = cluster.pods.remove(&id) {
                    left.push((p.pod.node_name.clone(), p.persistent_volumes.clone()));
                    if p.owner == Owner::Mirror
                        && let Some(node) = &p.pod.node_name
                    {
                        let mut spec = PodSpec::new(p.pod.namespace, p.pod.name).on_node(node);
                        spec.labels = p.pod.labels;
                        spec.cpu_millis = p.pod.cpu_millis;
                        spec.memory_bytes = p.pod.memory_bytes;
                        reposted.push(spec);
                    }
                }
            }
        }
        for (node, volumes) in left {
            if let Some(node) = node {
                self.release_volumes(key, &node, &volumes, now);
            }
        }
        for spec in reposted {
            let alive = self
                .clusters
                .get(key)
                .zip(spec.node_name.as_deref())
                .is_some_and(|(c, n)| self.kubelet_alive(c, n));
            if alive {
                self.create_pod(key, spec, Owner::Mirror);
            }
        }
    }

    /// The volumes no pod on `node` uses any more start detaching: quickly if the
    /// kubelet is there to unmount them, after the force-detach timeout if not.
    fn release_volumes(
        &mut self,
        key: &ClusterKey,
        node: &str,
        volumes: &[String],
        now: Timestamp,
    ) {
        let Some(cluster) = self.clusters.get(key) else {
            return;
        };
        let delay = if self.kubelet_alive(cluster, node) {
            self.config.detach_delay
        } else {
            self.config.unreachable_detach_delay
        };
        let Some(cluster) = self.clusters.get_mut(key) else {
            return;
        };
        for volume in volumes {
            let in_use = cluster.pods.values().any(|p| {
                p.pod.node_name.as_deref() == Some(node) && p.persistent_volumes.contains(volume)
            });
            if in_use {
                continue;
            }
            for a in cluster.attachments.values_mut() {
                if a.volume == *volume && a.attachment.node_name == node && a.detach_at.is_none() {
                    a.detach_at = Some(after(now, delay));
                }
            }
        }
    }

    /// The ReplicaSets keep their replicas (terminating pods do not count); the
    /// DaemonSets keep one pod on every Node they may run on.
    fn run_controllers(&mut self, key: &ClusterKey) {
        let Some(cluster) = self.clusters.get(key) else {
            return;
        };
        let default_grace = self.config.default_grace;
        let mut create = Vec::new();
        let mut scale_down = Vec::new();
        for ((ns, name), d) in &cluster.deployments {
            let mut active: Vec<(&(String, String), &SimPod)> = cluster
                .pods
                .iter()
                .filter(|(_, p)| {
                    p.owner == Owner::Deployment(name.clone())
                        && p.pod.namespace == *ns
                        && p.pod.deleting_since.is_none()
                })
                .collect();
            let want = d.replicas as usize;
            if active.len() < want {
                for _ in active.len()..want {
                    create.push((
                        d.template.clone(),
                        d.hash.clone(),
                        Owner::Deployment(name.clone()),
                    ));
                }
            } else if active.len() > want {
                // The newest go first (pending before running, then by age).
                active.sort_by_key(|(_, p)| (p.pod.phase == "Running", std::cmp::Reverse(p.seq)));
                let extra = active.len() - want;
                for (id, _) in active.into_iter().take(extra) {
                    scale_down.push(id.clone());
                }
            }
        }
        for ((ns, name), template) in &cluster.daemon_sets {
            for (node_name, n) in &cluster.nodes {
                let fits = selector_matches(&template.node_selector, &n.node.labels)
                    && taints_allow(&template.tolerations, &n.node, true);
                let has = cluster.pods.values().any(|p| {
                    p.owner == Owner::DaemonSet(name.clone())
                        && p.pod.namespace == *ns
                        && p.pod.node_name.as_deref() == Some(node_name.as_str())
                        && p.pod.deleting_since.is_none()
                });
                if fits && !has {
                    let spec = template.clone().on_node(node_name.clone());
                    create.push((spec, String::new(), Owner::DaemonSet(name.clone())));
                }
            }
        }
        let now = self.now;
        if let Some(cluster) = self.clusters.get_mut(key) {
            for id in scale_down {
                if let Some(p) = cluster.pods.get_mut(&id) {
                    let grace = p.grace.unwrap_or(default_grace);
                    p.start_deleting(now, grace);
                }
            }
        }
        for (mut spec, hash, owner) in create {
            let prefix = if hash.is_empty() {
                spec.name.clone()
            } else {
                format!("{}-{hash}", spec.name)
            };
            spec.name = loop {
                let candidate = format!("{prefix}-{}", suffix(self.ids.next_u64(), 5));
                let taken = self.clusters.get(key).is_some_and(|c| {
                    c.pods
                        .contains_key(&(spec.namespace.clone(), candidate.clone()))
                });
                if !taken {
                    break candidate;
                }
            };
            self.create_pod(key, spec, owner);
        }
    }

    /// Binds pending pods, oldest first, to the Ready, uncordoned Node with room whose
    /// labels and taints allow them and that has the most cpu left (then memory, then
    /// name: kube-scheduler's LeastAllocated, deterministic). A pod that fits nowhere is marked unschedulable and tried again next time.
    fn schedule(&mut self, key: &ClusterKey) {
        let now = self.now;
        let Some(cluster) = self.clusters.get_mut(key) else {
            return;
        };
        let mut rooms: BTreeMap<String, Room> = cluster
            .nodes
            .iter()
            .filter(|(_, n)| n.node.is_ready() && !n.node.unschedulable && !n.node.deleting)
            .map(|(name, n)| {
                let fit = allocatable(&n.node);
                let room = Room {
                    fit,
                    score_cpu: fit.cpu_millis,
                    score_memory: fit.memory_bytes,
                };
                (name.clone(), room)
            })
            .collect();
        for p in cluster.pods.values() {
            if let Some(r) = p.pod.node_name.as_ref().and_then(|n| rooms.get_mut(n))
                && !matches!(p.pod.phase.as_str(), "Succeeded" | "Failed")
            {
                r.take(&p.pod);
            }
        }
        let mut queue: Vec<(u64, (String, String))> = cluster
            .pods
            .iter()
            .filter(|(_, p)| p.pod.node_name.is_none() && p.pod.deleting_since.is_none())
            .map(|(id, p)| (p.seq, id.clone()))
            .collect();
        queue.sort();
        for (_, id) in queue {
            let Some(p) = cluster.pods.get_mut(&id) else {
                continue;
            };
            let best = rooms
                .iter()
                .filter(|(name, r)| {
                    cluster.nodes.get(*name).is_some_and(|n| {
                        selector_matches(&p.pod.node_selector, &n.node.labels)
                            && affinity_matches(&p.pod.affinity, &n.node.labels)
                            && taints_allow(&p.pod.tolerations, &n.node, false)
                    }) && r.fit.cpu_millis >= p.pod.cpu_millis
                        && r.fit.memory_bytes >= p.pod.memory_bytes
                        && r.fit.pods >= 1
                })
                .max_by_key(|(name, r)| (r.score_cpu, r.score_memory, std::cmp::Reverse(*name)))
                .map(|(name, _)| name.clone());
            match best {
                Some(name) => {
                    if let Some(r) = rooms.get_mut(&name) {
                        r.take(&p.pod);
                    }
                    p.pod.node_name = Some(name);
                    p.pod.unschedulable = false;
                    p.pod.scheduled_at = Some(now);
                    p.bound_at = Some(now);
                }
                None => p.pod.unschedulable = true,
            }
        }
    }

    /// A bound pod starts `pod_start_delay` after binding once its kubelet runs and its
    /// volumes are attached to its node; a volume still attached to another node keeps
    /// it waiting (Multi-Attach error).
    fn start_pods(&mut self, key: &ClusterKey, now: Timestamp) {
        let start_delay = self.config.pod_start_delay;
        let Some(cluster) = self.clusters.get(key) else {
            return;
        };
        let ready: Vec<(String, String)> = cluster
            .pods
            .iter()
            .filter(|(_, p)| {
                p.pod.phase == "Pending"
                    && p.pod.deleting_since.is_none()
                    && p.bound_at.is_some_and(|t| after(t, start_delay) <= now)
                    && p.pod
                        .node_name
                        .as_deref()
                        .is_some_and(|n| self.kubelet_alive(cluster, n))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let Some(cluster) = self.clusters.get_mut(key) else {
            return;
        };
        for id in ready {
            let Some(p) = cluster.pods.get(&id) else {
                continue;
            };
            let Some(node) = p.pod.node_name.clone() else {
                continue;
            };
            let volumes = p.persistent_volumes.clone();
            let elsewhere = volumes.iter().any(|v| {
                cluster
                    .attachments
                    .values()
                    .any(|a| a.volume == *v && a.attachment.node_name != node)
            });
            if elsewhere {
                continue;
            }
            for v in &volumes {
                let existing = cluster
                    .attachments
                    .values_mut()
                    .find(|a| a.volume == *v && a.attachment.node_name == node);
                match existing {
                    Some(a) => a.detach_at = None,
                    None => {
                        // Kubernetes names it csi-<sha256 of volume, driver and node>.
                        let name = format!("csi-{:016x}", mix(fnv(&format!("{v}/{node}"))));
                        cluster.attachments.insert(
                            name.clone(),
                            SimAttachment {
                                attachment: VolumeAttachment {
                                    name,
                                    node_name: node.clone(),
                                    attached: true,
                                },
                                volume: v.clone(),
                                detach_at: None,
                            },
                        );
                    }
                }
            }
            if let Some(p) = cluster.pods.get_mut(&id) {
                p.pod.phase = "Running".into();
            }
        }
    }
}

/// What is left on a Node: to fit a pod (its requests), and to score it (requests,
/// or kube-scheduler's non-zero defaults for pods without, 100m and 200 MiB, so pods
/// without requests still spread).
struct Room {
    fit: NodeResources,
    score_cpu: u64,
    score_memory: u64,
}

impl Room {
    fn take(&mut self, pod: &Pod) {
        let score_cpu = if pod.cpu_millis == 0 {
            100
        } else {
            pod.cpu_millis
        };
        let score_memory = if pod.memory_bytes == 0 {
            200 * 1024 * 1024
        } else {
            pod.memory_bytes
        };
        self.fit.cpu_millis = self.fit.cpu_millis.saturating_sub(pod.cpu_millis);
        self.fit.memory_bytes = self.fit.memory_bytes.saturating_sub(pod.memory_bytes);
        self.fit.pods = self.fit.pods.saturating_sub(1);
        self.score_cpu = self.score_cpu.saturating_sub(score_cpu);
        self.score_memory = self.score_memory.saturating_sub(score_memory);
    }
}

/// A Node's allocatable resources, read back from its status.
fn allocatable(node: &Node) -> NodeResources {
    let get = |k: &str| node.allocatable.get(k).map(String::as_str).unwrap_or("0");
    let cpu = get("cpu");
    let cpu_millis = match cpu.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(0),
        None => cpu.parse::<u64>().unwrap_or(0) * 1000,
    };
    let mem = get("memory");
    let memory_bytes = match mem.strip_suffix("Ki") {
        Some(k) => k.parse::<u64>().unwrap_or(0) * 1024,
        None => mem.parse().unwrap_or(0),
    };
    NodeResources {
        cpu_millis,
        memory_bytes,
        pods: get("pods").parse().unwrap_or(0),
    }
}

impl Cluster {
    fn detach_volumes(&mut self, now: Timestamp) {
        self.attachments
            .retain(|_, a| a.detach_at.is_none_or(|t| t > now));
    }

    /// `status.volumesAttached` of each Node, from its attachments.
    fn report_volumes(&mut self) {
        for (name, n) in &mut self.nodes {
            let mut attached: Vec<String> = self
                .attachments
                .values()
                .filter(|a| a.attachment.node_name == *name && a.attachment.attached)
                .map(|a| attached_name(&a.volume))
                .collect();
            attached.sort();
            attached.dedup();
            if n.node.volumes_attached != attached {
                n.node.volumes_attached = attached;
            }
        }
    }

    /// Whether a pod counts as healthy for a disruption budget: Running, not
    /// terminating, on a Node that is Ready (the node lifecycle controller marks the
    /// pods of a NotReady node not Ready).
    pub(super) fn healthy(&self, pod: &Pod) -> bool {
        pod.phase == "Running"
            && pod.deleting_since.is_none()
            && pod
                .node_name
                .as_deref()
                .and_then(|n| self.nodes.get(n))
                .and_then(|n| n.node.condition("Ready"))
                .is_some_and(|c| c.status == ConditionStatus::True)
    }
}
