//! What a decision hands back: the actions to take, in order, and when to look again.

use std::time::Duration;

use capstan_model::{Expect, LaunchRequest, Machine, Object, ObjectKey};

/// One side effect for the driver to perform. Writes carry their condition; the
/// item's new version is `1` after `Expect::Absent` and `n + 1` after `Expect::Version(n)`.
// Plans are short lists that live for one reconcile: boxing the objects would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Writes an object's desired item (a parent creating or updating a child, or a
    /// cluster deleting what it owns).
    PutDesired { object: Object, expect: Expect },
    /// Deletes an object's desired item: the object's own reconciler then tears it down.
    DeleteDesired { key: ObjectKey, expect: Expect },
    /// Writes an object's observed item (metadata the control plane owns, and status).
    PutObserved { object: Object, expect: Expect },
    /// Removes an object's observed item: the object is gone (its finalizer is released).
    DeleteObserved { key: ObjectKey, expect: Expect },
    /// Launches the Machine's instance, then records the outcome with
    /// [`crate::machine::after_launch`] on the observed item at `observed_rv`.
    /// With `recover`, first looks for an instance already launched for this Machine
    /// (by its machine-uid tag) and records that one instead of launching.
    /// With `bootstrap`, the user data is rendered first, from the EKS cluster that
    /// access names ([`crate::bootstrap::machine_user_data`]).
    Launch {
        machine: Machine,
        request: LaunchRequest,
        observed_rv: u64,
        recover: bool,
        bootstrap: Option<capstan_model::ClusterAccess>,
    },
    /// Terminates the Machine's instance, then records the state EC2 returns with
    /// [`crate::machine::record_instance_state`] at `observed_rv`.
    Terminate {
        machine: Machine,
        instance_id: String,
        observed_rv: u64,
    },
    /// Looks for an instance launched for this Machine whose id was never recorded,
    /// then records what was found with [`crate::machine::record_found`] at `observed_rv`.
    FindInstance { machine: Machine, observed_rv: u64 },
    /// Puts `tags` on the Machine's instance (CreateTags, guarded by the installation
    /// tag like a termination), then records them with
    /// [`crate::machine::after_tagging`] at `observed_rv`.
    TagInstance {
        machine: Machine,
        instance_id: String,
        tags: std::collections::BTreeMap<String, String>,
        observed_rv: u64,
    },
    /// Reads the Node of the Machine's instance from the workload cluster (putting the
    /// pool's labels on it, [`crate::node::label_patch`]), then records what it found
    /// with [`crate::node::record_node`] at `observed_rv`.
    ObserveNode {
        machine: Machine,
        instance_id: String,
        access: capstan_model::ClusterAccess,
        observed_rv: u64,
    },
    /// Deletes the Machine's Node (its instance is gone), then records that with
    /// [`crate::node::record_node_deleted`] at `observed_rv`.
    DeleteNode {
        machine: Machine,
        /// The recorded Node; None: the one whose providerID names `instance_id`, if any.
        node: Option<String>,
        instance_id: String,
        access: capstan_model::ClusterAccess,
        observed_rv: u64,
    },
    /// One bounded pass over the deleting Machine's Node (cordon, evictions, or a look
    /// at its volumes), recorded with [`crate::drain::record`] at `observed_rv`.
    DrainNode {
        machine: Machine,
        instance_id: String,
        access: capstan_model::ClusterAccess,
        /// The whole Cluster is being deleted: budgets cannot hold the drain.
        cluster_deleting: bool,
        observed_rv: u64,
    },
}

/// A decision: actions in order, and when to look again even if nothing changes.
#[must_use]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub requeue_after: Option<Duration>,
}

impl Plan {
    /// Nothing to do; wait for the next event.
    pub fn idle() -> Plan {
        Plan::default()
    }

    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Asks to look again after `after`; when asked twice, the earlier wins.
    pub fn requeue(&mut self, after: Duration) {
        self.requeue_after = Some(match self.requeue_after {
            Some(current) => current.min(after),
            None => after,
        });
    }

    pub fn is_idle(&self) -> bool {
        self.actions.is_empty() && self.requeue_after.is_none()
    }
}

/// The version an item has after a write made under `expect`.
pub fn version_after(expect: Expect) -> u64 {
    match expect {
        Expect::Absent | Expect::Any => 1,
        Expect::Version(n) => n + 1,
    }
}
