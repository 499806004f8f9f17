//! A MachineHealthCheck watches the Machines its selector picks, finds the unhealthy
//! ones, and remediates them by deleting them: their MachineSet replaces them.
//!
//! # Unhealthy
//! A selected Machine is unhealthy when
//! - its instance is in one of `checks.unhealthyInstanceStates` (stopped or terminated
//!   behind Capstan's back), or the Machine Failed after its instance existed;
//! - it never became Ready within `checks.nodeStartupTimeoutSeconds` of its creation
//!   (Cluster API counts from the Machine's creation too);
//! - one of its conditions matches `checks.unhealthyMachineConditions` (type and status)
//!   for longer than that entry's `timeoutSeconds`. Those conditions are reported by
//!   someone who can see the node (see docs/ARCHITECTURE.md, "Reporting node health").
//!
//! A Machine marked `Interrupted` is not remediated (its MachineSet is already
//! replacing it), nor one that failed to launch with an error retrying cannot fix (a
//! replacement would fail the same way: a hot loop Cluster API allows, Capstan does not).
//!
//! # Guarantees
//! - Past `remediation.triggerIf`, nothing is remediated, and `RemediationAllowed` is
//!   False with reason `TooManyUnhealthy` (too many at once means the cause is not the
//!   Machines: remediating would make it worse).
//! - At most `remediation.maxInFlight` selected Machines are being deleted at once,
//!   counted from the table (Machines whose desired item is gone), so no memory is needed
//!   between passes.
//! - `capstan.dev/skip-remediation` on a Machine opts it out; it still counts as unhealthy.

use std::time::Duration;

use capstan_model::labels::SKIP_REMEDIATION;
use capstan_model::meta::condition;
use capstan_model::{
    ConditionStatus, Expect, HealthCheckChecks, InstanceState, IntOrPercent, Kind, Machine,
    MachineHealthCheck, MachinePhase, StoredObject, Timestamp, TriggerIf, UnhealthyMachine,
};

use crate::lifecycle::{Ctx, Decision};
use crate::machine_set::is_interrupted;
use crate::plan::Action;
use crate::tree::Tree;

/// What a health check concludes about one Machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy; look again at `recheck` when a timeout may expire.
    Healthy {
        recheck: Option<Timestamp>,
    },
    Unhealthy {
        reason: String,
        message: String,
    },
}

/// The verdict on `m` under `checks` at `now` (pure, for tests).
pub fn verdict(m: &Machine, checks: &HealthCheckChecks, now: Timestamp) -> Verdict {
    let st = &m.status;
    let unhealthy = |reason: &str, message: String| Verdict::Unhealthy {
        reason: reason.to_string(),
        message,
    };
    if is_interrupted(m) {
        return Verdict::Healthy { recheck: None };
    }
    if let (Some(id), Some(state)) = (&st.instance_id, st.instance_state)
        && checks.unhealthy_instance_states.contains(&state)
    {
        return unhealthy(
            "UnhealthyInstance",
            format!("instance {id} is {}", state.as_str()),
        );
    }
    if st.phase == MachinePhase::Failed {
        if st.instance_id.is_some() {
            return unhealthy(
                "MachineFailed",
                st.failure_message.clone().unwrap_or_default(),
            );
        }
        // A launch error retrying cannot fix: a replacement would fail alike.
        return Verdict::Healthy { recheck: None };
    }
    let mut recheck: Option<Timestamp> = None;
    let mut wake = |t: Timestamp| recheck = Some(recheck.map_or(t, |r: Timestamp| r.min(t)));
    let ready = st.conditions.get(condition::READY);
    if checks.node_startup_timeout_seconds > 0
        && !ready.is_some_and(|c| c.status == ConditionStatus::True)
        && st.instance_state != Some(InstanceState::Terminated)
        && let Some(created) = m.metadata.creation_timestamp
        && let Ok(deadline) = created.checked_add(secs(checks.node_startup_timeout_seconds))
    {
        // Never Ready since the deadline: a Machine that was Ready and lost it later is
        // judged by its conditions, not by the startup timeout.
        let never_ready_since = ready.is_none_or(|c| c.last_transition_time <= deadline);
        if now >= deadline && never_ready_since {
            return unhealthy(
                "NodeStartupTimeout",
                format!(
                    "not Ready {}s after it was created",
                    checks.node_startup_timeout_seconds
                ),
            );
        } else if now < deadline {
            wake(deadline);
        }
    }
    // The Machine's own conditions, then its Node's (read from the workload cluster
    // when the Cluster declares access).
    let rules = checks
        .unhealthy_machine_conditions
        .iter()
        .map(|r| (r, &st.conditions, "condition", "UnhealthyCondition"))
        .chain(
            checks
                .unhealthy_node_conditions
                .iter()
                .map(|r| (r, &st.node_conditions, "node condition", "UnhealthyNode")),
        );
    for (rule, conditions, what, reason) in rules {
        let Some(c) = conditions
            .get(&rule.type_)
            .filter(|c| c.status == rule.status)
        else {
            continue;
        };
        let Ok(deadline) = c
            .last_transition_time
            .checked_add(secs(rule.timeout_seconds))
        else {
            continue;
        };
        if now >= deadline {
            return unhealthy(
                reason,
                format!(
                    "{what} {} has been {:?} for more than {}s: {}",
                    rule.type_, rule.status, rule.timeout_seconds, c.message
                ),
            );
        }
        wake(deadline);
    }
    Verdict::Healthy { recheck }
}

