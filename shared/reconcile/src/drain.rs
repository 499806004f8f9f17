//! Taking a Machine's Node out of its cluster before the instance goes, as Cluster API's
//! Machine controller does (v1beta2, "Machine deletion process"), when the Cluster
//! declares `spec.access`. Pure: the runtime reads the Node, its pods and its volume
//! attachments through the workload port, hands them here as a [`NodeView`], performs
//! the [`NodeWork`] this returns (a cordon, a bounded batch of evictions) and records
//! the outcome with [`record`].
//!
//! # Expected flow
//! pre-drain hooks (`pre-drain.delete.hook.capstan.dev/<owner>`, waited on until their
//! owners remove them) → cordon → evict every pod that needs it (`policy/v1` Eviction,
//! at most [`MAX_EVICTIONS_PER_PASS`] a pass), until none is left → wait for the Node's
//! volumes to detach (VolumeAttachments and `node.status.volumesAttached`) →
//! pre-terminate hooks (`pre-terminate.delete.hook.capstan.dev/<owner>`) → terminate the
//! instance → delete the Node (`machine.rs`).
//!
//! Which pods need eviction: not DaemonSet pods (their controller tolerates a cordon
//! and would put them back), not mirror pods (the kubelet owns them), not pods labelled
//! `capstan.dev/drain: skip`, not finished pods. Pods already terminating are waited
//! for; pods labelled `capstan.dev/drain: wait-completed` are waited for without being
//! evicted. On an unreachable Node (Ready=Unknown: its kubelet no longer reports) pods
//! are evicted with a 1 s grace and pods terminating for more than 1 s are ignored: no
//! kubelet is there to finish them (Cluster API's `SkipWaitForDeleteTimeoutSeconds`).
//!
//! # Guarantees
//! - Every step is recorded on the Machine's observed item (`status.deletion`: the step,
//!   since when, when the drain and the wait for volumes began), so any invocation
//!   resumes where the last one stopped; a crash between two steps repeats at most one
//!   bounded pass, and every call it makes (cordon, evict) is idempotent.
//! - The instance is terminated only once no pod needing eviction is left on the Node,
//!   or the drain was excluded (`capstan.dev/exclude-node-draining`) or timed out
//!   (`spec.deletion.nodeDrainTimeoutSeconds`; unset waits as long as it takes), or the
//!   whole Cluster is being deleted and only pods their budgets keep are left: every
//!   Node is cordoned or going, so nothing could ever satisfy those budgets (Cluster
//!   API skips the drain altogether then; Capstan still evicts what budgets allow, so
//!   those pods get their graceful termination).
//! - Capstan never uncordons a Node it cordoned, and never deletes a pod: evictions go
//!   through the Eviction API, so PodDisruptionBudgets hold.
//!
//! # Errors
//! - An eviction a budget refuses (429) is tried again on a later pass; the pod and the
//!   API server's reason (which names the budget) are on the Deleting condition.
//! - An API server that cannot be reached leaves the step where it is, says so on the
//!   Deleting condition, and is tried again; the step's timeout still runs.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_model::labels::{
    DRAIN_LABEL, DRAIN_SKIP, DRAIN_WAIT_COMPLETED, EXCLUDE_NODE_DRAINING,
    EXCLUDE_WAIT_FOR_VOLUME_DETACH, PRE_DRAIN_HOOK_PREFIX, PRE_TERMINATE_HOOK_PREFIX,
};
use capstan_model::meta::condition;
use capstan_model::{ConditionStatus, DeletionStatus, DeletionStep, Machine, Timestamp};

/// How soon a pass that drains or waits for volumes looks again (Cluster API retries
/// evictions every 20 s; pods with a short grace are gone sooner).
pub const DRAIN_RECHECK: Duration = Duration::from_secs(10);
/// How soon a Machine held by a hook looks again (removing the hook also wakes it).
pub const HOOK_RECHECK: Duration = Duration::from_secs(60);
/// The most evictions one pass asks for: a Lambda invocation has seconds, and the API
/// server's priority and fairness would throttle a burst anyway.
pub const MAX_EVICTIONS_PER_PASS: usize = 20;
/// Grace given to pods evicted from an unreachable Node, and how long a pod there may
/// have been terminating before it is ignored (Cluster API's values).
pub const UNREACHABLE_GRACE_SECONDS: i64 = 1;
const UNREACHABLE_SKIP_AFTER: Duration = Duration::from_secs(1);
/// How many pods each line of the Deleting condition names before "… and N more".
pub const MAX_LISTED_PODS: usize = 5;

