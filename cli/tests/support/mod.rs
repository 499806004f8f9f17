//! Running the `capstan` binary as a person would: in a directory of its own (so the
//! local context's `.capstan/` is the test's), with a configuration file of its own.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn quickstart() -> String {
    std::fs::read_to_string(repo().join("examples/quickstart.yaml")).expect("quickstart")
}

/// A working directory and a configuration file for one test, removed when dropped.
pub struct Workdir {
    pub dir: PathBuf,
}

impl Workdir {
    pub fn new(name: &str) -> Workdir {
        let dir = std::env::temp_dir().join(format!("capstan-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Workdir { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_capstan"));
        c.args(args)
            .current_dir(&self.dir)
            .env("CAPSTAN_CONFIG", self.config())
            .env("NO_COLOR", "1")
            .env_remove("AWS_PROFILE");
        c
    }

    /// Runs capstan with `args`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run capstan")
    }

    /// Runs capstan and asserts it exited 0; returns what it printed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "capstan {args:?} failed:\n{}",
            text(&out)
        );
        text(&out)
    }

    /// Runs capstan with `input` on standard input.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        child.wait_with_output().expect("wait")
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write");
        path_str(&path)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The names `get KIND -o name` prints.
pub fn names(w: &Workdir, kind: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["get", kind, "-o", "name"];
    args.extend_from_slice(extra);
    let out = w.run(&args);
    assert!(out.status.success(), "{}", text(&out));
    let mut names: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    names.sort();
    names
}

/// A moto_server on a free loopback port, stopped when dropped.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
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

/// A child process killed when dropped (`capstan run`).
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
