//! A MachineSet keeps `replicas` Machines: it creates Machines (in the least populated
//! of the class's subnets), deletes the ones that should go first (from the most
//! populated subnet among equals), replaces interrupted spot Machines before they go,
//! and keeps its Machines' labels, annotations and tags in step with its template.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_model::labels::{CLUSTER_NAME, DELETE_MACHINE, SET_NAME};
use capstan_model::meta::{condition, set_machine_name_prefix};
use capstan_model::{
    ConditionStatus, DeletionOrder, Expect, InstanceState, Kind, Machine, MachinePhase, MachineSet,
    MachineSpec, Object, ObjectMeta, Resource, RolloutStrategyType, StoredObject, Timestamp,
};

use crate::conditions::{HEALTH_CHECK_SUCCEEDED, INTERRUPTED, NODE_READY, report_unreadable};
use crate::deployment::current_set_name;
use crate::launch::{launch_ref, launch_spec};
use crate::lifecycle::{Ctx, Decision, cascade, owner_ref};
use crate::names;
use crate::plan::Action;
use crate::tree::Tree;

/// The most Machines one pass creates: a plan stays a few transactions long and a
/// pass bounded in time and memory, whatever `replicas` says (a raw write of
/// `replicas: 2147483647` must not exhaust the reconciler).
pub const MAX_CREATES_PER_PASS: usize = 100;