/// What stands between a deleting Machine and the termination of its instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Held (by a hook): nothing to do but look again after this.
    Hold(Duration),
    /// The step needs the workload cluster: drain, or see whether volumes detached.
    Workload,
    /// Nothing left: terminate.
    Terminate,
}

/// Moves the Machine's recorded deletion through the steps that need no workload
/// cluster (hooks, exclusions, timeouts) and says what stands before termination now.
/// Sets `status.deletion` and the Deleting condition. Called only when the Cluster
/// declares access and the instance is not already going.
pub fn before_terminate(m: &mut Machine, now: Timestamp) -> Gate {
    let mut d = m.status.deletion.clone().unwrap_or(DeletionStatus {
        step_since: Some(now),
        ..DeletionStatus::default()
    });
    let gate = loop {
        match d.step {
            DeletionStep::WaitingForPreDrainHook => {
                let owners = hooks(m, PRE_DRAIN_HOOK_PREFIX);
                if owners.is_empty() {
                    advance(&mut d, DeletionStep::DrainingNode, now);
                    continue;
                }
                d.message = format!("waiting for pre-drain hooks of {}", owners.join(", "));
                break Gate::Hold(HOOK_RECHECK);
            }
            DeletionStep::DrainingNode => {
                let started = *d.node_drain_start_time.get_or_insert(now);
                if m.metadata.annotations.contains_key(EXCLUDE_NODE_DRAINING) {
                    d.drain_skipped = Some(format!(
                        "the Machine is annotated {EXCLUDE_NODE_DRAINING}: its Node was not drained"
                    ));
                    advance(&mut d, DeletionStep::WaitingForVolumeDetach, now);
                    continue;
                }
                if let Some(warned) = spot_notice_over(m, now) {
                    d.drain_skipped = Some(format!(
                        "EC2 reclaims the spot instance two minutes after its warning at {warned}: the drain stopped there"
                    ));
                    advance(&mut d, DeletionStep::WaitingForVolumeDetach, now);
                    continue;
                }
                if let Some(limit) = m.spec.deletion.node_drain_timeout()
                    && passed(started, limit, now)
                {
                    d.drain_skipped = Some(format!(
                        "the drain did not complete within nodeDrainTimeoutSeconds ({}s): {}",
                        limit.as_secs(),
                        if d.message.is_empty() {
                            "no detail recorded"
                        } else {
                            d.message.as_str()
                        }
                    ));
                    advance(&mut d, DeletionStep::WaitingForVolumeDetach, now);
                    continue;
                }
                break next_pass(&d, now);
            }
            DeletionStep::WaitingForVolumeDetach => {
                let started = *d.wait_for_node_volume_detach_start_time.get_or_insert(now);
                let timed_out = m
                    .spec
                    .deletion
                    .node_volume_detach_timeout()
                    .is_some_and(|limit| passed(started, limit, now));
                if timed_out
                    || spot_notice_over(m, now).is_some()
                    || m.metadata
                        .annotations
                        .contains_key(EXCLUDE_WAIT_FOR_VOLUME_DETACH)
                {
                    advance(&mut d, DeletionStep::WaitingForPreTerminateHook, now);
                    continue;
                }
                break next_pass(&d, now);
            }
            DeletionStep::WaitingForPreTerminateHook => {
                let owners = hooks(m, PRE_TERMINATE_HOOK_PREFIX);
                if owners.is_empty() {
                    advance(&mut d, DeletionStep::Terminating, now);
                    continue;
                }
                d.message = format!("waiting for pre-terminate hooks of {}", owners.join(", "));
                break Gate::Hold(HOOK_RECHECK);
            }
            DeletionStep::Terminating => break Gate::Terminate,
        }
    };
    m.status.deletion = Some(d);
    report(m, now);
    gate
}

/// `drainSkipped` when the instance has no Node: nothing was there to drain.
pub const NO_NODE: &str = "the instance has no Node: nothing to drain";

