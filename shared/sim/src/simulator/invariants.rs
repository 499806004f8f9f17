//! What must hold after every step, each a named check whose message says what broke.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_model::item::{AttrValue, item_key};
use capstan_model::labels::{TAG_INSTALLATION, TAG_LAUNCH_BATCH, TAG_MACHINE_UID};
use capstan_model::{Item, Kind, ObjectKey, Timestamp};

use capstan_model::{Machine, MachineDeployment, MachineSet, RolloutStrategyType};
use capstan_reconcile::Tree;
use capstan_reconcile::deployment::fenceposts;
use capstan_reconcile::health_check::{Verdict, remediation_allowed, verdict};
use capstan_runtime::Instance;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub message: String,
}

impl Violation {
    fn new(invariant: &'static str, message: impl Into<String>) -> Violation {
        Violation {
            invariant,
            message: message.into(),
        }
    }
}

/// How long a live instance tagged as ours may exist without a Machine before the drift
/// sweep must have collected it: its grace (5 min) plus one sweep period (5 min), plus
/// the time a delayed or retried message may take.
pub const ORPHAN_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// What the checks look at after a step: the raw items (decoding every object after
/// every step would cost more than the handlers themselves), the MachineDeployments
/// and MachineSets decoded, and EC2's instances.
pub struct World<'a> {
    pub now: Timestamp,
    pub installation: &'a str,
    pub items: &'a [&'a Item],
    /// Trees holding only MachineDeployments and MachineSets, one per partition.
    pub rollouts: &'a [Tree],
    pub instances: &'a [Instance],
    /// Instances without Capstan's tags, with the state the simulation left them in.
    pub foreign: &'a BTreeMap<String, capstan_model::InstanceState>,
    pub stale_writes: &'a [String],
    /// RunInstances calls that repeated a launch at the same instant (see
    /// `Chaos::repeated_launches`).
    pub repeated_launches: &'a [String],
    /// Machines whose instance a hostile write named (see `hostile`).
    pub victims: &'a [super::hostile::Victim],
    /// Every instance Capstan asked TerminateInstances for.
    pub terminated: &'a BTreeSet<String>,
}

/// State carried from step to step (for checks about change).
#[derive(Default)]
pub struct Checker {
    /// Per MachineDeployment: its desired replicas, surge, and the total of its sets'
    /// replicas at the last step.
    rollout: BTreeMap<ObjectKey, (i32, i32, i32)>,
    /// Per RollingUpdate MachineDeployment: its desired replicas and `maxUnavailable`,
    /// and each of its sets' replicas and reported available Machines, at the last step.
    sets: BTreeMap<ObjectKey, (i32, i32, BTreeMap<String, SetSize>)>,
    /// Per MachineSet (partition key, name): its live Machines at the last step.
    machines: BTreeMap<(String, String), usize>,
    /// Per MachineSet: its replicas at the last step. Invocations run side by side
    /// within a step, so a set may rightly create from the replicas it read before a
    /// concurrent deployment pass lowered them in the same step.
    replicas: BTreeMap<(String, String), i32>,
}

/// A MachineSet's replicas and the available Machines its status reports.
#[derive(Clone, Copy, Debug)]
struct SetSize {
    replicas: i32,
    available: i32,
}

impl Checker {
    /// Runs every invariant; the first that breaks is returned.
    pub fn check(&mut self, w: &World) -> Result<(), Violation> {
        at_most_one_live_instance_per_machine(w)?;
        every_live_tagged_instance_has_a_machine(w)?;
        foreign_instances_untouched(w)?;
        no_write_against_a_stale_version(w)?;
        every_child_has_its_owner(w)?;
        self.rollouts_within_max_surge(w)?;
        self.rollouts_within_max_unavailable(w)?;
        self.machine_sets_within_replicas(w)?;
        one_machine_set_per_template_hash(w)?;
        one_launch_per_decision(w)?;
        hostile_writes_cost_nothing(w)?;
        Ok(())
    }