fn secs(n: i32) -> Duration {
    Duration::from_secs(n.max(0) as u64)
}

/// Whether `triggerIf` lets remediation go ahead with `unhealthy` of `expected`
/// Machines unhealthy; Err says why not. Without `triggerIf`, always.
pub fn remediation_allowed(
    trigger: &TriggerIf,
    expected: i32,
    unhealthy: i32,
) -> Result<(), String> {
    if let Some(max) = trigger.unhealthy_less_than_or_equal_to {
        // Cluster API scales a percentage of the expected Machines, rounding down.
        let limit = max.resolve(expected, false);
        if unhealthy > limit {
            return Err(format!(
                "{unhealthy} of {expected} Machines are unhealthy, more than unhealthyLessThanOrEqualTo {max} ({limit}): not remediating"
            ));
        }
    }
    if let Some(range) = &trigger.unhealthy_in_range {
        match parse_range(range) {
            Some((lo, hi)) if (lo..=hi).contains(&unhealthy) => {}
            Some(_) => {
                return Err(format!(
                    "{unhealthy} of {expected} Machines are unhealthy, outside unhealthyInRange {range}: not remediating"
                ));
            }
            None => return Err(format!("unhealthyInRange {range:?} is not \"[min-max]\"")),
        }
    }
    Ok(())
}

/// "[1-3]" → (1, 3).
pub fn parse_range(range: &str) -> Option<(i32, i32)> {
    let inner = range.trim().strip_prefix('[')?.strip_suffix(']')?;
    let (lo, hi) = inner.split_once('-')?;
    let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    (lo <= hi).then_some((lo, hi))
}

pub fn decide(
    hc: &mut MachineHealthCheck,
    _stored: &StoredObject,
    tree: &Tree,
    ctx: &Ctx,
    deleting: bool,
) -> Decision {
    let mut d = Decision::default();
    if deleting {
        d.remove = true;
        return d;
    }
    let now = ctx.now;
    let matches = |m: &Machine| {
        m.spec.cluster_name == hc.spec.cluster_name && hc.spec.selector.matches(&m.metadata.labels)
    };
    let selected: Vec<(&StoredObject, &Machine)> = tree
        .of_kind(Kind::Machine)
        .filter(|s| !s.is_deleting())
        .filter_map(|s| s.object.as_machine().map(|m| (s, m)))
        .filter(|(_, m)| matches(m))
        .collect();
    let in_flight = tree
        .of_kind(Kind::Machine)
        .filter(|s| s.is_deleting())
        .filter_map(|s| s.object.as_machine())
        .filter(|m| matches(m))
        .count() as i32;

    let mut unhealthy: Vec<(&StoredObject, &Machine, String, String)> = Vec::new();
    for (stored, m) in &selected {
        match verdict(m, &hc.spec.checks, now) {
            Verdict::Healthy { recheck } => {
                if let Some(t) = recheck {
                    d.requeue(Duration::try_from(t.duration_since(now)).unwrap_or_default());
                }
            }
            Verdict::Unhealthy { reason, message } => {
                unhealthy.push((*stored, *m, reason, message))
            }
        }
    }
    let expected = selected.len() as i32;
    let n_unhealthy = unhealthy.len() as i32;
    let st = &mut hc.status;
    st.expected_machines = expected;
    st.current_healthy = expected - n_unhealthy;
    st.unhealthy_machines = unhealthy
        .iter()
        .map(|(_, m, reason, message)| UnhealthyMachine {
            name: m.metadata.name.clone(),
            reason: reason.clone(),
            message: message.clone(),
        })
        .collect();

    match remediation_allowed(&hc.spec.remediation.trigger_if, expected, n_unhealthy) {
        Err(why) => {
            st.remediations_allowed = 0;
            st.conditions
                .set_false(condition::REMEDIATION_ALLOWED, "TooManyUnhealthy", why, now);
        }
        Ok(()) => {
            let max_in_flight = hc
                .spec
                .remediation
                .max_in_flight
                .map_or(i32::MAX, |m: IntOrPercent| m.resolve(expected, true).max(0));
            let mut room = max_in_flight.saturating_sub(in_flight).max(0);
            let mut waiting = 0;
            for (stored, m, _, _) in &unhealthy {
                let replaceable = m
                    .metadata
                    .controller()
                    .is_some_and(|o| o.kind == Kind::MachineSet);
                if m.metadata.annotations.contains_key(SKIP_REMEDIATION) || !replaceable {
                    continue;
                }
                let Some(rv) = stored.desired_rv else {
                    continue;
                };
                if room == 0 {
                    waiting += 1;
                    continue;
                }
                room -= 1;
                d.children.push(Action::DeleteDesired {
                    key: stored.key(),
                    expect: Expect::Version(rv),
                });
            }
            st.remediations_allowed = room.min(expected);
            let message = if waiting > 0 {
                format!(
                    "{waiting} unhealthy Machine(s) wait for maxInFlight ({in_flight} in flight)"
                )
            } else {
                String::new()
            };
            st.conditions.set_true(
                condition::REMEDIATION_ALLOWED,
                "RemediationAllowed",
                message,
                now,
            );
        }
    }
    let healthy = st.current_healthy;
    st.conditions.set_true(
        condition::READY,
        "Monitoring",
        format!("{healthy} of {expected} selected Machines are healthy"),
        now,
    );
    d
}