pub fn decide(ms: &mut MachineSet, tree: &Tree, ctx: &Ctx, deleting: bool) -> Decision {
    let mut d = Decision::default();
    let owned: Vec<&StoredObject> = tree
        .owned_by(Kind::Machine, Kind::MachineSet, &ms.metadata.name)
        .collect();
    // Machines that cannot be read exist all the same: they count toward `replicas`
    // (no replacement is launched on their account), are never picked for deletion, and
    // keep the set from being released.
    let unreadable: Vec<&crate::tree::Unreadable> = tree
        .unreadable_owned_by(Kind::Machine, Kind::MachineSet, &ms.metadata.name)
        .collect();
    report_unreadable(
        &mut ms.status.conditions,
        unreadable.iter().copied(),
        ctx.now,
    );
    if deleting {
        let remaining = cascade(owned.iter().copied(), &mut d.children);
        d.remove = !remaining && unreadable.is_empty();
        return d;
    }
    let live: Vec<(&StoredObject, &Machine)> = owned
        .iter()
        .filter(|s| !s.is_deleting())
        .filter_map(|s| s.object.as_machine().map(|m| (*s, m)))
        .collect();
    // Interrupted Machines are leaving: each gets a replacement before it goes.
    let (leaving, staying): (Vec<_>, Vec<_>) =
        live.iter().copied().partition(|(_, m)| is_interrupted(m));
    let want = ms.spec.replicas.max(0) as usize;
    let now = ctx.now;
    let class = tree.live_class(&ms.spec.template.spec.machine_class);
    let subnets = class.map(|c| c.spec.subnets.clone()).unwrap_or_default();
    let mut deleted: Vec<String> = Vec::new();

    if staying.len() + unreadable.len() < want {
        match class {
            _ if is_old_on_delete(ms, tree, now) => {
                // OnDelete: a Machine deleted from an old set is replaced by the
                // deployment's current set, never here.
                ms.status.conditions.set_false(
                    condition::SCALING_UP,
                    "OnDelete",
                    "an old MachineSet of an OnDelete rollout does not replace deleted Machines",
                    now,
                );
            }
            Some(class) => {
                let mut per_domain = domain_counts(&subnets, staying.iter().map(|(_, m)| *m));
                let mut taken: Vec<String> =
                    owned.iter().map(|s| s.object.name().to_string()).collect();
                let mut launch = launch_spec(&class.spec);
                let pinned = ms.spec.template.spec.failure_domain.is_some();
                if pinned {
                    // Pinned to one subnet: capacity fallback may change instance
                    // type but never leaves the pinned subnet.
                    launch.subnets.clear();
                }
                // Each Machine names the spec by hash; the class holds it once.
                let reference = launch_ref(&launch, pinned);
                let missing = want - staying.len() - unreadable.len();
                if missing > MAX_CREATES_PER_PASS {
                    // The rest on the next pass, which the new Machines' events bring.
                    d.requeue(Duration::from_secs(1));
                }
                for i in 0..missing.min(MAX_CREATES_PER_PASS) {
                    let domain = match &ms.spec.template.spec.failure_domain {
                        Some(fd) => fd.clone(),
                        None => least_populated(&per_domain).unwrap_or_default(),
                    };
                    *per_domain.entry(domain.clone()).or_default() += 1;
                    let name = fresh_name(&ms.metadata.name, ctx.entropy, i as u64, &taken);
                    taken.push(name.clone());
                    let machine = new_machine(ms, &name, domain, reference.clone());
                    d.children.push(Action::PutDesired {
                        object: Object::Machine(machine),
                        expect: Expect::Absent,
                    });
                }
            }
            None => {
                ms.status.conditions.set_false(
                    condition::SCALING_UP,
                    "MachineClassNotFound",
                    format!(
                        "cannot create Machines: MachineClass {:?} does not exist in namespace {}",
                        ms.spec.template.spec.machine_class, ms.metadata.namespace
                    ),
                    now,
                );
            }
        }
    } else if staying.len() > want {
        for (stored, _) in machines_to_delete(
            &staying,
            staying.len() - want,
            ms.spec.deletion.order,
            &subnets,
        ) {
            if let Some(rv) = stored.desired_rv {
                deleted.push(stored.object.name().to_string());
                d.children.push(Action::DeleteDesired {
                    key: stored.key(),
                    expect: Expect::Version(rv),
                });
            }
        }
    }
    // An interrupted Machine goes once its replacements are Ready, or at once when its
    // instance is already gone (or never ran).
    let ready_staying = staying
        .iter()
        .filter(|(_, m)| m.status.conditions.is_true(condition::READY))
        .count();
    for (stored, m) in &leaving {
        let running = m.status.instance_state == Some(InstanceState::Running);
        if (ready_staying >= want || !running)
            && let Some(rv) = stored.desired_rv
        {
            deleted.push(stored.object.name().to_string());
            d.children.push(Action::DeleteDesired {
                key: stored.key(),
                expect: Expect::Version(rv),
            });
        }
    }
    // Labels, annotations and tags of the template reach the Machines in place.
    for (stored, m) in &live {
        if deleted.iter().any(|n| n == &m.metadata.name) {
            continue;
        }
        if let (Some(updated), Some(rv)) = (propagated(ms, m), stored.desired_rv) {
            d.children.push(Action::PutDesired {
                object: Object::Machine(updated),
                expect: Expect::Version(rv),
            });
        }
    }

    // Status counts what exists now, less what this pass deletes (so a deployment never
    // counts a Machine on its way out); creations show up on the next pass.
    let kept: Vec<&Machine> = live
        .iter()
        .filter(|(_, m)| !deleted.contains(&m.metadata.name))
        .map(|(_, m)| *m)
        .collect();
    let ready = kept
        .iter()
        .filter(|m| m.status.conditions.is_true(condition::READY))
        .count() as i32;
    let min_ready = Duration::from_secs(ms.spec.min_ready_seconds.max(0) as u64);
    let mut available = 0;
    for m in &kept {
        match available_at(m, min_ready) {
            Some(t) if t <= now => available += 1,
            Some(t) => d.requeue(Duration::try_from(t.duration_since(now)).unwrap_or_default()),
            None => {}
        }
    }
    let draining = owned
        .iter()
        .filter(|s| s.is_deleting())
        .filter_map(|s| s.object.as_machine())
        .filter(|m| crate::drain::is_draining(m))
        .count() as i32;
    let st = &mut ms.status;
    st.draining_replicas = draining;
    st.replicas = (kept.len() + unreadable.len()) as i32;
    st.ready_replicas = ready;
    st.available_replicas = available;
    st.up_to_date_replicas = kept.len() as i32;
    let c = &mut st.conditions;
    let (have, want) = ((staying.len() + unreadable.len()) as i32, want as i32);
    if have < want {
        if c.get(condition::SCALING_UP)
            .is_none_or(|x| x.reason != "MachineClassNotFound" && x.reason != "OnDelete")
        {
            c.set_true(
                condition::SCALING_UP,
                "ScalingUp",
                format!("scaling up from {have} to {want} replicas"),
                now,
            );
        }
    } else {
        c.set_false(condition::SCALING_UP, "NotScalingUp", "", now);
    }
    if have > want || !leaving.is_empty() {
        c.set_true(
            condition::SCALING_DOWN,
            "ScalingDown",
            if leaving.is_empty() {
                format!("scaling down from {have} to {want} replicas")
            } else {
                format!("replacing {} interrupted Machine(s)", leaving.len())
            },
            now,
        );
    } else {
        c.set_false(condition::SCALING_DOWN, "NotScalingDown", "", now);
    }
    if ready >= want && have == want && leaving.is_empty() {
        c.set_true(
            condition::READY,
            "AllReady",
            format!("{ready} of {want} Machines ready"),
            now,
        );
    } else {
        c.set_false(
            condition::READY,
            "NotAllReady",
            format!("{ready} of {want} Machines ready"),
            now,
        );
    }
    d
}

