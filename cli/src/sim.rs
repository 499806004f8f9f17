//! `capstan sim`: run the deterministic simulator over many seeds, or replay one.

use std::process::ExitCode;
use std::time::Instant;

use capstan_sim::simulator::{Faults, Simulation, WORKLOADS, sweep};

pub struct Options {
    pub seeds: u64,
    pub first_seed: u64,
    pub faults: String,
    pub workload: Option<String>,
    pub replay: Option<u64>,
    pub trace: bool,
    /// Runs at once; one per core when None.
    pub threads: Option<usize>,
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
    let names: Vec<&str> = workloads.iter().map(String::as_str).collect();
    let seeds = options.first_seed..options.first_seed.saturating_add(options.seeds);
    let runs = sweep::runs(&names, seeds);
    let outcomes = sweep::sweep(
        &runs,
        &faults,
        options.threads.unwrap_or_else(sweep::default_threads),
    );
    let steps: u64 = outcomes.iter().map(|o| o.steps).sum();
    let mut failures = 0u64;
    for failure in outcomes.iter().filter_map(|o| o.failure.as_ref()) {
        failures += 1;
        println!("FAILED {failure}\n");
    }
    println!(
        "{} runs ({} seeds x {} workloads, faults: {}), {steps} steps, {failures} failed, in {:.1}s",
        outcomes.len(),
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
