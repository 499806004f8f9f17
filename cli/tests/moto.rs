//! The verbs against an endpoint context: moto_server, with `capstan run` as its
//! control plane, driven the way a person would from another terminal.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Moto, Running, Workdir, names, quickstart, text};

/// What `capstan run` says can be launched at the endpoint.
struct Launchables {
    image: String,
    subnets: Vec<String>,
    security_group: String,
}

/// Starts `capstan run` on the current context and reads what it prints until it is
/// ready for manifests.
fn run_control_plane(w: &Workdir) -> (Running, Launchables) {
    let mut child = w
        .command(&["run", "--sweep-every", "20s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("capstan run");
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let mut found = Launchables {
        image: String::new(),
        subnets: Vec::new(),
        security_group: String::new(),
    };
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        if let Some(image) = line.split("imageId): ").nth(1) {
            found.image = image.trim().to_string();
        }
        if let Some(group) = line.split("securityGroups): ").nth(1) {
            found.security_group = group.trim().to_string();
        }
        if let Some(subnet) = line.trim().strip_prefix("- subnet-") {
            let id = subnet.split_whitespace().next().unwrap_or_default();
            found.subnets.push(format!("subnet-{id}"));
        }
        if line.starts_with("Apply manifests from another terminal") {
            break;
        }
    }
    assert!(
        !found.image.is_empty() && !found.subnets.is_empty() && !found.security_group.is_empty(),
        "capstan run did not say what can be launched"
    );
    (running, found)
}

/// The quickstart pointed at what moto has, one control-plane machine and two
/// workers. Instance profiles are left out: moto checks them against its IAM.
fn manifest(l: &Launchables) -> String {
    let subnets: String = l.subnets.iter().map(|s| format!("    - {s}\n")).collect();
    let mut out = String::new();
    let mut skipping = false;
    for line in quickstart().lines() {
        let trimmed = line.trim_start();
        if skipping && trimmed.starts_with("- subnet-") {
            continue;
        }
        skipping = false;
        if trimmed.starts_with("instanceProfile:") {
            continue;
        }
        if trimmed.starts_with("subnets:") {
            out.push_str(&format!("  subnets:\n{subnets}"));
            skipping = true;
            continue;
        }
        out.push_str(
            &line
                .replace("ami-0abcdef1234567890", &l.image)
                .replace("sg-0123456789abcdef0", &l.security_group)
                .replace(
                    "replicas: 3            # odd",
                    "replicas: 1            # odd",
                )
                .replace("      replicas: 3", "      replicas: 2"),
        );
        out.push('\n');
    }
    out
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{what}: not within 90 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_verbs_against_moto_through_an_endpoint_context() {
    let moto = Moto::start();
    let w = Workdir::new("moto-verbs");
    w.ok(&[
        "config",
        "set-context",
        "moto",
        "--endpoint",
        &moto.endpoint,
        "--installation",
        "capstan",
    ]);
    w.ok(&["config", "use-context", "moto"]);
    let (_run, launchables) = run_control_plane(&w);
    let file = w.write("moto.yaml", &manifest(&launchables));

    let out = w.ok(&["apply", "-f", &file, "--wait", "--timeout", "90s"]);
    assert!(out.contains("Cluster/demo created"), "{out}");
    assert!(out.contains("converged"), "{out}");

    let table = w.ok(&["get", "machines"]);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(
        rows.iter()
            .all(|r| r.contains("Running") && r.contains(" i-")),
        "{table}"
    );
    // -w prints the list, then each change: here none, until it stops.
    let watched = w.ok(&["get", "md", "-w", "--watch-for", "2s"]);
    assert!(watched.starts_with("NAME"), "{watched}");
    let tree = w.ok(&["describe", "cluster", "demo"]);
    assert!(tree.contains("Every object is Ready."), "{tree}");
    let unchanged = w.ok(&["diff", "-f", &file]);
    assert!(unchanged.is_empty(), "{unchanged}");

    // Watch the pool grow while it is scaled.
    let watch = w
        .command(&["get", "machines", "-w", "--watch-for", "12s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("get -w");
    w.ok(&["scale", "pool", "demo/workers", "--replicas", "3"]);
    eventually("a third worker", || {
        names(&w, "machines", &["-l", "capstan.dev/pool=workers"]).len() == 3
    });
    let status = w.ok(&["rollout", "status", "md/demo-workers", "--timeout", "90s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let ready = w.ok(&[
        "wait",
        "--for=condition=Ready",
        "cluster/demo",
        "--timeout",
        "90s",
    ]);
    assert!(ready.contains("condition met"), "{ready}");
    let diff = w.run(&["diff", "-f", &file]);
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));

    // The local replica plans what the endpoint will do.
    let plan = w.run(&["apply", "-f", &file, "--dry-run", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        text(&plan).contains("demo-workers: 1 to remove"),
        "{}",
        text(&plan)
    );
    assert!(text(&plan).contains("(1 instances)"), "{}", text(&plan));

    let out = w.ok(&["delete", "cluster", "demo", "--wait", "--timeout", "90s"]);
    assert!(out.contains("Cluster/demo deleted"), "{out}");
    assert!(out.contains("gone"), "{out}");
    assert!(names(&w, "machines", &["-A"]).is_empty());

    // Collected last: it has long stopped by now.
    let watched = watch.wait_with_output().expect("get -w");
    let watched = String::from_utf8_lossy(&watched.stdout);
    let rows = watched
        .lines()
        .filter(|l| l.starts_with("demo-workers-"))
        .count();
    // The two workers listed first, then the third as it appears (and as it changes).
    assert!(rows >= 3, "{watched}");
}
