//! In-memory workload clusters: the Kubernetes API servers of the clusters whose
//! machines Capstan manages, with kubelets that follow the simulated EC2 instances, a
//! scheduler, Deployment, DaemonSet and pod-GC controllers, PodDisruptionBudgets and
//! volume attachments. [`MemWorkload`] implements the
//! [`Workload`](capstan_runtime::Workload) port, and is as unkind as a real API server:
//!
//! - a Node appears only when its instance's kubelet registers, `join_delay` after the
//!   instance was first seen running; it is named as EKS names nodes
//!   (`ip-10-0-1-23.ec2.internal` in us-east-1, `ip-….<region>.compute.internal`
//!   elsewhere, the instance id without a private IP);
//! - a stopped or terminated instance's Node is *not* deleted: it goes `Ready=Unknown`
//!   `node_monitor_grace` later (kube-controller-manager's node-monitor-grace-period)
//!   and stays, with the `node.kubernetes.io/unreachable` taints, until someone deletes
//!   it. (On EKS the cloud controller manager would delete the Node of a terminated
//!   instance; Capstan must not count on it, so this cluster has none.) Its pods stay
//!   bound and `Running`, but no longer Ready, until the taint manager deletes them
//!   `taint_eviction_delay` (300 s) after the Node went unreachable or not-ready
//!   (DaemonSet and mirror pods stay; budgets do not hold it back);
//! - a deleted Node whose kubelet still runs comes back `reregister_delay` later, with
//!   a new uid and the kubelet's own labels only (a cordon is lost), as kubelets do;
//! - a terminated instance's private IP is reused by EC2: a new kubelet with the same
//!   node name adopts the old Node object, whose `providerID` cannot change — so the
//!   ghost's Node answers Ready for another instance until it is deleted and the new
//!   kubelet re-registers with its own providerID (kubelet `tryRegisterWithAPIServer`);
//! - an eviction honours PodDisruptionBudgets as `policy/v1` does (one budget per pod at
//!   most, healthy = Running and Ready, `IfHealthyBudget` for unhealthy pods), but the
//!   API protects neither mirror nor DaemonSet pods: the drainer must skip them. A
//!   DaemonSet pod evicted comes straight back (DaemonSets tolerate cordons);
//! - a terminating pod goes away after its grace period only if its kubelet is alive to
//!   confirm it; on a dead node it stays terminating until the Node is deleted, and the
//!   pod garbage collector removes pods of deleted Nodes `pod_gc_delay` later;
//! - a ReplicaSet replaces a pod as soon as it is terminating (deleting pods are not
//!   active), so the replacement is pending while the old pod is still going;
//! - a VolumeAttachment goes `detach_delay` after its last pod left the node, or
//!   `unreachable_detach_delay` (the attach-detach controller's 6-minute force detach)
//!   when the node's kubelet is not there to unmount; a pod whose volume is still
//!   attached elsewhere does not start (Multi-Attach);
//! - calls can fail: the API unreachable for a while, throttled (every k-th call),
//!   flaky with a seeded probability, or a queued error for the next call.
//!
//! Time: the constructor takes the virtual clock; every call first applies everything
//! due by the clock's now (or by the time given to [`MemWorkload::observe_instances`],
//! whichever is later: time never goes back here). The scheduler and controllers run
//! at every such step. Clusters are keyed by namespace and Capstan Cluster name (the
//! target's access key is not checked) and come into being on first use.

mod config;
mod eviction;
mod faults;
mod kubelet;
mod manifest;
mod nodeadm;
mod objects;
mod pods;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use capstan_model::Timestamp;
use capstan_runtime::{
    Clock, ClusterAccessKey, EksCluster, Eviction, Instance, Node, NodePatch, NodeSelectorTerm,
    Pod, PodFilter, Taint, Toleration, VolumeAttachment, Workload, WorkloadError, WorkloadTarget,
    instance_id_of,
};

use crate::rng::{Rng, uuid};

use kubelet::Kubelet;
use nodeadm::NodeConfig;
use pods::{Owner, SimAttachment, SimPod};

pub use config::{ClusterKey, WorkloadConfig};
pub use faults::{FlakyApi, NotReady, Throttle};
pub use kubelet::{NodeResources, node_resources};
pub use manifest::{
    CLUSTER_ANNOTATION, WorkloadManifestError, WorkloadObject, read_workload_object,
    read_workload_objects,
};
pub use objects::{Budget, IntOrPercent, PodDisruptionBudget, PodSpec};

