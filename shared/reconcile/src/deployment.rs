//! A MachineDeployment owns one MachineSet per template hash and rolls from old sets
//! to the current one within `maxSurge` / `maxUnavailable`.

use std::time::Duration;

use capstan_model::hash::short_hash;
use capstan_model::labels::DEPLOYMENT_NAME;
use capstan_model::meta::condition;
use capstan_model::{
    DeploymentPhase, Expect, Kind, MachineClassSpec, MachineDeployment, MachineSet, MachineSetSpec,
    MachineTemplate, Object, ObjectMeta, Resource, RollingUpdate, RolloutStrategyType,
    StoredObject, Timestamp,
};

use crate::lifecycle::{Ctx, Decision, cascade, owner_ref};
use crate::plan::Action;
use crate::tree::Tree;

/// Names the MachineSet for a template: covers the template's spec and the resolved
/// class, so editing either rolls the Machines. Labels, annotations, additional tags,
/// taints and deletion timeouts are left out: Cluster API propagates those in place, without a rollout. A
/// `rollout.after` that has come is part of the hash, so every set made before it is old.
pub fn template_hash(
    template: &MachineTemplate,
    class: &MachineClassSpec,
    rollout_after: Option<Timestamp>,
) -> String {
    let mut spec = template.spec.clone();
    spec.additional_tags.clear();
    spec.taints.clear();
    spec.deletion = Default::default();
    match rollout_after {
        None => short_hash(&(&spec, class), 8),
        Some(after) => short_hash(&(&spec, class, after), 8),
    }
}

/// The name of the MachineSet `md` should roll to now.
pub fn current_set_name(
    md: &MachineDeployment,
    class: &MachineClassSpec,
    now: Timestamp,
) -> String {
    let after = md.spec.rollout.after.filter(|t| *t <= now);
    format!(
        "{}-{}",
        md.metadata.name,
        template_hash(&md.spec.template, class, after)
    )
}

/// `maxSurge` and `maxUnavailable` against `desired`, with Cluster API's rounding
/// (surge up, unavailable down); when both come to zero, one may be unavailable
/// (Cluster API's `ResolveFenceposts`), so a rollout can always progress.
pub fn fenceposts(rolling: &RollingUpdate, desired: i32) -> (i32, i32) {
    let surge = rolling.max_surge.resolve(desired, true).max(0);
    let unavailable = rolling.max_unavailable.resolve(desired, false).max(0);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// One MachineSet as a rollout sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetCounts {
    /// `spec.replicas`.
    pub spec: i32,
    /// `status.replicas`: Machines that exist and are not being deleted.
    pub actual: i32,
    /// `status.availableReplicas`.
    pub available: i32,
}

impl SetCounts {
    /// Available Machines this set is sure to keep once it has its spec size: a
    /// status read before a scale-down may still count Machines being deleted.
    fn kept_available(self) -> i32 {
        self.available.min(self.spec).max(0)
    }
}

/// The new sizes of a rollout: the current set's, then each old set's, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutStep {
    pub current: i32,
    pub old: Vec<i32>,
}

