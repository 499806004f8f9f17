//! Where a Machine gets its instance: launch exactly one, record its id, follow its
//! state into the phase, terminate it when the Machine is deleted.
//!
//! # Expected flow
//! Pending → (status written: Provisioning, launch requested) → RunInstances with
//! ClientToken = uid → (id recorded: Provisioned) → EC2 reports running → Running.
//! Deleting: with the Cluster's `spec.access`, the Node is taken out first (hooks,
//! cordon, evictions, volumes: [`crate::drain`]); then TerminateInstances → EC2 reports
//! terminated → the Node is deleted → observed item removed.
//!
//! # Guarantees
//! - At most one instance per Machine: the launch is recorded as requested *before*
//!   RunInstances is called, so a crash in between is seen on the next pass, which
//!   first looks the instance up by its machine-uid tag and only then launches again,
//!   with the same ClientToken.
//! - Launched in a batch ([`crate::launch_batch`]), the Machine also records the batch's
//!   token and its launch index before the call, and recovery looks the instance up by
//!   the batch tag and that index instead of the machine-uid tag.
//! - The observed item (the finalizer) is removed only once the instance is terminated
//!   or provably never existed.
//!
//! # Assumptions
//! - Instance states arrive from EC2 events and the drift sweep, recorded on the
//!   observed item by [`record_instance_state`]; this decider never asks EC2 for them.
//!
//! # Errors
//! - An unfulfillable offering (InsufficientInstanceCapacity, …) is remembered on the
//!   status for [`OFFERING_UNAVAILABLE_FOR`] and the next offering (the class's next
//!   instance type, then its next subnet) is launched at once; when every offering
//!   failed, the Machine backs off, saying why on InfrastructureReady.
//! - A launch error a retry may fix (throttling, 5xx) backs off and retries, with the
//!   reason on the InfrastructureReady condition. A throttled launch
//!   (`RequestLimitExceeded`: the account's RunInstances bucket is empty) backs off
//!   with jitter drawn from the Machine's uid, so Machines throttled together come
//!   back spread out instead of emptying the bucket again at one instant.
//! - One it cannot fix (bad image, bad subnet, unauthorized) marks the Machine Failed.

use std::time::Duration;

use capstan_model::meta::condition;
use capstan_model::{
    ClusterAccess, ConditionStatus, InstanceState, Machine, MachineAddress, MachinePhase,
    Timestamp, UnavailableOffering,
};

use crate::conditions::{INTERRUPTED, NODE_READY};
use crate::launch::{Offering, additional_tags, launch_request, offerings, retag_tags};
use crate::lifecycle::{Ctx, Decision, External};

/// How long after a launch request an instance may still be missing from
/// DescribeInstances (EC2 is eventually consistent) before we conclude none exists.
pub const DESCRIBE_GRACE: Duration = Duration::from_secs(120);
/// How often to retry a termination that EC2 has not yet reported complete.
pub const TERMINATE_RECHECK: Duration = Duration::from_secs(60);
/// First and longest wait between failed launches.
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The Machine reduced to what decides its next step.
#[derive(Debug, PartialEq)]
enum Situation {
    NotLaunched {
        retry_after: Option<Timestamp>,
    },
    LaunchUnrecorded,
    Launched {
        instance_id: String,
        state: InstanceState,
    },
    Failed,
}

fn situation(m: &Machine) -> Situation {
    let s = &m.status;
    match (&s.instance_id, s.phase) {
        (Some(id), _) => Situation::Launched {
            instance_id: id.clone(),
            state: s.instance_state.unwrap_or(InstanceState::Pending),
        },
        (None, MachinePhase::Failed) => Situation::Failed,
        (None, _) if s.launch_requested_at.is_some() => Situation::LaunchUnrecorded,
        (None, _) => Situation::NotLaunched {
            retry_after: s.retry_after,
        },
    }
}

