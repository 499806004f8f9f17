//! `capstan`: validate manifests and run the embedded control plane.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod annotate;
mod apply;
mod config;
mod describe;
mod diff;
mod edit;
#[cfg(feature = "aws")]
mod endpoint;
mod get;
mod input;
mod kinds;
mod output;
mod plan;
mod replica;
mod schema;
mod sim;
mod target;
mod up;
mod wait;

use target::Target;

const ABOUT_CONTEXTS: &str = "\
Targets: every verb acts on the current context (`capstan config get-contexts`), or
the one --context names, or an ad-hoc endpoint with --endpoint URL. With no
configuration file the context is `local`: the embedded control plane, remembered in
.capstan/ of the working directory.

Exit codes:
  0  success (and for diff: no differences; for apply --dry-run: no changes)
  1  an error: invalid manifests, an unknown kind or object, a failed call; for diff,
     the files differ from the table
  2  apply --dry-run --detailed-exitcode: the plan has changes; wait, rollout status,
     --wait and up -f: timed out before the condition held
  3  the control plane itself failed (up, run)";

#[derive(Parser)]
#[command(
    name = "capstan",
    version,
    about = "A declarative control plane for the EC2 machines of Kubernetes clusters",
    after_help = ABOUT_CONTEXTS
)]
struct Cli {
    /// Log format for diagnostics on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    target: TargetArgs,
    /// The namespace of the objects named.
    #[arg(short = 'n', long, global = true, default_value = "default")]
    namespace: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Which installation a command acts on.
#[derive(clap::Args, Clone, Debug, Default)]
struct TargetArgs {
    /// The context to use (see `capstan config get-contexts`) [default: the current one].
    #[arg(long, global = true)]
    context: Option<String>,
    /// An AWS-compatible endpoint, e.g. http://127.0.0.1:5000: an ad-hoc context.
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// The installation: tags every instance; names the table [default: capstan].
    #[arg(long, global = true)]
    installation: Option<String>,
    /// The region the AWS clients use.
    #[arg(long, global = true)]
    region: Option<String>,
    /// The DynamoDB table [default: the installation's name, as the template names it].
    #[arg(long, global = true)]
    table: Option<String>,
}

impl TargetArgs {
    fn selector(&self) -> target::Selector {
        target::Selector {
            context: self.context.clone(),
            endpoint: self.endpoint.clone(),
            installation: self.installation.clone(),
            region: self.region.clone(),
            table: self.table.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check manifests without writing anything; prints every error at once.
    #[command(
        after_help = "Examples:\n  capstan validate -f examples/quickstart.yaml\n  cat cluster.yaml | capstan validate -f -"
    )]
    Validate {
        /// A file, a directory of .yaml/.yml/.json files, or - for standard input. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Without -f: start the local control plane and keep it running, its state in
    /// .capstan/state.db (the local context's directory), so that commands in another
    /// terminal act on it and a restart resumes. With -f: start an embedded control
    /// plane in memory, apply the manifests, wait until they converge, and exit.
    #[command(
        after_help = "Examples:\n  capstan up\n  capstan up --context scratch --boot-delay 1s\n  capstan up -f examples/quickstart.yaml --stay\n  capstan up -f examples/quickstart.yaml\n  capstan up -f examples/quickstart.yaml --virtual-time --json\n  capstan up -f examples/rollout-drain/ --stay   # then roll it: see examples/rollout-drain/README.md"
    )]
    Up {
        /// A file, a directory of .yaml/.yml/.json files, or - for standard input. Repeatable.
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        /// With -f: apply the manifests to the local control plane that keeps running
        /// (as without -f), and stay.
        #[arg(long, requires = "files")]
        stay: bool,
        /// Without -f (or with --stay): stop after this long (default: run until stopped).
        #[arg(long = "for", value_parser = parse_duration)]
        run_for: Option<Duration>,
        /// Give up (exit 2) if the tree has not converged after this long, e.g. 90s, 5m.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
        /// How long a simulated instance takes to boot (pending → running).
        #[arg(long, default_value = "3s", env = "CAPSTAN_BOOT_DELAY", value_parser = parse_duration)]
        boot_delay: Duration,
        /// How long a running instance's kubelet takes to register its Node, for
        /// Clusters with `spec.access` (their workload clusters are simulated too).
        #[arg(long, default_value = "20s", env = "CAPSTAN_JOIN_DELAY", value_parser = parse_duration)]
        join_delay: Duration,
        /// Run on virtual time: the same convergence, without waiting for simulated boots.
        #[arg(long)]
        virtual_time: bool,
        /// Print the final tree as JSON objects instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the control plane against an AWS-compatible endpoint (e.g. moto_server):
    /// creates the table, bus, rules and queues if absent, reads the table's stream,
    /// drains the queues, relays EC2 state changes, sweeps on schedule.
    #[cfg(feature = "aws")]
    #[command(
        after_help = "Examples:\n  capstan run --endpoint http://127.0.0.1:5000\n  capstan run --context moto --for 10m"
    )]
    Run {
        /// How often the drift sweep runs.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        sweep_every: Duration,
        /// How long a failed message stays invisible before it is delivered again.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        visibility_timeout: Duration,
        /// Stop after this long (default: run until stopped).
        #[arg(long = "for", value_parser = parse_duration)]
        run_for: Option<Duration>,
    },
    /// Validate manifests and write them into the table: created, configured or
    /// unchanged per object; --dry-run prints the plan instead.
    #[command(
        after_help = "Examples:\n  capstan apply -f examples/quickstart.yaml\n  capstan apply -f cluster/ --prune --cluster demo --wait\n  capstan apply -f examples/quickstart.yaml --dry-run --detailed-exitcode\n  capstan apply -f cluster.yaml --context prod"
    )]
    Apply {
        /// A file, a directory of .yaml/.yml/.json files, or - for standard input. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Delete the objects people wrote for --cluster that the files no longer hold.
        #[arg(long, requires = "cluster")]
        prune: bool,
        /// With --prune: the cluster whose objects are pruned.
        #[arg(long, requires = "prune")]
        cluster: Option<String>,
        /// Wait until the applied clusters converge, printing progress.
        #[arg(long)]
        wait: bool,
        /// With --wait: how long.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        timeout: Duration,
        /// Write nothing: print the plan (objects, Machines, rollout steps, EC2 calls).
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: exit 2 when the plan has changes, 0 when it has none.
        #[arg(long, requires = "dry_run")]
        detailed_exitcode: bool,
    },
    /// Delete objects (like `kubectl delete`): their reconcilers tear them down — a
    /// Cluster takes its whole tree and every instance with it.
    #[command(
        after_help = "Examples:\n  capstan delete cluster demo --wait\n  capstan delete machine/demo-workers-x7k2p\n  capstan delete -f examples/quickstart.yaml"
    )]
    Delete {
        /// KIND NAME or KIND/NAME.
        #[arg(conflicts_with = "files")]
        object: Vec<String>,
        /// A file, a directory of .yaml/.yml/.json files, or - for standard input. Repeatable.
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        /// The object's cluster, when its name is in several.
        #[arg(long)]
        cluster: Option<String>,
        /// Wait until the objects are gone, every instance terminated.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        timeout: Duration,
        /// Delete nothing: print the plan (objects, Machines, EC2 calls).
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: exit 2 when the plan has changes, 0 when it has none.
        #[arg(long, requires = "dry_run")]
        detailed_exitcode: bool,
    },
    /// List objects of one kind as a table, or print them as JSON or YAML.
    #[command(
        after_help = "Kinds: clusters (cl), machineclasses (mc), machinedeployments (md),\nmachinesets (ms), machines (ma), machinehealthchecks (mhc); singular or plural.\n\nExamples:\n  capstan get machines\n  capstan get md -o wide\n  capstan get ma -A -l capstan.dev/pool=workers\n  capstan get cluster demo -o yaml\n  capstan get machines -w"
    )]
    Get {
        /// The kind, e.g. machines, md, cluster.
        kind: String,
        /// One object's name.
        name: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// A label selector: key=value, key!=value, key, !key, comma-separated.
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// wide, yaml, json or name.
        #[arg(short = 'o', long, value_enum)]
        output: Option<get::Format>,
        /// After the list, print each change as it happens.
        #[arg(short = 'w', long)]
        watch: bool,
        /// With -w: stop after this long (default: until interrupted).
        #[arg(long, value_parser = parse_duration)]
        watch_for: Option<Duration>,
    },
    /// Show a cluster's tree with what is not Ready and since when, or one object in
    /// full.
    #[command(
        after_help = "Examples:\n  capstan describe cluster demo\n  capstan describe md demo-workers\n  capstan describe machine/demo-workers-x7k2p"
    )]
    Describe {
        /// KIND NAME or KIND/NAME.
        #[arg(required = true)]
        object: Vec<String>,
        /// The object's cluster, when its name is in several.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Set or remove annotations (KEY=VALUE, KEY-); on a Machine being deleted, remove
    /// a deletion hook to let the deletion go on.
    #[command(
        after_help = "Examples:\n  capstan annotate machine demo-workers-6f9c2d1a-x7k2p capstan.dev/delete-machine=\n  capstan annotate machine demo-workers-6f9c2d1a-x7k2p pre-drain.delete.hook.capstan.dev/backup-"
    )]
    Annotate {
        /// KIND NAME (or KIND/NAME), then KEY=VALUE to set and KEY- to remove.
        #[arg(required = true, num_args = 2.., value_name = "KIND NAME CHANGE")]
        words: Vec<String>,
        /// The object's cluster, when its name is in several.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Set the size of a worker pool (in its Cluster) or of a MachineDeployment.
    #[command(
        after_help = "Examples:\n  capstan scale pool demo/workers --replicas 5\n  capstan scale md my-deployment --replicas 2"
    )]
    Scale {
        /// pool CLUSTER/POOL, or machinedeployment NAME.
        #[arg(required = true)]
        object: Vec<String>,
        #[arg(long)]
        replicas: i32,
    },
    /// Manage a rollout: follow it, restart it (replace every machine), pause, resume.
    #[command(
        after_help = "Examples:\n  capstan rollout status pool/demo/workers\n  capstan rollout restart pool demo/workers\n  capstan rollout pause cluster/demo\n  capstan rollout resume md/my-deployment"
    )]
    Rollout {
        #[arg(value_enum)]
        verb: edit::RolloutVerb,
        /// pool/CLUSTER/POOL, md/NAME or cluster/NAME (pause and resume).
        #[arg(required = true)]
        object: Vec<String>,
        /// With status: how long to follow.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Wait until an object has a condition (or is deleted).
    #[command(
        after_help = "Examples:\n  capstan wait --for=condition=Ready cluster/demo --timeout 5m\n  capstan wait --for=delete machine/demo-workers-x7k2p"
    )]
    Wait {
        /// KIND/NAME or KIND NAME.
        #[arg(required = true)]
        object: Vec<String>,
        /// condition=Type, condition=Type=Status, or delete.
        #[arg(long = "for")]
        wait_for: String,
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Show how the files differ from the table: a unified diff of each object's
    /// desired state; exit 1 when they differ.
    #[command(after_help = "Examples:\n  capstan diff -f examples/quickstart.yaml")]
    Diff {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Contexts: where commands go.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the JSON Schema (2020-12) of the manifests, or of one kind.
    #[command(
        after_help = "Examples:\n  capstan schema > capstan.json\n  capstan schema machineclass"
    )]
    Schema {
        /// One kind; all of them (one document, `kind` picks the branch) when omitted.
        kind: Option<String>,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  capstan completion bash > /etc/bash_completion.d/capstan\n  capstan completion zsh > \"${fpath[1]}/_capstan\"\n  capstan completion fish > ~/.config/fish/completions/capstan.fish"
    )]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run the deterministic simulator: the real handlers under injected faults, with
    /// invariants checked after every step.
    Sim {
        /// How many seeds to run per workload.
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        /// Faults to inject: all, none, or a comma-separated list of drop, duplicate,
        /// delay, reorder, throttle, throttling (EC2's API limits as token buckets), 5xx,
        /// timeout, conflict, stale, capacity, external, spot, foreign, no-idempotency,
        /// concurrency, hostile, nodes; `name=rate` sets a rate
        /// (0 to 1), e.g.
        /// `external=0.05`, and `foreign=N` a number of instances.
        #[arg(long, default_value = "all")]
        faults: String,
        /// One workload (quickstart, scale-storm, rollout-during-scale-down,
        /// delete-during-rollout, multi-cluster, edits-in-flight, nodes, drain, autoscale,
        /// outage); all when omitted.
        #[arg(long)]
        workload: Option<String>,
        /// Replay one seed exactly and print its outcome.
        #[arg(long)]
        replay: Option<u64>,
        /// With --replay, print the whole trace.
        #[arg(long)]
        trace: bool,
        /// Runs at once (each is deterministic and independent) [default: one per core].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
        threads: Option<u64>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// List the contexts; the current one is starred.
    GetContexts,
    /// Print the current context's name.
    CurrentContext,
    /// Make NAME the current context.
    #[command(after_help = "Examples:\n  capstan config use-context moto")]
    UseContext { name: String },
    /// Create or replace a context: --endpoint URL, --region R (AWS itself), or
    /// --local DIR; --installation names the installation.
    #[command(
        after_help = "Examples:\n  capstan config set-context moto --endpoint http://127.0.0.1:5000 --installation capstan\n  capstan config set-context prod --region eu-west-1 --profile ops --installation capstan\n  capstan config set-context scratch --local /tmp/capstan-scratch"
    )]
    SetContext {
        name: String,
        /// With --region: a named profile of the AWS config files.
        #[arg(long)]
        profile: Option<String>,
        /// The state directory of a local control plane.
        #[arg(long, conflicts_with_all = ["profile"])]
        local: Option<PathBuf>,
    },
}

