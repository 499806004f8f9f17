//! Capstan's performance benchmarks (issue 16), one command each, every figure printed
//! as a Markdown table that goes into docs/performance.md as it is:
//!
//! - `launch`: a pool from 0 to N Machines (1,000 by default) under EC2's modelled API
//!   limits, on virtual time: seconds until every instance is launched, next to the
//!   bounds the request and resource buckets set. `--launch batched` launches identical
//!   Machines of one Machine-reconciler batch together (issue 16 part 2);
//!   `--launch per-machine` makes one RunInstances per Machine (the switch
//!   `EmbeddedConfig::batch_launches` off); `--launch both` (the default) runs the two
//!   in one process, batched first.
//! - `scale`: 10,000 Machines over 100 clusters (3 control-plane + 97 workers each)
//!   converging in the embedded runtime on virtual time: wall time and peak RSS.
//! - `reads`: items read (and decoded) per reconcile as a pool grows 10 → 100 → 1,000,
//!   for each reconciler, while the pool converges and for one Machine event after.
//! - `calls`: EC2 calls and table writes per Machine over its lifecycle.
//! - `all`: every one of them, `scale` first (its peak RSS is the process's).
//! - `init`: a Lambda binary's init time, from spawning it to its first request for an
//!   invocation to a Runtime API stub on 127.0.0.1 (not part of `all`: it needs a
//!   release build of the binary, `--bootstrap`).
//!
//! Runs in the dev profile (`cargo run -p capstan-bench -- all`): the crates on the hot
//! path are built with `opt-level = 2` even there (the workspace `Cargo.toml`), and a
//! release build of the workspace takes 25+ minutes on two cores.

mod init;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use capstan_embedded::{Embedded, EmbeddedConfig, ReconcilerLoad};
use capstan_model::{Kind, Object, ObjectKey, Timestamp};
use capstan_runtime::routes::{BATCH_SIZE, Reconciler};
use capstan_sim::ec2::{Ec2Calls, Ec2Limits};
use clap::{Parser, Subcommand, ValueEnum};

const QUICKSTART: &str = include_str!("../../examples/quickstart.yaml");

#[derive(Parser)]
#[command(
    name = "capstan-bench",
    about = "Capstan's performance benchmarks (issue 16)"
)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// 0 → N Machines in one pool under EC2's modelled limits: virtual seconds until
    /// every instance is launched.
    Launch {
        #[arg(long, default_value_t = 1000)]
        machines: u32,
        /// How Machines are launched.
        #[arg(long, value_enum, default_value_t = LaunchMode::Both)]
        launch: LaunchMode,
    },
    /// Many clusters converging at once: wall time and peak RSS.
    Scale {
        #[arg(long, default_value_t = 100)]
        clusters: u32,
        /// Workers per cluster (each also has 3 control-plane Machines).
        #[arg(long, default_value_t = 97)]
        workers: u32,
    },
    /// Items read per reconcile as a pool grows.
    Reads {
        #[arg(long, value_delimiter = ',', default_values_t = [10u32, 100, 1000])]
        sizes: Vec<u32>,
    },
    /// EC2 calls and table writes per Machine over its lifecycle.
    Calls {
        #[arg(long, default_value_t = 100)]
        machines: u32,
    },
    /// A burst of pending pods on an autoscaled pool: virtual seconds until all run.
    Burst {
        #[arg(long, default_value_t = 200)]
        pods: u32,
    },
    /// A Lambda binary's init time: from spawning it, with the environment Lambda gives
    /// a function, to its first `GET /2018-06-01/runtime/invocation/next` to a Runtime
    /// API stub on 127.0.0.1. Min, median and max over `--runs` starts.
    Init {
        /// The binary, e.g. target/release/machine-reconciler (build it with
        /// `cargo build --release -p machine-reconciler`).
        #[arg(long)]
        bootstrap: PathBuf,
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
        /// Seconds one start may take before the benchmark fails.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// Before each start, drop the binary's pages from the page cache (GNU dd
        /// `iflag=nocache`), so each start reads it from disk like a first start.
        #[arg(long)]
        evict: bool,
        /// A variable to add to (or override in) the child's environment, NAME=VALUE;
        /// repeatable (e.g. `--env SSL_CERT_FILE=...` to see what root certificates cost).
        #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env_var)]
        env: Vec<(String, String)>,
    },
    /// Every benchmark with its defaults, `scale` first.
    All {
        #[arg(long, value_enum, default_value_t = LaunchMode::Both)]
        launch: LaunchMode,
    },
}

