//! A MachineSet keeps `replicas` Machines: it creates Machines (spread over the
//! class's subnets) and deletes the ones that should go first.

use std::collections::BTreeMap;

use capstan_model::labels::{CLUSTER_NAME, DELETE_MACHINE, SET_NAME};
use capstan_model::meta::condition;
use capstan_model::{
    DeletionOrder, Expect, Kind, Machine, MachinePhase, MachineSet, MachineSpec, Object,
    ObjectMeta, Resource, StoredObject,
};

use crate::launch::launch_spec;
use crate::lifecycle::{Ctx, Decision, cascade, owner_ref};
use crate::names;
use crate::plan::Action;
use crate::tree::Tree;

pub fn decide(ms: &mut MachineSet, tree: &Tree, ctx: &Ctx, deleting: bool) -> Decision {
    let mut d = Decision::default();
    let owned: Vec<&StoredObject> = tree
        .owned_by(Kind::Machine, Kind::MachineSet, &ms.metadata.name)
        .collect();
    if deleting {
        d.remove = !cascade(owned.iter().copied(), &mut d.children);
        return d;
    }
    let live: Vec<(&StoredObject, &Machine)> = owned
        .iter()
        .filter(|s| !s.is_deleting())
        .filter_map(|s| s.object.as_machine().map(|m| (*s, m)))
        .collect();
    let want = ms.spec.replicas.max(0) as usize;
    let now = ctx.now;

    if live.len() < want {
        match tree.live_class(&ms.spec.template.spec.machine_class) {
            Some(class) => {
                let mut per_domain =
                    domain_counts(&class.spec.subnets, live.iter().map(|(_, m)| *m));
                let mut taken: Vec<String> =
                    owned.iter().map(|s| s.object.name().to_string()).collect();
                for i in 0..(want - live.len()) {
                    let domain = match &ms.spec.template.spec.failure_domain {
                        Some(fd) => fd.clone(),
                        None => least_populated(&per_domain).unwrap_or_default(),
                    };
                    *per_domain.entry(domain.clone()).or_default() += 1;
                    let name = fresh_name(&ms.metadata.name, ctx.entropy, i as u64, &taken);
                    taken.push(name.clone());
                    let machine = new_machine(ms, &name, domain, launch_spec(&class.spec));
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
    } else if live.len() > want {
        for (stored, _) in machines_to_delete(&live, live.len() - want, ms.spec.deletion.order) {
            if let Some(rv) = stored.desired_rv {
                d.children.push(Action::DeleteDesired {
                    key: stored.key(),
                    expect: Expect::Version(rv),
                });
            }
        }
    }

    // Status counts what exists now; the writes above show up on the next pass.
    let ready = live
        .iter()
        .filter(|(_, m)| m.status.conditions.is_true(condition::READY))
        .count() as i32;
    let st = &mut ms.status;
    st.replicas = live.len() as i32;
    st.ready_replicas = ready;
    st.available_replicas = ready;
    let c = &mut st.conditions;
    let (have, want) = (live.len() as i32, want as i32);
    if have < want {
        if c.get(condition::SCALING_UP)
            .is_none_or(|x| x.reason != "MachineClassNotFound")
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
    if have > want {
        c.set_true(
            condition::SCALING_DOWN,
            "ScalingDown",
            format!("scaling down from {have} to {want} replicas"),
            now,
        );
    } else {
        c.set_false(condition::SCALING_DOWN, "NotScalingDown", "", now);
    }
    if ready == want && have == want {
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

/// A new Machine of this set, in `failure_domain`.
fn new_machine(
    ms: &MachineSet,
    name: &str,
    failure_domain: String,
    launch: capstan_model::LaunchSpec,
) -> Machine {
    let t = &ms.spec.template;
    let mut labels = t.metadata.labels.clone();
    labels.insert(CLUSTER_NAME.to_string(), ms.spec.cluster_name.clone());
    labels.insert(SET_NAME.to_string(), ms.metadata.name.clone());
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
            launch,
        },
        status: Default::default(),
    }
}

/// `<set>-<5 chars>`, not clashing with any Machine this set already has.
fn fresh_name(set: &str, entropy: u128, i: u64, taken: &[String]) -> String {
    (0..)
        .map(|k| format!("{set}-{}", names::suffix(entropy, i * 1000 + k)))
        .find(|n| !taken.contains(n))
        .unwrap_or_else(|| format!("{set}-{i}"))
}

/// Machines per subnet, counting every subnet of the class (empty ones too).
pub fn domain_counts<'a>(
    subnets: &[String],
    machines: impl Iterator<Item = &'a Machine>,
) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = subnets.iter().map(|s| (s.clone(), 0)).collect();
    for m in machines {
        *counts.entry(m.spec.failure_domain.clone()).or_default() += 1;
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

/// The `n` Machines to delete first: those annotated for deletion, then Failed ones,
/// then ones not yet running, then by `order` (Random is by uid, stable per Machine).
pub fn machines_to_delete<'a>(
    live: &[(&'a StoredObject, &'a Machine)],
    n: usize,
    order: DeletionOrder,
) -> Vec<(&'a StoredObject, &'a Machine)> {
    let mut ranked: Vec<(&StoredObject, &Machine)> = live.to_vec();
    ranked.sort_by(|(_, a), (_, b)| {
        let class = |m: &Machine| {
            if m.metadata.annotations.contains_key(DELETE_MACHINE) {
                0
            } else if m.status.phase == MachinePhase::Failed {
                1
            } else if m.status.phase != MachinePhase::Running {
                2
            } else {
                3
            }
        };
        class(a)
            .cmp(&class(b))
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
    });
    ranked.truncate(n);
    ranked
}