use faults::{ClusterFaults, InstanceFaults};

/// Calls made through the `Workload` port, failed ones included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkloadCalls {
    pub find_node: u64,
    pub list_nodes: u64,
    pub patch_node: u64,
    pub delete_node: u64,
    pub list_pods: u64,
    pub evict: u64,
    pub volume_attachments: u64,
}

/// One eviction the API answered (not those that failed before reaching it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvictionRecord {
    pub at: Timestamp,
    pub cluster: ClusterKey,
    pub namespace: String,
    pub pod: String,
    pub node: Option<String>,
    pub outcome: Eviction,
    /// The budgets this eviction left with fewer healthy pods than they need, when they
    /// had enough before. Always empty: an eviction that would do it is refused.
    pub broke_budgets: Vec<String>,
}

/// The in-memory workload clusters. Clones share them.
#[derive(Clone)]
pub struct MemWorkload {
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MemWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("MemWorkload")
            .field("clusters", &s.clusters.len())
            .field("kubelets", &s.kubelets.len())
            .field("calls", &s.calls)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Deployment {
    replicas: u32,
    template: PodSpec,
    /// The ReplicaSet's pod-template-hash.
    hash: String,
}

#[derive(Debug, Default)]
struct Cluster {
    nodes: BTreeMap<String, SimNode>,
    pods: BTreeMap<(String, String), SimPod>,
    deployments: BTreeMap<(String, String), Deployment>,
    daemon_sets: BTreeMap<(String, String), PodSpec>,
    pdbs: BTreeMap<(String, String), PodDisruptionBudget>,
    attachments: BTreeMap<String, SimAttachment>,
    faults: ClusterFaults,
    calls: u64,
    /// The EKS cluster's name and what DescribeCluster says of it, once asked.
    eks: Option<(String, EksCluster)>,
}

#[derive(Debug)]
struct SimNode {
    node: Node,
    /// The instance whose kubelet last registered or adopted this Node.
    kubelet: String,
}

#[derive(Debug)]
struct State {
    config: WorkloadConfig,
    now: Timestamp,
    clusters: BTreeMap<ClusterKey, Cluster>,
    kubelets: BTreeMap<String, Kubelet>,
    instance_faults: BTreeMap<String, InstanceFaults>,
    ids: Rng,
    resource_version: u64,
    pod_seq: u64,
    calls: WorkloadCalls,
    evictions: Vec<EvictionRecord>,
    /// The NodeConfig each instance booted with, where its user data had one.
    boots: BTreeMap<String, NodeConfig>,
    /// A lying API server (the simulator's `HidePods` mutation): no pod is listed on
    /// any Node.
    hide_pods: bool,
    /// A lying API server for the autoscaler (the `AutoscaleBlind` mutation): the list
    /// of every active pod is empty, so every Node looks empty and nothing pending.
    hide_active_pods: bool,
}

/// Which port method a call is, for the counters.
#[derive(Clone, Copy, Debug)]
enum Method {
    FindNode,
    ListNodes,
    PatchNode,
    DeleteNode,
    ListPods,
    Evict,
    VolumeAttachments,
}

impl MemWorkload {
    pub fn new(config: WorkloadConfig, clock: Arc<dyn Clock>) -> MemWorkload {
        let now = clock.now();
        let ids = Rng::new(config.seed);
        MemWorkload {
            clock,
            state: Arc::new(Mutex::new(State {
                config,
                now,
                clusters: BTreeMap::new(),
                kubelets: BTreeMap::new(),
                instance_faults: BTreeMap::new(),
                ids,
                resource_version: 0,
                pod_seq: 0,
                calls: WorkloadCalls::default(),
                evictions: Vec::new(),
                boots: BTreeMap::new(),
                hide_pods: false,
                hide_active_pods: false,
            })),
        }
    }

    // ------------------------------------------------------------------ the world

    /// The runtime's step: tells the kubelets what EC2 says of their instances (the
    /// `capstan.dev/namespace` and `capstan.dev/cluster` tags say which cluster an
    /// instance joins; instances without them join none), then applies everything due
    /// by `now`. An instance first seen running starts its kubelet now; one seen in any
    /// other state after running has stopped it. Instances missing from the list are
    /// left as they were.
    pub fn observe_instances(&self, now: Timestamp, instances: &[Instance]) {
        let mut state = self.lock();
        let now = state.now.max(now).max(self.clock.now());
        state.now = now;
        for instance in instances {
            state.observe(instance, now);
        }
        state.settle(now);
    }

