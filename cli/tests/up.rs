//! `capstan up` without -f: a local control plane that keeps running, that other
//! processes act on, and that resumes after a restart.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Running, Workdir, names, quickstart, text};

fn up(w: &Workdir) -> Running {
    let child = w
        .command(&["up", "--boot-delay", "100ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("capstan up");
    let state = w.dir.join(".capstan/state.db");
    let started = Instant::now();
    while !state.exists() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    Running(child)
}

fn instance_ids(w: &Workdir) -> Vec<String> {
    let list: serde_json::Value =
        serde_json::from_str(&w.ok(&["get", "machines", "-A", "-o", "json"])).expect("JSON");
    let mut ids: Vec<String> = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|m| m["status"]["instanceId"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[test]
fn up_keeps_running_and_a_restart_resumes_where_it_stopped() {
    let w = Workdir::new("up-restart");
    let file = w.write("quickstart.yaml", &quickstart());
    let first = up(&w);
    let out = w.ok(&["apply", "-f", &file, "--wait", "--timeout", "30s"]);
    assert!(out.contains("converged"), "{out}");
    let before = instance_ids(&w);
    assert_eq!(before.len(), 6);
    // A second `up` on the same directory is refused.
    let again = w.run(&["up", "--for", "1s"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("already runs"), "{}", text(&again));

    // Stopped (killed, not asked), then changed while it is down.
    drop(first);
    w.ok(&["scale", "pool", "demo/workers", "--replicas", "4"]);
    assert_eq!(instance_ids(&w), before, "nothing runs while it is down");

    let _second = up(&w);
    let status = w.ok(&["rollout", "status", "pool/demo/workers", "--timeout", "30s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let after = instance_ids(&w);
    assert_eq!(after.len(), 7, "{after:?}");
    // The instances from before the restart are the same ones, not relaunched.
    assert!(
        before.iter().all(|id| after.contains(id)),
        "{before:?} → {after:?}"
    );
    let out = w.ok(&["delete", "cluster", "demo", "--wait", "--timeout", "30s"]);
    assert!(out.contains("gone"), "{out}");
}

#[test]
fn two_writers_at_once_lose_nothing() {
    let w = Workdir::new("up-writers");
    let one = w.write("one.yaml", &quickstart());
    let two = w.write(
        "two.yaml",
        &quickstart()
            .replace("name: demo ", "name: other ")
            .replace("demo-", "other-")
            .replace("clusterName: demo", "clusterName: other"),
    );
    let _up = up(&w);
    // Two processes apply at the same moment, while the control plane writes status.
    let spawn = |file: &str| {
        w.command(&["apply", "-f", file, "--wait", "--timeout", "30s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("apply")
    };
    let (a, b) = (spawn(&one), spawn(&two));
    for child in [a, b] {
        let out = child.wait_with_output().expect("apply");
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("converged"), "{}", text(&out));
    }
    assert_eq!(
        names(&w, "clusters", &[]),
        ["cluster/demo", "cluster/other"]
    );
    assert_eq!(instance_ids(&w).len(), 12);
    // Two edits of the same Cluster at once, of different fields: each is written
    // under the version it read; the loser reads again and edits on top, so both land.
    let run = |args: &[&str]| w.command(args).output().expect("capstan");
    let (x, y) = std::thread::scope(|s| {
        let x = s.spawn(|| run(&["scale", "pool", "demo/workers", "--replicas", "4"]));
        let y = s.spawn(|| run(&["rollout", "restart", "pool/demo/workers"]));
        (x.join().expect("x"), y.join().expect("y"))
    });
    for out in [&x, &y] {
        assert!(
            text(out).contains("Cluster/demo configured"),
            "{}",
            text(out)
        );
    }
    let cluster: serde_json::Value =
        serde_json::from_str(&w.ok(&["get", "cluster", "demo", "-o", "json"])).expect("JSON");
    let pool = &cluster["spec"]["workers"][0];
    assert_eq!(pool["replicas"], 4, "{cluster}");
    assert!(pool["rollout"]["after"].is_string(), "{cluster}");
}

#[test]
fn up_with_a_file_and_stay_applies_it_and_keeps_running() {
    let w = Workdir::new("up-stay");
    let file = w.write("quickstart.yaml", &quickstart());
    let out = w.ok(&[
        "up",
        "-f",
        &file,
        "--stay",
        "--for",
        "3s",
        "--boot-delay",
        "100ms",
    ]);
    assert!(out.contains("Cluster/demo created"), "{out}");
    // It stopped after 3 s; what it did is in its state, and the local context reads it.
    assert_eq!(instance_ids(&w).len(), 6);
    let tree = w.ok(&["describe", "cluster", "demo"]);
    assert!(tree.contains("Every object is Ready."), "{tree}");
}

/// The rollout-drain example: `up -f DIR --stay` runs the Deployment, budget and
/// DaemonSet in its simulated workload cluster and prints every drain step as it
/// happens; `rollout status` waits until the old Machines are gone, not only replaced;
/// `apply` refuses the Kubernetes objects, naming the fix.
#[test]
fn up_shows_a_rollout_draining_the_nodes() {
    let w = Workdir::new("up-drain");
    let example = support::repo().join("examples/rollout-drain");
    let log = w.dir.join("up.log");
    let child = w
        .command(&[
            "up",
            "-f",
            &support::path_str(&example),
            "--stay",
            "--boot-delay",
            "200ms",
            "--join-delay",
            "1s",
        ])
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("capstan up");
    let _up = Running(child);
    let state = w.dir.join(".capstan/state.db");
    let started = Instant::now();
    while !state.exists() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = w.ok(&["rollout", "status", "pool/shop/web", "--timeout", "60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");

    let refused = w.run(&["apply", "-f", &support::path_str(&example)]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("Deployment is a Kubernetes object, not one of Capstan's"),
        "{}",
        text(&refused)
    );
    let old: Vec<String> = names(&w, "machines", &[])
        .into_iter()
        .filter_map(|n| n.rsplit('/').next().map(str::to_string))
        .filter(|n| n.starts_with("shop-web-"))
        .collect();
    assert_eq!(old.len(), 3, "{old:?}");
    let cluster = std::fs::read_to_string(example.join("cluster.yaml")).expect("example");
    let file = w.write(
        "new-image.yaml",
        &cluster.replace("ami-0abcdef1234567890", "ami-0fedcba9876543210"),
    );
    w.ok(&["apply", "-f", &file]);
    let status = w.ok(&["rollout", "status", "pool/shop/web", "--timeout", "60s"]);
    assert!(
        status.contains("old replicas are being deleted"),
        "{status}"
    );
    assert!(status.contains("successfully rolled out"), "{status}");

    std::thread::sleep(Duration::from_secs(1));
    let said = std::fs::read_to_string(&log).expect("up's output");
    assert!(
        said.contains("Deployment web (6 pods) runs in cluster default/shop's workload cluster"),
        "{said}"
    );
    let drained: std::collections::BTreeSet<&str> = said
        .lines()
        .filter(|l| l.contains(" DrainingNode: draining the Node since "))
        .filter_map(machine_named)
        .collect();
    let deleted: std::collections::BTreeSet<&str> = said
        .lines()
        .filter(|l| l.ends_with(" deleted"))
        .filter_map(machine_named)
        .filter(|n| n.starts_with("shop-web-"))
        .collect();
    assert_eq!(drained.len(), 3, "{said}");
    assert_eq!(drained, deleted, "{said}");
    let old: std::collections::BTreeSet<&str> = old.iter().map(String::as_str).collect();
    assert_eq!(drained, old, "{said}");
}

/// The Machine a progress line of `capstan up` is about.
fn machine_named(line: &str) -> Option<&str> {
    line.split("] Machine ").nth(1)?.split_whitespace().next()
}