/// `access`: how the Cluster's API server is reached, when declared; the Machine then
/// follows its Node too ([`crate::node`]). `cluster_deleting`: the whole Cluster goes,
/// so a drain is not held by budgets no Node is left to satisfy.
pub fn decide(
    m: &mut Machine,
    access: Option<&ClusterAccess>,
    ctx: &Ctx,
    deleting: bool,
    cluster_deleting: bool,
) -> Decision {
    let mut d = Decision::default();
    let now = ctx.now;
    if deleting {
        m.status.phase = match m.status.phase {
            MachinePhase::Failed => MachinePhase::Failed,
            _ => MachinePhase::Deleting,
        };
        set_not_ready(m, "Deleting", "the Machine is being deleted", now);
        match situation(m) {
            Situation::Launched { instance_id, state } => {
                // With access, the Node is taken out of its cluster first (hooks,
                // cordon, evictions, volumes): see `crate::drain`. An instance already
                // going (terminated behind our back, or by an earlier pass) is not.
                if let Some(access) = access
                    && state.is_live()
                    && state != InstanceState::ShuttingDown
                {
                    match crate::drain::before_terminate(m, now) {
                        crate::drain::Gate::Hold(after) => {
                            d.requeue(after);
                            return d;
                        }
                        crate::drain::Gate::Workload => {
                            d.external = Some(External::DrainNode {
                                instance_id,
                                access: access.clone(),
                                cluster_deleting,
                            });
                            d.requeue(crate::drain::DRAIN_RECHECK);
                            return d;
                        }
                        crate::drain::Gate::Terminate => {}
                    }
                } else {
                    crate::drain::report(m, now);
                }
                if state.is_final() {
                    // The instance is gone: its Node goes too, so no NotReady ghost is
                    // left in the cluster (bounded by nodeDeletionTimeoutSeconds).
                    // A Node registered but never recorded is found by providerID.
                    if let Some(access) = access
                        && !crate::node::node_deleted(m)
                        && !node_deletion_timed_out(m, now)
                    {
                        crate::drain::report(m, now);
                        d.external = Some(External::DeleteNode {
                            node: m.status.node_ref.as_ref().map(|r| r.name.clone()),
                            instance_id,
                            access: access.clone(),
                        });
                        d.requeue(crate::node::NODE_WAIT_RECHECK);
                        return d;
                    }
                    m.status.phase = MachinePhase::Deleted;
                    d.remove = true;
                } else {
                    if state != InstanceState::ShuttingDown {
                        d.external = Some(External::Terminate { instance_id });
                    }
                    d.requeue(TERMINATE_RECHECK);
                }
            }
            Situation::LaunchUnrecorded => {
                // A launch may have happened: find it before letting go of the Machine.
                d.external = Some(External::FindInstance);
                d.requeue(DESCRIBE_GRACE / 4);
            }
            Situation::NotLaunched { .. } | Situation::Failed => d.remove = true,
        }
        return d;
    }

    match situation(m) {
        Situation::NotLaunched { retry_after } => match retry_after {
            Some(t) if t > now => d.requeue(until(now, t)),
            _ if m.spec.launch().is_none() => {
                // Its launchRef does not resolve: the class was edited since the
                // Machine was made (its MachineSet's rollout replaces it) or is not in
                // this cluster. Never launched from a spec it was not made with;
                // looked at again after the longest backoff.
                let message = format!(
                    "MachineClass {:?} is not in this cluster or no longer resolves to the launch spec this Machine was made with (launchRef {}): it is not launched; a rollout replaces it, or write spec.launch out",
                    m.spec.machine_class,
                    m.spec
                        .launch_ref
                        .as_ref()
                        .map(|r| r.hash.as_str())
                        .unwrap_or_default()
                );
                set_not_ready(m, "LaunchSpecUnresolved", message, now);
                d.requeue(BACKOFF_MAX);
            }
            _ => {
                let Some(offering) = next_offering(m, now) else {
                    let message = "the launch spec names no instance type: fix the MachineClass";
                    fail(m, "NoInstanceType", message, now);
                    return d;
                };
                let bootstrap = match bootstrap_access(m, access) {
                    Ok(bootstrap) => bootstrap,
                    Err(message) => {
                        // Nothing to launch with yet; the fix is on the Cluster, whose
                        // edit wakes this Machine, so the wait is only a backstop.
                        set_not_ready(m, "BootstrapNeedsAccess", message, now);
                        d.requeue(BACKOFF_MAX);
                        return d;
                    }
                };
                let st = &mut m.status;
                st.phase = MachinePhase::Provisioning;
                st.launch_requested_at = Some(now);
                st.retry_after = None;
                // A launch alone; a batch ([`crate::launch_batch::join`]) sets its own.
                st.launch_batch = None;
                // Recorded before the call, so a pass that finds the launch unrecorded
                // repeats exactly this request (same token, same parameters).
                st.instance_type = Some(offering.instance_type.clone());
                st.failure_domain = Some(offering.subnet.clone());
                st.unavailable_offerings
                    .retain(|o| o.until.is_some_and(|t| t > now));
                let message = format!(
                    "launching {} in {}",
                    offering.instance_type, offering.subnet
                );
                set_not_ready(m, "InstanceLaunching", message, now);
                d.external = Some(External::Launch {
                    request: launch_request(m, &offering, &ctx.installation),
                    recover: false,
                    bootstrap,
                });
            }
        },
        Situation::LaunchUnrecorded => {
            // The last pass asked for a launch and never recorded its outcome (a crash or
            // a timeout). Look for the instance by tag; only once DescribeInstances has had
            // its grace since the latest call and shows nothing does `record_found` let the
            // next pass launch again. Never launch blind: where the ClientToken is not
            // honoured (past its window, or moto), that would make a second instance.
            d.external = Some(External::FindInstance);
            d.requeue(DESCRIBE_GRACE / 4);
        }
        Situation::Launched { instance_id, state } => {
            follow_instance(m, &instance_id, state, now);
            let following_node = access.is_some()
                && state == InstanceState::Running
                && m.status.phase != MachinePhase::Failed;
            if following_node {
                crate::node::apply_node_to_phase(m, now);
            }
            // Tags of the Cluster and pool changed: apply them in place (CreateTags).
            let want = additional_tags(m);
            if state.is_live()
                && m.status.phase != MachinePhase::Failed
                && m.status.applied_tags.as_ref() != Some(&want)
            {
                d.external = Some(External::Tag {
                    instance_id,
                    tags: retag_tags(m, &ctx.installation),
                });
            } else if following_node && let Some(access) = access {
                // Polled: a Lambda has no watch. Sooner while the Node is missing or
                // not Ready, so health checks and rollouts see it promptly.
                d.external = Some(External::ObserveNode {
                    instance_id,
                    access: access.clone(),
                });
                let healthy = m.status.conditions.is_true(crate::conditions::NODE_HEALTHY);
                d.requeue(if healthy {
                    crate::node::NODE_RECHECK
                } else {
                    crate::node::NODE_WAIT_RECHECK
                });
            }
        }
        Situation::Failed => {}
    }
    d
}

