//! A MachineClass's `bootstrap`: what Capstan writes into the user data so the instance
//! joins its cluster, and what that asks of the class's own `userData`. That the
//! Cluster can be reached (`spec.access.eks`) is checked across objects, in `cross`.

use super::Errors;
use super::limits::{EKS_BOOTSTRAP_RESERVED_BYTES, MAX_USER_DATA_BYTES};
use crate::kinds::Bootstrap;
use crate::user_data::{cloud_init_content_type, is_mime};

/// `base`: where the launch fields sit (`spec` on a class, `spec.launch` on a Machine).
pub(super) fn bootstrap(
    v: &mut Errors,
    base: &str,
    bootstrap: &Bootstrap,
    user_data: Option<&str>,
) {
    let at = |field: &str| format!("{base}.{field}");
    if bootstrap.eks.is_none() {
        v.push(
            at("bootstrap"),
            "names no bootstrap method",
            "set bootstrap: {eks: {}} for an EKS cluster, or remove bootstrap",
        );
        return;
    }
    let Some(data) = user_data.filter(|d| !d.is_empty()) else {
        return;
    };
    if is_mime(data) {
        v.push(
            at("userData"),
            "is a MIME multi-part document; with bootstrap.eks Capstan writes the MIME document and adds userData as one part",
            "give the script (#!...) or #cloud-config alone; to run several, combine them in one #cloud-config (runcmd, write_files)",
        );
    } else if cloud_init_content_type(data).is_none() {
        v.push(
            at("userData"),
            "starts with neither #! nor #cloud-config (nor another cloud-init marker): as a part of the bootstrap user data, cloud-init would ignore it",
            "start a script with a #! line, e.g. #!/bin/bash, or cloud-config with #cloud-config",
        );
    }
    let room = MAX_USER_DATA_BYTES - EKS_BOOTSTRAP_RESERVED_BYTES;
    if data.len() > room {
        v.push(
            at("userData"),
            format!(
                "is {} bytes; with bootstrap.eks at most {room}: the NodeConfig takes up to {EKS_BOOTSTRAP_RESERVED_BYTES} of EC2's {MAX_USER_DATA_BYTES}-byte limit",
                data.len()
            ),
            "keep user data small: download larger scripts at boot, e.g. from S3",
        );
    }
}
