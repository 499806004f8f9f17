//! What a test or the simulator puts into a cluster: pods, their templates, and
//! disruption budgets.

use super::*;

/// A pod to create (directly, or as a Deployment's or DaemonSet's template).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The controller owner's kind, for a pod added directly (`Job`, `StatefulSet`…);
    /// Deployments and DaemonSets set their own.
    pub controller_kind: Option<String>,
    /// A static pod's mirror (owner `Node`): bound to `node_name`, recreated by the
    /// kubelet whenever it is deleted while the kubelet runs.
    pub mirror: bool,
    /// Bound from the start (static pods, or a pod that bypasses the scheduler).
    pub node_name: Option<String>,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity: any one term must match.
    pub affinity: Vec<NodeSelectorTerm>,
    pub tolerations: Vec<Toleration>,
    pub local_volumes: bool,
    /// Persistent volumes (by name) the pod mounts: each becomes a VolumeAttachment to
    /// its node.
    pub persistent_volumes: Vec<String>,
    /// `terminationGracePeriodSeconds`; None is the config's default.
    pub grace: Option<Duration>,
}

impl PodSpec {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> PodSpec {
        PodSpec {
            namespace: namespace.into(),
            name: name.into(),
            ..PodSpec::default()
        }
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> PodSpec {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn requests(mut self, cpu_millis: u64, memory_bytes: u64) -> PodSpec {
        self.cpu_millis = cpu_millis;
        self.memory_bytes = memory_bytes;
        self
    }

    pub fn node_selector(mut self, key: impl Into<String>, value: impl Into<String>) -> PodSpec {
        self.node_selector.insert(key.into(), value.into());
        self
    }

    /// Adds a required node-affinity term (`nodeSelectorTerms` are ORed).
    pub fn affinity(mut self, term: NodeSelectorTerm) -> PodSpec {
        self.affinity.push(term);
        self
    }

    pub fn tolerate(mut self, toleration: Toleration) -> PodSpec {
        self.tolerations.push(toleration);
        self
    }

    pub fn persistent_volume(mut self, name: impl Into<String>) -> PodSpec {
        self.persistent_volumes.push(name.into());
        self
    }

    pub fn on_node(mut self, node: impl Into<String>) -> PodSpec {
        self.node_name = Some(node.into());
        self
    }

    pub fn grace(mut self, grace: Duration) -> PodSpec {
        self.grace = Some(grace);
        self
    }
}

/// An int-or-percent of a PodDisruptionBudget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntOrPercent {
    Int(u32),
    Percent(u32),
}

/// `minAvailable` or `maxUnavailable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    MinAvailable(IntOrPercent),
    MaxUnavailable(IntOrPercent),
}

/// A `policy/v1` PodDisruptionBudget: pods of its namespace whose labels include all of
/// `selector`'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodDisruptionBudget {
    pub namespace: String,
    pub name: String,
    pub selector: BTreeMap<String, String>,
    pub budget: Budget,
}