/// Whether Capstan has tried long enough to delete a gone instance's Node to let the
/// Machine go anyway: `spec.deletion.nodeDeletionTimeoutSeconds` (unset:
/// [`capstan_model::DEFAULT_NODE_DELETION_TIMEOUT_SECONDS`]; 0: never) after the first
/// pass that tried, recorded in `status.deletion.nodeDeletionStartTime` (which this
/// sets). Not from when EC2 says the instance went: a termination learnt late (an event
/// lost, repaired by the sweep minutes later) would otherwise leave no time at all,
/// and the Node would stay behind.
fn node_deletion_timed_out(m: &mut Machine, now: Timestamp) -> bool {
    let d = m
        .status
        .deletion
        .get_or_insert_with(|| capstan_model::DeletionStatus {
            step: capstan_model::DeletionStep::Terminating,
            step_since: Some(now),
            ..Default::default()
        });
    if d.step < capstan_model::DeletionStep::Terminating {
        // The instance went before the drain finished (interrupted, or terminated
        // from outside): nothing left to drain.
        d.step = capstan_model::DeletionStep::Terminating;
        d.step_since = Some(now);
        d.message.clear();
    }
    let started = *d.node_deletion_start_time.get_or_insert(now);
    let Some(limit) = m.spec.deletion.node_deletion_timeout() else {
        return false;
    };
    started
        .checked_add(limit)
        .is_ok_and(|deadline| now >= deadline)
}

