//! `capstan`: validate manifests and run the embedded control plane.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[cfg(feature = "aws")]
mod endpoint;
mod input;
mod sim;
mod up;

#[derive(Parser)]
#[command(
    name = "capstan",
    version,
    about = "A declarative control plane for the EC2 machines of Kubernetes clusters"
)]
struct Cli {
    /// Log format for diagnostics on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check manifests without writing anything; prints every error at once.
    Validate {
        /// A file, a directory of .yaml/.yml/.json files, or - for standard input. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Start the embedded control plane, apply the manifests, and wait until they converge.
    Up {
        /// A file, a directory of .yaml/.yml/.json files, or - for standard input. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Give up (exit 2) if the tree has not converged after this long, e.g. 90s, 5m.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
        /// How long a simulated instance takes to boot (pending → running).
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        boot_delay: Duration,
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
    Run {
        /// The endpoint every AWS client talks to, e.g. http://127.0.0.1:5000.
        #[arg(long)]
        endpoint: String,
        #[command(flatten)]
        target: TargetArgs,
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
    /// Validate manifests and write them into the table at an endpoint.
    #[cfg(feature = "aws")]
    Apply {
        /// A file, a directory of .yaml/.yml/.json files, or - for standard input. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// The endpoint every AWS client talks to, e.g. http://127.0.0.1:5000.
        #[arg(long)]
        endpoint: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Delete the objects the manifests name from the table at an endpoint (like
    /// `kubectl delete -f`): their reconcilers tear them down — a Cluster takes its
    /// whole tree and every instance with it.
    #[cfg(feature = "aws")]
    Delete {
        /// A file, a directory of .yaml/.yml/.json files, or - for standard input. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// The endpoint every AWS client talks to, e.g. http://127.0.0.1:5000.
        #[arg(long)]
        endpoint: String,
        #[command(flatten)]
        target: TargetArgs,
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
        /// delay, reorder, throttle, throttling (EC2's API limits as token buckets), 5xx, timeout, conflict, stale, capacity, external,
        /// spot, foreign, no-idempotency, concurrency, hostile; `name=rate` sets a rate
        /// (0 to 1), e.g.
        /// `external=0.05`, and `foreign=N` a number of instances.
        #[arg(long, default_value = "all")]
        faults: String,
        /// One workload (quickstart, scale-storm, rollout-during-scale-down,
        /// delete-during-rollout, multi-cluster, edits-in-flight); all when omitted.
        #[arg(long)]
        workload: Option<String>,
        /// Replay one seed exactly and print its outcome.
        #[arg(long)]
        replay: Option<u64>,
        /// With --replay, print the whole trace.
        #[arg(long)]
        trace: bool,
    },
}

/// Which installation and table at the endpoint.
#[cfg(feature = "aws")]
#[derive(clap::Args)]
struct TargetArgs {
    /// The region the clients use.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// The installation: tags every instance; only instances with it are terminated.
    #[arg(long, default_value = "capstan")]
    installation: String,
    /// The DynamoDB table [default: the installation's name, as the template names it].
    #[arg(long)]
    table: Option<String>,
}

#[cfg(feature = "aws")]
impl TargetArgs {
    fn at(self, endpoint: String) -> endpoint::Target {
        endpoint::Target {
            endpoint,
            region: self.region,
            table: self.table.unwrap_or_else(|| self.installation.clone()),
            installation: self.installation,
        }
    }
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
            endpoint,
            target,
            sweep_every,
            visibility_timeout,
            run_for,
        } => block_on(endpoint::run(
            target.at(endpoint),
            endpoint::RunOptions {
                sweep_every,
                visibility_timeout,
                run_for,
            },
        )),
        #[cfg(feature = "aws")]
        Command::Apply {
            files,
            endpoint,
            target,
        } => with_manifests(&files, "applied", |objects| {
            block_on(endpoint::apply(target.at(endpoint), objects))
        }),
        #[cfg(feature = "aws")]
        Command::Delete {
            files,
            endpoint,
            target,
        } => with_manifests(&files, "deleted", |objects| {
            block_on(endpoint::delete(target.at(endpoint), objects))
        }),
        Command::Sim {
            seeds,
            first_seed,
            faults,
            workload,
            replay,
            trace,
        } => sim::run(sim::Options {
            seeds,
            first_seed,
            faults,
            workload,
            replay,
            trace,
        }),
        Command::Up {
            files,
            timeout,
            boot_delay,
            virtual_time,
            json,
        } => {
            let objects = match input::read(&files) {
                Ok(objects) => objects,
                Err(report) => {
                    eprint!("{report}");
                    eprintln!("nothing was applied");
                    return ExitCode::from(1);
                }
            };
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
                boot_delay,
                virtual_time,
                json,
            };
            match runtime.block_on(up::run(objects, options)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(3)
                }
            }
        }
    }
}

/// Reads and validates the manifests, then acts on them; invalid manifests are reported
/// in full and nothing is `done`.
#[cfg(feature = "aws")]
fn with_manifests(
    files: &[PathBuf],
    done: &str,
    act: impl FnOnce(Vec<capstan_model::Object>) -> ExitCode,
) -> ExitCode {
    match input::read(files) {
        Ok(objects) => act(objects),
        Err(report) => {
            eprint!("{report}");
            eprintln!("nothing was {done}");
            ExitCode::from(1)
        }
    }
}