    /// The runtime's step against a simulated EC2: the kubelets take in the instances
    /// that changed after EC2's change number `seen`, and the NodeConfig each new one
    /// booted with, as [`MemWorkload::observe_instances`]. Returns the number to pass
    /// next time.
    pub fn follow(&self, now: Timestamp, ec2: &crate::SimEc2, seen: u64) -> u64 {
        let (changed, latest) = ec2.instances_changed_after(seen);
        {
            let mut state = self.lock();
            for instance in &changed {
                if state.kubelets.contains_key(&instance.instance_id)
                    || state.boots.contains_key(&instance.instance_id)
                {
                    continue;
                }
                let config = ec2
                    .launch_request(&instance.instance_id)
                    .and_then(|r| r.user_data)
                    .and_then(|u| NodeConfig::parse(&u));
                if let Some(config) = config {
                    state.boots.insert(instance.instance_id.clone(), config);
                }
            }
        }
        self.observe_instances(now, &changed);
        latest
    }

    /// Applies everything due by the clock's now without a call.
    pub fn advance(&self) {
        drop(self.settled());
    }

    /// Creates the cluster if it does not exist yet.
    pub fn ensure_cluster(&self, key: impl Into<ClusterKey>) {
        let key = key.into();
        self.settled().clusters.entry(key).or_default();
    }

    /// Adds a pod (pending unless `node_name` binds it). Replaces any pod of that name.
    pub fn add_pod(&self, key: impl Into<ClusterKey>, spec: PodSpec) {
        let mut state = self.settled();
        let owner = if spec.mirror {
            Owner::Mirror
        } else {
            Owner::None
        };
        state.create_pod(&key.into(), spec, owner);
        let now = state.now;
        state.settle(now);
    }

    /// Deletes a pod as `kubectl delete pod` does (graceful). False if it is missing.
    pub fn delete_pod(&self, key: impl Into<ClusterKey>, namespace: &str, name: &str) -> bool {
        let mut state = self.settled();
        let now = state.now;
        let default_grace = state.config.default_grace;
        let Some(cluster) = state.clusters.get_mut(&key.into()) else {
            return false;
        };
        let Some(pod) = cluster.pods.get_mut(&(namespace.into(), name.into())) else {
            return false;
        };
        let grace = pod.grace.unwrap_or(default_grace);
        pod.start_deleting(now, grace);
        state.settle(now);
        true
    }

    /// A Deployment of `replicas` pods from `template` (its namespace; the name prefixes
    /// the pods' names; label `app=<name>` is added; owner kind ReplicaSet). The
    /// ReplicaSet keeps `replicas` pods that are not terminating.
    pub fn add_deployment(
        &self,
        key: impl Into<ClusterKey>,
        name: &str,
        replicas: u32,
        mut template: PodSpec,
    ) {
        let mut state = self.settled();
        template.labels.insert("app".into(), name.into());
        template.name = name.into();
        template.controller_kind = Some("ReplicaSet".into());
        template.mirror = false;
        template.node_name = None;
        let hash = pods::template_hash(name);
        let id = (template.namespace.clone(), name.to_string());
        state
            .clusters
            .entry(key.into())
            .or_default()
            .deployments
            .insert(
                id,
                Deployment {
                    replicas,
                    template,
                    hash,
                },
            );
        let now = state.now;
        state.settle(now);
    }

    /// Scales a Deployment: extra pods (the newest) start terminating. False if missing.
    pub fn scale_deployment(
        &self,
        key: impl Into<ClusterKey>,
        namespace: &str,
        name: &str,
        replicas: u32,
    ) -> bool {
        let mut state = self.settled();
        let found = state
            .clusters
            .get_mut(&key.into())
            .and_then(|c| c.deployments.get_mut(&(namespace.into(), name.into())))
            .map(|d| d.replicas = replicas)
            .is_some();
        let now = state.now;
        state.settle(now);
        found
    }

    /// A DaemonSet: one pod from `template` on every Node whose labels match its node
    /// selector and whose taints it tolerates (DaemonSets tolerate the
    /// `node.kubernetes.io/*` taints, cordons included), created when the Node
    /// registers and again whenever that pod is gone or terminating.
    pub fn add_daemon_set(&self, key: impl Into<ClusterKey>, name: &str, mut template: PodSpec) {
        let mut state = self.settled();
        template.name = name.into();
        template.controller_kind = Some("DaemonSet".into());
        template.mirror = false;
        template.node_name = None;
        let id = (template.namespace.clone(), name.to_string());
        state
            .clusters
            .entry(key.into())
            .or_default()
            .daemon_sets
            .insert(id, template);
        let now = state.now;
        state.settle(now);
    }

