//! A MachineDeployment owns one MachineSet per template hash and rolls from old sets
//! to the current one within `maxSurge` / `maxUnavailable`.

use capstan_model::hash::short_hash;
use capstan_model::labels::DEPLOYMENT_NAME;
use capstan_model::meta::condition;
use capstan_model::{
    DeploymentPhase, Expect, Kind, MachineClassSpec, MachineDeployment, MachineSet, MachineSetSpec,
    MachineTemplate, Object, ObjectMeta, Resource, RolloutStrategyType, StoredObject,
};

use crate::lifecycle::{Ctx, Decision, cascade, owner_ref};
use crate::plan::Action;
use crate::tree::Tree;

/// Names the MachineSet for a template: covers the template and the resolved class,
/// so editing either rolls the Machines.
pub fn template_hash(template: &MachineTemplate, class: &MachineClassSpec) -> String {
    short_hash(&(template, class), 8)
}

pub fn decide(md: &mut MachineDeployment, tree: &Tree, ctx: &Ctx, deleting: bool) -> Decision {
    let mut d = Decision::default();
    let owned: Vec<&StoredObject> = tree
        .owned_by(Kind::MachineSet, Kind::MachineDeployment, &md.metadata.name)
        .collect();
    if deleting {
        md.status.phase = DeploymentPhase::Deleting;
        d.remove = !cascade(owned.iter().copied(), &mut d.children);
        return d;
    }
    let now = ctx.now;
    let sets: Vec<(&StoredObject, &MachineSet)> = owned
        .iter()
        .filter(|s| !s.is_deleting())
        .filter_map(|s| s.object.as_machine_set().map(|m| (*s, m)))
        .collect();
    summarize(md, &sets);

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

    let current_name = format!(
        "{}-{}",
        md.metadata.name,
        template_hash(&md.spec.template, &class.spec)
    );
    let current = sets.iter().find(|(_, s)| s.metadata.name == current_name);
    let old: Vec<&(&StoredObject, &MachineSet)> = sets
        .iter()
        .filter(|(_, s)| s.metadata.name != current_name)
        .collect();
    let desired = md.spec.replicas.max(0);
    let old_replicas: i32 = old.iter().map(|(_, s)| s.spec.replicas).sum();
    let current_replicas = current.map_or(0, |(_, s)| s.spec.replicas);

    // How big the current set may be now.
    let target = match md.spec.rollout.strategy.strategy_type {
        _ if old_replicas == 0 => desired,
        RolloutStrategyType::OnDelete => {
            let old_live: i32 = old.iter().map(|(_, s)| s.status.replicas).sum();
            (desired - old_live).max(current_replicas.min(desired))
        }
        RolloutStrategyType::RollingUpdate => {
            let surge = md
                .spec
                .rollout
                .strategy
                .rolling_update
                .max_surge
                .resolve(desired, true);
            let room = desired + surge - (current_replicas + old_replicas);
            (current_replicas + room.max(0)).min(desired)
        }
    };
    match current {
        None => d.children.push(Action::PutDesired {
            object: Object::MachineSet(new_set(md, &current_name, target)),
            expect: Expect::Absent,
        }),
        Some((stored, set)) if set.spec.replicas != target => {
            if let Some(rv) = stored.desired_rv {
                let mut set = (*set).clone();
                set.spec.replicas = target;
                d.children.push(Action::PutDesired {
                    object: Object::MachineSet(set),
                    expect: Expect::Version(rv),
                });
            }
        }
        Some(_) => {}
    }

    // Scale old sets down: unavailable Machines first, then as many available ones as
    // `maxUnavailable` allows (OnDelete leaves old Machines to people, but never
    // recreates the ones they deleted).
    let min_available = desired
        - md.spec
            .rollout
            .strategy
            .rolling_update
            .max_unavailable
            .resolve(desired, false);
    let mut can_remove = (md.status.available_replicas - min_available).max(0);
    for (stored, set) in old.iter().map(|p| (p.0, p.1)) {
        let next = match md.spec.rollout.strategy.strategy_type {
            RolloutStrategyType::OnDelete => set.spec.replicas.min(set.status.replicas),
            RolloutStrategyType::RollingUpdate => {
                let unhealthy = (set.spec.replicas - set.status.available_replicas).max(0);
                let healthy_removed = (set.spec.replicas - unhealthy).min(can_remove);
                can_remove -= healthy_removed;
                set.spec.replicas - unhealthy - healthy_removed
            }
        };
        if next == 0 && set.status.replicas == 0 && set.spec.replicas == 0 {
            if let Some(rv) = stored.desired_rv {
                d.children.push(Action::DeleteDesired {
                    key: stored.key(),
                    expect: Expect::Version(rv),
                });
            }
        } else if let (true, Some(rv)) = (next != set.spec.replicas, stored.desired_rv) {
            let mut set = set.clone();
            set.spec.replicas = next.max(0);
            d.children.push(Action::PutDesired {
                object: Object::MachineSet(set),
                expect: Expect::Version(rv),
            });
        }
    }

    let st = &mut md.status;
    st.up_to_date_replicas = current.map_or(0, |(_, s)| s.status.replicas);
    let rolling = old
        .iter()
        .any(|(_, s)| s.spec.replicas > 0 || s.status.replicas > 0);
    let c = &mut st.conditions;
    let (have, ready, available) = (st.replicas, st.ready_replicas, st.available_replicas);
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
        format!("{have} replicas exist, {desired} wanted"),
        now,
    );
    set_flag(
        c,
        condition::ROLLING_OUT,
        rolling,
        "RollingOut",
        format!("rolling to MachineSet {current_name}"),
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
        available >= min_available.max(0) && (desired == 0 || available > 0),
        "Available",
        format!(
            "{available} available, at least {} required",
            min_available.max(0)
        ),
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

fn new_set(md: &MachineDeployment, name: &str, replicas: i32) -> MachineSet {
    let mut template = md.spec.template.clone();
    template
        .metadata
        .labels
        .insert(DEPLOYMENT_NAME.to_string(), md.metadata.name.clone());
    Resource {
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: md.metadata.namespace.clone(),
            labels: md.metadata.labels.clone(),
            owner_references: vec![owner_ref(Kind::MachineDeployment, &md.metadata)],
            ..ObjectMeta::default()
        },
        spec: MachineSetSpec {
            cluster_name: md.spec.cluster_name.clone(),
            replicas,
            template,
            deletion: md.spec.deletion.clone(),
        },
        status: Default::default(),
    }
}