/// True when EC2 warned that the Machine's instance will go (see
/// [`crate::machine::record_interruption`]).
pub fn is_interrupted(m: &Machine) -> bool {
    m.status.conditions.is_true(INTERRUPTED)
}

/// When the Machine becomes available: Ready for `min_ready` (Cluster API's
/// `minReadySeconds`, counted from the Ready condition's last transition). None while
/// it is not Ready.
pub fn available_at(m: &Machine, min_ready: Duration) -> Option<Timestamp> {
    let ready = m
        .status
        .conditions
        .get(condition::READY)
        .filter(|c| c.status == ConditionStatus::True)?;
    ready.last_transition_time.checked_add(min_ready).ok()
}

/// True for an old MachineSet of a MachineDeployment that rolls `OnDelete`: such a set
/// only shrinks as people delete its Machines.
fn is_old_on_delete(ms: &MachineSet, tree: &Tree, now: Timestamp) -> bool {
    let Some(owner) = ms
        .metadata
        .controller()
        .filter(|o| o.kind == Kind::MachineDeployment)
    else {
        return false;
    };
    let Some(md) = tree
        .get(Kind::MachineDeployment, &owner.name)
        .filter(|s| !s.is_deleting())
        .and_then(|s| s.object.as_machine_deployment())
    else {
        return false;
    };
    if md.spec.rollout.strategy.strategy_type != RolloutStrategyType::OnDelete {
        return false;
    }
    tree.live_class(&md.spec.template.spec.machine_class)
        .is_some_and(|class| current_set_name(md, &class.spec, now) != ms.metadata.name)
}

/// The labels a Machine of `ms` carries: the template's and Capstan's own.
fn machine_labels(ms: &MachineSet) -> BTreeMap<String, String> {
    let mut labels = ms.spec.template.metadata.labels.clone();
    labels.insert(CLUSTER_NAME.to_string(), ms.spec.cluster_name.clone());
    labels.insert(SET_NAME.to_string(), ms.metadata.name.clone());
    labels
}

/// The Machine with its set's template labels, annotations, tags, taints and deletion
/// timeouts, or None when it
/// already has them. Keys are added or overwritten, never removed: a label or
/// annotation someone put on the Machine (a delete-machine mark) stays.
fn propagated(ms: &MachineSet, m: &Machine) -> Option<Machine> {
    let mut next = m.clone();
    next.metadata.labels.extend(machine_labels(ms));
    next.metadata
        .annotations
        .extend(ms.spec.template.metadata.annotations.clone());
    next.spec.additional_tags = ms.spec.template.spec.additional_tags.clone();
    next.spec.taints = ms.spec.template.spec.taints.clone();
    next.spec.deletion = ms.spec.template.spec.deletion.clone();
    (next.metadata != m.metadata || next.spec != m.spec).then_some(next)
}

/// A new Machine of this set, in `failure_domain`.
fn new_machine(
    ms: &MachineSet,
    name: &str,
    failure_domain: String,
    launch_ref: capstan_model::LaunchRef,
) -> Machine {
    let t = &ms.spec.template;
    let labels = machine_labels(ms);
    Resource {
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: ms.metadata.namespace.clone(),
            labels,
            annotations: t.metadata.annotations.clone(),
            owner_references: vec![owner_ref(Kind::MachineSet, &ms.metadata)],
            ..ObjectMeta::default()
        },
        spec: MachineSpec {
            cluster_name: ms.spec.cluster_name.clone(),
            role: t.spec.role,
            version: t.spec.version.clone(),
            machine_class: t.spec.machine_class.clone(),
            failure_domain,
            launch: Default::default(),
            launch_ref: Some(launch_ref),
            resolved_launch: None,
            additional_tags: t.spec.additional_tags.clone(),
            taints: t.spec.taints.clone(),
            deletion: t.spec.deletion.clone(),
        },
        status: Default::default(),
    }
}