/// How long an offering that failed with an unfulfillable code is skipped (Karpenter's
/// unavailable-offerings cache keeps one for 3 minutes).
pub const OFFERING_UNAVAILABLE_FOR: Duration = Duration::from_secs(180);

/// The offering to launch in now: the first, in the Machine's order, not remembered
/// as unavailable; when every one is, the one whose memory expires first (a retry
/// after the backoff probes it again). None only when the spec names no instance type.
pub fn next_offering(m: &Machine, now: Timestamp) -> Option<Offering> {
    let all = offerings(m);
    let blocked_until = |o: &Offering| {
        m.status
            .unavailable_offerings
            .iter()
            .filter(|u| u.instance_type == o.instance_type && u.subnet == o.subnet)
            .filter_map(|u| u.until)
            .filter(|t| *t > now)
            .max()
    };
    all.iter()
        .find(|o| blocked_until(o).is_none())
        .or_else(|| all.iter().min_by_key(|o| blocked_until(o)))
        .cloned()
}

fn fail(m: &mut Machine, reason: &str, message: &str, now: Timestamp) {
    let st = &mut m.status;
    st.phase = MachinePhase::Failed;
    st.launch_requested_at = None;
    st.failure_reason = Some(reason.to_string());
    st.failure_message = Some(message.to_string());
    set_not_ready(m, reason, message, now);
}

/// Phase and conditions from the instance's last reported state.
fn follow_instance(m: &mut Machine, instance_id: &str, state: InstanceState, now: Timestamp) {
    let st = &mut m.status;
    match state {
        InstanceState::Pending => {
            st.phase = MachinePhase::Provisioned;
            set_not_ready(
                m,
                "InstanceProvisioning",
                format!("instance {instance_id} is pending"),
                now,
            );
        }
        InstanceState::Running => {
            st.phase = MachinePhase::Running;
            if st.running_since.is_none() {
                st.running_since = Some(now);
            }
            let msg = format!("instance {instance_id} is running");
            let c = &mut m.status.conditions;
            c.set_true(
                condition::INFRASTRUCTURE_READY,
                "InstanceRunning",
                msg.clone(),
                now,
            );
            // A node agent or operator may report the node's own readiness as NodeReady
            // (see docs/ARCHITECTURE.md); when it says False, the Machine is not Ready.
            match c
                .get(NODE_READY)
                .filter(|n| n.status == ConditionStatus::False)
            {
                Some(node) => {
                    let why = format!(
                        "instance {instance_id} is running but its node is not ready: {}",
                        node.message
                    );
                    c.set_false(condition::READY, "NodeNotReady", why.clone(), now);
                    c.set_false(condition::AVAILABLE, "NodeNotReady", why, now);
                }
                None => {
                    c.set_true(condition::READY, "InstanceRunning", msg.clone(), now);
                    c.set_true(condition::AVAILABLE, "InstanceRunning", msg, now);
                }
            }
        }
        InstanceState::Stopping
        | InstanceState::Stopped
        | InstanceState::ShuttingDown
        | InstanceState::Terminated => {
            // Not asked for by us (the Machine is not being deleted): behind our back.
            let reason = match state {
                InstanceState::Stopping | InstanceState::Stopped => "InstanceStopped",
                _ => "InstanceTerminated",
            };
            let message = format!(
                "instance {instance_id} is {} but the Machine was not deleted: it was changed outside Capstan",
                state.as_str()
            );
            st.phase = MachinePhase::Failed;
            st.failure_reason = Some(reason.to_string());
            st.failure_message = Some(message.clone());
            set_not_ready(m, reason, message, now);
        }
    }
}

