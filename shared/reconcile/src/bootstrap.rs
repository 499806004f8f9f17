//! User data that joins an instance to an EKS cluster: the Amazon Linux 2023 EKS AMIs
//! start the kubelet through `nodeadm`, which reads a `NodeConfig`
//! (`node.eks.aws/v1alpha1`) from the MIME multi-part user data, in a part of content
//! type `application/node.eks.aws` (awslabs/amazon-eks-ami `nodeadm/doc/examples.md`,
//! `nodeadm/internal/configprovider/mime.go`). cloud-init reads the same document and
//! runs the class's own part; it ignores the `NodeConfig` part (an unknown content
//! type). On those AMIs cloud-init's final stage, where a script part runs, comes
//! before `nodeadm-run.service` starts the kubelet.
//!
//! # Flow
//! A Machine whose launch spec has `bootstrap.eks` launches with user data rendered at
//! launch time: the runtime reads the cluster's API endpoint, certificate authority
//! and service CIDR ([`EksCluster`], from EKS DescribeCluster through the workload
//! port) and [`machine_user_data`] builds the [`EksNodeInput`] from the Machine's
//! labels and taints and its class's `userData`.
//!
//! # Guarantees
//! - Deterministic: the same input gives the same bytes (labels sorted, taints in the
//!   given order, a fixed boundary), so the launch spec hashes the same on every pass.
//! - The output parses as MIME: the boundary occurs in no part.
//! - Never more than EC2's [`MAX_USER_DATA_BYTES`] (16 KiB before base64).
//! - No label the kubelet refuses to set on itself goes into `--node-labels` (it would
//!   not start): see [`kubelet_may_self_label`]. Capstan applies those to the Node
//!   through the API once it exists.
//!
//! # Errors
//! [`BootstrapError`]: a cluster field that nodeadm would refuse, a label or taint that
//! cannot be written as a kubelet flag, class user data that is already MIME or whose
//! type cloud-init would not recognise, or a result over the size limit. Each is a
//! fault in the spec or the cluster, not one a retry fixes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use capstan_model::Machine;
pub use capstan_model::TaintEffect;
pub use capstan_model::user_data::{cloud_init_content_type, is_mime};
pub use capstan_model::validate::{MAX_USER_DATA_BYTES, is_eks_cluster_name};

/// Content type of a MIME part that nodeadm reads as a `NodeConfig`.
pub const NODE_CONFIG_CONTENT_TYPE: &str = "application/node.eks.aws";
/// `apiVersion` of the `NodeConfig` Capstan writes.
pub const NODE_CONFIG_API_VERSION: &str = "node.eks.aws/v1alpha1";
/// The multipart boundary; `-1`, `-2`, … are appended while it occurs in a part.
const BOUNDARY: &str = "==CAPSTAN-NODEADM-BOUNDARY==";

/// What a node needs to join an EKS cluster, and what the Machine says of its Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EksNodeInput {
    /// The EKS cluster's name (`spec.access.eks.clusterName`).
    pub cluster_name: String,
    /// `cluster.endpoint` from DescribeCluster: `https://…`.
    pub api_server_endpoint: String,
    /// `cluster.certificateAuthority.data` from DescribeCluster: the PEM chain,
    /// base64-encoded, as nodeadm takes it.
    pub certificate_authority: String,
    /// `cluster.kubernetesNetworkConfig.serviceIpv4Cidr` (or `serviceIpv6Cidr`):
    /// nodeadm derives the cluster DNS address from it.
    pub service_cidr: String,
    /// The Machine's labels for its Node. Those the kubelet may not set on itself are
    /// left out of the flags (see [`kubelet_may_self_label`]).
    pub labels: BTreeMap<String, String>,
    /// Taints the Node registers with, in this order.
    pub taints: Vec<NodeTaint>,
    /// The MachineClass's own `userData`, delivered as a further part.
    pub extra_user_data: Option<String>,
}

/// A taint a Node registers with (`--register-with-taints`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTaint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

impl NodeTaint {
    /// A Machine's (or its pool's) taints, as its Node registers with them.
    pub fn all_of(taints: &[capstan_model::kinds::MachineTaint]) -> Vec<NodeTaint> {
        taints
            .iter()
            .map(|t| NodeTaint {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: t.effect,
            })
            .collect()
    }
}

