//! `capstan up`: without -f, the local control plane that keeps running
//! (`capstan-local`); with -f, the embedded control plane, in this process, until the
//! tree converges.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use capstan_embedded::{Embedded, EmbeddedConfig, RunOutcome};
use capstan_model::meta::condition;
use capstan_model::{InstanceState, Kind, MachinePhase, Object, ObjectKey};
use capstan_reconcile::tree::Tree;
use capstan_runtime::Instance;
use capstan_sim::workload::{ClusterKey, MemWorkload, WorkloadObject, read_workload_objects};

/// How long simulated things take on the wall clock.
#[derive(Clone, Copy, Debug)]
pub struct Simulated {
    /// An instance, pending → running.
    pub boot_delay: Duration,
    /// A running instance → its kubelet's Node registered.
    pub join_delay: Duration,
}

/// What `capstan up -f` reads: Capstan's objects, and the Kubernetes workload objects
/// its in-memory workload clusters run.
#[derive(Default)]
pub struct Input {
    pub objects: Vec<Object>,
    pub workload: Vec<(ClusterKey, WorkloadObject)>,
}

/// Reads `files` for `up`, or prints every error and returns None. A workload object
/// goes to the cluster its `capstan.dev/cluster` annotation names, else to the only
/// Cluster of the files.
pub fn read(files: &[std::path::PathBuf]) -> Option<Input> {
    let fail = |report: &str| {
        eprint!("{report}");
        eprintln!("nothing was applied");
        None
    };
    let manifests = match crate::input::read_with_workload(files) {
        Ok(m) => m,
        Err(report) => return fail(&report),
    };
    let workload = match read_workload_objects(&manifests.objects, &manifests.workload) {
        Ok(workload) => workload,
        Err(errors) => {
            let report: String = errors.iter().map(|e| format!("{e}\n")).collect();
            return fail(&report);
        }
    };
    Some(Input {
        objects: manifests.objects,
        workload,
    })
}

/// Gives each workload cluster its objects, saying so.
fn seed(workload: &MemWorkload, objects: &[(ClusterKey, WorkloadObject)]) {
    for (key, object) in objects {
        let what = match object {
            WorkloadObject::Deployment { name, replicas, .. } => {
                format!("Deployment {name} ({replicas} pods)")
            }
            WorkloadObject::DaemonSet { name, .. } => format!("DaemonSet {name}"),
            WorkloadObject::Budget(pdb) => format!("PodDisruptionBudget {}", pdb.name),
            WorkloadObject::Pod(pod) => format!("Pod {}", pod.name),
        };
        println!(
            "{what} runs in cluster {}/{}'s workload cluster",
            key.namespace, key.cluster
        );
        workload.add_object(key.clone(), object.clone());
    }
}

/// How much of a Deleting condition's message a progress line shows.
const MAX_DRAIN_LINE: usize = 320;

/// Prints each Machine's Deleting condition when it changes: which step its deletion
/// is at, since when, and what a drain waits for (pods left, the budget blocking).
#[derive(Default)]
struct DrainReport {
    last: std::collections::BTreeMap<ObjectKey, String>,
}

impl DrainReport {
    fn lines(&mut self, trees: &[Tree]) -> Vec<String> {
        let mut now = std::collections::BTreeMap::new();
        let mut lines = Vec::new();
        for s in trees.iter().flat_map(|t| t.of_kind(Kind::Machine)) {
            let Some(c) = s.object.conditions().get(condition::DELETING) else {
                continue;
            };
            let text = format!("{}: {}", c.reason, c.message);
            let key = s.object.key();
            if self.last.get(&key) != Some(&text) {
                // One line per change; `capstan describe` has the whole message.
                let short: String = text.chars().take(MAX_DRAIN_LINE).collect();
                let more = if short.len() < text.len() { "…" } else { "" };
                lines.push(format!("Machine {} {short}{more}", key.name));
            }
            now.insert(key, text);
        }
        for key in self.last.keys().filter(|k| !now.contains_key(*k)) {
            lines.push(format!("Machine {} deleted", key.name));
        }
        self.last = now;
        lines
    }
}

/// What `up` prints as the control plane works: the progress line when it changes,
/// then each drain step.
#[derive(Default)]
struct Reporter {
    last: String,
    drains: DrainReport,
}

