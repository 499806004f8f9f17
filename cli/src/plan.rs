//! `capstan apply --dry-run`: a plan, like `terraform plan`, from the live state and
//! the pure deciders.
//!
//! How it is computed: a copy of the control plane — the embedded one on virtual time,
//! holding the live table and the instances it knows — takes the new desired items
//! (and the prunes), and the real handlers, deciding with `capstan_reconcile::decide`,
//! run until the tree converges again, against the simulated EC2. Nothing is written to
//! the target. What the copy did is the plan: the objects `apply` would report, the
//! objects the reconcilers would create, change and delete, the Machines launched and
//! deleted (a rollout's replacements, step by step), and the EC2 calls made on the
//! way. On the local context the copy is exact: it is a replay of the same journal
//! with the same seed, so even the generated Machine names are the ones `apply` will
//! create.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use capstan_embedded::{Embedded, RunOutcome};
use capstan_model::{Kind, Object, ObjectKey};
use capstan_reconcile::Tree;
use capstan_runtime::apply::Applied;

use crate::output::paint;
use crate::target::{Local, Target};

/// What the copy looked like at one moment: every object's desired spec, and the live
/// Machines with the MachineDeployment each belongs to.
#[derive(Clone, Default)]
struct Snapshot {
    specs: BTreeMap<ObjectKey, serde_json::Value>,
    /// Machine name → its MachineDeployment (or MachineSet, or "-").
    machines: BTreeMap<ObjectKey, String>,
}

impl Snapshot {
    fn of(trees: &[Tree]) -> Snapshot {
        let mut snap = Snapshot::default();
        for tree in trees {
            for s in tree.all() {
                if s.is_deleting() {
                    continue;
                }
                snap.specs.insert(s.key(), s.object.spec_json());
                if s.object.kind() == Kind::Machine {
                    snap.machines
                        .insert(s.key(), deployment_of(tree, &s.object));
                }
            }
        }
        snap
    }
}

/// The MachineDeployment a Machine belongs to (through its MachineSet).
fn deployment_of(tree: &Tree, machine: &Object) -> String {
    let Some(owner) = machine.metadata().controller() else {
        return "-".into();
    };
    match owner.kind {
        Kind::MachineSet => tree
            .get(Kind::MachineSet, &owner.name)
            .and_then(|ms| ms.object.metadata().controller().map(|o| o.name.clone()))
            .unwrap_or_else(|| owner.name.clone()),
        _ => owner.name.clone(),
    }
}

/// What will change.
pub struct Plan {
    pub applied: Vec<Applied>,
    pub pruned: Vec<ObjectKey>,
    /// Objects (other than Machines) the control plane creates, changes, deletes.
    pub created: Vec<ObjectKey>,
    pub configured: Vec<ObjectKey>,
    pub deleted: Vec<ObjectKey>,
    /// Machines created and deleted, with their MachineDeployment.
    pub machines_created: Vec<(ObjectKey, String)>,
    pub machines_deleted: Vec<(ObjectKey, String)>,
    /// The Machines that came and went between two idle moments of the control
    /// plane: a rollout's steps.
    pub steps: Vec<String>,
    pub run_instances_calls: u64,
    pub instances_launched: u64,
    pub terminate_instances_calls: u64,
    pub instances_terminated: u64,
    /// What would still not have converged after an hour (the plan's own warning).
    pub not_converged: Vec<String>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.applied
            .iter()
            .any(|a| !matches!(a, Applied::Unchanged(_)))
            || !self.pruned.is_empty()
    }
}