/// How a pool's Machines get their instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LaunchMode {
    /// One RunInstances per Machine (MinCount = MaxCount = 1): Capstan today, and
    /// Cluster API's AWS provider.
    PerMachine,
    /// Identical launches of one Machine-reconciler invocation share one call.
    Batched,
    /// Batched, then per-machine, in one process.
    Both,
}

/// The Machine reconciler's batch size in `launch`, in both modes: Lambda's SQS batch
/// with a batching window (above 10 messages Lambda requires one). The driver hands an
/// invocation what is queued; it does not wait for the window.
const MACHINE_BATCH: usize = 1000;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting tokio: {e}");
            return ExitCode::from(1);
        }
    };
    print_machine();
    let result = runtime.block_on(async {
        match cli.bench {
            Bench::Launch { machines, launch } => bench_launch(machines, launch).await,
            Bench::Scale { clusters, workers } => bench_scale(clusters, workers).await,
            Bench::Reads { sizes } => bench_reads(&sizes).await,
            Bench::Calls { machines } => bench_calls(machines).await,
            Bench::Burst { pods } => bench_burst(pods).await,
            Bench::Init {
                bootstrap,
                runs,
                timeout,
                evict,
                env,
            } => init::bench_init(&init::InitBench {
                bootstrap,
                runs,
                timeout: Duration::from_secs(timeout),
                evict,
                env,
            }),
            Bench::All { launch } => {
                bench_scale(100, 97).await?;
                bench_launch(1000, launch).await?;
                bench_reads(&[10, 100, 1000]).await?;
                bench_calls(100).await?;
                bench_burst(200).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `NAME=VALUE`, for `init --env`.
fn parse_env_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

// ---------------------------------------------------------------- the machine

fn print_machine() {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let ram = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or("unknown".to_string(), |kb| {
            format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0)
        });
    let rustc = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let profile = if cfg!(debug_assertions) {
        "dev (hot crates at opt-level 2)"
    } else {
        "release"
    };
    println!("machine: {cpus} CPUs (nproc), {ram} RAM, {rustc}, {profile} profile\n");
}

/// Peak resident set size of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// CPU time this process has used (user + system), from /proc/self/stat.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Resets the peak RSS to the current RSS (Linux: `5` to clear_refs), so a benchmark
/// measures its own peak.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

// ---------------------------------------------------------------- fixtures

/// The quickstart as cluster `name` in `namespace` with `workers` workers.
fn cluster(namespace: &str, name: &str, workers: u32) -> Result<Vec<Object>, String> {
    let objects = capstan_model::manifest::read_manifests("examples/quickstart.yaml", QUICKSTART)
        .map_err(|e| format!("reading the quickstart: {e}"))?;
    let workers = i32::try_from(workers).map_err(|e| format!("--workers: {e}"))?;
    Ok(objects
        .into_iter()
        .map(|mut o| {
            o.metadata_mut().namespace = namespace.to_string();
            match &mut o {
                Object::Cluster(c) => {
                    c.metadata.name = name.to_string();
                    c.spec.control_plane.machine_class =
                        c.spec.control_plane.machine_class.replacen("demo", name, 1);
                    for w in &mut c.spec.workers {
                        w.machine_class = w.machine_class.replacen("demo", name, 1);
                        w.replicas = Some(workers);
                    }
                }
                Object::MachineClass(mc) => {
                    mc.metadata.name = mc.metadata.name.replacen("demo", name, 1);
                    mc.spec.cluster_name = name.to_string();
                }
                _ => {}
            }
            o
        })
        .collect())
}

/// `objects` with a health check on every worker pool, as a production pool has.
fn with_health_check(objects: Vec<Object>) -> Vec<Object> {
    objects
        .into_iter()
        .map(|mut o| {
            if let Object::Cluster(c) = &mut o {
                for pool in &mut c.spec.workers {
                    pool.health_check = Some(capstan_model::PoolHealthCheck::default());
                }
            }
            o
        })
        .collect()
}

/// An embedded control plane on virtual time; instances boot and stop at once unless
/// `limits` (EC2's throttling) is on, when they take EC2's default delays.
fn control_plane(limits: Ec2Limits) -> Embedded {
    control_plane_with(limits, EmbeddedConfig::default())
}

fn control_plane_with(limits: Ec2Limits, mut config: EmbeddedConfig) -> Embedded {
    if !limits.enabled {
        config.ec2.boot_delay = Duration::ZERO;
        config.ec2.shutdown_delay = Duration::ZERO;
    }
    config.ec2.limits = limits;
    Embedded::virtual_time(config, 16)
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or_default()
}

/// At most this many driver steps per run: more is a livelock.
const MAX_STEPS: u64 = 2_000_000;

/// Steps until `done` holds, skipping idle time; `check_when_busy` checks `done` after
/// every step, not only the idle ones (for cheap checks). The virtual time it held, or
/// an error at `within`.
async fn run_until(
    cp: &mut Embedded,
    within: Duration,
    check_when_busy: bool,
    mut done: impl FnMut(&Embedded) -> bool,
) -> Result<Timestamp, String> {
    let start = cp.now();
    let deadline = start.checked_add(within).unwrap_or(start);
    let wall = Instant::now();
    let mut reported = Duration::ZERO;
    for _ in 0..MAX_STEPS {
        let worked = cp.step().await.map_err(|e| e.to_string())?;
        if wall.elapsed() >= reported + Duration::from_secs(30) {
            reported = wall.elapsed();
            eprintln!(
                "  … {:.0} s wall, {:.0} s virtual, {} steps, {} instances launched",
                reported.as_secs_f64(),
                elapsed(start, cp.now()).as_secs_f64(),
                cp.stats().steps,
                cp.ec2.launched_total()
            );
        }
        if (check_when_busy || !worked) && done(cp) {
            return Ok(cp.now());
        }
        if !worked && !cp.skip_to_next_wakeup(deadline) {
            return Err(format!(
                "not done within {} s of virtual time: {}",
                within.as_secs(),
                cp.not_converged()
                    .into_iter()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    Err(format!("more than {MAX_STEPS} steps"))
}

async fn converge(cp: &mut Embedded, within: Duration) -> Result<Timestamp, String> {
    run_until(cp, within, false, |cp| cp.not_converged().is_empty()).await
}

async fn apply(cp: &Embedded, objects: &[Object]) -> Result<(), String> {
    cp.apply(objects)
        .await
        .map(|_| ())
        .map_err(|e| format!("applying: {e}"))
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn diff(after: Ec2Calls, before: Ec2Calls) -> Ec2Calls {
    Ec2Calls {
        run_instances: after.run_instances - before.run_instances,
        terminate_instances: after.terminate_instances - before.terminate_instances,
        describe_instances: after.describe_instances - before.describe_instances,
        create_tags: after.create_tags - before.create_tags,
        describe_instance_types: after.describe_instance_types - before.describe_instance_types,
        throttled: after.throttled - before.throttled,
    }
}

fn load_diff(
    after: &BTreeMap<Reconciler, ReconcilerLoad>,
    before: &BTreeMap<Reconciler, ReconcilerLoad>,
) -> BTreeMap<Reconciler, ReconcilerLoad> {
    after
        .iter()
        .map(|(r, a)| {
            let b = before.get(r).copied().unwrap_or_default();
            (
                *r,
                ReconcilerLoad {
                    invocations: a.invocations - b.invocations,
                    messages: a.messages - b.messages,
                    items_read: a.items_read - b.items_read,
                },
            )
        })
        .filter(|(_, l)| l.invocations > 0)
        .collect()
}

// ---------------------------------------------------------------- launch

/// The seconds EC2's buckets need for `launches` one-instance launches: the request
/// bucket (5, refilled at 2/s) for one call each; the resource bucket (1,000
/// instances, refilled at 2/s) for calls that carry many.
fn bounds(launches: u64, limits: &Ec2Limits) -> (f64, f64) {
    let over = |bucket: capstan_sim::ec2::Bucket, n: u64| {
        n.saturating_sub(u64::from(bucket.capacity)) as f64 / f64::from(bucket.refill.max(1))
    };
    (
        over(limits.run_instances, launches),
        over(limits.run_instances_resources, launches),
    )
}

/// The longest a batched launch waits for its batch to fill (Karpenter: 1 s).
const BATCH_WINDOW: Duration = Duration::from_secs(1);

async fn bench_launch(workers: u32, mode: LaunchMode) -> Result<(), String> {
    let modes: &[LaunchMode] = match mode {
        LaunchMode::Both => &[LaunchMode::Batched, LaunchMode::PerMachine],
        LaunchMode::Batched => &[LaunchMode::Batched],
        LaunchMode::PerMachine => &[LaunchMode::PerMachine],
    };
    let limits = Ec2Limits::aws();
    let launches = u64::from(workers) + 3;
    let (request_bound, resource_bound) = bounds(launches, &limits);
    let bound = resource_bound + BATCH_WINDOW.as_secs_f64();
    println!(
        "### 0 → {workers} Machines in one pool under EC2's limits ({launches} instances with the 3 control-plane Machines; Machine-reconciler batches of up to {MACHINE_BATCH})\n"
    );
    println!(
        "| launch mode | virtual time to all launched | to converged | RunInstances requests | of them throttled | table writes | wall time |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| bound: request bucket (one call per Machine) | {request_bound:.0} s | | {launches} | 0 | | |"
    );
    println!(
        "| bound: resource bucket (one call for all) + batch window | {bound:.1} s | | 1 | 0 | | |"
    );
    let mut took = BTreeMap::new();
    for &mode in modes {
        let t = launch_row(workers, mode, limits).await?;
        took.insert(mode == LaunchMode::Batched, t);
    }
    println!();
    if let (Some(batched), Some(per_machine)) = (took.get(&true), took.get(&false)) {
        println!(
            "Batched: {:.1}× faster than one call per Machine; {:.2}× the resource-bucket bound plus the batch window.\n",
            per_machine / batched.max(0.001),
            batched / bound
        );
    }
    Ok(())
}

/// One row of the launch table: the virtual seconds until every instance launched.
async fn launch_row(workers: u32, mode: LaunchMode, limits: Ec2Limits) -> Result<f64, String> {
    let config = EmbeddedConfig {
        batch_launches: mode == LaunchMode::Batched,
        machine_batch_size: MACHINE_BATCH,
        ..EmbeddedConfig::default()
    };
    let mut cp = control_plane_with(limits, config);
    let launches = u64::from(workers) + 3;
    let start = cp.now();
    let wall = Instant::now();
    apply(&cp, &cluster("default", "demo", workers)?).await?;
    let launched_at = run_until(&mut cp, Duration::from_secs(6 * 3600), true, |cp| {
        cp.ec2.launched_total() >= launches
    })
    .await?;
    let calls = cp.ec2.calls();
    let writes = cp.store.writes();
    let converged_at = converge(&mut cp, Duration::from_secs(6 * 3600)).await?;
    let took = elapsed(start, launched_at).as_secs_f64();
    println!(
        "| {} | **{took:.0} s** | {:.0} s | {} ({:.2} per Machine) | {} | {} ({:.1} per Machine) | {:.1} s |",
        match mode {
            LaunchMode::PerMachine => "per-machine (switch off)",
            LaunchMode::Batched | LaunchMode::Both => "batched",
        },
        elapsed(start, converged_at).as_secs_f64(),
        thousands(calls.run_instances),
        calls.run_instances as f64 / launches as f64,
        thousands(calls.throttled),
        thousands(writes),
        writes as f64 / launches as f64,
        wall.elapsed().as_secs_f64(),
    );
    eprintln!("{:?}: load {:?}", mode, cp.load());
    Ok(took)
}

// ---------------------------------------------------------------- scale

async fn bench_scale(clusters: u32, workers: u32) -> Result<(), String> {
    let reset = reset_peak_rss();
    let cpu0 = cpu_seconds();
    let mut cp = control_plane(Ec2Limits::off());
    let machines = u64::from(clusters) * (u64::from(workers) + 3);
    let start = cp.now();
    let wall = Instant::now();
    for n in 0..clusters {
        let namespace = format!("team-{}", n % 10);
        apply(&cp, &cluster(&namespace, &format!("c{n:03}"), workers)?).await?;
    }
    let applied = wall.elapsed();
    let done = converge(&mut cp, Duration::from_secs(6 * 3600)).await?;
    let took = wall.elapsed();
    let running = cp
        .ec2
        .instances()
        .iter()
        .filter(|i| i.state == capstan_model::InstanceState::Running)
        .count();
    let peak = peak_rss_mib();
    let cpu = cpu0
        .zip(cpu_seconds())
        .map_or("unknown".to_string(), |(a, b)| format!("{:.1} s", b - a));
    println!(
        "### {} Machines over {clusters} clusters (3 control-plane + {workers} workers each), converging\n",
        thousands(machines)
    );
    println!(
        "| wall time (goal < 30 s) | CPU time | of it applying | virtual time | driver steps | instances running | table items | items read | peak RSS (goal < 500 MB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| **{:.1} s** | {cpu} | {:.1} s | {:.0} s | {} | {} | {} | {} | **{}**{} |",
        took.as_secs_f64(),
        applied.as_secs_f64(),
        elapsed(start, done).as_secs_f64(),
        thousands(cp.stats().steps),
        thousands(running as u64),
        thousands(cp.store.len() as u64),
        thousands(cp.store.items_read()),
        peak.map_or("unknown".to_string(), |m| format!("{m:.0} MiB")),
        if reset { "" } else { " (process peak)" },
    );
    let requeues = cp.bus.requeues();
    println!(
        "\nRequeues: {} sent, {} of them for an object that already had one pending, due no later.\n",
        thousands(requeues.sent),
        thousands(requeues.redundant),
    );
    print_load("whole run", &cp.load().clone());
    Ok(())
}

fn print_load(phase: &str, load: &BTreeMap<Reconciler, ReconcilerLoad>) {
    println!(
        "| {phase}: reconciler | invocations | messages | items read | items per message | items per invocation |"
    );
    println!("|---|---|---|---|---|---|");
    for (r, l) in load {
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} |",
            r.name(),
            thousands(l.invocations),
            thousands(l.messages),
            thousands(l.items_read),
            l.items_read as f64 / l.messages.max(1) as f64,
            l.items_read as f64 / l.invocations.max(1) as f64,
        );
    }
    println!();
}

// ---------------------------------------------------------------- reads

async fn bench_reads(sizes: &[u32]) -> Result<(), String> {
    println!("### Items read and decoded per reconcile as a pool grows\n");
    println!(
        "Per message (one object to reconcile) and per invocation (a batch of up to {BATCH_SIZE}), for the Machine, MachineSet and health-check reconcilers (the workers' pool carries a health check): while a pool of N workers converges from nothing, and for one Machine event afterwards (one worker Machine deleted with `capstan delete`: its instance terminated, the MachineSet replacing it).\n"
    );
    println!(
        "| pool | phase | reconciler | invocations | messages | items read | items per message | items per invocation |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &n in sizes {
        let mut cp = control_plane(Ec2Limits::off());
        apply(&cp, &with_health_check(cluster("default", "demo", n)?)).await?;
        converge(&mut cp, Duration::from_secs(3600)).await?;
        let grown = cp.load().clone();
        // A running worker Machine, found in the table (a batched launch tags its
        // instances with the batch, not the Machine).
        let name = cp
            .tree("default", "demo")
            .of_kind(Kind::Machine)
            .filter_map(|s| s.object.as_machine())
            .find(|m| {
                m.status.phase == capstan_model::MachinePhase::Running
                    && m.metadata.name.contains("-workers-")
            })
            .map(|m| m.metadata.name.clone())
            .ok_or("no running worker Machine to delete")?;
        cp.delete(&ObjectKey::new("default", "demo", Kind::Machine, &name))
            .await
            .map_err(|e| format!("deleting Machine {name}: {e}"))?;
        converge(&mut cp, Duration::from_secs(3600)).await?;
        let event = load_diff(cp.load(), &grown);
        for (phase, load) in [("converging", &grown), ("one Machine event", &event)] {
            for r in [
                Reconciler::Machine,
                Reconciler::MachineSet,
                Reconciler::HealthCheck,
            ] {
                let l = load.get(&r).copied().unwrap_or_default();
                println!(
                    "| {n} | {phase} | {} | {} | {} | {} | {:.1} | {:.1} |",
                    r.name(),
                    thousands(l.invocations),
                    thousands(l.messages),
                    thousands(l.items_read),
                    l.items_read as f64 / l.messages.max(1) as f64,
                    l.items_read as f64 / l.invocations.max(1) as f64,
                );
            }
        }
    }
    println!();
    Ok(())
}

// ---------------------------------------------------------------- calls

async fn bench_calls(workers: u32) -> Result<(), String> {
    let mut cp = control_plane(Ec2Limits::off());
    let machines = u64::from(workers) + 3;
    let (c0, w0) = (cp.ec2.calls(), cp.store.writes());
    apply(&cp, &cluster("default", "demo", workers)?).await?;
    converge(&mut cp, Duration::from_secs(3600)).await?;
    let (c1, w1) = (cp.ec2.calls(), cp.store.writes());
    let key = ObjectKey::new("default", "demo", Kind::Cluster, "demo");
    cp.delete(&key)
        .await
        .map_err(|e| format!("deleting the cluster: {e}"))?;
    run_until(&mut cp, Duration::from_secs(3600), false, |cp| {
        cp.store.is_empty()
            && cp
                .ec2
                .instances()
                .iter()
                .all(|i| i.state == capstan_model::InstanceState::Terminated)
    })
    .await?;
    let (c2, w2) = (cp.ec2.calls(), cp.store.writes());
    println!(
        "### AWS calls per Machine over its lifecycle ({machines} Machines: 3 control-plane + {workers} workers, created, converged, then the Cluster deleted)\n"
    );
    println!(
        "| phase | RunInstances | TerminateInstances | DescribeInstances | CreateTags | table writes |"
    );
    println!("|---|---|---|---|---|---|");
    let per = |n: u64| {
        format!(
            "{} ({:.2} per Machine)",
            thousands(n),
            n as f64 / machines as f64
        )
    };
    for (phase, calls, writes) in [
        ("create and converge", diff(c1, c0), w1 - w0),
        ("delete the cluster", diff(c2, c1), w2 - w1),
        ("whole lifecycle", diff(c2, c0), w2 - w0),
    ] {
        println!(
            "| {phase} | {} | {} | {} | {} | {} |",
            per(calls.run_instances),
            per(calls.terminate_instances),
            per(calls.describe_instances),
            per(calls.create_tags),
            per(writes),
        );
    }
    let requeues = cp.bus.requeues();
    println!(
        "\nRequeues over the lifecycle: {} sent ({:.2} per Machine), {} of them for an object that already had one pending, due no later.",
        thousands(requeues.sent),
        requeues.sent as f64 / machines as f64,
        thousands(requeues.redundant),
    );
    println!(
        "\nThe EC2 adapter also sends one DescribeInstances (by id, the tag-guard check) before each TerminateInstances; the simulated EC2 counts the API the port is asked for.\n"
    );
    Ok(())
}

// ---------------------------------------------------------------- burst

/// `pods` pods of 500m (three to an m7i.large) on the workers of a cluster with access
/// whose pool is autoscaled `{min: 1, max: 100}`, EC2's default boot delay and the
/// in-memory kubelets' join delay: virtual seconds from the pods' creation until every
/// one runs, and each change of the pool's replicas on the way.
async fn bench_burst(pods: u32) -> Result<(), String> {
    use capstan_sim::workload::{ClusterKey, PodSpec};
    let mut config = EmbeddedConfig::default();
    config.ec2.limits = Ec2Limits::off();
    let boot = config.ec2.boot_delay;
    let join = config.workload.join_delay;
    let start_pod = config.workload.pod_start_delay;
    let mut cp = Embedded::virtual_time(config, 17);
    let objects: Vec<Object> = cluster("default", "demo", 1)?
        .into_iter()
        .map(|mut o| {
            match &mut o {
                Object::Cluster(c) => {
                    c.spec.access = Some(capstan_model::ClusterAccess {
                        eks: Some(capstan_model::EksAccess {
                            cluster_name: "demo".into(),
                            region: None,
                        }),
                        kubeconfig: None,
                    });
                    for w in &mut c.spec.workers {
                        w.replicas = None;
                        w.autoscaling = Some(capstan_model::Autoscaling { min: 1, max: 100 });
                    }
                }
                Object::MachineClass(mc) if mc.metadata.name.ends_with("-workers") => {
                    mc.spec.instance_types = vec!["m7i.large".into()];
                }
                _ => {}
            }
            o
        })
        .collect();
    apply(&cp, &objects).await?;
    converge(&mut cp, Duration::from_secs(3600)).await?;
    let key = ClusterKey::new("default", "demo");
    let replicas = |cp: &Embedded| {
        cp.trees()
            .iter()
            .find_map(|t| t.get(Kind::MachineDeployment, "demo-workers"))
            .and_then(|s| s.object.as_machine_deployment())
            .map_or(0, |md| md.spec.replicas)
    };
    let running = |cp: &Embedded| {
        cp.workload
            .pods(key.clone())
            .iter()
            .filter(|p| p.labels.get("app").is_some_and(|a| a == "burst"))
            .filter(|p| p.phase == "Running")
            .count()
    };
    let wall = Instant::now();
    let from = cp.now();
    cp.workload.add_deployment(
        key.clone(),
        "burst",
        pods,
        PodSpec::new("default", "burst")
            .requests(500, 256 << 20)
            .node_selector("node-role.kubernetes.io/workers", ""),
    );
    let mut steps: Vec<(i32, Duration)> = vec![(replicas(&cp), Duration::ZERO)];
    let done = run_until(&mut cp, Duration::from_secs(3600), true, |cp| {
        let r = replicas(cp);
        if steps.last().map(|(n, _)| *n) != Some(r) {
            steps.push((r, elapsed(from, cp.now())));
        }
        running(cp) >= pods as usize
    })
    .await?;
    let total = elapsed(from, done);
    println!("\n### Burst: {pods} pending pods on an autoscaled pool\n");
    println!(
        "| pods | first scale-up after | replicas raised | nodes at the end | all running after (virtual) | boot + join + pod start | wall |"
    );
    println!("|---|---|---|---|---|---|---|");
    let first = steps.get(1).map_or(Duration::ZERO, |(_, t)| *t);
    let path: Vec<String> = steps
        .iter()
        .map(|(r, t)| format!("{r} ({:.0} s)", t.as_secs_f64()))
        .collect();
    println!(
        "| {pods} | {:.0} s | {} times: {} | {} | {:.0} s | {:.0} s | {:.1} s |",
        first.as_secs_f64(),
        steps.len() - 1,
        path.join(" → "),
        replicas(&cp),
        total.as_secs_f64(),
        (boot + join + start_pod).as_secs_f64(),
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}
