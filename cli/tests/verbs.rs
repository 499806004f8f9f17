//! Every verb through the binary, against the local context (the default when there
//! is no configuration file).

mod support;

use support::{Workdir, names, quickstart, stdout, text};

fn applied(w: &Workdir) -> String {
    let file = w.write("quickstart.yaml", &quickstart());
    w.ok(&["apply", "-f", &file])
}

#[test]
fn apply_reports_created_configured_unchanged_like_kubectl() {
    let w = Workdir::new("apply-verbs");
    let first = applied(&w);
    for line in [
        "Cluster/demo created",
        "MachineClass/demo-control-plane created",
        "MachineClass/demo-workers created",
    ] {
        assert!(first.contains(line), "{line:?} missing:\n{first}");
    }
    let file = w.write("quickstart.yaml", &quickstart());
    let again = w.ok(&["apply", "-f", &file]);
    assert!(again.contains("Cluster/demo unchanged"), "{again}");
    let changed = w.write(
        "more.yaml",
        &quickstart().replacen(
            "replicas: 3            # odd",
            "replicas: 5            # odd",
            1,
        ),
    );
    let out = w.ok(&["apply", "-f", &changed, "--wait"]);
    assert!(out.contains("Cluster/demo configured"), "{out}");
    assert!(out.contains("MachineClass/demo-workers unchanged"), "{out}");
    assert!(out.contains("converged"), "{out}");
}

#[test]
fn apply_validates_exactly_as_validate_does_and_writes_nothing_when_invalid() {
    let w = Workdir::new("apply-invalid");
    let bad = w.write(
        "bad.yaml",
        &quickstart().replacen("instanceTypes:", "instanceTypez:", 1),
    );
    let validate = w.run(&["validate", "-f", &bad]);
    let apply = w.run(&["apply", "-f", &bad]);
    assert_eq!(apply.status.code(), Some(1), "{}", text(&apply));
    assert!(
        text(&apply).contains("nothing was applied"),
        "{}",
        text(&apply)
    );
    // The same report, line for line, as `validate` prints.
    assert!(
        text(&apply).starts_with(&text(&validate)),
        "validate:\n{}\napply:\n{}",
        text(&validate),
        text(&apply)
    );
    assert!(names(&w, "clusters", &[]).is_empty());
}

#[test]
fn apply_reads_standard_input() {
    let w = Workdir::new("apply-stdin");
    let out = w.run_with_input(&["apply", "-f", "-"], &quickstart());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(names(&w, "cl", &[]), ["cluster/demo"]);
}

#[test]
fn get_lists_every_kind_by_plural_short_and_singular_names() {
    let w = Workdir::new("get-kinds");
    applied(&w);
    assert_eq!(names(&w, "machines", &[]).len(), 6);
    assert_eq!(names(&w, "ma", &[]), names(&w, "Machine", &[]));
    assert_eq!(
        names(&w, "md", &[]),
        [
            "machinedeployment/demo-control-plane",
            "machinedeployment/demo-workers"
        ]
    );
    assert_eq!(names(&w, "ms", &[]).len(), 2);
    assert_eq!(
        names(&w, "mc", &[]),
        [
            "machineclass/demo-control-plane",
            "machineclass/demo-workers"
        ]
    );
    assert!(names(&w, "mhc", &[]).is_empty());
    assert_eq!(names(&w, "clusters", &[]), ["cluster/demo"]);
    // Label selectors, namespaces.
    let workers = names(&w, "machines", &["-l", "capstan.dev/pool=workers"]);
    assert_eq!(workers.len(), 3, "{workers:?}");
    assert!(
        workers
            .iter()
            .all(|n| n.starts_with("machine/demo-workers-"))
    );
    assert!(names(&w, "machines", &["-n", "elsewhere"]).is_empty());
    assert_eq!(names(&w, "machines", &["-A"]).len(), 6);
    let unknown = w.run(&["get", "pods"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown).contains("machinedeployments (md)"),
        "{}",
        text(&unknown)
    );
}

