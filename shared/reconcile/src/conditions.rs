//! Condition types Capstan adds to Cluster API's (those live in
//! `capstan_model::meta::condition`). The first two are written by someone other than
//! the Machine's reconciler, which keeps them as it finds them.

/// Set on a Machine's observed item by a node agent or operator that can see the
/// Kubernetes node (see docs/ARCHITECTURE.md, "Reporting node health"). False makes the
/// Machine not Ready; health checks can also match it in `unhealthyMachineConditions`.
pub const NODE_READY: &str = "NodeReady";
/// Set on a Machine by the instance-events handler when EC2 warns that its spot
/// instance will be reclaimed (or recommends rebalancing, if the class opted in).
pub const INTERRUPTED: &str = "Interrupted";
/// Set by a MachineHealthCheck's verdict (Cluster API's name), reported on the check.
pub const HEALTH_CHECK_SUCCEEDED: &str = "HealthCheckSucceeded";
