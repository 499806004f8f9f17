//! What every kind's reconcile shares: reduce the stored object to a stage, take a new
//! object in, bump its generation when its spec changed, hand the live or deleting
//! object to its kind's decider, and write the observed item only when it changed.

use std::time::Duration;

use capstan_model::meta::{FINALIZER, condition};
use capstan_model::{
    Expect, FieldError, Kind, LaunchRequest, Object, ObjectKey, StoredObject, Timestamp,
};

use crate::plan::{Action, Plan, version_after};
use crate::tree::Tree;
use crate::{cluster, deployment, health_check, machine, machine_class, machine_set, names};

/// What a decision may know besides the snapshot: the time, fresh entropy for names
/// and uids, and the installation whose instances it may touch.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub now: Timestamp,
    pub entropy: u128,
    pub installation: String,
}

/// The stage an object is in; every reconcile matches on this first.
#[derive(Debug)]
pub enum Stage<'a> {
    /// Its desired spec cannot be read: report and stop, touch nothing.
    Invalid(&'a [FieldError]),
    /// Its cluster is paused: report and stop.
    Paused,
    /// Its desired item is gone: tear down, then release the observed item.
    Deleting,
    Live,
}

/// What a kind's decider wants besides the new status.
#[derive(Debug, Default)]
pub struct Decision {
    /// Teardown is complete: remove the observed item.
    pub remove: bool,
    /// Writes to other objects (children), performed after the observed write.
    pub children: Vec<Action>,
    /// One call to EC2, performed last, its outcome recorded on the observed item.
    pub external: Option<External>,
    pub requeue_after: Option<Duration>,
}

impl Decision {
    pub fn requeue(&mut self, after: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |d| d.min(after)));
    }
}

/// The EC2 call a Machine decision asks for.
// One per decision and short-lived: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum External {
    Launch {
        request: LaunchRequest,
        recover: bool,
        /// How to reach the Cluster whose DescribeCluster the user data needs, when
        /// the launch spec has `bootstrap.eks` ([`crate::bootstrap::machine_user_data`]).
        bootstrap: Option<capstan_model::ClusterAccess>,
    },
    Terminate {
        instance_id: String,
    },
    FindInstance,
    /// Puts `tags` on the instance (CreateTags), then records them as applied.
    Tag {
        instance_id: String,
        tags: std::collections::BTreeMap<String, String>,
    },
    /// Reads the instance's Node from the workload cluster (and puts the pool's labels
    /// on it), then records it with [`crate::node::record_node`].
    ObserveNode {
        instance_id: String,
        access: capstan_model::ClusterAccess,
    },
    /// Deletes the Machine's Node from the workload cluster once its instance is gone,
    /// then records that with [`crate::node::record_node_deleted`].
    DeleteNode {
        node: Option<String>,
        instance_id: String,
        access: capstan_model::ClusterAccess,
    },
    /// One bounded pass of the deletion over the Machine's Node (see [`crate::drain`]),
    /// then records it with [`crate::drain::record`].
    DrainNode {
        instance_id: String,
        access: capstan_model::ClusterAccess,
        /// The whole Cluster is being deleted: budgets cannot hold the drain.
        cluster_deleting: bool,
    },
}

pub fn stage<'a>(stored: &StoredObject, tree: &'a Tree) -> Stage<'a> {
    let key = stored.key();
    if stored.is_deleting() {
        Stage::Deleting
    } else if let Some(errors) = tree.spec_errors(key.kind, &key.name) {
        Stage::Invalid(errors)
    } else if tree.cluster_paused() {
        Stage::Paused
    } else {
        Stage::Live
    }
}