/// How far a rollout may go now, from set sizes alone (pure, for property tests).
///
/// RollingUpdate, as Cluster API computes it: the current set grows while the Machines
/// of every set (`spec.replicas`, or `status.replicas` while a set still shrinks) stay
/// within `desired + maxSurge`; old sets shrink —
/// unavailable Machines first — while the Machines surely kept available stay at or
/// above `desired - maxUnavailable`. OnDelete: old sets only shrink as their Machines
/// are deleted (`status.replicas`), and the current set takes what they lost.
pub fn rollout_step(
    strategy: RolloutStrategyType,
    rolling: &RollingUpdate,
    desired: i32,
    current: SetCounts,
    old: &[SetCounts],
) -> RolloutStep {
    let desired = desired.max(0);
    // Old sets done only once their Machines are gone too, not just unwanted.
    if old.iter().all(|s| s.spec.max(s.actual) <= 0) {
        return RolloutStep {
            current: desired,
            old: old.iter().map(|_| 0).collect(),
        };
    }
    match strategy {
        RolloutStrategyType::OnDelete => {
            let old_next: Vec<i32> = old.iter().map(|s| s.spec.min(s.actual).max(0)).collect();
            let kept: i32 = old_next.iter().sum();
            RolloutStep {
                current: (desired - kept).max(current.spec.min(desired)).max(0),
                old: old_next,
            }
        }
        RolloutStrategyType::RollingUpdate => {
            let (surge, unavailable) = fenceposts(rolling, desired);
            // Machines that exist or will: a set may still hold Machines its spec no
            // longer wants (its reconciler has not run since it shrank).
            let total = current.spec.max(current.actual)
                + old.iter().map(|s| s.spec.max(s.actual)).sum::<i32>();
            let next_current = if current.spec >= desired {
                desired
            } else {
                let room = (desired + surge - total).max(0);
                current.spec + room.min(desired - current.spec)
            };
            let min_available = desired - unavailable;
            let new_unavailable = current.spec - current.kept_available();
            // Cluster API's guard: nothing goes while the sizes alone cannot spare it.
            let mut budget = (total - min_available - new_unavailable).max(0);
            let mut spare = (current.kept_available()
                + old.iter().map(|s| s.kept_available()).sum::<i32>()
                - min_available)
                .max(0);
            let mut old_next = Vec::with_capacity(old.len());
            for s in old {
                let unhealthy = (s.spec - s.kept_available()).min(budget);
                budget -= unhealthy;
                let healthy = (s.spec - unhealthy).min(spare).min(budget);
                budget -= healthy;
                spare -= healthy;
                old_next.push((s.spec - unhealthy - healthy).max(0));
            }
            RolloutStep {
                current: next_current,
                old: old_next,
            }
        }
    }
}