fn set_not_ready(m: &mut Machine, reason: &str, message: impl Into<String>, now: Timestamp) {
    let message = message.into();
    let c = &mut m.status.conditions;
    c.set_false(
        condition::INFRASTRUCTURE_READY,
        reason,
        message.clone(),
        now,
    );
    c.set_false(condition::READY, reason, message.clone(), now);
    c.set_false(condition::AVAILABLE, reason, message, now);
}

fn until(now: Timestamp, t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// An instance as the driver reports it back (from RunInstances or DescribeInstances).
#[derive(Clone, Debug, PartialEq)]
pub struct FoundInstance {
    pub instance_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub availability_zone: String,
    pub private_ip: Option<String>,
    pub state: InstanceState,
}

/// How a RunInstances call ended, classified by the driver.
#[derive(Clone, Debug, PartialEq)]
pub enum LaunchOutcome {
    Launched(FoundInstance),
    /// Throttling, a 5xx, or capacity: another try later may work.
    Retryable {
        code: String,
        message: String,
    },
    /// Throttled (RequestLimitExceeded): EC2's bucket for the account is empty; nothing
    /// was launched. Retried after a jittered backoff ([`throttled_backoff`]).
    Throttled {
        code: String,
        message: String,
    },
    /// EC2 cannot fulfil this offering now (InsufficientInstanceCapacity and the other
    /// unfulfillable codes): another instance type or subnet may work.
    Unfulfillable {
        code: String,
        message: String,
        offering: Offering,
    },
    /// The call may or may not have taken effect (a 5xx, a timeout): the launch stays
    /// recorded as requested (at this latest call), and the next pass looks for the
    /// instance by tag before it would launch again.
    Unknown {
        code: String,
        message: String,
    },
    /// The request is wrong: retrying will not help.
    Final {
        code: String,
        message: String,
    },
    /// The Machine was a member of a batched launch ([`crate::launch_batch`]) that
    /// started fewer instances than it had members, none at this Machine's index: it
    /// launches again at once, in a later batch or alone.
    Unassigned {
        message: String,
    },
}

/// The access a launch renders its bootstrap user data through: None without
/// `bootstrap`; an error, saying what to fix, when the Cluster gives no EKS access.
fn bootstrap_access(
    m: &Machine,
    access: Option<&ClusterAccess>,
) -> Result<Option<ClusterAccess>, String> {
    if m.spec
        .launch()
        .and_then(|l| l.bootstrap.as_ref())
        .and_then(|b| b.eks.as_ref())
        .is_none()
    {
        return Ok(None);
    }
    match access {
        Some(a) if a.eks.is_some() && a.kubeconfig.is_none() => Ok(Some(a.clone())),
        _ => Err(format!(
            "the launch spec has bootstrap.eks, which reads the EKS cluster's endpoint and certificate authority with DescribeCluster, but Cluster {:?} has no spec.access.eks: set spec.access.eks.clusterName on the Cluster",
            m.spec.cluster_name
        )),
    }
}

/// The Machine after its launch call: id recorded, or backoff, or Failed.
pub fn after_launch(m: &Machine, outcome: LaunchOutcome, now: Timestamp) -> Machine {
    let mut m = m.clone();
    let unknown = matches!(outcome, LaunchOutcome::Unknown { .. });
    let launched = matches!(outcome, LaunchOutcome::Launched(_));
    // A batch's members draw their throttling jitter from its token, so they come
    // back together and launch in one call again; and start from a shorter wait (one
    // call for many Machines: the request bucket refills 2 a second).
    let (jitter_seed, throttle_base) = match &m.status.launch_batch {
        Some(batch) => (batch.token.clone(), BATCH_THROTTLE_BASE),
        None => (
            m.metadata.uid.clone().unwrap_or(m.metadata.name.clone()),
            BACKOFF_BASE,
        ),
    };
    let batch = m.status.launch_batch.take();
    if launched || unknown {
        // The instance is (or may be) the batch's: its record proves it.
        m.status.launch_batch = batch;
    }
    match outcome {
        LaunchOutcome::Launched(found) => record_instance(&mut m, found, now),
        LaunchOutcome::Retryable { code, message } => {
            let wait = backoff(m.status.launch_attempts.saturating_add(1));
            retry_later(&mut m, &code, &message, wait, now);
        }
        LaunchOutcome::Throttled { code, message } => {
            let wait = throttled_backoff_from(
                throttle_base,
                m.status.launch_attempts.saturating_add(1),
                &jitter_seed,
            );
            retry_later(&mut m, &code, &message, wait, now);
        }
        LaunchOutcome::Unassigned { message } => {
            // Not a failure: EC2 started fewer instances than the batch had members.
            let st = &mut m.status;
            st.phase = MachinePhase::Pending;
            st.launch_requested_at = None;
            st.launch_batch = None;
            st.retry_after = None;
            set_not_ready(&mut m, "LaunchUnfulfilled", message, now);
        }
        LaunchOutcome::Unfulfillable {
            code,
            message,
            offering,
        } => {
            let st = &mut m.status;
            st.phase = MachinePhase::Pending;
            st.launch_requested_at = None;
            st.unavailable_offerings
                .retain(|u| u.until.is_some_and(|t| t > now));
            st.unavailable_offerings.retain(|u| {
                u.instance_type != offering.instance_type || u.subnet != offering.subnet
            });
            st.unavailable_offerings.push(UnavailableOffering {
                instance_type: offering.instance_type.clone(),
                subnet: offering.subnet.clone(),
                code: code.clone(),
                until: now.checked_add(OFFERING_UNAVAILABLE_FOR).ok(),
            });
            let failed = format!(
                "{} in {} is unavailable ({code}: {message})",
                offering.instance_type, offering.subnet
            );
            match next_offering(&m, now).filter(|next| {
                !m.status
                    .unavailable_offerings
                    .iter()
                    .any(|u| u.instance_type == next.instance_type && u.subnet == next.subnet)
            }) {
                Some(next) => {
                    // Fall back at once: the next pass launches `next`.
                    m.status.retry_after = None;
                    let text =
                        format!("{failed}; trying {} in {}", next.instance_type, next.subnet);
                    set_not_ready(&mut m, &code, text, now);
                }
                None => {
                    let st = &mut m.status;
                    st.launch_attempts += 1;
                    let wait = backoff(st.launch_attempts);
                    st.retry_after = now.checked_add(wait).ok();
                    let text = format!(
                        "{failed}; every instance type in every subnet of the class is unavailable: retrying in {}s",
                        wait.as_secs()
                    );
                    set_not_ready(&mut m, "InsufficientCapacity", text, now);
                }
            }
        }
        LaunchOutcome::Unknown { code, message } => {
            m.status.phase = MachinePhase::Provisioning;
            m.status.launch_requested_at = Some(now);
            let text = format!(
                "the launch may or may not have happened ({code}: {message}); looking for the instance before launching again"
            );
            set_not_ready(&mut m, &code, text, now);
        }
        LaunchOutcome::Final { code, message } => {
            let text = format!("launch failed and will not be retried: {message}");
            fail(&mut m, &code, &message, now);
            set_not_ready(&mut m, &code, text, now);
        }
    }
    m
}

/// The Machine marked as not owning `instance_id`, which EC2 does not show carrying
/// its tags (see [`crate::launch::ownership_tags`]), or None when it already says so.
/// Only the `InstanceOwned` condition changes, which no decision sets, so the mark is
/// written once and does not make the Machine's reconciler run again and again.
pub fn record_not_owned(m: &Machine, instance_id: &str, now: Timestamp) -> Option<Machine> {
    let message = format!(
        "instance {instance_id} does not carry this Machine's tags (namespace, cluster, machine and machine uid) in EC2: Capstan neither terminates nor tags it"
    );
    let current = m.status.conditions.get(crate::conditions::INSTANCE_OWNED);
    if current.is_some_and(|c| c.status == ConditionStatus::False && c.message == message) {
        return None;
    }
    let mut m = m.clone();
    m.status.conditions.set_false(
        crate::conditions::INSTANCE_OWNED,
        "InstanceNotOwned",
        message,
        now,
    );
    Some(m)
}

/// The Machine after CreateTags put `spec.additionalTags` on its instance.
pub fn after_tagging(m: &Machine) -> Machine {
    let mut m = m.clone();
    m.status.applied_tags = Some(additional_tags(&m));
    m
}

/// What EC2 warned about an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interruption {
    /// "EC2 Spot Instance Interruption Warning": the instance goes in two minutes.
    SpotInterruption,
    /// "EC2 Instance Rebalance Recommendation": it is at elevated risk of interruption.
    RebalanceRecommendation,
}