#[test]
fn get_prints_aligned_tables_with_each_kinds_columns() {
    let w = Workdir::new("get-tables");
    applied(&w);
    let machines = w.ok(&["get", "machines"]);
    let header = machines.lines().next().unwrap_or_default();
    for column in [
        "NAME", "CLUSTER", "PHASE", "INSTANCE", "TYPE", "SUBNET", "NODE", "AGE",
    ] {
        assert!(header.contains(column), "{header}");
    }
    // Aligned: every row's PHASE starts where the header's does.
    let at = header.find("PHASE").unwrap_or_default();
    for row in machines.lines().skip(1) {
        assert_eq!(row.get(at..at + 7), Some("Running"), "{machines}");
    }
    let md = w.ok(&["get", "md"]);
    let header = md.lines().next().unwrap_or_default();
    for column in ["REPLICAS", "READY", "UP-TO-DATE", "AVAILABLE", "PHASE"] {
        assert!(header.contains(column), "{header}");
    }
    let wide = w.ok(&["get", "machines", "-o", "wide"]);
    assert!(
        wide.lines()
            .next()
            .unwrap_or_default()
            .contains("INTERNAL-IP"),
        "{wide}"
    );
    let all = w.ok(&["get", "machines", "-A"]);
    assert!(all.starts_with("NAMESPACE"), "{all}");
}

#[test]
fn get_json_and_yaml_are_a_list_for_many_and_the_object_for_one() {
    let w = Workdir::new("get-json");
    applied(&w);
    let list: serde_json::Value =
        serde_json::from_str(&w.ok(&["get", "machines", "-o", "json"])).expect("JSON");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(6));
    assert_eq!(list["items"][0]["kind"], "Machine");
    assert!(list["items"][0]["status"]["instanceId"].is_string());
    let one: serde_json::Value =
        serde_json::from_str(&w.ok(&["get", "cluster", "demo", "-o", "json"])).expect("JSON");
    assert_eq!(one["kind"], "Cluster");
    assert_eq!(one["metadata"]["name"], "demo");
    // Stable: the same state prints the same bytes.
    assert_eq!(
        w.ok(&["get", "md", "-o", "yaml"]),
        w.ok(&["get", "md", "-o", "yaml"])
    );
    let yaml = w.ok(&["get", "cluster", "demo", "-o", "yaml"]);
    assert!(yaml.contains("kind: Cluster"), "{yaml}");
    let missing = w.run(&["get", "cluster", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("Cluster \"nope\" not found"),
        "{}",
        text(&missing)
    );
}

#[test]
fn describe_shows_the_tree_and_one_object_with_its_conditions() {
    let w = Workdir::new("describe");
    applied(&w);
    let tree = w.ok(&["describe", "cluster", "demo"]);
    assert!(tree.contains("└─MachineDeployment/demo-workers"), "{tree}");
    assert!(tree.contains("Conditions:"), "{tree}");
    assert!(tree.contains("Every object is Ready."), "{tree}");
    let md = w.ok(&["describe", "md/demo-workers"]);
    for part in [
        "Name:         demo-workers",
        "Controlled By: Cluster/demo",
        "Spec:",
        "Status:",
        "Conditions:",
        "Ready",
    ] {
        assert!(md.contains(part), "{part:?} missing:\n{md}");
    }
}

#[test]
fn describe_says_what_is_not_ready_why_and_since_when() {
    let w = Workdir::new("describe-not-ready");
    let bad = w.write(
        "bad-image.yaml",
        &quickstart().replace("ami-0abcdef1234567890", "ami-0000000000000dead"),
    );
    w.ok(&["apply", "-f", &bad]);
    let tree = w.ok(&["describe", "cluster", "demo"]);
    assert!(tree.contains("Not Ready:"), "{tree}");
    let machine_line = tree
        .lines()
        .find(|l| l.trim_start().starts_with("Machine/demo-workers-") && l.contains("since"))
        .unwrap_or_else(|| panic!("no Machine in the Not Ready list:\n{tree}"));
    assert!(
        machine_line.contains("InvalidAMIID.NotFound"),
        "{machine_line}"
    );
    assert!(machine_line.contains("ago"), "{machine_line}");
    // Waiting for it to become Ready times out, exit 2, naming why.
    let wait = w.run(&[
        "wait",
        "--for=condition=Ready",
        "cluster/demo",
        "--timeout",
        "1s",
    ]);
    assert_eq!(wait.status.code(), Some(2), "{}", text(&wait));
    assert!(
        text(&wait).contains("timed out waiting for Cluster/demo"),
        "{}",
        text(&wait)
    );
}

#[test]
fn scale_a_pool_and_refuse_a_deployment_its_cluster_owns() {
    let w = Workdir::new("scale");
    applied(&w);
    let out = w.ok(&["scale", "pool", "demo/workers", "--replicas", "5"]);
    assert!(out.contains("Cluster/demo configured"), "{out}");
    assert_eq!(
        names(&w, "machines", &["-l", "capstan.dev/pool=workers"]).len(),
        5
    );
    let md: serde_json::Value =
        serde_json::from_str(&w.ok(&["get", "md", "demo-workers", "-o", "json"])).expect("JSON");
    assert_eq!(md["spec"]["replicas"], 5);
    assert_eq!(md["status"]["readyReplicas"], 5);
    let refused = w.run(&["scale", "md", "demo-workers", "--replicas", "2"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).contains("capstan scale pool demo/workers --replicas N"),
        "{}",
        text(&refused)
    );
    let no_pool = w.run(&["scale", "pool", "demo/gpus", "--replicas", "1"]);
    assert!(
        text(&no_pool).contains("has no worker pool \"gpus\" (it has: workers)"),
        "{}",
        text(&no_pool)
    );
}