/// The drain was cut short with pods possibly left on the Node: excluded by annotation,
/// out of time (`nodeDrainTimeoutSeconds`), or out of the spot notice.
pub fn cut_short(m: &Machine) -> bool {
    m.status
        .deletion
        .as_ref()
        .and_then(|d| d.drain_skipped.as_deref())
        .is_some_and(|why| why != NO_NODE)
}

/// How long EC2 gives a spot instance after its interruption warning.
pub const SPOT_NOTICE: Duration = Duration::from_secs(120);

/// When EC2 warned, if it warned that this spot instance is reclaimed and the notice
/// is over: the instance goes whatever the drain does, so the drain stops waiting.
fn spot_notice_over(m: &Machine, now: Timestamp) -> Option<Timestamp> {
    m.status
        .conditions
        .get(crate::conditions::INTERRUPTED)
        .filter(|c| c.status == ConditionStatus::True && c.reason == "SpotInterruption")
        .map(|c| c.last_transition_time)
        .filter(|warned| passed(*warned, SPOT_NOTICE, now))
}

/// The owners of the Machine's hooks under `prefix`, sorted.
pub fn hooks(m: &Machine, prefix: &str) -> Vec<String> {
    m.metadata
        .annotations
        .keys()
        .filter_map(|k| k.strip_prefix(prefix))
        .map(str::to_string)
        .collect()
}

/// A pass over the Node now, or a wait for [`DRAIN_RECHECK`] after the last one
/// (Cluster API keeps the same pace with an in-memory cache; a Lambda keeps it on the
/// item).
fn next_pass(d: &DeletionStatus, now: Timestamp) -> Gate {
    match d
        .last_node_pass
        .and_then(|t| t.checked_add(DRAIN_RECHECK).ok())
    {
        Some(due) if due > now => {
            Gate::Hold(Duration::try_from(due.duration_since(now)).unwrap_or(DRAIN_RECHECK))
        }
        _ => Gate::Workload,
    }
}

fn advance(d: &mut DeletionStatus, to: DeletionStep, now: Timestamp) {
    if d.step != to {
        d.step = to;
        d.step_since = Some(now);
        d.message.clear();
    }
}

fn passed(since: Timestamp, limit: Duration, now: Timestamp) -> bool {
    since
        .checked_add(limit)
        .map_or(true, |deadline| now >= deadline)
}

/// Puts the recorded step on the Deleting condition: the step as the reason, since
/// when and what it waits for as the message.
pub fn report(m: &mut Machine, now: Timestamp) {
    let Some(d) = &m.status.deletion else {
        return;
    };
    let since = d
        .step_since
        .map(|t| format!(" since {t}"))
        .unwrap_or_default();
    let mut message = format!("{}{since}", describe_step(d.step));
    if !d.message.is_empty() {
        message.push_str(": ");
        message.push_str(&d.message);
    }
    if let Some(skipped) = d
        .drain_skipped
        .as_ref()
        .filter(|_| d.step > DeletionStep::DrainingNode)
    {
        message.push_str(&format!(" ({skipped})"));
    }
    m.status
        .conditions
        .set_true(condition::DELETING, d.step.as_str(), message, now);
}

fn describe_step(step: DeletionStep) -> &'static str {
    match step {
        DeletionStep::WaitingForPreDrainHook => "waiting for pre-drain hooks",
        DeletionStep::DrainingNode => "draining the Node",
        DeletionStep::WaitingForVolumeDetach => "waiting for the Node's volumes to detach",
        DeletionStep::WaitingForPreTerminateHook => "waiting for pre-terminate hooks",
        DeletionStep::Terminating => "terminating the instance",
    }
}

/// The Node as a drain needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DrainNode {
    pub name: String,
    /// `spec.unschedulable`: cordoned.
    pub unschedulable: bool,
    /// The Node's Ready condition, when it reports one.
    pub ready: Option<ConditionStatus>,
    /// `status.volumesAttached[].name`.
    pub volumes_attached: Vec<String>,
}

impl DrainNode {
    /// Its kubelet no longer reports (Ready=Unknown): nobody is there to finish pods.
    pub fn unreachable(&self) -> bool {
        self.ready == Some(ConditionStatus::Unknown)
    }
}

/// A pod on the Node as a drain needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DrainPod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The controller owner's kind (`DaemonSet`, `ReplicaSet`, `Node` …).
    pub controller_kind: Option<String>,
    pub mirror: bool,
    pub deleting_since: Option<Timestamp>,
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    pub phase: String,
}

