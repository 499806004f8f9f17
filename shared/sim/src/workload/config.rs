//! Which cluster, and how the simulated clusters behave.

use super::*;

/// Which workload cluster: a Capstan Cluster's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterKey {
    pub namespace: String,
    pub cluster: String,
}

impl ClusterKey {
    pub fn new(namespace: impl Into<String>, cluster: impl Into<String>) -> ClusterKey {
        ClusterKey {
            namespace: namespace.into(),
            cluster: cluster.into(),
        }
    }

    /// A target for this cluster, reached as an EKS cluster of the same name.
    pub fn target(&self) -> WorkloadTarget {
        WorkloadTarget {
            namespace: self.namespace.clone(),
            cluster: self.cluster.clone(),
            access: ClusterAccessKey::Eks {
                cluster_name: self.cluster.clone(),
                region: None,
            },
        }
    }
}

impl From<&WorkloadTarget> for ClusterKey {
    fn from(t: &WorkloadTarget) -> ClusterKey {
        ClusterKey::new(t.namespace.clone(), t.cluster.clone())
    }
}

impl From<&ClusterKey> for ClusterKey {
    fn from(k: &ClusterKey) -> ClusterKey {
        k.clone()
    }
}

/// How the simulated clusters behave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Instance first seen running → its Node registered. Default 20 s.
    pub join_delay: Duration,
    /// Kubelet stopped → Node `Ready=Unknown` (node-monitor-grace-period). Default 40 s.
    pub node_monitor_grace: Duration,
    /// A deleted Node whose kubelet still runs → registered again. Default 10 s (the
    /// kubelet's node status update period).
    pub reregister_delay: Duration,
    /// A pod's termination grace period when neither it nor the eviction gives one.
    /// Default 30 s.
    pub default_grace: Duration,
    /// Bound → Running (image pull, container start). Default 5 s.
    pub pod_start_delay: Duration,
    /// Last pod using a volume left a live node → its VolumeAttachment is gone.
    /// Default 10 s.
    pub detach_delay: Duration,
    /// The same when the node's kubelet is not running (force detach). Default 6 min.
    pub unreachable_detach_delay: Duration,
    /// Node deleted → the pod garbage collector removes its pods. Default 40 s.
    pub pod_gc_delay: Duration,
    /// A Node tainted `NoExecute` (unreachable or not-ready) → its pods that do not
    /// tolerate the taint start terminating: the `tolerationSeconds` the
    /// DefaultTolerationSeconds admission plugin gives every pod. Default 300 s.
    pub taint_eviction_delay: Duration,
    pub kubelet_version: String,
    pub os_image: String,
    /// Seeds uids and generated pod names.
    pub seed: u64,
}

impl Default for WorkloadConfig {
    fn default() -> WorkloadConfig {
        WorkloadConfig {
            join_delay: Duration::from_secs(20),
            node_monitor_grace: Duration::from_secs(40),
            reregister_delay: Duration::from_secs(10),
            default_grace: Duration::from_secs(30),
            pod_start_delay: Duration::from_secs(5),
            detach_delay: Duration::from_secs(10),
            unreachable_detach_delay: Duration::from_secs(360),
            pod_gc_delay: Duration::from_secs(40),
            taint_eviction_delay: Duration::from_secs(300),
            kubelet_version: "v1.31.4-eks-aeac579".into(),
            os_image: "Amazon Linux 2023.6.20250107".into(),
            seed: 0x6b75_6265,
        }
    }
}