/// What EKS DescribeCluster says a node needs to join the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EksCluster {
    /// `cluster.endpoint`: `https://…`.
    pub endpoint: String,
    /// `cluster.certificateAuthority.data`: base64 PEM, as nodeadm takes it.
    pub certificate_authority: String,
    /// `cluster.kubernetesNetworkConfig.serviceIpv4Cidr` (or `serviceIpv6Cidr`).
    pub service_cidr: String,
}

/// The user data `m`'s instance launches with when its launch spec has
/// `bootstrap.eks`: a NodeConfig for EKS cluster `cluster_name` as `cluster` describes
/// it, with the labels Capstan keeps on the Node ([`crate::node::node_labels`]) and
/// every taint of the Machine (those propagated only on initialization included: this
/// is the initialization), then the class's own `userData` as a part. None: the
/// Machine has no bootstrap, and launches with its `userData` as it is.
pub fn machine_user_data(
    m: &Machine,
    cluster_name: &str,
    cluster: &EksCluster,
) -> Result<Option<String>, BootstrapError> {
    let Some(launch) = m.spec.launch() else {
        return Ok(None);
    };
    if launch
        .bootstrap
        .as_ref()
        .and_then(|b| b.eks.as_ref())
        .is_none()
    {
        return Ok(None);
    }
    let input = EksNodeInput {
        cluster_name: cluster_name.to_string(),
        api_server_endpoint: cluster.endpoint.clone(),
        certificate_authority: cluster.certificate_authority.clone(),
        service_cidr: cluster.service_cidr.clone(),
        labels: crate::node::node_labels(m),
        taints: NodeTaint::all_of(&m.spec.taints),
        extra_user_data: launch.user_data.clone(),
    };
    eks_user_data(&input).map(Some)
}

/// Why no user data could be written. None of these goes away by retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    /// A cluster field is missing or is not what nodeadm accepts.
    #[error("EKS cluster {field} {problem}")]
    InvalidCluster {
        field: &'static str,
        problem: String,
    },
    /// A label cannot be written into `--node-labels`.
    #[error("label {key:?}={value:?} is not a valid Kubernetes label")]
    InvalidLabel { key: String, value: String },
    /// A taint cannot be written into `--register-with-taints`.
    #[error("taint {key:?} is not a valid Kubernetes taint: {problem}")]
    InvalidTaint { key: String, problem: String },
    /// The class's user data is itself a MIME document; parts are not merged.
    #[error(
        "the MachineClass's userData is already a MIME multi-part document; with bootstrap.eks, \
         give the script or #cloud-config alone and Capstan adds it as a part"
    )]
    UserDataIsMime,
    /// cloud-init would not know what to do with the class's user data.
    #[error(
        "the MachineClass's userData starts with {start:?}, which cloud-init does not \
         recognise (it would ignore the part): start it with #! or #cloud-config"
    )]
    UnrecognisedUserData { start: String },
    /// The whole document is over EC2's limit.
    #[error("the user data is {bytes} bytes, more than EC2's limit of {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
}

/// Writes the MIME multi-part user data that joins an Amazon Linux 2023 node to the
/// EKS cluster `input` describes: first a `NodeConfig` part, then the class's own user
/// data, if any, as a part typed as cloud-init would type it
/// ([`cloud_init_content_type`]).
///
/// Labels go into `--node-labels` (sorted by key), taints into
/// `--register-with-taints` (in order); labels the kubelet may not self-set are left
/// out for Capstan to apply through the API.
///
/// Class user data that is already MIME is refused rather than merged: its parts, its
/// boundary and its own NodeConfig (if any) would have to be reconciled with ours, and
/// nodeadm merges NodeConfigs with the later winning — a class could silently point
/// the node at another cluster. Validation refuses such a class up front.
pub fn eks_user_data(input: &EksNodeInput) -> Result<String, BootstrapError> {
    cluster_fields(input)?;
    let mut parts = vec![Part {
        headers: format!("Content-Type: {NODE_CONFIG_CONTENT_TYPE}\n"),
        body: node_config(input)?,
    }];
    if let Some(data) = input.extra_user_data.as_deref().filter(|d| !d.is_empty()) {
        if is_mime(data) {
            return Err(BootstrapError::UserDataIsMime);
        }
        let content_type =
            cloud_init_content_type(data).ok_or_else(|| BootstrapError::UnrecognisedUserData {
                start: data.trim_start().chars().take(24).collect(),
            })?;
        let (charset, encoding) = if data.is_ascii() {
            ("us-ascii", "7bit")
        } else {
            ("utf-8", "8bit")
        };
        parts.push(Part {
            headers: format!(
                "Content-Type: {content_type}; charset=\"{charset}\"\n\
                 Content-Transfer-Encoding: {encoding}\n"
            ),
            body: data.to_string(),
        });
    }

    let boundary = boundary_for(&parts);
    let mut out =
        format!("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\n\n");
    for part in &parts {
        // The line break before a delimiter belongs to the delimiter (RFC 2046 5.1.1):
        // each body is followed by one, so the part reads back exactly as given.
        let _ = write!(out, "--{boundary}\n{}\n{}\n", part.headers, part.body);
    }
    let _ = writeln!(out, "--{boundary}--");

    if out.len() > MAX_USER_DATA_BYTES {
        return Err(BootstrapError::TooLarge {
            bytes: out.len(),
            limit: MAX_USER_DATA_BYTES,
        });
    }
    Ok(out)
}