impl DrainPod {
    pub fn key(&self) -> PodKey {
        PodKey {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// A pod by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for PodKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A VolumeAttachment to the Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainAttachment {
    pub name: String,
    pub attached: bool,
}

/// What the workload cluster showed of the Machine's Node.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeView {
    /// No Node carries the instance's providerID: nothing to drain or detach.
    Absent,
    Found {
        node: DrainNode,
        pods: Vec<DrainPod>,
        attachments: Vec<DrainAttachment>,
    },
    /// The API server could not be asked.
    Unreachable { message: String },
}

/// How a drain treats one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodVerdict {
    /// Left on the Node: a DaemonSet's or mirror pod, labelled `skip`, finished, or
    /// terminating on an unreachable Node.
    Ignore,
    /// Evicted.
    Evict,
    /// Terminating: waited for.
    Terminating,
    /// Labelled `wait-completed`: waited for without eviction.
    WaitCompleted,
}

/// How a drain of `node` treats `pod` at `now` (Cluster API's drain filters).
pub fn verdict(pod: &DrainPod, node: &DrainNode, now: Timestamp) -> PodVerdict {
    let finished = pod.phase == "Succeeded" || pod.phase == "Failed";
    let label = pod.labels.get(DRAIN_LABEL).map(String::as_str);
    if pod.mirror
        || pod.controller_kind.as_deref() == Some("DaemonSet")
        || label == Some(DRAIN_SKIP)
        || finished
    {
        return PodVerdict::Ignore;
    }
    if let Some(since) = pod.deleting_since {
        if node.unreachable() && passed(since, UNREACHABLE_SKIP_AFTER, now) {
            return PodVerdict::Ignore;
        }
        return PodVerdict::Terminating;
    }
    if label == Some(DRAIN_WAIT_COMPLETED) {
        return PodVerdict::WaitCompleted;
    }
    PodVerdict::Evict
}

/// Whether `pod` is one a drain must see gone (evicted or finished) before the instance
/// may be terminated: the simulator's invariant asks this of every terminated Node.
pub fn needs_eviction(pod: &DrainPod, node: &DrainNode, now: Timestamp) -> bool {
    verdict(pod, node, now) == PodVerdict::Evict
}

/// The calls one pass makes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeWork {
    /// The Node to cordon (`spec.unschedulable: true`) first, when it is not yet.
    pub cordon: Option<String>,
    /// Pods to evict, at most [`MAX_EVICTIONS_PER_PASS`], in namespace/name order.
    pub evict: Vec<PodKey>,
    /// The grace to evict with (None: each pod's own).
    pub grace_seconds: Option<i64>,
}

/// The calls the Machine's recorded step asks of `view`: cordon and evict while
/// draining; nothing while waiting for volumes (only looking).
pub fn work(m: &Machine, view: &NodeView, now: Timestamp) -> NodeWork {
    let step = m.status.deletion.as_ref().map(|d| d.step);
    let NodeView::Found { node, pods, .. } = view else {
        return NodeWork::default();
    };
    if step != Some(DeletionStep::DrainingNode) {
        return NodeWork::default();
    }
    let mut evict: Vec<PodKey> = pods
        .iter()
        .filter(|p| verdict(p, node, now) == PodVerdict::Evict)
        .map(DrainPod::key)
        .collect();
    evict.sort();
    evict.truncate(MAX_EVICTIONS_PER_PASS);
    NodeWork {
        cordon: (!node.unschedulable).then(|| node.name.clone()),
        evict,
        grace_seconds: node.unreachable().then_some(UNREACHABLE_GRACE_SECONDS),
    }
}

/// What became of one eviction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evicted {
    /// Accepted: the pod is terminating now.
    Started,
    /// The pod was already gone.
    Gone,
    /// Refused by a PodDisruptionBudget (429); the API server's message names it.
    Blocked(String),
    /// The call failed (throttled, unreachable, refused).
    Failed(String),
}