impl Interruption {
    pub fn reason(self) -> &'static str {
        match self {
            Interruption::SpotInterruption => "SpotInterruption",
            Interruption::RebalanceRecommendation => "RebalanceRecommendation",
        }
    }
}

/// The Machine marked `Interrupted` after EC2 warned about its instance at `at`, or
/// None when the warning changes nothing: another instance, already marked, the
/// instance already gone, or a rebalance recommendation the class did not opt into.
/// The owning MachineSet reads the mark: it brings up a replacement first and deletes
/// this Machine once the replacement is Ready or the instance is gone.
pub fn record_interruption(
    m: &Machine,
    instance_id: &str,
    kind: Interruption,
    at: Timestamp,
) -> Option<Machine> {
    let st = &m.status;
    if st.instance_id.as_deref() != Some(instance_id)
        || st.conditions.is_true(INTERRUPTED)
        || st.instance_state.is_some_and(InstanceState::is_final)
    {
        return None;
    }
    if kind == Interruption::RebalanceRecommendation
        && !m
            .spec
            .launch()
            .is_some_and(|l| l.market.replace_on_rebalance_recommendation)
    {
        return None;
    }
    let mut m = m.clone();
    let message = match kind {
        Interruption::SpotInterruption => {
            format!("EC2 will reclaim spot instance {instance_id} two minutes after {at}")
        }
        Interruption::RebalanceRecommendation => {
            format!("EC2 recommends rebalancing spot instance {instance_id} (at {at})")
        }
    };
    m.status
        .conditions
        .set_true(INTERRUPTED, kind.reason(), message, at);
    Some(m)
}