#[test]
fn rollout_restart_replaces_every_machine_and_status_follows_it() {
    let w = Workdir::new("rollout");
    applied(&w);
    let before = names(&w, "machines", &["-l", "capstan.dev/pool=workers"]);
    let out = w.ok(&["rollout", "restart", "pool/demo/workers"]);
    assert!(out.contains("Cluster/demo configured"), "{out}");
    let after = names(&w, "machines", &["-l", "capstan.dev/pool=workers"]);
    assert_eq!(after.len(), 3);
    assert!(
        after.iter().all(|m| !before.contains(m)),
        "{before:?} → {after:?}"
    );
    let cluster: serde_json::Value =
        serde_json::from_str(&w.ok(&["get", "cluster", "demo", "-o", "json"])).expect("JSON");
    assert!(
        cluster["spec"]["workers"][0]["rollout"]["after"].is_string(),
        "{cluster}"
    );
    let status = w.ok(&["rollout", "status", "pool", "demo/workers"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    // Pause and resume the whole cluster.
    w.ok(&["rollout", "pause", "cluster/demo"]);
    let paused = w.ok(&["get", "cl", "-o", "wide"]);
    assert!(paused.contains("true"), "{paused}");
    w.ok(&["rollout", "resume", "cluster/demo"]);
    let refused = w.run(&["rollout", "pause", "pool/demo/workers"]);
    assert!(
        text(&refused).contains("rollout pause cluster/demo"),
        "{}",
        text(&refused)
    );
}

#[test]
fn wait_for_a_condition() {
    let w = Workdir::new("wait");
    applied(&w);
    let out = w.ok(&[
        "wait",
        "--for=condition=Ready",
        "md/demo-workers",
        "--timeout",
        "5s",
    ]);
    assert!(
        out.contains("MachineDeployment/demo-workers condition met"),
        "{out}"
    );
    let bad = w.run(&["wait", "--for=ready", "md/demo-workers"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad).contains("--for=condition=Ready"),
        "{}",
        text(&bad)
    );
}

#[test]
fn diff_prints_a_unified_diff_and_exits_1_when_the_files_differ() {
    let w = Workdir::new("diff");
    let file = w.write("quickstart.yaml", &quickstart());
    w.ok(&["apply", "-f", &file]);
    let same = w.run(&["diff", "-f", &file]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    assert!(stdout(&same).is_empty(), "{}", text(&same));
    let changed = w.write(
        "changed.yaml",
        &quickstart().replace("ami-0abcdef1234567890", "ami-0fedcba9876543210"),
    );
    let out = w.run(&["diff", "-f", &changed]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let diff = stdout(&out);
    assert!(
        diff.contains("--- live/default/MachineClass/demo-workers"),
        "{diff}"
    );
    assert!(
        diff.contains("+++ file/default/MachineClass/demo-workers"),
        "{diff}"
    );
    assert!(
        diff.contains("-  imageId: ami-0abcdef1234567890\n+  imageId: ami-0fedcba9876543210"),
        "{diff}"
    );
    assert!(diff.contains("@@ -"), "{diff}");
}

#[test]
fn delete_by_name_and_by_file_and_wait_until_gone() {
    let w = Workdir::new("delete");
    applied(&w);
    let one = names(&w, "machines", &["-l", "capstan.dev/pool=workers"])[0].clone();
    let out = w.ok(&["delete", &one]);
    assert!(out.contains("deleted"), "{out}");
    // Its MachineSet replaces it.
    let now = names(&w, "machines", &["-l", "capstan.dev/pool=workers"]);
    assert_eq!(now.len(), 3);
    assert!(!now.contains(&one));
    let file = w.write("quickstart.yaml", &quickstart());
    let out = w.ok(&["delete", "-f", &file, "--wait"]);
    for line in [
        "Cluster/demo deleted",
        "MachineClass/demo-workers deleted",
        "gone",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    assert!(names(&w, "machines", &["-A"]).is_empty());
    let again = w.ok(&["delete", "-f", &file]);
    assert!(again.contains("Cluster/demo not found"), "{again}");
    let missing = w.run(&["delete", "cluster", "demo"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn apply_prune_deletes_what_the_files_no_longer_hold() {
    let w = Workdir::new("prune");
    let extra = w.write(
        "extra.yaml",
        "apiVersion: capstan.dev/v1alpha1\nkind: MachineClass\nmetadata: {name: demo-spare}\nspec:\n  clusterName: demo\n  imageId: ami-0abcdef1234567890\n  instanceTypes: [m5.large]\n  subnets: [subnet-0a1b2c3d4e5f60001]\n",
    );
    let file = w.write("quickstart.yaml", &quickstart());
    w.ok(&["apply", "-f", &file, "-f", &extra]);
    assert_eq!(names(&w, "mc", &[]).len(), 3);
    let out = w.ok(&["apply", "-f", &file, "--prune", "--cluster", "demo"]);
    assert!(out.contains("MachineClass/demo-spare pruned"), "{out}");
    assert!(out.contains("Cluster/demo unchanged"), "{out}");
    // Objects a controller owns are never pruned.
    assert_eq!(names(&w, "md", &[]).len(), 2);
    assert_eq!(names(&w, "mc", &[]).len(), 2);
    let needs_cluster = w.run(&["apply", "-f", &file, "--prune"]);
    assert_eq!(
        needs_cluster.status.code(),
        Some(2),
        "{}",
        text(&needs_cluster)
    );
}

#[test]
fn the_local_context_remembers_across_commands_and_replays_identically() {
    let w = Workdir::new("remember");
    applied(&w);
    let first = w.ok(&["get", "machines", "-o", "json"]);
    let second = w.ok(&["get", "machines", "-o", "json"]);
    assert_eq!(first, second);
    assert!(w.dir.join(".capstan/journal.jsonl").is_file());
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    let w = Workdir::new("completion");
    for shell in ["bash", "zsh", "fish"] {
        let out = w.ok(&["completion", shell]);
        assert!(out.contains("capstan"), "{shell}");
        assert!(out.contains("rollout"), "{shell}: {out}");
    }
}

#[test]
fn every_verb_has_an_example_in_its_help() {
    let w = Workdir::new("help");
    for verb in [
        "apply",
        "delete",
        "get",
        "describe",
        "scale",
        "rollout",
        "wait",
        "diff",
        "schema",
        "completion",
        "validate",
        "up",
    ] {
        let out = w.ok(&[verb, "--help"]);
        assert!(out.contains("Examples:"), "{verb}: {out}");
        assert!(out.contains(&format!("capstan {verb}")), "{verb}: {out}");
    }
    let top = w.ok(&["--help"]);
    assert!(top.contains("Exit codes:"), "{top}");
}

/// `annotate` sets and removes annotations like kubectl's; on a Machine being deleted
/// it only removes, and removing a deletion hook lets the deletion go on.
#[test]
fn annotate_sets_and_removes_and_lets_a_deletion_hook_go() {
    let w = Workdir::new("annotate");
    let cluster =
        std::fs::read_to_string(support::repo().join("examples/rollout-drain/cluster.yaml"))
            .expect("example");
    let file = w.write("shop.yaml", &cluster);
    w.ok(&["apply", "-f", &file]);
    let workers: Vec<String> = names(&w, "machines", &[])
        .into_iter()
        .filter_map(|n| n.rsplit('/').next().map(str::to_string))
        .filter(|n| n.starts_with("shop-web-"))
        .collect();
    assert_eq!(workers.len(), 3, "{workers:?}");
    let victim = workers[0].as_str();
    let hook = "pre-drain.delete.hook.capstan.dev/backup";
    let out = w.ok(&[
        "annotate",
        "machine",
        victim,
        "capstan.dev/delete-machine=",
        &format!("{hook}="),
    ]);
    assert!(
        out.contains(&format!("Machine/{victim} configured")),
        "{out}"
    );
    let bad = w.run(&["annotate", "machine", victim, "no-equals-or-dash"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("KEY- to remove one"), "{}", text(&bad));

    w.ok(&["scale", "pool", "shop/web", "--replicas", "2"]);
    let held = w.ok(&["describe", "machine", victim]);
    assert!(held.contains("WaitingForPreDrainHook"), "{held}");
    assert!(held.contains("backup"), "{held}");
    let refused = w.run(&["annotate", "machine", victim, "team=web"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("can only be removed now"),
        "{}",
        text(&refused)
    );

    let out = w.ok(&[
        "annotate",
        &format!("machine/{victim}"),
        &format!("{hook}-"),
    ]);
    assert!(out.contains(&format!("annotation {hook} removed")), "{out}");
    let left: Vec<String> = names(&w, "machines", &[])
        .into_iter()
        .filter(|n| n.contains("shop-web-"))
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|n| !n.ends_with(victim)), "{left:?}");
}