    /// A MachineSet never grows past its replicas: the live Machines it owns (desired
    /// item present) never increase to more than `spec.replicas` (the larger of its
    /// value before and after the step: invocations run side by side, and a set may
    /// create from the replicas it read before a deployment pass lowered them) plus its
    /// interrupted Machines (each replaced before it goes). A rollout's surge is in the set's
    /// replicas already; a set whose replicas were just lowered may stay above them
    /// until it deletes, but never grows there. Two invocations creating Machines from
    /// the same read break this first.
    pub fn machine_sets_within_replicas(&mut self, w: &World) -> Result<(), Violation> {
        let mut live: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut interrupted: BTreeMap<(String, String), usize> = BTreeMap::new();
        for item in w.items {
            let Some(key) = item_key(item) else { continue };
            let Some(rest) = key.sk.strip_prefix("Machine#") else {
                continue;
            };
            let Some(set) = owner_name(item, "MachineSet") else {
                continue;
            };
            if rest.ends_with("#spec") {
                *live.entry((key.pk.clone(), set.clone())).or_default() += 1;
            } else if rest.ends_with("#status") && has_true_condition(item, "Interrupted") {
                *interrupted.entry((key.pk.clone(), set)).or_default() += 1;
            }
        }
        let mut replicas = BTreeMap::new();
        for tree in w.rollouts {
            for stored in tree.of_kind(Kind::MachineSet).filter(|s| !s.is_deleting()) {
                let Some(ms) = stored.object.as_machine_set() else {
                    continue;
                };
                let pk = capstan_model::item::partition_key(
                    &ms.metadata.namespace,
                    &ms.spec.cluster_name,
                );
                let id = (pk, ms.metadata.name.clone());
                let now = live.get(&id).copied().unwrap_or(0);
                let read = self
                    .replicas
                    .get(&id)
                    .copied()
                    .unwrap_or(0)
                    .max(ms.spec.replicas);
                replicas.insert(id.clone(), ms.spec.replicas);
                let allowed = read.max(0) as usize + interrupted.get(&id).copied().unwrap_or(0);
                let before = self.machines.get(&id).copied().unwrap_or(0);
                if now > allowed && now > before {
                    return Err(Violation::new(
                        "machine_sets_within_replicas",
                        format!(
                            "MachineSet {}/{} grew from {before} to {now} live Machines; its replicas ({}, {read} at most during the step) and interrupted Machines allow {allowed}",
                            id.0, id.1, ms.spec.replicas
                        ),
                    ));
                }
            }
        }
        self.machines = live;
        self.replicas = replicas;
        Ok(())
    }

    /// A MachineDeployment never lets go of available Machines (shrinks a set whose
    /// Machines its status counts available) so that fewer than `replicas -
    /// maxUnavailable` stay available. Judged on the sets' replicas, as the deployment
    /// decides them, against the availability the sets report: a set shrunk to `n`
    /// keeps `min(available, n)` available Machines, since it deletes unavailable
    /// ones first. Steps where a person changed the deployment's replicas or
    /// `maxUnavailable` are not judged (the deployment may not have seen the change).
    ///
    /// The deployment's pass runs alongside the MachineSet reconcilers and the outside
    /// world, so it may have read the sets' availability as it was before the step or
    /// as it is after: a shrink breaks the bound only if it does with both. As in
    /// Cluster API, `maxUnavailable` bounds what the rollout lets go on what it can
    /// observe (`status.availableReplicas`); a Machine failing from outside in the
    /// same step (an instance stopped or terminated, which the sets report only
    /// later) is a disruption the rollout could not have counted (seed 2 of
    /// `rollout-during-scale-down` under `concurrency,external=0.1`).
    pub fn rollouts_within_max_unavailable(&mut self, w: &World) -> Result<(), Violation> {
        let mut next = BTreeMap::new();
        for (key, d, sets) in deployments(w) {
            let strategy = &d.spec.rollout.strategy;
            if strategy.strategy_type != RolloutStrategyType::RollingUpdate {
                continue;
            }
            let desired = d.spec.replicas.max(0);
            let (_, unavailable) = fenceposts(&strategy.rolling_update, desired);
            let sizes: BTreeMap<String, SetSize> = sets
                .iter()
                .map(|s| {
                    (
                        s.metadata.name.clone(),
                        SetSize {
                            replicas: s.spec.replicas,
                            available: s.status.available_replicas,
                        },
                    )
                })
                .collect();
            if let Some((prev_desired, prev_unavailable, prev)) = self.sets.get(&key)
                && (*prev_desired, *prev_unavailable) == (desired, unavailable)
            {
                let kept = |available: i32, spec: i32| available.min(spec).max(0);
                let floor = desired - unavailable;
                // (before, after) with each set's availability as read before the
                // step (`earlier`) or after it.
                let judge = |earlier: bool| {
                    sets.iter().fold((0, 0), |(before, after), s| {
                        let was = prev.get(&s.metadata.name);
                        let available = match (earlier, was) {
                            (true, Some(was)) => was.available,
                            _ => s.status.available_replicas,
                        };
                        let prev_spec = was.map_or(s.spec.replicas, |w| w.replicas);
                        (
                            before + kept(available, prev_spec),
                            after + kept(available, s.spec.replicas),
                        )
                    })
                };
                let breaks = |(before, after): (i32, i32)| after < before && after < floor;
                let (read_before, read_after) = (judge(true), judge(false));
                if breaks(read_before) && breaks(read_after) {
                    let (before, after) = read_after;
                    return Err(Violation::new(
                        "rollouts_within_max_unavailable",
                        format!(
                            "{key}: its MachineSets were shrunk from {before} to {after} available Machines (from {} to {} by the availability reported before the step); replicas {desired} - maxUnavailable {unavailable} require {floor}",
                            read_before.0, read_before.1
                        ),
                    ));
                }
            }
            next.insert(key, (desired, unavailable, sizes));
        }
        self.sets = next;
        Ok(())
    }

