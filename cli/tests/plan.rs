//! `apply --dry-run` and `delete --dry-run` (the plan) on create, scale, image change
//! and delete, each compared with what applying it then actually does.

mod support;

use std::collections::BTreeSet;

use support::{Workdir, names, quickstart, stdout, text};

/// The Machines a plan creates and deletes, by name.
fn planned_machines(plan: &str, sign: char) -> BTreeSet<String> {
    plan.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{sign} Machine/")))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|name| format!("machine/{name}"))
        .collect()
}

fn machines(w: &Workdir) -> BTreeSet<String> {
    names(w, "machines", &["-A"]).into_iter().collect()
}

/// Runs the plan (exit 2: changes), checks that it wrote nothing, and returns it.
fn plan(w: &Workdir, args: &[&str]) -> String {
    let before = w.ok(&["get", "machines", "-A", "-o", "json"]);
    let out = w.run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}:\n{}", text(&out));
    assert_eq!(
        before,
        w.ok(&["get", "machines", "-A", "-o", "json"]),
        "the plan changed the table"
    );
    stdout(&out)
}

#[test]
fn plan_of_a_create_names_the_machines_apply_then_creates() {
    let w = Workdir::new("plan-create");
    let file = w.write("quickstart.yaml", &quickstart());
    let plan = plan(
        &w,
        &["apply", "-f", &file, "--dry-run", "--detailed-exitcode"],
    );
    assert!(plan.contains("+ Cluster/demo created"), "{plan}");
    assert!(
        plan.contains("+ MachineDeployment/demo-workers created"),
        "{plan}"
    );
    assert!(plan.contains("RunInstances ×"), "{plan}");
    assert!(plan.contains("(6 instances)"), "{plan}");
    assert!(
        plan.contains("TerminateInstances ×0 (0 instances)"),
        "{plan}"
    );
    assert!(
        plan.contains(
            "Plan: 7 to create, 0 to change, 0 to delete; Machines: 6 to create, 0 to delete"
        ),
        "{plan}"
    );
    let create = planned_machines(&plan, '+');
    assert_eq!(create.len(), 6, "{plan}");
    assert!(
        names(&w, "clusters", &[]).is_empty(),
        "a dry run wrote the Cluster"
    );

    w.ok(&["apply", "-f", &file]);
    assert_eq!(machines(&w), create, "plan:\n{plan}");

    // Nothing left to do: exit 0 and says so.
    let again = w.run(&["apply", "-f", &file, "--dry-run", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(stdout(&again).contains("No changes."), "{}", text(&again));
}

#[test]
fn plan_of_a_scale_up_and_down_matches_what_happens() {
    let w = Workdir::new("plan-scale");
    let file = w.write("quickstart.yaml", &quickstart());
    w.ok(&["apply", "-f", &file]);
    let before = machines(&w);
    let five = w.write(
        "five.yaml",
        &quickstart().replacen("      replicas: 3\n", "      replicas: 5\n", 1),
    );
    let plan_up = plan(
        &w,
        &["apply", "-f", &five, "--dry-run", "--detailed-exitcode"],
    );
    assert!(plan_up.contains("~ Cluster/demo configured"), "{plan_up}");
    assert!(
        plan_up.contains("~ MachineDeployment/demo-workers configured"),
        "{plan_up}"
    );
    assert!(plan_up.contains("demo-workers: 2 to add"), "{plan_up}");
    assert!(plan_up.contains("(2 instances)"), "{plan_up}");
    let create = planned_machines(&plan_up, '+');
    assert_eq!(create.len(), 2);
    assert!(planned_machines(&plan_up, '-').is_empty(), "{plan_up}");
    w.ok(&["apply", "-f", &five]);
    let after = machines(&w);
    assert_eq!(
        after.difference(&before).cloned().collect::<BTreeSet<_>>(),
        create
    );

    // Back down to three: two to remove, terminated.
    let plan_down = plan(
        &w,
        &["apply", "-f", &file, "--dry-run", "--detailed-exitcode"],
    );
    assert!(
        plan_down.contains("demo-workers: 2 to remove"),
        "{plan_down}"
    );
    assert!(plan_down.contains("TerminateInstances ×"), "{plan_down}");
    assert!(plan_down.contains("(2 instances)"), "{plan_down}");
    let delete = planned_machines(&plan_down, '-');
    w.ok(&["apply", "-f", &file]);
    assert_eq!(
        after
            .difference(&machines(&w))
            .cloned()
            .collect::<BTreeSet<_>>(),
        delete
    );
}

#[test]
fn plan_of_an_image_change_is_a_rollout_step_by_step() {
    let w = Workdir::new("plan-rollout");
    let file = w.write("quickstart.yaml", &quickstart());
    w.ok(&["apply", "-f", &file]);
    let before = machines(&w);
    let image = w.write(
        "image.yaml",
        &quickstart().replace("ami-0abcdef1234567890", "ami-0fedcba9876543210"),
    );
    let plan = plan(
        &w,
        &["apply", "-f", &image, "--dry-run", "--detailed-exitcode"],
    );
    assert!(
        plan.contains("~ MachineClass/demo-workers configured"),
        "{plan}"
    );
    assert!(plan.contains("demo-workers: 3 to replace"), "{plan}");
    assert!(plan.contains("demo-control-plane: 3 to replace"), "{plan}");
    assert!(plan.contains("(6 instances)"), "{plan}");
    // A rolling update, maxSurge 1: one new Machine per pool per step, so several steps.
    let steps = plan
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains(" at +"))
        .count();
    assert!(steps >= 3, "{plan}");
    let create = planned_machines(&plan, '+');
    let delete = planned_machines(&plan, '-');
    assert_eq!(delete, before, "{plan}");
    w.ok(&["apply", "-f", &image]);
    assert_eq!(machines(&w), create, "plan:\n{plan}");
}

#[test]
fn plan_of_a_delete_terminates_every_instance() {
    let w = Workdir::new("plan-delete");
    let file = w.write("quickstart.yaml", &quickstart());
    w.ok(&["apply", "-f", &file]);
    let before = machines(&w);
    let plan = plan(
        &w,
        &[
            "delete",
            "cluster",
            "demo",
            "--dry-run",
            "--detailed-exitcode",
        ],
    );
    assert!(plan.contains("- Cluster/demo deleted"), "{plan}");
    assert!(
        plan.contains("- MachineClass/demo-workers deleted"),
        "{plan}"
    );
    assert!(plan.contains("TerminateInstances ×"), "{plan}");
    assert!(plan.contains("(6 instances)"), "{plan}");
    assert!(plan.contains("RunInstances ×0 (0 instances)"), "{plan}");
    assert_eq!(planned_machines(&plan, '-'), before);
    w.ok(&["delete", "cluster", "demo", "--wait"]);
    assert!(machines(&w).is_empty());
}