    pub fn add_pdb(&self, key: impl Into<ClusterKey>, pdb: PodDisruptionBudget) {
        let mut state = self.settled();
        let id = (pdb.namespace.clone(), pdb.name.clone());
        state
            .clusters
            .entry(key.into())
            .or_default()
            .pdbs
            .insert(id, pdb);
    }

    // ------------------------------------------------------------------ faults

    /// Lies from now on (`true`): lists no pod on any Node, as a broken API server or a
    /// drainer that looked at the wrong Node would see it. For the simulator's
    /// mutations: a drain that believes it must trip `drained_before_terminate`.
    pub fn hide_pods(&self, on: bool) {
        self.lock().hide_pods = on;
    }

    /// Lies to the autoscaler from now on (`true`): the list of every active pod is
    /// empty, so every Node looks empty (the simulator's `AutoscaleBlind` mutation;
    /// drains, which list a Node's pods, still see them).
    pub fn hide_active_pods(&self, on: bool) {
        self.lock().hide_active_pods = on;
    }

    /// The instance's kubelet never registers a Node (bad bootstrap, wrong endpoint).
    pub fn never_join(&self, instance_id: &str) {
        self.lock()
            .instance_faults
            .entry(instance_id.into())
            .or_default()
            .never_join = true;
    }

    /// The instance's Node reports `Ready=False` with `reason` from `at` on (while its
    /// kubelet runs); None makes it healthy again.
    pub fn set_not_ready(&self, instance_id: &str, not_ready: Option<NotReady>) {
        let mut state = self.lock();
        state
            .instance_faults
            .entry(instance_id.into())
            .or_default()
            .not_ready = not_ready;
        let now = state.now.max(self.clock.now());
        state.settle(now);
    }

    /// Labels and taints the instance's kubelet registers with (what `nodeadm`'s
    /// `--node-labels` and `--register-with-taints` flags in the user data ask for).
    pub fn set_kubelet_flags(
        &self,
        instance_id: &str,
        labels: BTreeMap<String, String>,
        taints: Vec<Taint>,
    ) {
        let mut state = self.lock();
        let faults = state.instance_faults.entry(instance_id.into()).or_default();
        faults.labels = labels;
        faults.taints = taints;
    }

    /// Every call to the cluster fails `Unavailable` until `until` (None: reachable).
    pub fn set_unreachable(&self, key: impl Into<ClusterKey>, until: Option<Timestamp>) {
        self.lock()
            .clusters
            .entry(key.into())
            .or_default()
            .faults
            .unreachable_until = until;
    }

    /// Every `every`-th call to the cluster is throttled (None: never).
    pub fn set_throttle(&self, key: impl Into<ClusterKey>, throttle: Option<Throttle>) {
        self.lock()
            .clusters
            .entry(key.into())
            .or_default()
            .faults
            .throttle = throttle;
    }

    /// Calls to the cluster fail at random, replayably (None: never).
    pub fn set_flaky(&self, key: impl Into<ClusterKey>, flaky: Option<FlakyApi>) {
        self.lock()
            .clusters
            .entry(key.into())
            .or_default()
            .faults
            .flaky = flaky.map(|f| (f, Rng::new(f.seed)));
    }

    /// The next call to the cluster fails with `err` and has no effect. Errors queue up.
    pub fn fail_next(&self, key: impl Into<ClusterKey>, err: WorkloadError) {
        self.lock()
            .clusters
            .entry(key.into())
            .or_default()
            .faults
            .queued
            .push_back(err);
    }

    // ------------------------------------------------------------------ inspection

    pub fn clusters(&self) -> Vec<ClusterKey> {
        self.settled().clusters.keys().cloned().collect()
    }

    /// The cluster's Nodes, by name.
    pub fn nodes(&self, key: impl Into<ClusterKey>) -> Vec<Node> {
        let state = self.settled();
        state
            .clusters
            .get(&key.into())
            .map(|c| c.nodes.values().map(|n| n.node.clone()).collect())
            .unwrap_or_default()
    }

    pub fn node(&self, key: impl Into<ClusterKey>, name: &str) -> Option<Node> {
        let state = self.settled();
        state
            .clusters
            .get(&key.into())
            .and_then(|c| c.nodes.get(name))
            .map(|n| n.node.clone())
    }

