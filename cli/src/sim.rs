//! `capstan sim`: run the deterministic simulator over many seeds, or replay one.

use std::process::ExitCode;
use std::time::Instant;

use capstan_sim::simulator::{Faults, Simulation, WORKLOADS};

pub struct Options {
    pub seeds: u64,
    pub first_seed: u64,
    pub faults: String,
    pub workload: Option<String>,
    pub replay: Option<u64>,
    pub trace: bool,
}

pub fn run(options: Options) -> ExitCode {
    let faults = match Faults::parse(&options.faults) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: --faults: {e}");
            return ExitCode::from(1);
        }
    };
    let workloads: Vec<String> = match &options.workload {
        Some(w) if WORKLOADS.contains(&w.as_str()) => vec![w.clone()],
        Some(w) => {
            eprintln!(
                "error: --workload: unknown workload {w:?}: use one of {}",
                WORKLOADS.join(", ")
            );
            return ExitCode::from(1);
        }
        None => WORKLOADS.iter().map(|w| w.to_string()).collect(),
    };

    if let Some(seed) = options.replay {
        let mut failed = false;
        for workload in &workloads {
            let report = Simulation::new(seed, workload, faults.clone()).run();
            if options.trace {
                println!("{}", report.trace.join("\n"));
            }
            println!("{}", report.failure_text());
            failed |= !report.passed();
        }
        return if failed {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }

    let started = Instant::now();
    let (mut runs, mut steps, mut failures) = (0u64, 0u64, 0u64);
    for workload in &workloads {
        for seed in options.first_seed..options.first_seed.saturating_add(options.seeds) {
            let report = Simulation::new(seed, workload, faults.clone()).run();
            runs += 1;
            steps += report.steps;
            if !report.passed() {
                failures += 1;
                println!("FAILED {}\n", report.failure_text());
            }
        }
    }
    println!(
        "{runs} runs ({} seeds x {} workloads, faults: {}), {steps} steps, {failures} failed, in {:.1}s",
        options.seeds,
        workloads.len(),
        options.faults,
        started.elapsed().as_secs_f64()
    );
    if failures > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