/// Decides what to do for the object `key` given the snapshot `tree` (which must hold
/// the object and everything its kind's decider reads).
pub fn decide(key: &ObjectKey, tree: &Tree, ctx: &Ctx) -> Plan {
    let Some(stored) = tree.get(key.kind, &key.name) else {
        // Both items are gone: nothing left to do.
        return Plan::idle();
    };
    let mut object = stored.object.clone();
    let expect = take_in(&mut object, stored, ctx);

    let decision = match stage(stored, tree) {
        Stage::Invalid(errors) => {
            let message = spec_errors_message(errors);
            object.conditions_mut().set_false(
                condition::SPEC_VALID,
                "InvalidSpec",
                message,
                ctx.now,
            );
            Decision::default()
        }
        Stage::Paused => {
            object.conditions_mut().set_true(
                condition::PAUSED,
                "ClusterPaused",
                "the cluster is paused: nothing is reconciled until spec.paused is false",
                ctx.now,
            );
            Decision::default()
        }
        stage @ (Stage::Live | Stage::Deleting) => {
            let conditions = object.conditions_mut();
            conditions.remove(condition::SPEC_VALID);
            conditions.remove(condition::PAUSED);
            let deleting = matches!(stage, Stage::Deleting);
            if deleting {
                object.conditions_mut().set_true(
                    condition::DELETING,
                    "Deleting",
                    "the desired item was deleted; tearing down",
                    ctx.now,
                );
            }
            decide_kind(&mut object, stored, tree, ctx, deleting)
        }
    };

    let mut plan = Plan::idle();
    let mut observed_rv = stored.observed_rv.unwrap_or(0);
    if decision.remove {
        plan.push(Action::DeleteObserved {
            key: key.clone(),
            expect,
        });
    } else if stored.is_new()
        || stored.spec_changed()
        || stored.annotations_stale()
        || object != stored.object
        || needs_fence(&decision)
    {
        *object.observed_generation_mut() = object.metadata().generation;
        plan.push(Action::PutObserved {
            object: object.clone(),
            expect,
        });
        observed_rv = version_after(expect);
    }
    plan.actions.extend(decision.children);
    if let (Some(external), Object::Machine(machine)) = (decision.external, &object) {
        let machine = machine.clone();
        plan.push(match external {
            External::Launch {
                request,
                recover,
                bootstrap,
            } => Action::Launch {
                machine,
                request,
                observed_rv,
                recover,
                bootstrap,
            },
            External::Terminate { instance_id } => Action::Terminate {
                machine,
                instance_id,
                observed_rv,
            },
            External::FindInstance => Action::FindInstance {
                machine,
                observed_rv,
            },
            External::Tag { instance_id, tags } => Action::TagInstance {
                machine,
                instance_id,
                tags,
                observed_rv,
            },
            External::ObserveNode {
                instance_id,
                access,
            } => Action::ObserveNode {
                machine,
                instance_id,
                access,
                observed_rv,
            },
            External::DeleteNode {
                node,
                instance_id,
                access,
            } => Action::DeleteNode {
                machine,
                node,
                instance_id,
                access,
                observed_rv,
            },
            External::DrainNode {
                instance_id,
                access,
                cluster_deleting,
            } => Action::DrainNode {
                machine,
                instance_id,
                access,
                cluster_deleting,
                observed_rv,
            },
        });
    }
    if let Some(after) = decision.requeue_after {
        plan.requeue(after);
    }
    plan
}

/// The most spec errors a `SpecValid` message lists, and its longest length in bytes:
/// the rest are counted, so a status write stays small whatever the spec holds.
pub const MAX_LISTED_ERRORS: usize = 50;
pub const MAX_SPEC_ERRORS_BYTES: usize = 7 * 1024;

/// Every error of an invalid spec, as `capstan validate` would print them, joined by
/// "; ", bounded by [`MAX_LISTED_ERRORS`] and [`MAX_SPEC_ERRORS_BYTES`], then
/// "… and N more".
pub fn spec_errors_message(errors: &[FieldError]) -> String {
    let mut message = String::new();
    let mut listed = 0;
    for e in errors.iter().take(MAX_LISTED_ERRORS) {
        let line = e.to_string();
        let sep = if listed == 0 { 0 } else { 2 };
        if message.len() + sep + line.len() > MAX_SPEC_ERRORS_BYTES {
            if listed == 0 {
                message = capstan_model::meta::truncate_bytes(&line, MAX_SPEC_ERRORS_BYTES);
                listed = 1;
            }
            break;
        }
        if sep > 0 {
            message.push_str("; ");
        }
        message.push_str(&line);
        listed += 1;
    }
    let more = errors.len() - listed;
    if more > 0 {
        message.push_str(&format!("; … and {more} more"));
    }
    message
}