pub fn decide(md: &mut MachineDeployment, tree: &Tree, ctx: &Ctx, deleting: bool) -> Decision {
    let mut d = Decision::default();
    let owned: Vec<&StoredObject> = tree
        .owned_by(Kind::MachineSet, Kind::MachineDeployment, &md.metadata.name)
        .collect();
    let unreadable: Vec<&crate::tree::Unreadable> = tree
        .unreadable_owned_by(Kind::MachineSet, Kind::MachineDeployment, &md.metadata.name)
        .collect();
    crate::conditions::report_unreadable(
        &mut md.status.conditions,
        unreadable.iter().copied(),
        ctx.now,
    );
    if deleting {
        md.status.phase = DeploymentPhase::Deleting;
        let remaining = cascade(owned.iter().copied(), &mut d.children);
        d.remove = !remaining && unreadable.is_empty();
        return d;
    }
    let now = ctx.now;
    let sets: Vec<(&StoredObject, &MachineSet)> = owned
        .iter()
        .filter(|s| !s.is_deleting())
        .filter_map(|s| s.object.as_machine_set().map(|m| (*s, m)))
        .collect();
    summarize(md, &sets);
    report_remediation(md, tree, &sets, now);
    if !unreadable.is_empty() {
        // A set that cannot be read holds Machines we cannot count: rolling or scaling
        // now could launch or delete on its account. Hold, and say why.
        return d;
    }

    let Some(class) = tree.live_class(&md.spec.template.spec.machine_class) else {
        md.status.conditions.set_false(
            condition::AVAILABLE,
            "MachineClassNotFound",
            format!(
                "MachineClass {:?} does not exist in namespace {}: create it or fix spec.template.spec.machineClass",
                md.spec.template.spec.machine_class, md.metadata.namespace
            ),
            now,
        );
        return d;
    };
    if md.spec.paused {
        md.status.conditions.set_true(
            condition::PAUSED,
            "Paused",
            "spec.paused is true: not scaling or rolling",
            now,
        );
        return d;
    }
    md.status.conditions.remove(condition::PAUSED);
    // A rollout.after still to come: look again when it does.
    if let Some(after) = md.spec.rollout.after.filter(|t| *t > now) {
        d.requeue(Duration::try_from(after.duration_since(now)).unwrap_or_default());
    }

    let current_name = current_set_name(md, &class.spec, now);
    let current = sets.iter().find(|(_, s)| s.metadata.name == current_name);
    // Oldest first, as Cluster API scales old sets down.
    let mut old: Vec<&(&StoredObject, &MachineSet)> = sets
        .iter()
        .filter(|(_, s)| s.metadata.name != current_name)
        .collect();
    old.sort_by(|a, b| {
        (a.1.metadata.creation_timestamp, &a.1.metadata.name)
            .cmp(&(b.1.metadata.creation_timestamp, &b.1.metadata.name))
    });
    let desired = md.spec.replicas.max(0);
    let counts = |s: &MachineSet| SetCounts {
        spec: s.spec.replicas,
        actual: s.status.replicas,
        available: s.status.available_replicas,
    };
    let step = rollout_step(
        md.spec.rollout.strategy.strategy_type,
        &md.spec.rollout.strategy.rolling_update,
        desired,
        current.map_or(
            SetCounts {
                spec: 0,
                actual: 0,
                available: 0,
            },
            |(_, s)| counts(s),
        ),
        &old.iter().map(|(_, s)| counts(s)).collect::<Vec<_>>(),
    );
    match current {
        None => d.children.push(Action::PutDesired {
            object: Object::MachineSet(new_set(md, &current_name, step.current)),
            expect: Expect::Absent,
        }),
        Some((stored, set)) => {
            let mut next = (*set).clone();
            next.spec.replicas = step.current;
            propagate(md, &mut next);
            if next != **set
                && let Some(rv) = stored.desired_rv
            {
                d.children.push(Action::PutDesired {
                    object: Object::MachineSet(next),
                    expect: Expect::Version(rv),
                });
            }
        }
    }
    for ((stored, set), next) in old.iter().map(|p| (p.0, p.1)).zip(&step.old) {
        let Some(rv) = stored.desired_rv else {
            continue;
        };
        if *next == 0 && set.status.replicas == 0 && set.spec.replicas == 0 {
            // Old and empty: pruned (Cluster API keeps a revision history; Capstan's
            // history is the template hash in the set's name, so nothing is lost).
            d.children.push(Action::DeleteDesired {
                key: stored.key(),
                expect: Expect::Version(rv),
            });
            continue;
        }
        let mut updated = set.clone();
        updated.spec.replicas = *next;
        propagate(md, &mut updated);
        if updated != *set {
            d.children.push(Action::PutDesired {
                object: Object::MachineSet(updated),
                expect: Expect::Version(rv),
            });
        }
    }
    let (_, max_unavailable) = fenceposts(&md.spec.rollout.strategy.rolling_update, desired);
    let min_available = match md.spec.rollout.strategy.strategy_type {
        RolloutStrategyType::RollingUpdate => desired - max_unavailable,
        RolloutStrategyType::OnDelete => desired,
    }
    .max(0);

    let st = &mut md.status;
    st.up_to_date_replicas = current.map_or(0, |(_, s)| s.status.replicas);
    let rolling = old
        .iter()
        .any(|(_, s)| s.spec.replicas > 0 || s.status.replicas > 0);
    let c = &mut st.conditions;
    let (have, ready, available) = (st.replicas, st.ready_replicas, st.available_replicas);
    let draining = match st.draining_replicas {
        0 => String::new(),
        n => format!("; {n} Machine(s) draining their Nodes"),
    };
    st.phase = if have < desired {
        DeploymentPhase::ScalingUp
    } else if have > desired {
        DeploymentPhase::ScalingDown
    } else if ready == desired {
        DeploymentPhase::Running
    } else {
        DeploymentPhase::Pending
    };
    set_flag(
        c,
        condition::SCALING_UP,
        have < desired,
        "ScalingUp",
        format!("{have} of {desired} replicas exist"),
        now,
    );
    set_flag(
        c,
        condition::SCALING_DOWN,
        have > desired,
        "ScalingDown",
        format!("{have} replicas exist, {desired} wanted{draining}"),
        now,
    );
    set_flag(
        c,
        condition::ROLLING_OUT,
        rolling,
        "RollingOut",
        if rolling {
            format!(
                "rolling to MachineSet {current_name}: {} of {desired} Machines up to date{draining}",
                st.up_to_date_replicas
            )
        } else {
            String::new()
        },
        now,
    );
    set_flag(
        c,
        condition::UP_TO_DATE,
        !rolling,
        "UpToDate",
        format!(
            "{} of {desired} Machines up to date",
            st.up_to_date_replicas
        ),
        now,
    );
    set_flag(
        c,
        condition::AVAILABLE,
        available >= min_available && (desired == 0 || available > 0),
        "Available",
        format!("{available} available, at least {min_available} required"),
        now,
    );
    set_flag(
        c,
        condition::READY,
        ready == desired && have == desired && !rolling,
        "Ready",
        format!("{ready} of {desired} Machines ready"),
        now,
    );
    d
}