/// Whether the kubelet may set this label on its own Node, through `--node-labels`.
///
/// The kubelet refuses to start with a label in the `kubernetes.io` or `k8s.io`
/// namespaces (or a subdomain of them) unless it is in the `kubelet.kubernetes.io` or
/// `node.kubernetes.io` namespaces (or their subdomains) or one of the well-known labels
/// it sets itself (kubernetes `cmd/kubelet/app/options/options.go`,
/// `k8s.io/kubelet/pkg/apis/well_known_labels.go`; the NodeRestriction admission
/// plugin enforces the same on the API server, since Kubernetes 1.16). So
/// `node-role.kubernetes.io/<role>` cannot be self-set: Capstan patches such labels
/// onto the Node through the API once the Node exists.
pub fn kubelet_may_self_label(key: &str) -> bool {
    const WELL_KNOWN: [&str; 11] = [
        "kubernetes.io/hostname",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
    ];
    let Some((namespace, _)) = key.split_once('/') else {
        return true;
    };
    let within = |domain: &str| namespace == domain || namespace.ends_with(&format!(".{domain}"));
    if !within("kubernetes.io") && !within("k8s.io") {
        return true;
    }
    WELL_KNOWN.contains(&key) || within("kubelet.kubernetes.io") || within("node.kubernetes.io")
}

struct Part {
    /// Header lines, each ending in a line break.
    headers: String,
    body: String,
}

/// The first of `BOUNDARY`, `BOUNDARY-1`, `BOUNDARY-2`, … that occurs in no part.
fn boundary_for(parts: &[Part]) -> String {
    let free = |b: &str| {
        parts
            .iter()
            .all(|p| !p.body.contains(b) && !p.headers.contains(b))
    };
    if free(BOUNDARY) {
        return BOUNDARY.to_string();
    }
    // Each part can contain at most len/len(BOUNDARY) distinct candidates, so a free
    // one is found within that many steps.
    (1..)
        .map(|n| format!("{BOUNDARY}-{n}"))
        .find(|b| free(b))
        .unwrap_or_default()
}

fn cluster_fields(input: &EksNodeInput) -> Result<(), BootstrapError> {
    let invalid = |field, problem: &str| {
        Err(BootstrapError::InvalidCluster {
            field,
            problem: problem.to_string(),
        })
    };
    if !is_eks_cluster_name(&input.cluster_name) {
        return invalid(
            "name",
            "must be 1 to 100 letters, digits, - and _, starting with a letter or digit",
        );
    }
    let host = input.api_server_endpoint.strip_prefix("https://");
    if host.is_none_or(|h| h.is_empty() || !h.chars().all(|c| c.is_ascii_graphic())) {
        return invalid("apiServerEndpoint", "must be an https:// URL");
    }
    let ca = &input.certificate_authority;
    if ca.is_empty()
        || !ca.len().is_multiple_of(4)
        || !ca
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    {
        return invalid(
            "certificateAuthority",
            "must be the base64 PEM chain DescribeCluster returns",
        );
    }
    if !is_cidr(&input.service_cidr) {
        return invalid("cidr", "must be the service CIDR, e.g. 10.100.0.0/16");
    }
    Ok(())
}