/// The Machine after looking for an unrecorded launch: the instance if one was found;
/// if none and the grace for EC2's eventual consistency has passed, nothing was launched.
pub fn record_found(m: &Machine, found: Option<FoundInstance>, now: Timestamp) -> Machine {
    let mut m = m.clone();
    match found {
        Some(found) => record_instance(&mut m, found, now),
        None => {
            let requested = m.status.launch_requested_at.unwrap_or(now);
            let grace_over = requested
                .checked_add(DESCRIBE_GRACE)
                .map(|t| t <= now)
                .unwrap_or(true);
            if grace_over {
                m.status.launch_requested_at = None;
                m.status.launch_batch = None;
            }
        }
    }
    m
}

fn record_instance(m: &mut Machine, found: FoundInstance, now: Timestamp) {
    // Launched with the tags of this spec (the request carried them).
    let tags = additional_tags(m);
    let st = &mut m.status;
    st.failure_domain = Some(found.subnet_id.clone());
    st.applied_tags = Some(tags);
    st.unavailable_offerings.clear();
    st.provider_id = Some(format!(
        "aws:///{}/{}",
        found.availability_zone, found.instance_id
    ));
    st.instance_id = Some(found.instance_id);
    st.instance_type = Some(found.instance_type);
    st.instance_state = Some(found.state);
    st.instance_state_time = Some(now);
    st.launch_attempts = 0;
    st.retry_after = None;
    st.addresses = found
        .private_ip
        .map(|ip| {
            vec![MachineAddress {
                address_type: "InternalIP".to_string(),
                address: ip,
            }]
        })
        .unwrap_or_default();
    if st.phase != MachinePhase::Deleting {
        st.phase = MachinePhase::Provisioned;
    }
}