/// Runs `future` on a runtime with timers and sockets (the AWS SDK needs both).
#[cfg(feature = "aws")]
fn block_on(future: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(future) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| {
        format!("{s:?} is not a duration: write a number and a unit, e.g. 90s or 5m")
    })?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: use ms, s, m or h"
            ));
        }
    };
    Ok(Duration::from_secs(secs))
}

fn init_logging(format: LogFormat, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The simulator's faults make handlers log errors by the thousand, and its trace
    // says what happened: quiet by default.
    let default_level = if matches!(cli.command, Command::Sim { .. }) {
        "off"
    } else {
        "warn"
    };
    init_logging(cli.log_format, default_level);
    let selector = cli.target.selector();
    let namespace = cli.namespace;
    match cli.command {
        Command::Validate { files } => match input::read(&files) {
            Ok(objects) => {
                println!("{} object(s) valid", objects.len());
                ExitCode::SUCCESS
            }
            Err(report) => {
                eprint!("{report}");
                ExitCode::from(1)
            }
        },
        #[cfg(feature = "aws")]
        Command::Run {
            sweep_every,
            visibility_timeout,
            run_for,
        } => block_on(async move {
            let target = endpoint::Target::resolve(&selector)?;
            endpoint::run(
                target,
                endpoint::RunOptions {
                    sweep_every,
                    visibility_timeout,
                    run_for,
                },
            )
            .await
        }),
        Command::Apply {
            files,
            prune,
            cluster,
            wait,
            timeout,
            dry_run,
            detailed_exitcode,
        } => {
            let Some(objects) = apply::read(&files, "applied") else {
                return ExitCode::from(1);
            };
            let prune_cluster = if prune { cluster } else { None };
            verb(async move {
                let mut target = Target::open(&selector).await?;
                if dry_run {
                    let prune = match &prune_cluster {
                        Some(cluster) => {
                            let keep: Vec<_> = objects.iter().map(|o| o.key()).collect();
                            apply::prunable(&target.trees().await?, &namespace, cluster, &keep)
                        }
                        None => Vec::new(),
                    };
                    return plan::run(target, &objects, &prune, detailed_exitcode).await;
                }
                let options = apply::Options {
                    prune_cluster,
                    namespace,
                    wait,
                    timeout,
                };
                apply::apply(&mut target, &objects, &options).await
            })
        }
        Command::Delete {
            object,
            files,
            cluster,
            wait,
            timeout,
            dry_run,
            detailed_exitcode,
        } => {
            let from_files = if files.is_empty() {
                None
            } else {
                match apply::read(&files, "deleted") {
                    Some(objects) => Some(objects),
                    None => return ExitCode::from(1),
                }
            };
            verb(async move {
                let mut target = Target::open(&selector).await?;
                let keys = match from_files {
                    Some(objects) => objects.iter().map(|o| o.key()).collect(),
                    None if object.is_empty() => {
                        anyhow::bail!("name what to delete: KIND NAME, KIND/NAME, or -f FILE")
                    }
                    None => {
                        vec![apply::key_of(&target, &object, &namespace, cluster.as_deref()).await?]
                    }
                };
                if dry_run {
                    return plan::run(target, &[], &keys, detailed_exitcode).await;
                }
                apply::delete(&mut target, keys, wait, timeout).await
            })
        }
        Command::Get {
            kind,
            name,
            all_namespaces,
            selector: labels,
            output,
            watch,
            watch_for,
        } => verb(async move {
            let target = Target::open(&selector).await?;
            get::run(
                &target,
                get::Options {
                    kind,
                    name,
                    namespace,
                    all_namespaces,
                    selector: labels,
                    output,
                    watch,
                    watch_for,
                },
            )
            .await
        }),
        Command::Describe { object, cluster } => verb(async move {
            let (kind, name) = kinds::kind_and_name(&object)?;
            let target = Target::open(&selector).await?;
            describe::run(&target, &kind, &name, &namespace, cluster.as_deref()).await
        }),
        Command::Annotate { words, cluster } => verb(async move {
            // KIND/NAME CHANGE…, or KIND NAME CHANGE…
            let (kind, name, changes) = match words.split_first() {
                Some((first, rest)) => match first.split_once('/') {
                    Some((k, n)) => (k.to_string(), n.to_string(), rest.to_vec()),
                    None => match rest.split_first() {
                        Some((n, changes)) => (first.clone(), n.clone(), changes.to_vec()),
                        None => anyhow::bail!(
                            "name the object: KIND NAME, e.g. machine demo-workers-6f9c2d1a-x7k2p"
                        ),
                    },
                },
                None => anyhow::bail!("name the object and the annotations"),
            };
            let mut target = Target::open(&selector).await?;
            annotate::run(
                &mut target,
                &kind,
                &name,
                &changes,
                &namespace,
                cluster.as_deref(),
            )
            .await
        }),
        Command::Scale { object, replicas } => verb(async move {
            let mut target = Target::open(&selector).await?;
            edit::scale(&mut target, &object, replicas, &namespace).await
        }),
        Command::Rollout {
            verb: action,
            object,
            timeout,
        } => verb(async move {
            let mut target = Target::open(&selector).await?;
            edit::rollout(&mut target, action, &object, &namespace, timeout).await
        }),
        Command::Wait {
            object,
            wait_for,
            timeout,
        } => verb(async move {
            let target = Target::open(&selector).await?;
            wait::run(&target, &object, &wait_for, &namespace, timeout).await
        }),
        Command::Diff { files } => {
            let Some(objects) = apply::read(&files, "compared") else {
                return ExitCode::from(3);
            };
            match run_async(async move {
                let target = Target::open(&selector).await?;
                diff::run(&target, &objects).await
            }) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(3)
                }
            }
        }
        Command::Config(command) => report(config_command(command, &cli.target)),
        Command::Schema { kind } => report(schema::print(kind.as_deref())),
        Command::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "capstan", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Sim {
            seeds,
            first_seed,
            faults,
            workload,
            replay,
            trace,
            threads,
        } => sim::run(sim::Options {
            seeds,
            first_seed,
            faults,
            workload,
            replay,
            trace,
            threads: threads.map(|t| t as usize),
        }),
        Command::Up {
            files,
            stay,
            run_for,
            timeout,
            boot_delay,
            join_delay,
            virtual_time,
            json,
        } => {
            let simulated = up::Simulated {
                boot_delay,
                join_delay,
            };
            let input = if files.is_empty() {
                up::Input::default()
            } else {
                match up::read(&files) {
                    Some(input) => input,
                    None => return ExitCode::from(1),
                }
            };
            if files.is_empty() || stay {
                return verb(async move {
                    let named = selector.resolve()?;
                    let config::Context::Local { dir } = named.context else {
                        anyhow::bail!(
                            "`capstan up` runs a local control plane, and context {:?} is {}: use --context local (or another local context)",
                            named.name,
                            named.context.describe()
                        );
                    };
                    up::serve(&dir, simulated, run_for, &input).await
                });
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: starting the async runtime: {e}");
                    return ExitCode::from(3);
                }
            };
            let options = up::Options {
                timeout,
                simulated,
                virtual_time,
                json,
            };
            match runtime.block_on(up::run(input, options)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(3)
                }
            }
        }
    }
}