fn is_cidr(s: &str) -> bool {
    let Some((addr, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    !bits.starts_with('+') && bits.parse::<u8>().is_ok_and(|b| b <= max)
}

/// The NodeConfig, as YAML. Every string is written as a JSON string, which is a YAML
/// double-quoted scalar: nothing a value holds can change the document's structure.
fn node_config(input: &EksNodeInput) -> Result<String, BootstrapError> {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let mut yaml = format!(
        "---\napiVersion: {NODE_CONFIG_API_VERSION}\nkind: NodeConfig\nspec:\n  cluster:\n    \
         name: {}\n    apiServerEndpoint: {}\n    certificateAuthority: {}\n    cidr: {}\n",
        quote(&input.cluster_name),
        quote(&input.api_server_endpoint),
        quote(&input.certificate_authority),
        quote(&input.service_cidr),
    );
    let flags = kubelet_flags(input)?;
    if !flags.is_empty() {
        yaml.push_str("  kubelet:\n    flags:\n");
        for flag in flags {
            let _ = writeln!(yaml, "      - {}", quote(&flag));
        }
    }
    Ok(yaml)
}

fn kubelet_flags(input: &EksNodeInput) -> Result<Vec<String>, BootstrapError> {
    let mut labels = Vec::new();
    for (key, value) in &input.labels {
        if !is_label_key(key) || !is_label_value(value) {
            return Err(BootstrapError::InvalidLabel {
                key: key.clone(),
                value: value.clone(),
            });
        }
        if kubelet_may_self_label(key) {
            labels.push(format!("{key}={value}"));
        }
    }
    let mut taints = Vec::new();
    for taint in &input.taints {
        let invalid = |problem: &str| BootstrapError::InvalidTaint {
            key: taint.key.clone(),
            problem: problem.to_string(),
        };
        if !is_label_key(&taint.key) {
            return Err(invalid(
                "the key must be a label key: [prefix/]name, letters, digits, -, _ and .",
            ));
        }
        match &taint.value {
            Some(value) if !is_label_value(value) => {
                return Err(invalid(
                    "the value must be up to 63 letters, digits, -, _ and .",
                ));
            }
            Some(value) => taints.push(format!("{}={value}:{}", taint.key, taint.effect.as_str())),
            None => taints.push(format!("{}:{}", taint.key, taint.effect.as_str())),
        }
    }
    let mut flags = Vec::new();
    if !labels.is_empty() {
        flags.push(format!("--node-labels={}", labels.join(",")));
    }
    if !taints.is_empty() {
        flags.push(format!("--register-with-taints={}", taints.join(",")));
    }
    Ok(flags)
}

/// A label key: an optional DNS subdomain prefix (up to 253) and `/`, then a name of up
/// to 63 alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// A label value: empty, or up to 63 alphanumerics, `-`, `_` and `.`, starting and
/// ending alphanumeric.
fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_self_labels_follow_the_kubelet_rule() {
        for allowed in [
            "team",
            "example.com/team",
            "node.kubernetes.io/pool",
            "kubelet.kubernetes.io/x",
            "eks.node.kubernetes.io/x",
            "topology.kubernetes.io/zone",
            "kubernetes.io/arch",
            "notkubernetes.io/x",
        ] {
            assert!(kubelet_may_self_label(allowed), "{allowed}");
        }
        for refused in [
            "node-role.kubernetes.io/worker",
            "kubernetes.io/role",
            "node-restriction.kubernetes.io/x",
            "k8s.io/x",
            "sub.k8s.io/x",
            "topology.kubernetes.io/other",
        ] {
            assert!(!kubelet_may_self_label(refused), "{refused}");
        }
    }

    #[test]
    fn formats() {
        assert!(is_cidr("10.100.0.0/16") && is_cidr("fd00::/108"));
        for bad in [
            "10.100.0.0",
            "10.100.0.0/33",
            "x/16",
            "10.0.0.0/+8",
            "fd00::/129",
        ] {
            assert!(!is_cidr(bad), "{bad}");
        }
        assert!(is_label_key("example.com/a.b") && is_label_key("a"));
        for bad in ["", "/a", "a/", "Example.com/a", "a/b/c", "-a", "a,b", "a=b"] {
            assert!(!is_label_key(bad), "{bad}");
        }
    }
}