/// Applies `objects` (and deletes `prune`) on `cp`, runs it to convergence, and
/// reports what changed.
pub async fn compute(
    local: &mut Local,
    objects: &[Object],
    prune: &[ObjectKey],
) -> anyhow::Result<Plan> {
    let before = Snapshot::of(&local.cp.trees());
    let calls = local.cp.ec2.calls();
    let launched = local.cp.ec2.launched_total();
    let terminated = local.cp.ec2.terminated_by_request().len() as u64;
    let applied = local.cp.apply(objects).await?;
    let mut pruned = Vec::new();
    for key in prune {
        if local.cp.delete(key).await? {
            pruned.push(key.clone());
        }
    }
    let mut steps = Vec::new();
    let mut last = before.machines.clone();
    let start = local.cp.now();
    let outcome = local
        .settle_watching(|cp: &Embedded| {
            let now = Snapshot::of(&cp.trees()).machines;
            let added: Vec<String> = now
                .iter()
                .filter(|(k, _)| !last.contains_key(*k))
                .map(|(k, md)| format!("+{} ({md})", k.name))
                .collect();
            let removed: Vec<String> = last
                .iter()
                .filter(|(k, _)| !now.contains_key(*k))
                .map(|(k, md)| format!("-{} ({md})", k.name))
                .collect();
            if !added.is_empty() || !removed.is_empty() {
                let at = std::time::Duration::try_from(cp.now().duration_since(start))
                    .unwrap_or_default();
                steps.push(format!(
                    "at +{}s: {}",
                    at.as_secs(),
                    added
                        .into_iter()
                        .chain(removed)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                last = now;
            }
        })
        .await?;
    let after = Snapshot::of(&local.cp.trees());
    let calls_after = local.cp.ec2.calls();
    let written: BTreeSet<ObjectKey> = applied
        .iter()
        .map(|a| match a {
            Applied::Created(k) | Applied::Configured(k) | Applied::Unchanged(k) => k.clone(),
        })
        .chain(pruned.iter().cloned())
        .collect();
    let not_machine = |k: &&ObjectKey| k.kind != Kind::Machine && !written.contains(*k);
    let created = after
        .specs
        .keys()
        .filter(|k| !before.specs.contains_key(*k))
        .filter(not_machine)
        .cloned()
        .collect();
    let deleted = before
        .specs
        .keys()
        .filter(|k| !after.specs.contains_key(*k))
        .filter(not_machine)
        .cloned()
        .collect();
    let configured = after
        .specs
        .iter()
        .filter(|(k, spec)| before.specs.get(*k).is_some_and(|old| old != *spec))
        .map(|(k, _)| k)
        .filter(not_machine)
        .cloned()
        .collect();
    let machines_created = after
        .machines
        .iter()
        .filter(|(k, _)| !before.machines.contains_key(*k))
        .map(|(k, md)| (k.clone(), md.clone()))
        .collect();
    let machines_deleted = before
        .machines
        .iter()
        .filter(|(k, _)| !after.machines.contains_key(*k))
        .map(|(k, md)| (k.clone(), md.clone()))
        .collect();
    Ok(Plan {
        applied,
        pruned,
        created,
        configured,
        deleted,
        machines_created,
        machines_deleted,
        steps,
        run_instances_calls: calls_after.run_instances - calls.run_instances,
        instances_launched: local.cp.ec2.launched_total() - launched,
        terminate_instances_calls: calls_after.terminate_instances - calls.terminate_instances,
        instances_terminated: local.cp.ec2.terminated_by_request().len() as u64 - terminated,
        not_converged: match outcome {
            RunOutcome::Done => Vec::new(),
            RunOutcome::TimedOut(problems) => problems,
        },
    })
}

/// Prints the plan as `terraform plan` would.
pub fn render(plan: &Plan, target: &Target) -> String {
    let mut out = format!("Plan against {}:\n", target.describe());
    let line = |sign: &str, text: String| {
        let code = match sign {
            "+" => 32,
            "-" => 31,
            "~" => 33,
            _ => 0,
        };
        if code == 0 {
            format!("  {sign} {text}\n")
        } else {
            format!("  {}\n", paint(&format!("{sign} {text}"), code))
        }
    };
    out.push_str(if plan.applied.is_empty() {
        "\nObjects named (what delete will report):\n"
    } else {
        "\nObjects in the files (what apply will report):\n"
    });
    for a in &plan.applied {
        let (sign, key, verb) = match a {
            Applied::Created(k) => ("+", k, "created"),
            Applied::Configured(k) => ("~", k, "configured"),
            Applied::Unchanged(k) => ("=", k, "unchanged"),
        };
        out.push_str(&line(sign, format!("{}/{} {verb}", key.kind, key.name)));
    }
    let gone = if plan.applied.is_empty() {
        "deleted"
    } else {
        "pruned"
    };
    for k in &plan.pruned {
        out.push_str(&line("-", format!("{}/{} {gone}", k.kind, k.name)));
    }
    if !(plan.created.is_empty() && plan.configured.is_empty() && plan.deleted.is_empty()) {
        out.push_str("\nObjects the control plane will change:\n");
        for k in &plan.created {
            out.push_str(&line("+", format!("{}/{} created", k.kind, k.name)));
        }
        for k in &plan.configured {
            out.push_str(&line("~", format!("{}/{} configured", k.kind, k.name)));
        }
        for k in &plan.deleted {
            out.push_str(&line("-", format!("{}/{} deleted", k.kind, k.name)));
        }
    }
    if !(plan.machines_created.is_empty() && plan.machines_deleted.is_empty()) {
        out.push_str("\nMachines:\n");
        let mut per_md: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (k, md) in &plan.machines_created {
            out.push_str(&line("+", format!("Machine/{} ({md}) create", k.name)));
            per_md.entry(md).or_default().0 += 1;
        }
        for (k, md) in &plan.machines_deleted {
            out.push_str(&line("-", format!("Machine/{} ({md}) delete", k.name)));
            per_md.entry(md).or_default().1 += 1;
        }
        for (md, (created, deleted)) in per_md {
            let replaced = created.min(deleted);
            let mut parts = Vec::new();
            if replaced > 0 {
                parts.push(format!("{replaced} to replace"));
            }
            if created > replaced {
                parts.push(format!("{} to add", created - replaced));
            }
            if deleted > replaced {
                parts.push(format!("{} to remove", deleted - replaced));
            }
            out.push_str(&format!("    {md}: {}\n", parts.join(", ")));
        }
    }
    if !plan.steps.is_empty() {
        out.push_str("\nSteps (Machines that come and go, in order):\n");
        for (i, step) in plan.steps.iter().enumerate() {
            out.push_str(&format!("  {}. {step}\n", i + 1));
        }
    }
    out.push_str("\nEC2 calls:\n");
    out.push_str(&format!(
        "  RunInstances ×{} ({} instances)\n  TerminateInstances ×{} ({} instances)\n",
        plan.run_instances_calls,
        plan.instances_launched,
        plan.terminate_instances_calls,
        plan.instances_terminated
    ));
    if !plan.not_converged.is_empty() {
        out.push_str("\nWould not converge (within an hour):\n");
        for p in &plan.not_converged {
            out.push_str(&format!("  {}\n", paint(p, 31)));
        }
    }
    let objects_created = plan
        .applied
        .iter()
        .filter(|a| matches!(a, Applied::Created(_)))
        .count()
        + plan.created.len();
    let objects_changed = plan
        .applied
        .iter()
        .filter(|a| matches!(a, Applied::Configured(_)))
        .count()
        + plan.configured.len();
    let objects_deleted = plan.pruned.len() + plan.deleted.len();
    if plan.has_changes() {
        out.push_str(&format!(
            "\nPlan: {objects_created} to create, {objects_changed} to change, {objects_deleted} to delete; Machines: {} to create, {} to delete; RunInstances ×{}, TerminateInstances ×{}.\n",
            plan.machines_created.len(),
            plan.machines_deleted.len(),
            plan.instances_launched,
            plan.instances_terminated
        ));
    } else {
        out.push_str("\nNo changes. The table matches the files.\n");
    }
    out
}

/// `apply --dry-run` and `delete --dry-run`: 0, or 2 with `--detailed-exitcode` when
/// there are changes.
pub async fn run(
    target: Target,
    objects: &[Object],
    delete: &[ObjectKey],
    detailed_exitcode: bool,
) -> anyhow::Result<ExitCode> {
    let mut target = target;
    let plan = match &mut target {
        Target::Local(local) => compute(local, objects, delete).await?,
        Target::Running(running) => {
            let items = running.store.items()?;
            let instances = capstan_local::saved_instances(&running.store)?;
            let mut replica =
                crate::replica::build(items, instances, "local", "us-east-1", objects).await?;
            compute(&mut replica, objects, delete).await?
        }
        #[cfg(feature = "aws")]
        Target::Remote(remote) => {
            let mut replica = crate::replica::of(remote, objects).await?;
            compute(&mut replica, objects, delete).await?
        }
    };
    print!("{}", render(&plan, &target));
    Ok(if detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