/// The Machine after EC2 reported `state` at `at`, or None when the report changes
/// nothing: it is older than the last one recorded, or the instance is already
/// terminated (final), or it is for another instance.
pub fn record_instance_state(
    m: &Machine,
    instance_id: &str,
    state: InstanceState,
    at: Timestamp,
) -> Option<Machine> {
    let st = &m.status;
    if st.instance_id.as_deref() != Some(instance_id) {
        return None;
    }
    if st.instance_state.is_some_and(InstanceState::is_final) {
        return None;
    }
    if st.instance_state == Some(state) {
        return None;
    }
    // EventBridge stamps events to the whole second, while a launch records its state
    // to the millisecond: compare seconds, and within one second only move forward
    // through the lifecycle (pending → running → … → terminated).
    if let Some(recorded) = st.instance_state_time {
        let (then, report) = (recorded.as_second(), at.as_second());
        let forward = st.instance_state.is_none_or(|current| state > current);
        if report < then || (report == then && !forward) {
            return None;
        }
    }
    let mut m = m.clone();
    m.status.instance_state = Some(state);
    m.status.instance_state_time = Some(st.instance_state_time.map_or(at, |t| t.max(at)));
    Some(m)
}

/// Back to Pending after a launch that failed without launching: one more attempt,
/// the next try `wait` from now, the reason on InfrastructureReady.
fn retry_later(m: &mut Machine, code: &str, message: &str, wait: Duration, now: Timestamp) {
    let st = &mut m.status;
    st.phase = MachinePhase::Pending;
    st.launch_requested_at = None;
    st.launch_attempts = st.launch_attempts.saturating_add(1);
    st.retry_after = now.checked_add(wait).ok();
    let text = format!(
        "launch failed ({code}: {message}); retrying in {}s",
        wait.as_secs()
    );
    set_not_ready(m, code, text, now);
}

/// 10 s, 20 s, 40 s … capped at 5 minutes.
pub fn backoff(attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

/// A throttled launch's wait: [`backoff`] spread over its second half by the
/// Machine's uid and the attempt ("equal jitter", as AWS recommends for
/// `RequestLimitExceeded`: <https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html#api-backoff>).
/// A thousand Machines throttled at one instant come back over the next 5–10 s, then
/// 10–20 s, …, taking the bucket's refill as it comes, instead of all at once again.
/// Pure: the same Machine and attempt always wait the same.
pub fn throttled_backoff(attempts: u32, uid: &str) -> Duration {
    throttled_backoff_from(BACKOFF_BASE, attempts, uid)
}

/// The first wait of a throttled batched launch: one call carries many Machines, and
/// the RunInstances request bucket refills 2 a second, so a batch retries sooner than
/// one Machine does ([`BACKOFF_BASE`]); it doubles to [`BACKOFF_MAX`] the same way.
pub const BATCH_THROTTLE_BASE: Duration = Duration::from_secs(1);

/// [`throttled_backoff`] from `base` instead of [`BACKOFF_BASE`].
pub fn throttled_backoff_from(base: Duration, attempts: u32, seed: &str) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
    let wait = base.saturating_mul(factor).min(BACKOFF_MAX);
    let half = wait / 2;
    let span = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_millis(fnv1a(seed.as_bytes(), attempts) % span)
}

/// FNV-1a over `bytes` and `salt`: a cheap, stable spread (not a secret).
fn fnv1a(bytes: &[u8], salt: u32) -> u64 {
    bytes
        .iter()
        .chain(salt.to_le_bytes().iter())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
}