    /// A rollout never grows a MachineDeployment's sets beyond `replicas + maxSurge`
    /// (a total already above it, from a scale-down, may only shrink).
    pub fn rollouts_within_max_surge(&mut self, w: &World) -> Result<(), Violation> {
        let mut next = BTreeMap::new();
        for (key, d, sets) in deployments(w) {
            let desired = d.spec.replicas.max(0);
            let surge = d
                .spec
                .rollout
                .strategy
                .rolling_update
                .max_surge
                .resolve(desired, true);
            let total: i32 = sets.iter().map(|s| s.spec.replicas).sum();
            let limit = desired + surge;
            if let Some((prev_desired, prev_surge, prev_total)) = self.rollout.get(&key) {
                let same_spec = *prev_desired == desired && *prev_surge == surge;
                if same_spec && total > limit && total > *prev_total {
                    return Err(Violation::new(
                        "rollouts_within_max_surge",
                        format!(
                            "{key}: its MachineSets grew to {total} replicas; replicas {desired} + maxSurge {surge} allow {limit}"
                        ),
                    ));
                }
            }
            next.insert(key, (desired, surge, total));
        }
        self.rollout = next;
        Ok(())
    }
}

/// Every live MachineDeployment with its live MachineSets.
fn deployments<'a>(
    w: &'a World,
) -> impl Iterator<Item = (ObjectKey, &'a MachineDeployment, Vec<&'a MachineSet>)> + 'a {
    w.rollouts.iter().flat_map(|tree| {
        tree.of_kind(Kind::MachineDeployment)
            .filter(|s| !s.is_deleting())
            .filter_map(move |md| {
                let d = md.object.as_machine_deployment()?;
                let sets = tree
                    .owned_by(Kind::MachineSet, Kind::MachineDeployment, &d.metadata.name)
                    .filter(|s| !s.is_deleting())
                    .filter_map(|s| s.object.as_machine_set())
                    .collect();
                Some((md.key(), d, sets))
            })
    })
}

