//! The size and count limits validation enforces, public so the CLI, the reconcilers
//! and the docs cite the same numbers, and how a number field's range reads in errors.

/// Longest Kubernetes object name (a DNS-1123 label), and longest label value.
pub const MAX_NAME_LEN: usize = 63;
/// Longest Cluster name. The cluster reconciler names MachineDeployments
/// `<cluster>-control-plane` and `<cluster>-<pool>`, MachineSets add `-<8 hex>`,
/// Machines add `-<5 chars>`: 20 + 14 + 9 + 6 = 49 leaves room within 63.
pub const MAX_CLUSTER_NAME_LEN: usize = 20;
/// Longest worker pool name (see [`MAX_CLUSTER_NAME_LEN`]): 20 + 1 + 15 + 9 + 6 = 51.
pub const MAX_POOL_NAME_LEN: usize = 15;
/// What a MachineSet adds to its MachineDeployment's name: `-` and 8 hex digits.
pub const MACHINE_SET_SUFFIX_LEN: usize = 9;
/// What a Machine adds to its MachineSet's name: `-` and 5 characters.
pub const MACHINE_SUFFIX_LEN: usize = 6;
/// Longest MachineSet name, so its Machines' names fit.
pub const MAX_MACHINE_SET_NAME_LEN: usize = MAX_NAME_LEN - MACHINE_SUFFIX_LEN;
/// Longest MachineDeployment name, so its MachineSets' and Machines' names fit.
pub const MAX_MACHINE_DEPLOYMENT_NAME_LEN: usize =
    MAX_MACHINE_SET_NAME_LEN - MACHINE_SET_SUFFIX_LEN;
/// The pool name the cluster reconciler uses for the control plane's MachineDeployment.
pub const RESERVED_POOL_NAME: &str = crate::labels::CONTROL_PLANE_POOL;
/// Most Machines one MachineDeployment, MachineSet or pool may ask for.
pub const MAX_REPLICAS: i32 = 1000;
/// Largest control plane: etcd gains nothing past seven members and loses write speed.
pub const MAX_CONTROL_PLANE_REPLICAS: i32 = 7;
/// Longest label or annotation key prefix (a DNS-1123 subdomain).
pub const MAX_KEY_PREFIX_LEN: usize = 253;
/// Total size of an object's annotations. Kubernetes allows 256 KiB; a DynamoDB item
/// holds 400 KB in all, spec included, so Capstan keeps annotations smaller.
pub const MAX_ANNOTATIONS_BYTES: usize = 64 * 1024;
/// Largest spec, as JSON. A DynamoDB item holds 400 KB in all, and an object's
/// observed item carries its spec again beside its status, labels and conditions: a
/// spec this size leaves the observed item far under the limit whatever else it holds.
pub const MAX_SPEC_BYTES: usize = 64 * 1024;
/// Total size of an object's labels (keys and values); the observed item keeps them.
pub const MAX_LABELS_BYTES: usize = 16 * 1024;
/// EBS root volume size bounds (gp3/io1/io2 allow up to 16 TiB; an AMI needs ~8 GiB).
pub const MIN_ROOT_VOLUME_GIB: i32 = 8;
pub const MAX_ROOT_VOLUME_GIB: i32 = 16_384;
/// Provisioned IOPS bounds for io1 and io2.
pub const MIN_IO_IOPS: i32 = 100;
pub const MAX_IO_IOPS: i32 = 64_000;
/// gp3 IOPS bounds (3000 is the included baseline).
pub const MIN_GP3_IOPS: i32 = 3_000;
pub const MAX_GP3_IOPS: i32 = 16_000;
/// EC2's bounds for the IMDSv2 PUT response hop limit.
pub const MAX_HOP_LIMIT: i32 = 64;
/// EC2 allows 50 tags per resource; Capstan keeps ten for its own.
pub const MAX_TAGS: usize = 40;
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;
/// Tag key prefixes people may not use: AWS's own, and Capstan's (the tags it uses to
/// find its instances and that its IAM policies are conditioned on).
pub const RESERVED_TAG_PREFIXES: [&str; 2] = ["aws:", crate::labels::RESERVED_PREFIX];
/// EC2's limit on user data, before base64.
pub const MAX_USER_DATA_BYTES: usize = 16 * 1024;
/// Longest IAM instance profile name.
pub const MAX_INSTANCE_PROFILE_LEN: usize = 128;
/// What a class's `userData` leaves of [`MAX_USER_DATA_BYTES`] for the part Capstan
/// writes with `bootstrap.eks`: the NodeConfig (a certificate authority is ~1.5 KiB in
/// base64, the endpoint, the kubelet's label and taint flags) and the MIME framing.
pub const EKS_BOOTSTRAP_RESERVED_BYTES: usize = 4 * 1024;
/// Longest EKS cluster name.
pub const MAX_EKS_CLUSTER_NAME_LEN: usize = 100;

/// What a number field expects, for errors about numbers a type cannot hold
/// (`spec.replicas: 99999999999 is too large: expected ...`).
pub fn expected_number(path: &str) -> Option<String> {
    let field = path.rsplit('.').next().unwrap_or(path);
    Some(match field {
        "replicas" if path.ends_with("controlPlane.replicas") => {
            format!("an odd number from 1 to {MAX_CONTROL_PLANE_REPLICAS}")
        }
        "replicas" | "min" | "max" => format!("a whole number from 0 to {MAX_REPLICAS}"),
        "sizeGiB" => {
            format!("a whole number of GiB from {MIN_ROOT_VOLUME_GIB} to {MAX_ROOT_VOLUME_GIB}")
        }
        "iops" => format!("a whole number from {MIN_IO_IOPS} to {MAX_IO_IOPS}"),
        "httpPutResponseHopLimit" => format!("a whole number from 1 to {MAX_HOP_LIMIT}"),
        "minReadySeconds" | "nodeStartupTimeoutSeconds" | "timeoutSeconds" => {
            "a whole number of seconds, 0 or more".to_string()
        }
        "maxSurge" | "maxUnavailable" | "maxInFlight" | "unhealthyLessThanOrEqualTo" => {
            "a whole number, 0 or more, or a percentage such as \"25%\"".to_string()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_numbers_cover_the_number_fields() {
        assert_eq!(
            expected_number("spec.controlPlane.replicas").as_deref(),
            Some("an odd number from 1 to 7")
        );
        assert_eq!(
            expected_number("spec.workers[2].replicas").as_deref(),
            Some("a whole number from 0 to 1000")
        );
        assert_eq!(expected_number("spec.version"), None);
    }
}
