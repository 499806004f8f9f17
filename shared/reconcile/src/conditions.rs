//! Condition types Capstan adds to Cluster API's (those live in
//! `capstan_model::meta::condition`). The first two are written by someone other than
//! the Machine's reconciler, which keeps them as it finds them.

/// Set on a Machine's observed item by a node agent or operator that can see the
/// Kubernetes node (see docs/ARCHITECTURE.md, "Reporting node health"). False makes the
/// Machine not Ready; health checks can also match it in `unhealthyMachineConditions`.
pub const NODE_READY: &str = "NodeReady";
/// Set on a Machine from its Node when the Cluster declares access: Ready and no
/// pressure condition (Cluster API v1beta2's NodeHealthy).
pub const NODE_HEALTHY: &str = "NodeHealthy";
/// Set on a Machine by the instance-events handler when EC2 warns that its spot
/// instance will be reclaimed (or recommends rebalancing, if the class opted in).
pub const INTERRUPTED: &str = "Interrupted";
/// Set by a MachineHealthCheck's verdict (Cluster API's name), reported on the check.
pub const HEALTH_CHECK_SUCCEEDED: &str = "HealthCheckSucceeded";
/// Set False on a Machine when the instance it records does not carry its tags
/// (namespace, cluster, machine, uid): Capstan neither terminates nor tags it.
pub const INSTANCE_OWNED: &str = "InstanceOwned";

/// Set on an owner (MachineSet, MachineDeployment, Cluster) when one of its children
/// cannot be read: the child is counted as present and left alone (nothing is launched,
/// deleted or terminated on its account) until it can be read again.
pub const CHILDREN_READABLE: &str = "ChildrenReadable";

/// Reports the unreadable children on `conditions` (or clears the report).
pub fn report_unreadable<'a>(
    conditions: &mut capstan_model::Conditions,
    children: impl IntoIterator<Item = &'a crate::tree::Unreadable>,
    now: capstan_model::Timestamp,
) {
    let lines: Vec<String> = children.into_iter().map(|u| u.describe()).collect();
    if lines.is_empty() {
        conditions.remove(CHILDREN_READABLE);
        return;
    }
    let shown = lines
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    let more = lines.len().saturating_sub(10);
    let tail = if more > 0 {
        format!("; … and {more} more")
    } else {
        String::new()
    };
    conditions.set_false(
        CHILDREN_READABLE,
        "ChildUnreadable",
        format!(
            "{} child object(s) cannot be read and are left alone (counted, never replaced, deleted or terminated) until they can: {shown}{tail}",
            lines.len()
        ),
        now,
    );
}
