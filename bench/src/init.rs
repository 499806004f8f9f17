//! `init`: how long a Lambda binary takes to start, from spawning it to its first
//! request for an invocation, `GET /2018-06-01/runtime/invocation/next`, which is when
//! Lambda's init phase ends and the function can take an event
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>).
//!
//! The Runtime API is a stub on 127.0.0.1 (a free port): it notes when a request
//! arrives and never answers; the child is killed once its `/next` request is in. The
//! child gets the environment Lambda gives a function of the `provided.al2023` runtime
//! (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime>)
//! and the `CAPSTAN_*` names infra/template.yaml sets, with dummy credentials, and
//! nothing else: no `HOME` (so no shared config files), no endpoint override. Nothing
//! in it points off the machine; a binary that made a network call before `/next`
//! would show up under `strace -f -e trace=socket,connect` (docs/performance.md).

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// The path a Runtime API client asks for its next invocation.
const NEXT: &str = "/2018-06-01/runtime/invocation/next";

/// What `init` is asked to do.
pub struct InitBench {
    /// The binary, as Lambda would run it (`bootstrap`).
    pub bootstrap: PathBuf,
    pub runs: u32,
    /// How long one start may take before the run fails.
    pub timeout: Duration,
    /// Before each run, ask the kernel to drop the binary's pages from the page cache,
    /// so each start reads it from disk (shared libraries stay cached).
    pub evict: bool,
    /// Variables added to (or overriding) Lambda's environment.
    pub env: Vec<(String, String)>,
}

/// One request the stub received: when its request line was in, and what it was.
struct Request {
    at: Instant,
    method: String,
    path: String,
    /// The body, for a request that reports an error (`/runtime/init/error`).
    body: String,
    /// Held open until the run is over, so the child does not see its request fail.
    _stream: TcpStream,
}

pub fn bench_init(bench: &InitBench) -> Result<(), String> {
    let bootstrap = &bench.bootstrap;
    let size = std::fs::metadata(bootstrap)
        .map_err(|e| format!("reading {}: {e}", bootstrap.display()))?
        .len();
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding 127.0.0.1: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("reading the stub's address: {e}"))?;
    let requests = serve(listener);
    println!(
        "## init: {} ({} bytes), Runtime API stub on {address}\n",
        bootstrap.display(),
        crate::thousands(size)
    );
    for (name, value) in &bench.env {
        println!("with {name}={value}");
    }
    if !bench.env.is_empty() {
        println!();
    }

    let mut times = Vec::with_capacity(bench.runs as usize);
    let mut cpus = Vec::with_capacity(bench.runs as usize);
    for run in 1..=bench.runs {
        if bench.evict {
            evict(bootstrap)?;
        }
        // Nothing from an earlier run may count as this run's request.
        while requests.try_recv().is_ok() {}
        let started = Instant::now();
        let child = Command::new(bootstrap)
            .env_clear()
            .envs(lambda_environment(&address.to_string()))
            .envs(bench.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bootstrap.display()))?;
        let (first, cpu) = first_request(child, &requests, bench.timeout)
            .map_err(|e| format!("run {run}: {e}"))?;
        if first.method != "GET" || first.path != NEXT {
            return Err(format!(
                "run {run}: the first request was {} {}, not GET {NEXT}: {}",
                first.method, first.path, first.body
            ));
        }
        times.push(first.at.duration_since(started));
        cpus.extend(cpu);
    }

    println!("| {} runs | first run | min | median | max |", times.len());
    println!("|---|---|---|---|---|");
    println!("| wall: spawn → first /next | {} |", summary(&times)?);
    if cpus.len() == times.len() {
        println!("| CPU time by then | {} |", summary(&cpus)?);
    }
    println!(
        "\ninit: from spawn to the first GET {NEXT}; {}",
        if bench.evict {
            "the binary evicted from the page cache before each run"
        } else {
            "the page cache as it is (warm after the first run)"
        }
    );
    Ok(())
}

/// "first | min | median | max" of `times`, in milliseconds.
fn summary(times: &[Duration]) -> Result<String, String> {
    let Some(&first) = times.first() else {
        return Err("--runs must be at least 1".to_string());
    };
    let mut sorted = times.to_vec();
    sorted.sort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    Ok(format!(
        "{} | {} | {} | {}",
        ms(first),
        ms(sorted[0]),
        ms(sorted[sorted.len() / 2]),
        ms(sorted[sorted.len() - 1])
    ))
}