impl Reporter {
    fn lines(&mut self, trees: &[Tree], instances: &[Instance]) -> Vec<String> {
        let mut said = self.drains.lines(trees);
        let line = progress(trees, instances);
        if line != self.last {
            said.insert(0, line.clone());
            self.last = line;
        }
        said
    }
}

pub struct Options {
    pub timeout: Duration,
    pub simulated: Simulated,
    pub virtual_time: bool,
    pub json: bool,
}

pub async fn run(input: Input, options: Options) -> anyhow::Result<ExitCode> {
    let mut config = EmbeddedConfig::default();
    config.ec2.boot_delay = options.simulated.boot_delay;
    config.workload.join_delay = options.simulated.join_delay;
    let mut cp = if options.virtual_time {
        Embedded::virtual_time(config, 1)
    } else {
        Embedded::real_time(config)
    };
    println!(
        "Embedded control plane started (installation {:?}, simulated EC2 in {}).",
        cp.config.installation, cp.config.ec2.region
    );
    for applied in cp
        .apply(&input.objects)
        .await
        .context("applying the manifests")?
    {
        println!("{}", crate::apply::applied_line(&applied));
    }
    seed(&cp.workload, &input.workload);

    let started = Instant::now();
    let virtual_start = cp.now();
    let mut reporter = Reporter::default();
    let outcome = cp
        .run_until(
            options.timeout,
            |cp| {
                let problems = cp.not_converged();
                (!problems.is_empty()).then_some(problems)
            },
            |cp| {
                let elapsed = if options.virtual_time {
                    Duration::try_from(cp.now().duration_since(virtual_start)).unwrap_or_default()
                } else {
                    started.elapsed()
                };
                for line in reporter.lines(&cp.trees(), &cp.ec2.instances()) {
                    println!("[{:>5.1}s] {line}", elapsed.as_secs_f64());
                }
                let _ = std::io::stdout().flush();
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
fn progress(trees: &[Tree], instances: &[Instance]) -> String {
    let mut phases = std::collections::BTreeMap::<String, usize>::new();
    let mut machines = 0;
    for tree in trees {
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
/// `input` applied first, until stopped (or `run_for`). One per directory. Prints the
/// Machines' progress and every drain step as it happens.
pub async fn serve(
    dir: &std::path::Path,
    simulated: Simulated,
    run_for: Option<Duration>,
    input: &Input,
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
    config.ec2.boot_delay = simulated.boot_delay;
    config.workload.join_delay = simulated.join_delay;
    let mut cp = capstan_local::LocalControlPlane::open(dir, config)
        .with_context(|| format!("opening the local control plane in {}", dir.display()))?;
    println!(
        "Local control plane running; its state is in {} (a restart resumes from it).",
        dir.join(capstan_local::STATE_FILE).display()
    );
    if !input.objects.is_empty() {
        let applied = capstan_runtime::apply::apply(&cp.store, &input.objects)
            .await
            .context("applying the manifests")?;
        for a in &applied {
            println!("{}", crate::apply::applied_line(a));
        }
    }
    seed(&cp.workload, &input.workload);
    println!("From another terminal: capstan apply -f examples/quickstart.yaml --wait");
    let _ = std::io::stdout().flush();
    let started = Instant::now();
    let mut reporter = Reporter::default();
    let mut reported = Instant::now();
    loop {
        if run_for.is_some_and(|limit| started.elapsed() >= limit) {
            return Ok(ExitCode::SUCCESS);
        }
        let worked = cp.step().await.context("running the local control plane")?;
        // What changed, at most twice a second: the table is read whole to say it.
        if reported.elapsed() >= Duration::from_millis(500) {
            reported = Instant::now();
            let items = cp.store.items().context("reading the local table")?;
            let trees: Vec<Tree> = capstan_runtime::table::trees_by_partition(items)
                .into_values()
                .collect();
            for line in reporter.lines(&trees, &cp.ec2.instances()) {
                println!("[{:>7.1}s] {line}", started.elapsed().as_secs_f64());
            }
            let _ = std::io::stdout().flush();
        }
        if !worked {
            tokio::time::sleep(cp.idle_for(Duration::from_millis(250))).await;
        }
    }
}
