//! What a Machine learns from the Kubernetes Node its instance became, when its Cluster
//! declares `spec.access` (Cluster API's Machine controller, v1beta2): the node
//! reference, the kubelet's report, `NodeReady` and `NodeHealthy`, and the labels the
//! pool asks for on its Nodes. Pure: the runtime reads the Node through the workload
//! port and hands it here as a [`NodeSeen`].

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_model::labels::{POOL, RESERVED_PREFIX};
use capstan_model::meta::{Condition, condition};
use capstan_model::{
    AppliedTaint, ConditionStatus, Conditions, Machine, MachinePhase, MachineTaint, NodeInfo,
    NodeRef, TaintPropagation, Timestamp,
};

use crate::conditions::{NODE_HEALTHY, NODE_READY};

/// How often a Machine whose Node is not there yet, or not Ready, looks again.
pub const NODE_WAIT_RECHECK: Duration = Duration::from_secs(15);
/// How often a Machine with a healthy Node looks again: node conditions reach health
/// checks within this (Cluster API reads them from a watch; a Lambda polls).
pub const NODE_RECHECK: Duration = Duration::from_secs(60);
/// The Node conditions kept on the Machine (a Node has five or six).
pub const MAX_NODE_CONDITIONS: usize = 16;
/// Node conditions that, True, make a Node unhealthy (the kubelet's pressure reports).
const PRESSURE: [&str; 3] = ["MemoryPressure", "DiskPressure", "PIDPressure"];

/// The Node as the reconciler needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct SeenNode {
    pub name: String,
    pub uid: String,
    pub kubelet_version: String,
    pub os_image: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<SeenTaint>,
    pub conditions: Vec<Condition>,
}

/// A Node's taint as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenTaint {
    pub key: String,
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// What looking for a Machine's Node found.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeSeen {
    Found(SeenNode),
    /// No Node carries the instance's providerID (yet, or any more).
    Absent,
    /// The API server could not be asked (unreachable, throttled, access refused).
    Unknown {
        reason: String,
        message: String,
    },
}

/// The labels Capstan keeps on a Machine's Node: the pool's own labels (the Machine's,
/// less Capstan's bookkeeping under `capstan.dev/`) and `node-role.kubernetes.io/<pool>`.
/// Applied through the API, not kubelet flags: the NodeRestriction admission plugin
/// refuses a kubelet most `kubernetes.io` labels on itself.
pub fn node_labels(m: &Machine) -> BTreeMap<String, String> {
    pool_node_labels(
        &m.metadata.labels,
        m.metadata.labels.get(POOL).map(String::as_str),
    )
}

/// [`node_labels`] from a Machine's (or its pool template's) labels and its pool.
pub fn pool_node_labels(
    labels: &BTreeMap<String, String>,
    pool: Option<&str>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = labels
        .iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX) && !k.starts_with("cluster.x-k8s.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(pool) = pool {
        out.insert(format!("node-role.kubernetes.io/{pool}"), String::new());
    }
    out
}

