//! What a kubelet reads from its instance's user data: the `NodeConfig` nodeadm takes
//! from a MIME part of type `application/node.eks.aws` (Amazon Linux 2023 EKS AMIs).
//! A kubelet given one joins only the cluster it names, at the endpoint that cluster
//! has — a wrong name or endpoint never joins, as a real one would fail TLS or
//! authentication — and registers with the `--node-labels` and
//! `--register-with-taints` of its flags. Without a NodeConfig, the instance is taken
//! to join by its own user data (the simulated clusters' default).

use std::collections::BTreeMap;

use capstan_runtime::{EksCluster, Taint};

/// The parts of a `NodeConfig` the simulated kubelet acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct NodeConfig {
    pub cluster_name: String,
    pub api_server_endpoint: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

impl NodeConfig {
    /// The NodeConfig in `user_data`, if it has a nodeadm part.
    pub fn parse(user_data: &str) -> Option<NodeConfig> {
        let boundary = user_data
            .split_once("boundary=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(boundary, _)| format!("\n--{boundary}"))?;
        let start = user_data.find("Content-Type: application/node.eks.aws")?;
        let part = &user_data[start..];
        let part = part.find(&boundary).map_or(part, |end| &part[..end]);
        let mut config = NodeConfig::default();
        for line in part.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("name:") {
                config.cluster_name = unquote(v);
            } else if let Some(v) = line.strip_prefix("apiServerEndpoint:") {
                config.api_server_endpoint = unquote(v);
            } else if let Some(flag) = line.strip_prefix("- ").map(unquote) {
                if let Some(labels) = flag.strip_prefix("--node-labels=") {
                    config.labels = labels
                        .split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                } else if let Some(taints) = flag.strip_prefix("--register-with-taints=") {
                    config.taints = taints.split(',').filter_map(taint).collect();
                }
            }
        }
        Some(config)
    }

    /// Whether a kubelet so configured reaches the cluster called `eks_name` that
    /// DescribeCluster describes as `cluster`.
    pub fn joins(&self, eks_name: &str, cluster: &EksCluster) -> bool {
        self.cluster_name == eks_name && self.api_server_endpoint == cluster.endpoint
    }
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').to_string()
}

/// `key[=value]:Effect`.
fn taint(spec: &str) -> Option<Taint> {
    let (key_value, effect) = spec.rsplit_once(':')?;
    let (key, value) = match key_value.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (key_value, None),
    };
    Some(Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
    })
}