/// A MachineDeployment never has two live MachineSets for one template hash (the
/// suffix of a set's name, `<deployment>-<hash>`, and of its template's set label).
pub fn one_machine_set_per_template_hash(w: &World) -> Result<(), Violation> {
    for (key, d, sets) in deployments(w) {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        let prefix = format!("{}-", d.metadata.name);
        for set in sets {
            // The hash the set was made for (its label), else the one in its name.
            let hash = set
                .metadata
                .labels
                .get(capstan_model::labels::TEMPLATE_HASH)
                .map(String::as_str)
                .or_else(|| set.metadata.name.strip_prefix(&prefix))
                .unwrap_or(&set.metadata.name);
            if let Some(other) = seen.insert(hash, &set.metadata.name) {
                return Err(Violation::new(
                    "one_machine_set_per_template_hash",
                    format!(
                        "{key} has MachineSets {other} and {} for template hash {hash}",
                        set.metadata.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// No instance is launched for a Machine that a concurrent pass already launched for:
/// the same launch (the Machine its tags name, instance type, subnet) is never asked
/// for twice at one instant. A legitimate second launch comes later (after capacity fallback with
/// another offering, a backoff, or two minutes of finding nothing), never from the
/// same read.
pub fn one_launch_per_decision(w: &World) -> Result<(), Violation> {
    match w.repeated_launches.first() {
        Some(line) => Err(Violation::new("one_launch_per_decision", line.clone())),
        None => Ok(()),
    }
}

/// The name of an item's owner of `kind`, from its `ownerReferences`.
fn owner_name(item: &Item, kind: &str) -> Option<String> {
    let AttrValue::L(owners) = item.get("ownerReferences")? else {
        return None;
    };
    owners.iter().find_map(|o| {
        let AttrValue::M(o) = o else { return None };
        match (o.get("kind"), o.get("name")) {
            (Some(AttrValue::S(k)), Some(AttrValue::S(n))) if k == kind => Some(n.clone()),
            _ => None,
        }
    })
}

/// Whether an observed item's `status.conditions` holds `kind` with status True.
fn has_true_condition(item: &Item, kind: &str) -> bool {
    let Some(AttrValue::M(status)) = item.get("status") else {
        return false;
    };
    let Some(AttrValue::L(conditions)) = status.get("conditions") else {
        return false;
    };
    conditions.iter().any(|c| {
        let AttrValue::M(c) = c else { return false };
        matches!(c.get("type"), Some(AttrValue::S(t)) if t == kind)
            && matches!(c.get("status"), Some(AttrValue::S(s)) if s == "True")
    })
}

/// Batched launches as the Machines record them: (batch token, launch index) → the
/// uid of the Machine whose `status.launchBatch` names them.
fn batch_members<'a>(items: &[&'a Item]) -> BTreeMap<(&'a str, u32), &'a str> {
    let mut members = BTreeMap::new();
    for item in items {
        if !matches!(item.get("sk"), Some(AttrValue::S(sk)) if sk.starts_with("Machine#") && sk.ends_with("#status"))
        {
            continue;
        }
        let (Some(AttrValue::S(uid)), Some(AttrValue::M(status))) =
            (item.get("uid"), item.get("status"))
        else {
            continue;
        };
        let Some(AttrValue::M(batch)) = status.get("launchBatch") else {
            continue;
        };
        if let (Some(AttrValue::S(token)), Some(AttrValue::N(index))) =
            (batch.get("token"), batch.get("index"))
            && let Ok(index) = index.parse::<u32>()
        {
            members.insert((token.as_str(), index), uid.as_str());
        }
    }
    members
}

/// The uid of the Machine an instance is: its machine-uid tag, or for an instance of
/// a batched launch, the Machine that records its batch and launch index.
fn machine_uid_of<'a>(
    i: &'a Instance,
    members: &BTreeMap<(&'a str, u32), &'a str>,
) -> Option<&'a str> {
    if let Some(uid) = i.tags.get(TAG_MACHINE_UID) {
        return Some(uid);
    }
    let token = i.tags.get(TAG_LAUNCH_BATCH)?;
    members.get(&(token.as_str(), i.launch_index?)).copied()
}

/// At most one live instance is any one Machine's: carries its uid, or is the
/// instance of its batched launch at its launch index.
pub fn at_most_one_live_instance_per_machine(w: &World) -> Result<(), Violation> {
    let members = batch_members(w.items);
    let mut by_uid: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for i in w.instances.iter().filter(|i| i.state.is_live()) {
        if let Some(uid) = machine_uid_of(i, &members) {
            by_uid.entry(uid).or_default().push(&i.instance_id);
        }
    }
    match by_uid.iter().find(|(_, ids)| ids.len() > 1) {
        Some((uid, ids)) => Err(Violation::new(
            "at_most_one_live_instance_per_machine",
            format!(
                "Machine uid {uid} has {} live instances: {}",
                ids.len(),
                ids.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Every live instance tagged with this installation has a Machine with its uid, or is
/// young enough that the drift sweep may not have collected it yet.
pub fn every_live_tagged_instance_has_a_machine(w: &World) -> Result<(), Violation> {
    let uids: BTreeSet<&str> = w
        .items
        .iter()
        .filter(|i| matches!(i.get("sk"), Some(AttrValue::S(sk)) if sk.starts_with("Machine#") && sk.ends_with("#status")))
        .filter_map(|i| match i.get("uid") {
            Some(AttrValue::S(uid)) => Some(uid.as_str()),
            _ => None,
        })
        .collect();
    let members = batch_members(w.items);
    for i in w.instances.iter().filter(|i| i.state.is_live()) {
        if i.tags.get(TAG_INSTALLATION).map(String::as_str) != Some(w.installation) {
            continue;
        }
        let owned = machine_uid_of(i, &members).is_some_and(|u| uids.contains(u));
        let overdue = i
            .launch_time
            .checked_add(ORPHAN_DEADLINE)
            .is_ok_and(|t| t <= w.now);
        if !owned && overdue {
            return Err(Violation::new(
                "every_live_tagged_instance_has_a_machine",
                format!(
                    "instance {} (machine uid {}) launched at {} is {} with no Machine, past the {}-minute collection deadline",
                    i.instance_id,
                    i.tags.get(TAG_MACHINE_UID).map_or("none", String::as_str),
                    i.launch_time,
                    i.state.as_str(),
                    ORPHAN_DEADLINE.as_secs() / 60
                ),
            ));
        }
    }
    Ok(())
}

/// Instances without Capstan's tags are never terminated or modified.
pub fn foreign_instances_untouched(w: &World) -> Result<(), Violation> {
    for (id, expected) in w.foreign {
        match w.instances.iter().find(|i| &i.instance_id == id) {
            Some(i) if i.state == *expected => {}
            Some(i) => {
                return Err(Violation::new(
                    "foreign_instances_untouched",
                    format!(
                        "instance {id} has no Capstan tags but went from {} to {}",
                        expected.as_str(),
                        i.state.as_str()
                    ),
                ));
            }
            None => {
                return Err(Violation::new(
                    "foreign_instances_untouched",
                    format!("instance {id} disappeared"),
                ));
            }
        }
    }
    Ok(())
}

/// No write went through against a version of the item that had already changed.
pub fn no_write_against_a_stale_version(w: &World) -> Result<(), Violation> {
    match w.stale_writes.first() {
        Some(write) => Err(Violation::new(
            "no_write_against_a_stale_version",
            write.clone(),
        )),
        None => Ok(()),
    }
}

/// Every object a controller owns still has its owner (its desired or observed item):
/// nothing is orphaned or half-written.
pub fn every_child_has_its_owner(w: &World) -> Result<(), Violation> {
    let mut objects: BTreeSet<(String, String)> = BTreeSet::new();
    for item in w.items {
        if let Some(k) = item_key(item)
            && let Some((key, _)) = k.parse()
        {
            objects.insert((k.pk.clone(), format!("{}#{}", key.kind, key.name)));
        }
    }
    for item in w.items {
        let (Some(k), Some(AttrValue::L(owners))) = (item_key(item), item.get("ownerReferences"))
        else {
            continue;
        };
        for owner in owners {
            let AttrValue::M(o) = owner else { continue };
            let (Some(AttrValue::S(kind)), Some(AttrValue::S(name)), Some(AttrValue::Bool(true))) =
                (o.get("kind"), o.get("name"), o.get("controller"))
            else {
                continue;
            };
            if !objects.contains(&(k.pk.clone(), format!("{kind}#{name}"))) {
                return Err(Violation::new(
                    "every_child_has_its_owner",
                    format!(
                        "{}/{} is owned by {kind} {name}, which no longer exists",
                        k.pk, k.sk
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Once everything has converged, each owner's status counts what exists.
pub fn status_counts_what_exists(trees: &[Tree]) -> Result<(), Violation> {
    for tree in trees {
        for s in tree.of_kind(Kind::MachineSet).filter(|s| !s.is_deleting()) {
            let Some(ms) = s.object.as_machine_set() else {
                continue;
            };
            let live = tree
                .owned_by(Kind::Machine, Kind::MachineSet, &ms.metadata.name)
                .filter(|m| !m.is_deleting())
                .count() as i32;
            if ms.status.replicas != live {
                return Err(Violation::new(
                    "status_counts_what_exists",
                    format!(
                        "{} reports {} replicas but owns {live} live Machines",
                        s.key(),
                        ms.status.replicas
                    ),
                ));
            }
        }
        for s in tree
            .of_kind(Kind::MachineDeployment)
            .filter(|s| !s.is_deleting())
        {
            let Some(md) = s.object.as_machine_deployment() else {
                continue;
            };
            let sum: i32 = tree
                .owned_by(Kind::MachineSet, Kind::MachineDeployment, &md.metadata.name)
                .filter(|m| !m.is_deleting())
                .filter_map(|m| m.object.as_machine_set())
                .map(|m| m.status.replicas)
                .sum();
            if md.status.replicas != sum {
                return Err(Violation::new(
                    "status_counts_what_exists",
                    format!(
                        "{} reports {} replicas but its MachineSets report {sum}",
                        s.key(),
                        md.status.replicas
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The Machines health checks deleted: in this step, and in the whole run.
pub struct Remediations<'a> {
    pub this_step: &'a [capstan_model::ItemKey],
    pub all: &'a [capstan_model::ItemKey],
}

/// A health check's remediations stay within its limits: when the health-check
/// reconciler deletes selected Machines, the unhealthy share (of the Machines selected
/// before the step) is within `triggerIf`, and the selected Machines being deleted
/// afterwards are at most `maxInFlight`. `before` and `after` are the trees around one
/// health-check step, at `now`.
pub fn health_checks_within_limits(
    before: &BTreeMap<String, Tree>,
    after: &BTreeMap<String, Tree>,
    remediations: &Remediations,
    now: Timestamp,
) -> Result<(), Violation> {
    for (pk, tree) in before {
        let Some(later) = after.get(pk) else { continue };
        for hc in tree
            .of_kind(Kind::MachineHealthCheck)
            .filter(|s| !s.is_deleting())
            .filter_map(|s| s.object.as_health_check())
        {
            let selects = |m: &Machine| {
                m.spec.cluster_name == hc.spec.cluster_name
                    && hc.spec.selector.matches(&m.metadata.labels)
            };
            let machines = |t: &'_ Tree, deleting: bool| -> Vec<Machine> {
                t.of_kind(Kind::Machine)
                    .filter(|s| s.is_deleting() == deleting)
                    .filter_map(|s| s.object.as_machine())
                    .filter(|m| selects(m))
                    .cloned()
                    .collect()
            };
            let selected = machines(tree, false);
            let by_check = |m: &&Machine, keys: &[capstan_model::ItemKey]| {
                keys.iter().any(|k| {
                    k.pk == *pk
                        && k.sk
                            == capstan_model::item::sort_key(
                                Kind::Machine,
                                &m.metadata.name,
                                capstan_model::item::Part::Desired,
                            )
                })
            };
            // Remediations still in flight: selected Machines a health check deleted
            // whose teardown has not finished (scale-downs are not remediations).
            let deleting_after: Vec<Machine> = machines(later, true)
                .into_iter()
                .filter(|m| by_check(&m, remediations.all))
                .collect();
            let remediated: Vec<&str> = deleting_after
                .iter()
                .filter(|m| by_check(m, remediations.this_step))
                .filter(|m| selected.iter().any(|s| s.metadata.uid == m.metadata.uid))
                .map(|m| m.metadata.name.as_str())
                .collect();
            if remediated.is_empty() {
                continue;
            }
            // Invocations run at once, so a pass may have read the table mid-step (a
            // MachineSet's new Machines already there, say): a remediation is within
            // limits if the selection before the step or after it allowed it.
            let mut selected_after = machines(later, false);
            selected_after.extend(
                selected
                    .iter()
                    .filter(|m| remediated.contains(&m.metadata.name.as_str()))
                    .cloned(),
            );
            let judge = |machines: &[Machine]| {
                let expected = machines.len() as i32;
                let unhealthy = machines
                    .iter()
                    .filter(|m| {
                        matches!(verdict(m, &hc.spec.checks, now), Verdict::Unhealthy { .. })
                    })
                    .count() as i32;
                (
                    expected,
                    remediation_allowed(&hc.spec.remediation.trigger_if, expected, unhealthy),
                )
            };
            let (expected_before, allowed_before) = judge(&selected);
            let (expected_after, allowed_after) = judge(&selected_after);
            let expected = expected_before.max(expected_after);
            let name = &hc.metadata.name;
            if let (Err(why), Err(_)) = (allowed_before, allowed_after) {
                return Err(Violation::new(
                    "health_checks_within_limits",
                    format!(
                        "MachineHealthCheck {name} remediated {} although {why}",
                        remediated.join(", ")
                    ),
                ));
            }
            if let Some(limit) = hc.spec.remediation.max_in_flight {
                let limit = limit.resolve(expected, true).max(0);
                let in_flight = deleting_after.len() as i32;
                if in_flight > limit {
                    return Err(Violation::new(
                        "health_checks_within_limits",
                        format!(
                            "MachineHealthCheck {name} remediated {}, leaving {in_flight} selected Machines being deleted; maxInFlight allows {limit}",
                            remediated.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// What a hostile writer puts in the table costs nothing: no instance is launched for
/// an object it made (`hostile-…`), and no instance a hostile write named (a Machine's
/// status it garbled, a forged item in another namespace naming it) is terminated by
/// Capstan while its Machine still wants it (desired item present, not deleting).
pub fn hostile_writes_cost_nothing(w: &World) -> Result<(), Violation> {
    for i in w.instances {
        if let Some(machine) = i.tags.get(capstan_model::labels::TAG_MACHINE)
            && machine.starts_with(super::hostile::HOSTILE_PREFIX)
        {
            return Err(Violation::new(
                "hostile_writes_cost_nothing",
                format!(
                    "instance {} launched for hostile item {machine}",
                    i.instance_id
                ),
            ));
        }
    }
    for v in w.victims {
        if !w.terminated.contains(&v.instance_id) {
            continue;
        }
        let sk = |part: &str| format!("Machine#{}#{part}", v.machine);
        let item = |sk: &str| {
            w.items.iter().find(|i| {
                matches!(i.get("pk"), Some(AttrValue::S(pk)) if *pk == v.pk)
                    && matches!(i.get("sk"), Some(AttrValue::S(s)) if s == sk)
            })
        };
        let wanted = item(&sk("spec")).is_some()
            && item(&sk("status")).is_some_and(|s| s.get("deletionTimestamp").is_none());
        if wanted {
            return Err(Violation::new(
                "hostile_writes_cost_nothing",
                format!(
                    "instance {} of Machine {}/{} terminated after a hostile write named it, while the Machine still wants it",
                    v.instance_id, v.pk, v.machine
                ),
            ));
        }
    }
    Ok(())
}

/// Once converged, every Node of a cluster that declares access belongs to a live
/// Machine of it, and every such Machine has its Node: no NotReady ghost of a deleted
/// Machine is left in the cluster, and nothing runs without its Node.
pub fn one_node_per_machine(
    trees: &[Tree],
    workload: &crate::workload::MemWorkload,
) -> Result<(), Violation> {
    for tree in trees {
        if tree.cluster_access().is_none() {
            continue;
        }
        let machines: Vec<&capstan_model::Machine> = tree
            .of_kind(capstan_model::Kind::Machine)
            .filter_map(|s| s.object.as_machine())
            .collect();
        let Some(first) = machines.first() else {
            continue;
        };
        let key =
            crate::workload::ClusterKey::new(&first.metadata.namespace, &first.spec.cluster_name);
        let ids: std::collections::BTreeSet<&str> = machines
            .iter()
            .filter_map(|m| m.status.instance_id.as_deref())
            .collect();
        let nodes = workload.nodes(key);
        for node in &nodes {
            let id = node
                .provider_id
                .as_deref()
                .and_then(capstan_runtime::ports::instance_id_of);
            if !id.is_some_and(|id| ids.contains(id)) {
                return Err(Violation::new(
                    "one_node_per_machine",
                    format!("Node {} ({id:?}) belongs to no Machine", node.name),
                ));
            }
        }
        for m in &machines {
            let has_node = m
                .status
                .node_ref
                .as_ref()
                .is_some_and(|r| nodes.iter().any(|n| n.uid == r.uid));
            if !has_node {
                return Err(Violation::new(
                    "one_node_per_machine",
                    format!("Machine {} has no Node", m.metadata.name),
                ));
            }
        }
    }
    Ok(())
}