/// Whether a plan must write the object's observed item even though its status did not
/// change: the write, conditional on the version the decision read, is the **fence**
/// that makes the plan's other effects happen at most once per version.
///
/// Lambda may run two invocations of one reconciler on the same object from the same
/// read. Without a fence both would create children (two MachineSets' worth of
/// Machines) or launch. With it, the driver performs the observed write and the
/// children's writes in one transaction (`Store::transact`), so the second invocation's
/// transaction fails as a whole, and it reads again and sees the first one's children.
/// A launch follows the Machine's own fenced write (Provisioning) for the same reason.
/// Termination, tagging and looking an instance up are safe to repeat and record their
/// outcome conditionally, so they need no fence (and a fence there would wake the
/// Machine's reconciler again through the stream on every pass).
fn needs_fence(decision: &Decision) -> bool {
    !decision.children.is_empty() || matches!(decision.external, Some(External::Launch { .. }))
}

/// Fills in what the control plane owns: a new object gets its uid, generation 1,
/// creation time and finalizer (whether a person used the CLI or a raw PutItem); a
/// changed spec gets the next generation; a deleting object its deletion time.
/// Returns the condition to write the observed item under.
fn take_in(object: &mut Object, stored: &StoredObject, ctx: &Ctx) -> Expect {
    let meta = object.metadata_mut();
    let expect = match stored.observed_rv {
        None => {
            meta.uid = Some(names::uid(ctx.entropy));
            meta.generation = Some(1);
            meta.creation_timestamp = Some(ctx.now);
            Expect::Absent
        }
        Some(rv) => {
            if stored.spec_changed() {
                meta.generation = Some(meta.generation.unwrap_or(0) + 1);
            }
            Expect::Version(rv)
        }
    };
    if !meta.finalizers.iter().any(|f| f == FINALIZER) {
        meta.finalizers.push(FINALIZER.to_string());
    }
    if stored.is_deleting() && meta.deletion_timestamp.is_none() {
        meta.deletion_timestamp = Some(ctx.now);
    }
    expect
}

fn decide_kind(
    object: &mut Object,
    stored: &StoredObject,
    tree: &Tree,
    ctx: &Ctx,
    deleting: bool,
) -> Decision {
    match object {
        Object::Cluster(c) => cluster::decide(c, tree, ctx, deleting),
        Object::MachineClass(c) => machine_class::decide(c, ctx, deleting),
        Object::MachineDeployment(d) => deployment::decide(d, tree, ctx, deleting),
        Object::MachineSet(s) => machine_set::decide(s, tree, ctx, deleting),
        Object::Machine(m) => {
            let cluster_deleting = tree
                .of_kind(Kind::Cluster)
                .next()
                .is_some_and(|c| c.is_deleting());
            machine::decide(m, tree.cluster_access(), ctx, deleting, cluster_deleting)
        }
        Object::MachineHealthCheck(h) => health_check::decide(h, stored, tree, ctx, deleting),
    }
}

/// The owner reference a parent puts on a child it creates.
pub fn owner_ref(kind: Kind, meta: &capstan_model::ObjectMeta) -> capstan_model::OwnerReference {
    capstan_model::OwnerReference {
        kind,
        name: meta.name.clone(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: true,
    }
}

/// Deletes the desired item of every child still wanted alive; true while any child
/// (wanted or being torn down) remains. Shared by every kind that cascades.
pub fn cascade<'a>(
    children: impl Iterator<Item = &'a StoredObject>,
    actions: &mut Vec<Action>,
) -> bool {
    let mut remaining = false;
    for child in children {
        remaining = true;
        if let Some(rv) = child.desired_rv {
            actions.push(Action::DeleteDesired {
                key: child.key(),
                expect: Expect::Version(rv),
            });
        }
    }
    remaining
}