/// The environment Lambda gives a `provided.al2023` function (dummy credentials and
/// log names), and the machine-reconciler's own variables from infra/template.yaml
/// (every function gets the same `CAPSTAN_*` names; only the function's name differs).
fn lambda_environment(runtime_api: &str) -> Vec<(&'static str, String)> {
    let fixed = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEEXAMPLE00"),
        ("AWS_SECRET_ACCESS_KEY", "example-secret-access-key"),
        ("AWS_SESSION_TOKEN", "example-session-token"),
        ("AWS_LAMBDA_FUNCTION_NAME", "capstan-machine-reconciler"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/capstan-machine-reconciler",
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/12/01/[$LATEST]00000000000000000000000000000000",
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("_HANDLER", "bootstrap"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin"),
        ("LANG", "en_US.UTF-8"),
        ("TZ", ":UTC"),
        ("CAPSTAN_INSTALLATION", "capstan"),
        ("CAPSTAN_TABLE", "capstan"),
        ("CAPSTAN_BUS", "capstan"),
        ("CAPSTAN_QUEUE_PREFIX", "capstan-"),
        ("RUST_LOG", "info"),
    ];
    fixed
        .into_iter()
        .map(|(name, value)| (name, value.to_string()))
        .collect()
}

/// Accepts connections on a thread of its own and sends each request it reads, with
/// the instant its request line was in.
fn serve(listener: TcpListener) -> Receiver<Result<Request, String>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let request = stream
                .map_err(|e| format!("accepting a connection: {e}"))
                .and_then(read_request);
            if tx.send(request).is_err() {
                return;
            }
        }
    });
    rx
}

/// One HTTP/1.1 request's line, headers and (if it has a `Content-Length`) body.
fn read_request(stream: TcpStream) -> Result<Request, String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| format!("setting a read timeout: {e}"))?;
    let reading = stream
        .try_clone()
        .map_err(|e| format!("cloning a connection: {e}"))?;
    let mut reader = BufReader::new(reading);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("reading a request line: {e}"))?;
    let at = Instant::now();
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(format!("not an HTTP request line: {line:?}"));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        let n = reader
            .read_line(&mut header)
            .map_err(|e| format!("reading the headers of {method} {path}: {e}"))?;
        let header = header.trim_end();
        if n == 0 || header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = Vec::new();
    let limit = u64::try_from(length.min(64 * 1024)).unwrap_or(0);
    // The body only explains a failure; a short or missing one is not an error here.
    let _ = reader.take(limit).read_to_end(&mut body);
    Ok(Request {
        at,
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
        _stream: stream,
    })
}

/// Waits for the child's first request, notes the CPU time it has used by then, then
/// kills it and reaps it. A child that exits first, or takes longer than `timeout`,
/// fails the run with what it wrote.
fn first_request(
    mut child: Child,
    requests: &Receiver<Result<Request, String>>,
    timeout: Duration,
) -> Result<(Request, Option<Duration>), String> {
    let deadline = Instant::now() + timeout;
    let outcome = loop {
        match requests.recv_timeout(Duration::from_millis(20)) {
            Ok(request) => break request.map(|r| (r, cpu_time(child.id()))),
            Err(RecvTimeoutError::Disconnected) => {
                break Err("the Runtime API stub stopped".to_string());
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        match child.try_wait() {
            Ok(Some(status)) => break Err(format!("the binary exited ({status}) before /next")),
            Ok(None) if Instant::now() >= deadline => {
                break Err(format!("no request within {} s", timeout.as_secs_f64()));
            }
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for the binary: {e}")),
        }
    };
    // Killing a child that already exited fails harmlessly; reaping it must not.
    let _ = child.kill();
    let output = child
        .wait_with_output()
        .map_err(|e| format!("reaping the binary: {e}"))?;
    outcome.map_err(|e| {
        format!(
            "{e}; its stdout: {:?}; its stderr: {:?}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The CPU time (user and system) the process's threads have used: the first field of
/// each thread's `/proc/<pid>/task/<tid>/schedstat`, in nanoseconds. Unlike the wall
/// time it does not grow when other processes hold the cores.
fn cpu_time(pid: u32) -> Option<Duration> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let schedstat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        nanos += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(nanos))
}

/// Drops the file's pages from the page cache: GNU dd's `iflag=nocache` with
/// `count=0` advises the kernel that the whole file's cached data is not needed.
fn evict(file: &Path) -> Result<(), String> {
    let status = Command::new("dd")
        .arg(format!("if={}", file.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status()
        .map_err(|e| format!("running dd to evict {}: {e}", file.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("dd could not evict {}: {status}", file.display()))
    }
}