/// What one pass did, as the runtime reports it back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// The cordon failed: why.
    pub cordon_failed: Option<String>,
    pub evictions: Vec<(PodKey, Evicted)>,
    /// The whole Cluster is being deleted: every Node is cordoned or going, so a pod a
    /// budget keeps has nowhere to move to and would hold the drain forever. Such pods
    /// are left to go with the instance (their evictions were still asked for, so
    /// pods a budget lets go get their graceful termination).
    pub cluster_deleting: bool,
}

/// The Machine after a pass over its Node, or None when nothing it records changed.
/// Advances the step when the drain is complete (no pod left that needs eviction or is
/// waited for) or the volumes are detached; otherwise records what it waits for.
pub fn record(
    m: &Machine,
    view: &NodeView,
    outcome: &PassOutcome,
    now: Timestamp,
) -> Option<Machine> {
    let mut next = m.clone();
    let mut d = next.status.deletion.clone()?;
    d.last_node_pass = Some(now);
    match (d.step, view) {
        (_, NodeView::Unreachable { message }) => {
            d.message = format!("cannot reach the cluster's API server: {message}");
        }
        (DeletionStep::DrainingNode, NodeView::Absent) => {
            d.drain_skipped = Some(NO_NODE.into());
            d.wait_for_node_volume_detach_start_time = None;
            advance(&mut d, DeletionStep::WaitingForPreTerminateHook, now);
        }
        (DeletionStep::WaitingForVolumeDetach, NodeView::Absent) => {
            advance(&mut d, DeletionStep::WaitingForPreTerminateHook, now);
        }
        (DeletionStep::DrainingNode, NodeView::Found { node, pods, .. }) => {
            match drain_waits(node, pods, outcome, now, d.node_drain_start_time) {
                Drained::Waiting(message) => d.message = message,
                done => {
                    if let Drained::LeavingBudgeted(pods) = done {
                        d.drain_skipped = Some(format!(
                            "the Cluster is being deleted: {} pod(s) their PodDisruptionBudgets kept, with no Node left to move to, went with the instance: {}",
                            pods.len(),
                            listed(&pods)
                        ));
                    }
                    advance(&mut d, DeletionStep::WaitingForVolumeDetach, now);
                    d.wait_for_node_volume_detach_start_time = Some(now);
                }
            }
        }
        (
            DeletionStep::WaitingForVolumeDetach,
            NodeView::Found {
                node, attachments, ..
            },
        ) => {
            // The same volume shows in both: name the VolumeAttachments when there are
            // any (CSI), the Node's own list otherwise (in-tree volumes).
            let mut attached: Vec<&str> = attachments
                .iter()
                .filter(|a| a.attached)
                .map(|a| a.name.as_str())
                .collect();
            if attached.is_empty() {
                attached = node.volumes_attached.iter().map(String::as_str).collect();
            }
            attached.sort_unstable();
            attached.dedup();
            if attached.is_empty() {
                advance(&mut d, DeletionStep::WaitingForPreTerminateHook, now);
            } else {
                d.message = format!(
                    "{} volume(s) still attached to node {}: {}",
                    attached.len(),
                    node.name,
                    listed(&attached)
                );
            }
        }
        _ => {}
    }
    next.status.deletion = Some(d);
    report(&mut next, now);
    (next != *m).then_some(next)
}

/// What the drain still waits for after this pass, in the words of Cluster API's
/// `DrainingSucceeded` message; None when it is complete.
/// Where a drain stands after a pass.
enum Drained {
    Complete,
    /// Complete but for these pods, which budgets keep while the whole Cluster goes.
    LeavingBudgeted(Vec<String>),
    /// What it waits for (the `DrainingSucceeded` message).
    Waiting(String),
}

