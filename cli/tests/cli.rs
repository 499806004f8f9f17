//! The `capstan` binary, run as a person would run it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn capstan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run capstan")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn validate_accepts_the_quickstart() {
    let out = capstan(&["validate", "-f", "examples/quickstart.yaml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 object(s) valid"), "{}", text(&out));
}

#[test]
fn up_converges_the_quickstart_and_prints_the_tree() {
    let out = capstan(&["up", "-f", "examples/quickstart.yaml", "--virtual-time"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("Cluster/demo created"), "{all}");
    assert!(all.contains("Converged in"), "{all}");
    let machine_rows: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("Machine/demo-"))
        .collect();
    assert_eq!(machine_rows.len(), 6, "{all}");
    for row in machine_rows {
        assert!(
            row.contains("True") && row.contains("Running") && row.contains(" i-"),
            "{row}"
        );
    }
}

#[test]
fn up_with_an_invalid_file_writes_nothing_and_lists_every_error() {
    let dir = std::env::temp_dir().join(format!("capstan-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.yaml");
    let quickstart =
        std::fs::read_to_string(repo().join("examples/quickstart.yaml")).expect("quickstart");
    let broken = quickstart
        .replacen("replicas: 3", "replicas: -2", 2)
        .replacen("instanceTypes:", "instanceTypez:", 1);
    std::fs::write(&bad, broken).expect("write");
    let out = capstan(&[
        "up",
        "-f",
        bad.to_str().expect("utf-8 path"),
        "--virtual-time",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("nothing was applied"), "{all}");
    assert!(!all.contains("created"), "{all}");
    assert!(all.contains("instanceTypez"), "{all}");
    assert!(all.contains("replicas"), "{all}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// As `kubectl apply` does, a file with no objects is an error, not a success.
#[test]
fn validate_and_up_refuse_a_file_with_no_objects() {
    let dir = std::env::temp_dir().join(format!("capstan-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "# nothing here yet\n---\n").expect("write");
    let path = empty.to_str().expect("utf-8 path");
    for args in [
        vec!["validate", "-f", path],
        vec!["up", "-f", path, "--virtual-time"],
    ] {
        let out = capstan(&args);
        let all = text(&out);
        assert!(!out.status.success(), "{args:?} succeeded: {all}");
        assert!(all.contains("no objects"), "{args:?}: {all}");
        assert!(!all.contains("Converged"), "{args:?}: {all}");
    }
}

#[test]
fn validate_reads_standard_input() {
    let quickstart = std::fs::read(repo().join("examples/quickstart.yaml")).expect("quickstart");
    let mut child = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["validate", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&quickstart)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn validate_reports_a_missing_file_clearly() {
    let out = capstan(&["validate", "-f", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("does/not/exist.yaml: cannot read"),
        "{}",
        text(&out)
    );
}

#[test]
fn up_that_cannot_converge_exits_non_zero_naming_what_and_why() {
    let dir = std::env::temp_dir().join(format!("capstan-cli-timeout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("unknown-image.yaml");
    // Well-formed, but no such image exists in the (simulated) region.
    let quickstart =
        std::fs::read_to_string(repo().join("examples/quickstart.yaml")).expect("quickstart");
    std::fs::write(
        &file,
        quickstart.replace("ami-0abcdef1234567890", "ami-0000000000000dead"),
    )
    .expect("write");
    let out = capstan(&[
        "up",
        "-f",
        file.to_str().expect("utf-8 path"),
        "--virtual-time",
        "--timeout",
        "10m",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("Not converged after"), "{all}");
    assert!(
        all.contains("is Failed") && all.contains("InvalidAMIID.NotFound"),
        "{all}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A moto_server on a free loopback port, stopped when dropped.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new(repo().join(".tools/venv/bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (bash scripts/install-tools.sh installs it)");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "moto_server did not listen within 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn apply_then_delete_at_an_endpoint_writes_and_removes_the_desired_items() {
    let moto = Moto::start();
    let endpoint = moto.endpoint.as_str();
    // `run` creates the table (and bus, rules, queues) before anything else.
    let run = capstan(&["run", "--endpoint", endpoint, "--for", "1s"]);
    assert!(run.status.success(), "{}", text(&run));

    let apply = capstan(&[
        "apply",
        "-f",
        "examples/quickstart.yaml",
        "--endpoint",
        endpoint,
    ]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert!(
        text(&apply).contains("Cluster/demo created"),
        "{}",
        text(&apply)
    );

    let delete = capstan(&[
        "delete",
        "-f",
        "examples/quickstart.yaml",
        "--endpoint",
        endpoint,
    ]);
    assert!(delete.status.success(), "{}", text(&delete));
    let said = text(&delete);
    for line in [
        "Cluster/demo deleted",
        "MachineClass/demo-control-plane deleted",
        "MachineClass/demo-workers deleted",
    ] {
        assert!(said.contains(line), "{line:?} missing from:\n{said}");
    }
    let again = capstan(&[
        "delete",
        "-f",
        "examples/quickstart.yaml",
        "--endpoint",
        endpoint,
    ]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("Cluster/demo not found"),
        "{}",
        text(&again)
    );
}