/// `<set>-<5 chars>`, not clashing with any Machine this set already has.
fn fresh_name(set: &str, entropy: u128, i: u64, taken: &[String]) -> String {
    let prefix = set_machine_name_prefix(set);
    (0..)
        .map(|k| format!("{prefix}{}", names::suffix(entropy, i * 1000 + k)))
        .find(|n| !taken.contains(n))
        .unwrap_or_else(|| format!("{prefix}{i}"))
}

/// The subnet a Machine counts in: where its instance landed (capacity fallback may
/// have moved it), else the one its MachineSet chose.
pub fn machine_domain(m: &Machine) -> &str {
    m.status
        .failure_domain
        .as_deref()
        .unwrap_or(&m.spec.failure_domain)
}

/// Machines per subnet, counting every subnet of the class (empty ones too).
pub fn domain_counts<'a>(
    subnets: &[String],
    machines: impl Iterator<Item = &'a Machine>,
) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = subnets.iter().map(|s| (s.clone(), 0)).collect();
    for m in machines {
        *counts.entry(machine_domain(m).to_string()).or_default() += 1;
    }
    counts
}

/// The subnet with the fewest Machines (the first such, in subnet order).
pub fn least_populated(counts: &BTreeMap<String, usize>) -> Option<String> {
    counts
        .iter()
        .min_by_key(|(_, n)| **n)
        .map(|(s, _)| s.clone())
}

/// How urgently a Machine should go when its set shrinks, whatever the deletion order:
/// 0 annotated `capstan.dev/delete-machine`, 1 Failed, 2 unhealthy (a health check or
/// node agent said so, or interrupted), 3 not yet Running, 4 Running.
pub fn delete_priority(m: &Machine) -> u8 {
    let c = &m.status.conditions;
    let said_false = |t: &str| c.get(t).is_some_and(|x| x.status == ConditionStatus::False);
    if m.metadata.annotations.contains_key(DELETE_MACHINE) {
        0
    } else if m.status.phase == MachinePhase::Failed {
        1
    } else if said_false(HEALTH_CHECK_SUCCEEDED) || said_false(NODE_READY) || is_interrupted(m) {
        2
    } else if m.status.phase != MachinePhase::Running {
        3
    } else {
        4
    }
}

/// The `n` Machines to delete first: by [`delete_priority`]; among equals, from the
/// most populated subnet (so the set stays balanced across failure domains), then by
/// `order` (Random is by uid: arbitrary but stable per Machine, so repeated passes agree).
pub fn machines_to_delete<'a>(
    live: &[(&'a StoredObject, &'a Machine)],
    n: usize,
    order: DeletionOrder,
    subnets: &[String],
) -> Vec<(&'a StoredObject, &'a Machine)> {
    let mut counts = domain_counts(subnets, live.iter().map(|(_, m)| *m));
    let mut pool: Vec<(&StoredObject, &Machine)> = live.to_vec();
    let mut out = Vec::with_capacity(n.min(live.len()));
    while out.len() < n && !pool.is_empty() {
        let rank = |m: &Machine| {
            (
                delete_priority(m),
                std::cmp::Reverse(counts.get(machine_domain(m)).copied().unwrap_or(0)),
            )
        };
        let Some(best) = (0..pool.len()).min_by(|&i, &j| {
            let (a, b) = (pool[i].1, pool[j].1);
            rank(a)
                .cmp(&rank(b))
                .then_with(|| match order {
                    DeletionOrder::Newest => b
                        .metadata
                        .creation_timestamp
                        .cmp(&a.metadata.creation_timestamp),
                    DeletionOrder::Oldest => a
                        .metadata
                        .creation_timestamp
                        .cmp(&b.metadata.creation_timestamp),
                    DeletionOrder::Random => a.metadata.uid.cmp(&b.metadata.uid),
                })
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        }) else {
            break;
        };
        let chosen = pool.swap_remove(best);
        if let Some(c) = counts.get_mut(machine_domain(chosen.1)) {
            *c = c.saturating_sub(1);
        }
        out.push(chosen);
    }
    out
}
