//! Where a Machine gets its instance: launch exactly one, record its id, follow its
//! state into the phase, terminate it when the Machine is deleted.
//!
//! # Expected flow
//! Pending → (status written: Provisioning, launch requested) → RunInstances with
//! ClientToken = uid → (id recorded: Provisioned) → EC2 reports running → Running.
//! Deleting: TerminateInstances → EC2 reports terminated → observed item removed.
//!
//! # Guarantees
//! - At most one instance per Machine: the launch is recorded as requested *before*
//!   RunInstances is called, so a crash in between is seen on the next pass, which
//!   first looks the instance up by its machine-uid tag and only then launches again,
//!   with the same ClientToken.
//! - The observed item (the finalizer) is removed only once the instance is terminated
//!   or provably never existed.
//!
//! # Assumptions
//! - Instance states arrive from EC2 events and the drift sweep, recorded on the
//!   observed item by [`record_instance_state`]; this decider never asks EC2 for them.
//!
//! # Errors
//! - A launch error a retry may fix (throttling, capacity, 5xx) backs off and retries,
//!   with the reason on the InfrastructureReady condition.
//! - One it cannot fix (bad image, bad subnet, unauthorized) marks the Machine Failed.

use std::time::Duration;

use capstan_model::meta::condition;
use capstan_model::{InstanceState, Machine, MachineAddress, MachinePhase, Timestamp};

use crate::launch::launch_request;
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

pub fn decide(m: &mut Machine, ctx: &Ctx, deleting: bool) -> Decision {
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
                if state.is_final() {
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
            _ => {
                m.status.phase = MachinePhase::Provisioning;
                m.status.launch_requested_at = Some(now);
                m.status.retry_after = None;
                set_not_ready(m, "InstanceLaunching", "launching the instance", now);
                d.external = Some(External::Launch {
                    request: launch_request(m, &ctx.installation),
                    recover: false,
                });
            }
        },
        Situation::LaunchUnrecorded => {
            // The last pass asked for a launch and never recorded its outcome (a crash or
            // a timeout). Look for the instance by tag first; launch only if none exists.
            d.external = Some(External::Launch {
                request: launch_request(m, &ctx.installation),
                recover: true,
            });
        }
        Situation::Launched { instance_id, state } => follow_instance(m, &instance_id, state, now),
        Situation::Failed => {}
    }
    d
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
            c.set_true(condition::READY, "InstanceRunning", msg.clone(), now);
            c.set_true(condition::AVAILABLE, "InstanceRunning", msg, now);
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
    /// The request is wrong: retrying will not help.
    Final {
        code: String,
        message: String,
    },
}

/// The Machine after its launch call: id recorded, or backoff, or Failed.
pub fn after_launch(m: &Machine, outcome: LaunchOutcome, now: Timestamp) -> Machine {
    let mut m = m.clone();
    match outcome {
        LaunchOutcome::Launched(found) => record_instance(&mut m, found, now),
        LaunchOutcome::Retryable { code, message } => {
            let st = &mut m.status;
            st.phase = MachinePhase::Pending;
            st.launch_requested_at = None;
            st.launch_attempts += 1;
            let wait = backoff(st.launch_attempts);
            st.retry_after = now.checked_add(wait).ok();
            let text = format!(
                "launch failed ({code}: {message}); retrying in {}s",
                wait.as_secs()
            );
            set_not_ready(&mut m, &code, text, now);
        }
        LaunchOutcome::Final { code, message } => {
            let st = &mut m.status;
            st.phase = MachinePhase::Failed;
            st.launch_requested_at = None;
            st.failure_reason = Some(code.clone());
            st.failure_message = Some(message.clone());
            set_not_ready(
                &mut m,
                &code,
                format!("launch failed and will not be retried: {message}"),
                now,
            );
        }
    }
    m
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
            }
        }
    }
    m
}

fn record_instance(m: &mut Machine, found: FoundInstance, now: Timestamp) {
    let st = &mut m.status;
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
    if st.instance_state_time.is_some_and(|t| t > at) || st.instance_state == Some(state) {
        return None;
    }
    let mut m = m.clone();
    m.status.instance_state = Some(state);
    m.status.instance_state_time = Some(at);
    Some(m)
}

/// 10 s, 20 s, 40 s … capped at 5 minutes.
pub fn backoff(attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}