    /// The cluster's pods, by namespace and name.
    pub fn pods(&self, key: impl Into<ClusterKey>) -> Vec<Pod> {
        let state = self.settled();
        state
            .clusters
            .get(&key.into())
            .map(|c| c.pods.values().map(|p| p.pod.clone()).collect())
            .unwrap_or_default()
    }

    pub fn pod(&self, key: impl Into<ClusterKey>, namespace: &str, name: &str) -> Option<Pod> {
        let state = self.settled();
        state
            .clusters
            .get(&key.into())
            .and_then(|c| c.pods.get(&(namespace.into(), name.into())))
            .map(|p| p.pod.clone())
    }

    /// Every VolumeAttachment of the cluster.
    pub fn attachments(&self, key: impl Into<ClusterKey>) -> Vec<VolumeAttachment> {
        let state = self.settled();
        state
            .clusters
            .get(&key.into())
            .map(|c| {
                c.attachments
                    .values()
                    .map(|a| a.attachment.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every eviction the API answered, in order.
    pub fn evictions_log(&self) -> Vec<EvictionRecord> {
        self.lock().evictions.clone()
    }

    /// Evictions that broke a PodDisruptionBudget. Must stay empty.
    pub fn pdb_violations(&self) -> Vec<EvictionRecord> {
        self.lock()
            .evictions
            .iter()
            .filter(|e| !e.broke_budgets.is_empty())
            .cloned()
            .collect()
    }

    /// Healthy pods and the number a budget needs, now.
    pub fn pdb_status(
        &self,
        key: impl Into<ClusterKey>,
        namespace: &str,
        name: &str,
    ) -> Option<(u32, u32)> {
        let state = self.settled();
        let cluster = state.clusters.get(&key.into())?;
        let pdb = cluster.pdbs.get(&(namespace.into(), name.into()))?;
        Some(cluster.budget_health(pdb, None))
    }

    pub fn calls(&self) -> WorkloadCalls {
        self.lock().calls
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, with everything due by the clock's now applied.
    fn settled(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        let now = state.now.max(self.clock.now());
        state.settle(now);
        state
    }

    /// One API call: time moves, the call is counted, the faults have their say, then
    /// `f` runs on the cluster.
    fn call<T>(
        &self,
        target: &WorkloadTarget,
        method: Method,
        f: impl FnOnce(&mut State, &ClusterKey, Timestamp) -> Result<T, WorkloadError>,
    ) -> Result<T, WorkloadError> {
        let mut state = self.settled();
        state.count(method);
        let key = ClusterKey::from(target);
        let now = state.now;
        let cluster = state.clusters.entry(key.clone()).or_default();
        cluster.gate(&key, now)?;
        let out = f(&mut state, &key, now);
        // What the call changed takes effect at once (the pod GC sees a deleted Node
        // from the moment it went, say).
        state.settle(now);
        out
    }
}

impl State {
    fn count(&mut self, method: Method) {
        let c = &mut self.calls;
        let n = match method {
            Method::FindNode => &mut c.find_node,
            Method::ListNodes => &mut c.list_nodes,
            Method::PatchNode => &mut c.patch_node,
            Method::DeleteNode => &mut c.delete_node,
            Method::ListPods => &mut c.list_pods,
            Method::Evict => &mut c.evict,
            Method::VolumeAttachments => &mut c.volume_attachments,
        };
        *n += 1;
    }

    fn uid(&mut self) -> String {
        uuid(self.ids.next_u128())
    }

    fn next_resource_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// Applies everything due by `now`, in dependency order: kubelets, node status,
    /// pods that finish terminating and the pod GC, detaches, controllers, scheduler,
    /// pod starts, and the Nodes' `volumesAttached`.
    fn settle(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        let now = self.now;
        self.register_kubelets(now);
        self.refresh_nodes(now);
        let keys: Vec<ClusterKey> = self.clusters.keys().cloned().collect();
        for key in keys {
            self.settle_pods(&key, now);
        }
    }
}

fn not_found(kind: &str, name: &str) -> WorkloadError {
    WorkloadError::Invalid(format!("{kind} \"{name}\" not found"))
}

impl Workload for MemWorkload {
    async fn find_node(
        &self,
        target: &WorkloadTarget,
        instance_id: &str,
    ) -> Result<Option<Node>, WorkloadError> {
        self.call(target, Method::FindNode, |state, key, _| {
            Ok(state.clusters.get(key).and_then(|c| {
                c.nodes
                    .values()
                    .find(|n| {
                        n.node
                            .provider_id
                            .as_deref()
                            .and_then(instance_id_of)
                            .is_some_and(|id| id == instance_id)
                    })
                    .map(|n| n.node.clone())
            }))
        })
    }

    async fn list_nodes(&self, target: &WorkloadTarget) -> Result<Vec<Node>, WorkloadError> {
        self.call(target, Method::ListNodes, |state, key, _| {
            Ok(state
                .clusters
                .get(key)
                .map(|c| c.nodes.values().map(|n| n.node.clone()).collect())
                .unwrap_or_default())
        })
    }

    async fn patch_node(
        &self,
        target: &WorkloadTarget,
        node: &str,
        patch: NodePatch,
    ) -> Result<Node, WorkloadError> {
        self.call(target, Method::PatchNode, |state, key, now| {
            state.patch_node(key, node, patch, now)
        })
    }

    async fn delete_node(&self, target: &WorkloadTarget, node: &str) -> Result<(), WorkloadError> {
        self.call(target, Method::DeleteNode, |state, key, now| {
            state.delete_node(key, node, now);
            Ok(())
        })
    }

    async fn list_pods(
        &self,
        target: &WorkloadTarget,
        filter: PodFilter,
    ) -> Result<Vec<Pod>, WorkloadError> {
        self.call(target, Method::ListPods, |state, key, _| {
            Ok(state
                .clusters
                .get(key)
                .map(|c| {
                    c.pods
                        .values()
                        .map(|p| &p.pod)
                        .filter(|p| match &filter {
                            PodFilter::OnNode(_) if state.hide_pods => false,
                            PodFilter::OnNode(n) => p.node_name.as_deref() == Some(n.as_str()),
                            PodFilter::Unscheduled => p.node_name.is_none() && p.phase == "Pending",
                            PodFilter::Active if state.hide_active_pods => false,
                            PodFilter::Active => {
                                !matches!(p.phase.as_str(), "Succeeded" | "Failed")
                            }
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default())
        })
    }

    async fn evict(
        &self,
        target: &WorkloadTarget,
        namespace: &str,
        pod: &str,
        grace_seconds: Option<i64>,
    ) -> Result<Eviction, WorkloadError> {
        self.call(target, Method::Evict, |state, key, now| {
            state.evict(key, namespace, pod, grace_seconds, now)
        })
    }

    async fn volume_attachments(
        &self,
        target: &WorkloadTarget,
        node: &str,
    ) -> Result<Vec<VolumeAttachment>, WorkloadError> {
        self.call(target, Method::VolumeAttachments, |state, key, _| {
            Ok(state
                .clusters
                .get(key)
                .map(|c| {
                    c.attachments
                        .values()
                        .filter(|a| a.attachment.node_name == node)
                        .map(|a| a.attachment.clone())
                        .collect()
                })
                .unwrap_or_default())
        })
    }

    /// EKS's DescribeCluster, not the cluster's API server: the API's faults do not
    /// apply. Each cluster gets a fixed endpoint (from its name) and authority.
    async fn eks_cluster(&self, target: &WorkloadTarget) -> Result<EksCluster, WorkloadError> {
        let ClusterAccessKey::Eks {
            cluster_name,
            region,
        } = &target.access
        else {
            return Err(WorkloadError::Invalid(format!(
                "cluster {}/{} is reached through a kubeconfig: bootstrap.eks needs spec.access.eks",
                target.namespace, target.cluster
            )));
        };
        let mut state = self.settled();
        let cluster = state.clusters.entry(ClusterKey::from(target)).or_default();
        let (_, described) = cluster.eks.get_or_insert_with(|| {
            (
                cluster_name.clone(),
                described_cluster(cluster_name, region.as_deref().unwrap_or("us-east-1")),
            )
        });
        Ok(described.clone())
    }
}

/// What DescribeCluster says of the simulated EKS cluster `name`: an endpoint whose
/// host is derived from the name (as EKS's is unique per cluster), a certificate
/// authority (base64 PEM, as EKS gives it) and EKS's default service CIDR.
fn described_cluster(name: &str, region: &str) -> EksCluster {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    EksCluster {
        endpoint: format!(
            "https://{hash:016X}{:016X}.gr7.{region}.eks.amazonaws.com",
            hash.rotate_left(29)
        ),
        certificate_authority: "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUMvakNDQWVhZ0F3SUJBZ0lCQURBTkJna3Foa2lHOXcwQkFRc0ZBREFWTVJNd0VRWURWUVFERXdwcmRXSmwKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=".into(),
        service_cidr: "10.100.0.0/16".into(),
    }
}
