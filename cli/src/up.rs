//! `capstan up`: without -f, the local control plane that keeps running
//! (`capstan-local`); with -f, the embedded control plane, in this process, until the
//! tree converges.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use capstan_embedded::{Embedded, EmbeddedConfig, RunOutcome};
use capstan_model::{InstanceState, Kind, MachinePhase, Object};
use capstan_runtime::apply::Applied;

pub struct Options {
    pub timeout: Duration,
    pub boot_delay: Duration,
    pub virtual_time: bool,
    pub json: bool,
}

pub async fn run(objects: Vec<Object>, options: Options) -> anyhow::Result<ExitCode> {
    let mut config = EmbeddedConfig::default();
    config.ec2.boot_delay = options.boot_delay;
    let mut cp = if options.virtual_time {
        Embedded::virtual_time(config, 1)
    } else {
        Embedded::real_time(config)
    };
    println!(
        "Embedded control plane started (installation {:?}, simulated EC2 in {}).",
        cp.config.installation, cp.config.ec2.region
    );
    for applied in cp.apply(&objects).await.context("applying the manifests")? {
        let (key, verb) = match &applied {
            Applied::Created(k) => (k, "created"),
            Applied::Configured(k) => (k, "configured"),
            Applied::Unchanged(k) => (k, "unchanged"),
        };
        println!("{}/{} {verb}", key.kind, key.name);
    }

    let started = Instant::now();
    let virtual_start = cp.now();
    let mut last = String::new();
    let outcome = cp
        .run_until(
            options.timeout,
            |cp| {
                let problems = cp.not_converged();
                (!problems.is_empty()).then_some(problems)
            },
            |cp| {
                let line = progress(cp);
                if line != last {
                    let elapsed = if options.virtual_time {
                        Duration::try_from(cp.now().duration_since(virtual_start))
                            .unwrap_or_default()
                    } else {
                        started.elapsed()
                    };
                    println!("[{:>5.1}s] {line}", elapsed.as_secs_f64());
                    let _ = std::io::stdout().flush();
                    last = line;
                }
            },
        )
        .await
        .context("running the control plane")?;

    println!();
    if options.json {
        let objects: Vec<serde_json::Value> = cp
            .trees()
            .iter()
            .flat_map(|t| t.all().map(|s| s.object.to_json()).collect::<Vec<_>>())
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&objects).context("printing JSON")?
        );
    } else {
        print!("{}", cp.describe());
    }
    let took = if options.virtual_time {
        format!(
            "{:.1}s of virtual time",
            Duration::try_from(cp.now().duration_since(virtual_start))
                .unwrap_or_default()
                .as_secs_f64()
        )
    } else {
        format!("{:.1}s", started.elapsed().as_secs_f64())
    };
    match outcome {
        RunOutcome::Done => {
            println!("\nConverged in {took}: {}.", summary(&cp));
            Ok(ExitCode::SUCCESS)
        }
        RunOutcome::TimedOut(problems) => {
            eprintln!("\nNot converged after {took}:");
            for p in problems {
                eprintln!("  - {p}");
            }
            Ok(ExitCode::from(2))
        }
    }
}

/// One line on how far along the Machines and instances are.
fn progress(cp: &Embedded) -> String {
    let mut phases = std::collections::BTreeMap::<String, usize>::new();
    let mut machines = 0;
    for tree in cp.trees() {
        for s in tree.of_kind(Kind::Machine) {
            if let Some(m) = s.object.as_machine() {
                machines += 1;
                let phase = if s.is_deleting() {
                    MachinePhase::Deleting
                } else {
                    m.status.phase
                };
                *phases.entry(format!("{phase:?}")).or_default() += 1;
            }
        }
    }
    let instances = cp.ec2.instances();
    let running = instances
        .iter()
        .filter(|i| i.state == InstanceState::Running)
        .count();
    let pending = instances
        .iter()
        .filter(|i| i.state == InstanceState::Pending)
        .count();
    let phases = phases
        .iter()
        .map(|(p, n)| format!("{n} {p}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("machines: {machines} ({phases}); instances: {running} running, {pending} pending")
}

fn summary(cp: &Embedded) -> String {
    let running = cp
        .ec2
        .instances()
        .iter()
        .filter(|i| i.state == InstanceState::Running)
        .count();
    let machines: usize = cp
        .trees()
        .iter()
        .map(|t| t.of_kind(Kind::Machine).count())
        .sum();
    format!(
        "{machines} Machines, {running} instances running, {} launched in all",
        cp.ec2.launched_total()
    )
}

/// `capstan up` without -f (or with `--stay`): the local control plane in `dir`, with
/// `objects` applied first, until stopped (or `run_for`). One per directory.
pub async fn serve(
    dir: &std::path::Path,
    boot_delay: Duration,
    run_for: Option<Duration>,
    objects: &[Object],
) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock_path = dir.join("up.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "a `capstan up` already runs on {}: use it, or stop it first",
            dir.display()
        );
    }
    let mut config = capstan_local::LocalConfig::default();
    config.ec2.boot_delay = boot_delay;
    let mut cp = capstan_local::LocalControlPlane::open(dir, config)
        .with_context(|| format!("opening the local control plane in {}", dir.display()))?;
    println!(
        "Local control plane running; its state is in {} (a restart resumes from it).",
        dir.join(capstan_local::STATE_FILE).display()
    );
    if !objects.is_empty() {
        let applied = capstan_runtime::apply::apply(&cp.store, objects)
            .await
            .context("applying the manifests")?;
        for a in &applied {
            println!("{}", crate::apply::applied_line(a));
        }
    }
    println!("From another terminal: capstan apply -f examples/quickstart.yaml --wait");
    let _ = std::io::stdout().flush();
    let started = Instant::now();
    loop {
        if run_for.is_some_and(|limit| started.elapsed() >= limit) {
            return Ok(ExitCode::SUCCESS);
        }
        let worked = cp.step().await.context("running the local control plane")?;
        if !worked {
            tokio::time::sleep(cp.idle_for(Duration::from_millis(250))).await;
        }
    }
}