/// The label changes that bring `node` in line with the pool: labels to set (Some) and
/// labels Capstan set before that the pool no longer asks for (None). Labels anyone
/// else put on the Node are left alone.
pub fn label_patch(m: &Machine, node: &SeenNode) -> BTreeMap<String, Option<String>> {
    let want = node_labels(m);
    let mut patch: BTreeMap<String, Option<String>> = want
        .iter()
        .filter(|(k, v)| node.labels.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    for old in &m.status.node_labels {
        if !want.contains_key(old) && node.labels.contains_key(old) {
            patch.insert(old.clone(), None);
        }
    }
    patch
}

/// The Node's whole taint list as the Machine wants it, or None when it already is.
///
/// `Always` taints are kept on the Node (and removed once the pool drops them);
/// `OnInitialization` taints are put on a Node Capstan sees for the first time and then
/// left to others. Taints anyone else put on the Node are kept. The list is replaced
/// whole (a merge patch): a taint added between the read and the patch is lost until
/// its owner adds it again, as with Cluster API's patch.
pub fn taint_patch(m: &Machine, node: &SeenNode) -> Option<Vec<SeenTaint>> {
    let first_sight = m.status.node_ref.as_ref().is_none_or(|r| r.uid != node.uid);
    let wanted: Vec<&MachineTaint> = m
        .spec
        .taints
        .iter()
        .filter(|t| t.propagation == TaintPropagation::Always || first_sight)
        .collect();
    let same = |t: &SeenTaint, key: &str, effect: &str| t.key == key && t.effect == effect;
    let mut next: Vec<SeenTaint> = node
        .taints
        .iter()
        .filter(|t| {
            // Ours before and no longer wanted: removed.
            let was_ours = m
                .status
                .node_taints
                .iter()
                .any(|a| same(t, &a.key, a.effect.as_str()));
            let still = wanted.iter().any(|w| same(t, &w.key, w.effect.as_str()));
            !was_ours || still
        })
        .cloned()
        .collect();
    for w in wanted {
        let taint = SeenTaint {
            key: w.key.clone(),
            value: w.value.clone(),
            effect: w.effect.as_str().to_string(),
        };
        match next.iter_mut().find(|t| same(t, &w.key, w.effect.as_str())) {
            Some(t) => *t = taint,
            None => next.push(taint),
        }
    }
    (next != node.taints).then_some(next)
}

/// The taints recorded as Capstan's own on the Node: the `Always` ones.
fn owned_taints(m: &Machine) -> Vec<AppliedTaint> {
    m.spec
        .taints
        .iter()
        .filter(|t| t.propagation == TaintPropagation::Always)
        .map(|t| AppliedTaint {
            key: t.key.clone(),
            effect: t.effect,
        })
        .collect()
}

/// The Machine after looking for its Node, or None when nothing it records changed.
/// `applied`: the pool's labels and taints are on the Node now.
pub fn record_node(m: &Machine, seen: NodeSeen, applied: bool, now: Timestamp) -> Option<Machine> {
    let mut next = m.clone();
    let st = &mut next.status;
    match seen {
        NodeSeen::Found(node) => {
            st.node_ref = Some(NodeRef {
                name: node.name.clone(),
                uid: node.uid.clone(),
            });
            st.node_info = Some(NodeInfo {
                kubelet_version: node.kubelet_version.clone(),
                os_image: node.os_image.clone(),
            });
            if applied {
                st.node_labels = node_labels(m).into_keys().collect();
                st.node_taints = owned_taints(m);
            }
            let mut kept = Conditions::default();
            for c in node.conditions.iter().take(MAX_NODE_CONDITIONS) {
                let at = c.last_transition_time;
                kept.set(&c.type_, c.status, &c.reason, c.message.clone(), at);
            }
            st.node_conditions = kept;
            let ready = node.conditions.iter().find(|c| c.type_ == condition::READY);
            let c = &mut st.conditions;
            match ready {
                Some(r) if r.status == ConditionStatus::True => c.set_true(
                    NODE_READY,
                    "NodeReady",
                    format!("node {} is Ready", node.name),
                    now,
                ),
                Some(r) => c.set(
                    NODE_READY,
                    r.status,
                    if r.reason.is_empty() {
                        "NodeNotReady"
                    } else {
                        &r.reason
                    },
                    format!("node {} is not Ready: {}", node.name, r.message),
                    now,
                ),
                None => c.set(
                    NODE_READY,
                    ConditionStatus::Unknown,
                    "NodeReadyUnknown",
                    format!("node {} reports no Ready condition yet", node.name),
                    now,
                ),
            }
            let pressures: Vec<&str> = node
                .conditions
                .iter()
                .filter(|c| {
                    PRESSURE.contains(&c.type_.as_str()) && c.status == ConditionStatus::True
                })
                .map(|c| c.type_.as_str())
                .collect();
            match (c.is_true(NODE_READY), pressures.is_empty()) {
                (true, true) => c.set_true(NODE_HEALTHY, "NodeHealthy", "", now),
                (true, false) => c.set_false(
                    NODE_HEALTHY,
                    "NodeConditionsFailed",
                    format!("node {} reports {}", node.name, pressures.join(", ")),
                    now,
                ),
                (false, _) => c.set_false(
                    NODE_HEALTHY,
                    "NodeNotReady",
                    format!("node {} is not Ready", node.name),
                    now,
                ),
            }
        }
        NodeSeen::Absent => {
            let message = match (&st.node_ref, st.running_since) {
                (Some(gone), _) => format!("node {} no longer exists", gone.name),
                (None, Some(since)) => format!(
                    "waiting for the instance's Node to register (instance running since {since})"
                ),
                (None, None) => "waiting for the instance's Node to register".to_string(),
            };
            let reason = if st.node_ref.is_some() {
                "NodeNotFound"
            } else {
                "WaitingForNode"
            };
            st.node_conditions = Conditions::default();
            let c = &mut st.conditions;
            c.set(
                NODE_READY,
                ConditionStatus::Unknown,
                reason,
                message.clone(),
                now,
            );
            c.set(NODE_HEALTHY, ConditionStatus::Unknown, reason, message, now);
        }
        NodeSeen::Unknown { reason, message } => {
            // Keep what was last seen; say the view is stale (Cluster API's
            // "connection down").
            let c = &mut st.conditions;
            let message = format!("cannot read the node: {message}");
            if st.node_ref.is_none() {
                c.set(
                    NODE_READY,
                    ConditionStatus::Unknown,
                    &reason,
                    message.clone(),
                    now,
                );
            }
            c.set(
                NODE_HEALTHY,
                ConditionStatus::Unknown,
                &reason,
                message,
                now,
            );
        }
    }
    let running = next.status.instance_state == Some(capstan_model::InstanceState::Running);
    if running
        && next.status.phase != MachinePhase::Failed
        && next.status.phase != MachinePhase::Deleting
    {
        apply_node_to_phase(&mut next, now);
    }
    (next != *m).then_some(next)
}

/// With access declared, a running Machine is `Running` and Ready only once its Node
/// exists and is Ready; `Provisioned` until the Node appears.
pub fn apply_node_to_phase(m: &mut Machine, now: Timestamp) {
    let st = &mut m.status;
    if st.node_ref.is_none() {
        st.phase = MachinePhase::Provisioned;
        let why = st
            .conditions
            .get(NODE_READY)
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "waiting for the instance's Node to register".to_string());
        st.conditions
            .set_false(condition::READY, "WaitingForNode", why.clone(), now);
        st.conditions
            .set_false(condition::AVAILABLE, "WaitingForNode", why, now);
        return;
    }
    st.phase = MachinePhase::Running;
    let node_ready = st.conditions.get(NODE_READY).cloned();
    match node_ready {
        Some(n) if n.status == ConditionStatus::True => {
            st.conditions
                .set_true(condition::READY, "NodeReady", n.message.clone(), now);
            st.conditions
                .set_true(condition::AVAILABLE, "NodeReady", n.message, now);
        }
        Some(n) => {
            st.conditions
                .set_false(condition::READY, "NodeNotReady", n.message.clone(), now);
            st.conditions
                .set_false(condition::AVAILABLE, "NodeNotReady", n.message, now);
        }
        None => {}
    }
}

/// The Machine after its Node was deleted (or found gone).
pub fn record_node_deleted(m: &Machine, now: Timestamp) -> Machine {
    let mut next = m.clone();
    next.status.node_ref = None;
    next.status.node_conditions = Conditions::default();
    next.status.conditions.set_false(
        NODE_HEALTHY,
        NODE_DELETED,
        "the instance is gone and its Node was deleted",
        now,
    );
    next
}

/// The reason on NodeHealthy once the Machine's Node was deleted.
pub const NODE_DELETED: &str = "NodeDeleted";

/// The Machine's Node was deleted after its instance went.
pub fn node_deleted(m: &Machine) -> bool {
    m.status
        .conditions
        .get(NODE_HEALTHY)
        .is_some_and(|c| c.reason == NODE_DELETED)
}
