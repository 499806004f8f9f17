//! A Machine's deletion timeouts (`deletion.nodeDrainTimeoutSeconds` and the others),
//! wherever they are written: a pool, a template, a Machine.

use super::Errors;
use crate::kinds::MachineDeletion;

/// The longest timeout accepted: 30 days. Longer is "forever" in practice; say so with
/// 0 (no limit) instead of a number that looks like a limit.
pub const MAX_DELETION_TIMEOUT_SECONDS: i32 = 30 * 24 * 3600;

pub(super) fn deletion(v: &mut Errors, path: &str, d: &MachineDeletion) {
    for (field, value) in [
        ("nodeDrainTimeoutSeconds", d.node_drain_timeout_seconds),
        (
            "nodeVolumeDetachTimeoutSeconds",
            d.node_volume_detach_timeout_seconds,
        ),
        (
            "nodeDeletionTimeoutSeconds",
            d.node_deletion_timeout_seconds,
        ),
    ] {
        let Some(n) = value else { continue };
        let at = format!("{path}.{field}");
        if n < 0 {
            v.push(
                at,
                format!("must be 0 or more, found {n}"),
                "set seconds, or 0 for no limit",
            );
        } else if n > MAX_DELETION_TIMEOUT_SECONDS {
            v.push(
                at,
                format!("{n} is more than {MAX_DELETION_TIMEOUT_SECONDS} (30 days)"),
                "set at most 30 days, or 0 for no limit",
            );
        }
    }
}