/// Sums the counts of every live MachineSet.
fn summarize(md: &mut MachineDeployment, sets: &[(&StoredObject, &MachineSet)]) {
    let st = &mut md.status;
    st.replicas = sets.iter().map(|(_, s)| s.status.replicas).sum();
    st.ready_replicas = sets.iter().map(|(_, s)| s.status.ready_replicas).sum();
    st.available_replicas = sets.iter().map(|(_, s)| s.status.available_replicas).sum();
    st.draining_replicas = sets.iter().map(|(_, s)| s.status.draining_replicas).sum();
}

/// A condition that is True with `reason` when `on`, False with `Not<reason>` otherwise.
pub fn set_flag(
    c: &mut capstan_model::Conditions,
    type_: &str,
    on: bool,
    reason: &str,
    message: String,
    now: capstan_model::Timestamp,
) {
    if on {
        c.set_true(type_, reason, message, now);
    } else {
        c.set_false(type_, &format!("Not{reason}"), message, now);
    }
}

/// What a MachineSet takes from its deployment in place, without a rollout: the
/// template's labels, annotations, tags, taints and deletion timeouts, the deletion
/// order, `minReadySeconds`.
fn propagate(md: &MachineDeployment, set: &mut MachineSet) {
    let t = set_template(md);
    set.spec.template.metadata = t.metadata;
    set.spec.template.spec.additional_tags = t.spec.additional_tags;
    set.spec.template.spec.taints = t.spec.taints;
    set.spec.template.spec.deletion = t.spec.deletion;
    set.spec.deletion = md.spec.deletion.clone();
    set.spec.min_ready_seconds = md.spec.min_ready_seconds;
}

fn set_template(md: &MachineDeployment) -> MachineTemplate {
    let mut template = md.spec.template.clone();
    template
        .metadata
        .labels
        .insert(DEPLOYMENT_NAME.to_string(), md.metadata.name.clone());
    template
}

/// Remediating: a health check is replacing Machines of this deployment.
fn report_remediation(
    md: &mut MachineDeployment,
    tree: &Tree,
    sets: &[(&StoredObject, &MachineSet)],
    now: Timestamp,
) {
    // Machines of ours a health check found unhealthy that are now being deleted.
    let deleting: Vec<&str> = sets
        .iter()
        .flat_map(|(_, s)| tree.owned_by(Kind::Machine, Kind::MachineSet, &s.metadata.name))
        .filter(|m| m.is_deleting())
        .map(|m| m.object.name())
        .collect();
    let mut remediating: Vec<&str> = tree
        .of_kind(Kind::MachineHealthCheck)
        .filter_map(|s| s.object.as_health_check())
        .flat_map(|hc| hc.status.unhealthy_machines.iter())
        .map(|u| u.name.as_str())
        .filter(|n| deleting.contains(n))
        .collect();
    remediating.sort();
    remediating.dedup();
    set_flag(
        &mut md.status.conditions,
        condition::REMEDIATING,
        !remediating.is_empty(),
        "Remediating",
        if remediating.is_empty() {
            String::new()
        } else {
            format!("health checks are replacing {}", remediating.join(", "))
        },
        now,
    );
}

fn new_set(md: &MachineDeployment, name: &str, replicas: i32) -> MachineSet {
    let template = set_template(md);
    let mut labels = md.metadata.labels.clone();
    if let Some(hash) = name.strip_prefix(&format!("{}-", md.metadata.name)) {
        labels.insert(capstan_model::labels::TEMPLATE_HASH.into(), hash.into());
    }
    Resource {
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: md.metadata.namespace.clone(),
            labels,
            owner_references: vec![owner_ref(Kind::MachineDeployment, &md.metadata)],
            ..ObjectMeta::default()
        },
        spec: MachineSetSpec {
            cluster_name: md.spec.cluster_name.clone(),
            replicas,
            template,
            deletion: md.spec.deletion.clone(),
            min_ready_seconds: md.spec.min_ready_seconds,
        },
        status: Default::default(),
    }
}
