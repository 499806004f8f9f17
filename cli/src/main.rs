//! `capstan`: validate manifests and run the embedded control plane.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod input;
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

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
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
    init_logging(cli.log_format);
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