fn drain_waits(
    node: &DrainNode,
    pods: &[DrainPod],
    outcome: &PassOutcome,
    now: Timestamp,
    started: Option<Timestamp>,
) -> Drained {
    let mut lines: Vec<String> = Vec::new();
    let mut budgeted: Vec<String> = Vec::new();
    if let Some(why) = &outcome.cordon_failed {
        lines.push(format!("cannot cordon node {}: {why}", node.name));
    }
    let mut terminating: Vec<String> = Vec::new();
    let mut wait_completed: Vec<String> = Vec::new();
    let mut to_evict: Vec<String> = Vec::new();
    for pod in pods {
        let key = pod.key();
        let name = key.to_string();
        match verdict(pod, node, now) {
            PodVerdict::Ignore => {}
            PodVerdict::Terminating => terminating.push(name),
            PodVerdict::WaitCompleted => wait_completed.push(name),
            PodVerdict::Evict => {
                match outcome.evictions.iter().find(|(k, _)| *k == key) {
                    Some((_, Evicted::Started)) => terminating.push(name),
                    Some((_, Evicted::Gone)) => {}
                    Some((_, Evicted::Blocked(_))) if outcome.cluster_deleting => {
                        budgeted.push(name);
                    }
                    Some((_, Evicted::Blocked(why))) => {
                        lines.push(format!("pod {name}: cannot evict: {why}"));
                    }
                    Some((_, Evicted::Failed(why))) => {
                        lines.push(format!("pod {name}: eviction failed: {why}"));
                    }
                    // Beyond this pass's cap: the next pass evicts it.
                    None => to_evict.push(name),
                }
            }
        }
    }
    let blocked = lines.len();
    if lines.len() > MAX_LISTED_PODS + 1 {
        let more = lines.len() - MAX_LISTED_PODS;
        lines.truncate(MAX_LISTED_PODS);
        lines.push(format!("… and {more} more pods whose eviction failed"));
    }
    if !terminating.is_empty() {
        lines.push(format!(
            "pods with deletionTimestamp that still exist: {}",
            listed(&terminating)
        ));
    }
    if !wait_completed.is_empty() {
        lines.push(format!(
            "pods labelled {DRAIN_LABEL}={DRAIN_WAIT_COMPLETED}, waited for to complete: {}",
            listed(&wait_completed)
        ));
    }
    if !to_evict.is_empty() {
        lines.push(format!("pods to evict next: {}", listed(&to_evict)));
    }
    if lines.is_empty() && blocked == 0 {
        return if budgeted.is_empty() {
            Drained::Complete
        } else {
            Drained::LeavingBudgeted(budgeted)
        };
    }
    let started = started
        .map(|t| format!(" (started at {t})"))
        .unwrap_or_default();
    Drained::Waiting(format!(
        "drain of node {} not completed yet{started}: {}",
        node.name,
        lines.join("; ")
    ))
}