/// Runs `future` on a runtime with timers and sockets (the AWS SDK needs both).
fn run_async(
    future: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?;
    runtime.block_on(future)
}

/// Runs a verb; an error is printed (with its context) and exits 1.
fn verb(future: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    report(run_async(future))
}

fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn config_command(command: ConfigCommand, target: &TargetArgs) -> anyhow::Result<ExitCode> {
    let path = config::path()?;
    let mut cfg = config::Config::load(&path)?;
    match command {
        ConfigCommand::GetContexts => {
            let mut rows = vec![vec![
                "CURRENT".to_string(),
                "NAME".to_string(),
                "TARGET".to_string(),
            ]];
            for c in cfg.contexts() {
                rows.push(vec![
                    if c.name == cfg.current() { "*" } else { "" }.to_string(),
                    c.name.clone(),
                    c.context.describe(),
                ]);
            }
            print!("{}", output::table(&rows));
        }
        ConfigCommand::CurrentContext => println!("{}", cfg.current()),
        ConfigCommand::UseContext { name } => {
            cfg.resolve(Some(&name))?;
            cfg.current_context = Some(name.clone());
            cfg.save(&path)?;
            println!("Switched to context {name:?}.");
        }
        ConfigCommand::SetContext {
            name,
            profile,
            local,
        } => {
            let installation = || {
                target
                    .installation
                    .clone()
                    .unwrap_or_else(|| "capstan".to_string())
            };
            let context = match (&target.endpoint, &target.region, local) {
                (Some(url), region, None) => config::Context::Endpoint {
                    url: url.clone(),
                    installation: installation(),
                    region: region.clone(),
                },
                (None, Some(region), None) => config::Context::Aws {
                    region: region.clone(),
                    installation: installation(),
                    profile,
                },
                (None, None, Some(dir)) => config::Context::Local { dir },
                _ => anyhow::bail!(
                    "set-context {name}: give exactly one of --endpoint URL, --region REGION (AWS itself) or --local DIR"
                ),
            };
            cfg.set(&name, context);
            cfg.save(&path)?;
            println!("Context {name:?} set in {}.", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