fn listed<S: AsRef<str>>(names: &[S]) -> String {
    let shown: Vec<&str> = names
        .iter()
        .take(MAX_LISTED_PODS)
        .map(AsRef::as_ref)
        .collect();
    let more = names.len().saturating_sub(MAX_LISTED_PODS);
    if more > 0 {
        format!("{} … and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The Machine is in the middle of taking its Node out (hooks, drain, volumes): what a
/// MachineDeployment counts as draining.
pub fn is_draining(m: &Machine) -> bool {
    m.status
        .deletion
        .as_ref()
        .is_some_and(|d| d.step == DeletionStep::DrainingNode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_model::{MachineDeletion, MachinePhase};

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn deleting() -> Machine {
        let mut m = Machine::default();
        m.metadata.name = "web-1".into();
        m.status.phase = MachinePhase::Deleting;
        m
    }

    fn node() -> DrainNode {
        DrainNode {
            name: "ip-10-0-1-5.ec2.internal".into(),
            ready: Some(ConditionStatus::True),
            ..DrainNode::default()
        }
    }

    fn pod(name: &str) -> DrainPod {
        DrainPod {
            namespace: "default".into(),
            name: name.into(),
            phase: "Running".into(),
            controller_kind: Some("ReplicaSet".into()),
            ..DrainPod::default()
        }
    }

    fn found(node: DrainNode, pods: Vec<DrainPod>) -> NodeView {
        NodeView::Found {
            node,
            pods,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn a_pre_drain_hook_holds_the_drain_until_removed() {
        let mut m = deleting();
        m.metadata
            .annotations
            .insert(format!("{PRE_DRAIN_HOOK_PREFIX}backup"), String::new());
        assert_eq!(before_terminate(&mut m, t(0)), Gate::Hold(HOOK_RECHECK));
        let c = m.status.conditions.get(condition::DELETING).cloned();
        let c = c.expect("Deleting");
        assert_eq!(c.reason, "WaitingForPreDrainHook");
        assert!(c.message.contains("backup"), "{}", c.message);
        m.metadata.annotations.clear();
        assert_eq!(before_terminate(&mut m, t(5)), Gate::Workload);
        let d = m.status.deletion.clone().expect("recorded");
        assert_eq!(d.step, DeletionStep::DrainingNode);
        assert_eq!(d.node_drain_start_time, Some(t(5)));
    }

    #[test]
    fn a_drain_cordons_and_evicts_only_the_pods_that_need_it() {
        let mut m = deleting();
        before_terminate(&mut m, t(0));
        let mut daemon = pod("fluent-bit-x");
        daemon.controller_kind = Some("DaemonSet".into());
        let mut mirror = pod("kube-proxy-node");
        mirror.mirror = true;
        let mut skip = pod("keep-me");
        skip.labels.insert(DRAIN_LABEL.into(), DRAIN_SKIP.into());
        let mut job = pod("batch-1");
        job.labels
            .insert(DRAIN_LABEL.into(), DRAIN_WAIT_COMPLETED.into());
        let mut going = pod("web-old");
        going.deleting_since = Some(t(-5));
        let view = found(node(), vec![pod("web-a"), daemon, mirror, skip, job, going]);
        let work = work(&m, &view, t(1));
        assert_eq!(work.cordon.as_deref(), Some("ip-10-0-1-5.ec2.internal"));
        assert_eq!(
            work.evict,
            vec![PodKey {
                namespace: "default".into(),
                name: "web-a".into()
            }]
        );
        assert_eq!(work.grace_seconds, None);
        let outcome = PassOutcome {
            cordon_failed: None,
            evictions: vec![(work.evict[0].clone(), Evicted::Started)],
            ..PassOutcome::default()
        };
        let next = record(&m, &view, &outcome, t(1)).expect("changed");
        let d = next.status.deletion.clone().expect("recorded");
        assert_eq!(d.step, DeletionStep::DrainingNode, "still draining");
        assert!(d.message.contains("default/web-a"), "{}", d.message);
        assert!(d.message.contains("default/batch-1"), "{}", d.message);
        assert!(!d.message.contains("fluent-bit"), "{}", d.message);
    }

    #[test]
    fn a_budget_that_blocks_is_named_and_the_drain_waits() {
        let mut m = deleting();
        before_terminate(&mut m, t(0));
        let view = found(node(), vec![pod("web-a")]);
        let w = work(&m, &view, t(1));
        let outcome = PassOutcome {
            cordon_failed: None,
            evictions: vec![(
                w.evict[0].clone(),
                Evicted::Blocked("Cannot evict pod as it would violate the pod's disruption budget (PodDisruptionBudget default/web)".into()),
            )],
            ..PassOutcome::default()
        };
        // While the Cluster is being deleted, the budget's pod goes with the instance.
        let whole = PassOutcome {
            cluster_deleting: true,
            ..outcome.clone()
        };
        let gone = record(&m, &view, &whole, t(1)).expect("changed");
        let d = gone.status.deletion.clone().expect("recorded");
        assert_eq!(d.step, DeletionStep::WaitingForVolumeDetach);
        assert!(
            d.drain_skipped.as_deref().is_some_and(
                |why| why.contains("default/web-a") && why.contains("Cluster is being deleted")
            ),
            "{d:?}"
        );
        let next = record(&m, &view, &outcome, t(1)).expect("changed");
        let c = next
            .status
            .conditions
            .get(condition::DELETING)
            .cloned()
            .expect("Deleting");
        assert_eq!(c.reason, "DrainingNode");
        assert!(
            c.message.contains("pod default/web-a: cannot evict"),
            "{}",
            c.message
        );
        assert!(c.message.contains("default/web"), "{}", c.message);
    }

    #[test]
    fn an_empty_node_is_drained_then_waits_for_its_volumes() {
        let mut m = deleting();
        before_terminate(&mut m, t(0));
        let view = found(node(), vec![]);
        let m = record(&m, &view, &PassOutcome::default(), t(2)).expect("changed");
        let d = m.status.deletion.clone().expect("recorded");
        assert_eq!(d.step, DeletionStep::WaitingForVolumeDetach);
        let mut n = node();
        n.volumes_attached = vec!["kubernetes.io/csi/ebs.csi.aws.com^vol-1".into()];
        let attached = found(n, vec![]);
        let still = record(&m, &attached, &PassOutcome::default(), t(3)).expect("changed");
        let d = still.status.deletion.clone().expect("recorded");
        assert_eq!(d.step, DeletionStep::WaitingForVolumeDetach);
        assert!(d.message.contains("vol-1"), "{}", d.message);
        let free = record(&still, &view, &PassOutcome::default(), t(9)).expect("changed");
        let mut free = free;
        assert_eq!(before_terminate(&mut free, t(9)), Gate::Terminate);
    }

    #[test]
    fn unset_drain_timeout_waits_forever_and_a_set_one_ends_the_drain() {
        let mut m = deleting();
        before_terminate(&mut m, t(0));
        assert_eq!(before_terminate(&mut m, t(86_400 * 365)), Gate::Workload);
        let mut m = deleting();
        m.spec.deletion = MachineDeletion {
            node_drain_timeout_seconds: Some(300),
            ..MachineDeletion::default()
        };
        before_terminate(&mut m, t(0));
        assert_eq!(before_terminate(&mut m, t(299)), Gate::Workload);
        assert_eq!(before_terminate(&mut m, t(300)), Gate::Workload);
        let d = m.status.deletion.clone().expect("recorded");
        assert_eq!(d.step, DeletionStep::WaitingForVolumeDetach);
        assert!(
            d.drain_skipped
                .as_deref()
                .is_some_and(|s| s.contains("300s")),
            "{d:?}"
        );
    }

    #[test]
    fn a_spot_drain_is_bounded_by_the_two_minute_notice() {
        let mut m = deleting();
        m.status.conditions.set_true(
            crate::conditions::INTERRUPTED,
            "SpotInterruption",
            "EC2 will reclaim spot instance i-1 two minutes after …",
            t(0),
        );
        assert_eq!(before_terminate(&mut m, t(30)), Gate::Workload);
        assert_eq!(
            m.status.deletion.as_ref().map(|d| d.step),
            Some(DeletionStep::DrainingNode)
        );
        assert_eq!(before_terminate(&mut m, t(120)), Gate::Terminate);
        let d = m.status.deletion.clone().expect("recorded");
        assert!(
            d.drain_skipped
                .as_deref()
                .is_some_and(|s| s.contains("spot")),
            "{d:?}"
        );
    }

    #[test]
    fn a_pass_over_the_node_waits_its_turn_after_the_last_one() {
        let mut m = deleting();
        assert_eq!(before_terminate(&mut m, t(0)), Gate::Workload);
        let view = found(node(), vec![pod("web-a")]);
        let mut m = record(&m, &view, &PassOutcome::default(), t(0)).expect("changed");
        // The status write wakes the Machine at once: it does not pass again yet.
        assert_eq!(
            before_terminate(&mut m, t(3)),
            Gate::Hold(Duration::from_secs(7))
        );
        assert_eq!(before_terminate(&mut m, t(10)), Gate::Workload);
    }

    #[test]
    fn an_excluded_machine_is_not_drained() {
        let mut m = deleting();
        m.metadata
            .annotations
            .insert(EXCLUDE_NODE_DRAINING.into(), String::new());
        m.metadata
            .annotations
            .insert(EXCLUDE_WAIT_FOR_VOLUME_DETACH.into(), String::new());
        assert_eq!(before_terminate(&mut m, t(0)), Gate::Terminate);
    }

    #[test]
    fn on_an_unreachable_node_terminating_pods_are_ignored_and_evictions_are_short() {
        let mut m = deleting();
        before_terminate(&mut m, t(0));
        let mut n = node();
        n.ready = Some(ConditionStatus::Unknown);
        n.unschedulable = true;
        let mut stuck = pod("web-old");
        stuck.deleting_since = Some(t(-60));
        let view = found(n, vec![stuck, pod("web-a")]);
        let w = work(&m, &view, t(1));
        assert_eq!(w.cordon, None, "already cordoned");
        assert_eq!(w.grace_seconds, Some(UNREACHABLE_GRACE_SECONDS));
        assert_eq!(w.evict.len(), 1);
        let gone = PassOutcome {
            cordon_failed: None,
            evictions: vec![(w.evict[0].clone(), Evicted::Gone)],
            ..PassOutcome::default()
        };
        let next = record(&m, &view, &gone, t(1)).expect("changed");
        let d = next.status.deletion.clone().expect("recorded");
        assert_eq!(d.step, DeletionStep::WaitingForVolumeDetach);
    }
}
