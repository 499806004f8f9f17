//! Many seeds at once: each run is independent and deterministic, so a sweep spreads
//! them over threads and gives the outcomes back in the order asked (the output of a
//! sweep replays as exactly as each run does).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Faults, Simulation};

/// What a sweep keeps of a run: enough to report it and replay it, not its trace
/// (a passing run's trace is thousands of lines nobody reads).
#[derive(Clone, Debug)]
pub struct Outcome {
    pub workload: String,
    pub seed: u64,
    pub steps: u64,
    /// The failure as [`super::Report::failure_text`] gives it; None when it passed.
    pub failure: Option<String>,
}

/// Runs `workload` under `faults` for each seed, for each workload, on up to `threads`
/// threads (at least one). Outcomes are in the order of `runs`.
pub fn sweep(runs: &[(String, u64)], faults: &Faults, threads: usize) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; runs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, runs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some((workload, seed)) = runs.get(index) else {
                        break;
                    };
                    let report = Simulation::new(*seed, workload, faults.clone()).run();
                    let outcome = Outcome {
                        workload: workload.clone(),
                        seed: *seed,
                        steps: report.steps,
                        failure: (!report.passed()).then(|| report.failure_text()),
                    };
                    if let Ok(mut done) = done.lock() {
                        done[index] = Some(outcome);
                    }
                }
            });
        }
    });
    done.into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// Every (workload, seed) pair of `workloads` × `seeds`, workload by workload.
pub fn runs(workloads: &[&str], seeds: std::ops::Range<u64>) -> Vec<(String, u64)> {
    workloads
        .iter()
        .flat_map(|w| seeds.clone().map(|s| (w.to_string(), s)))
        .collect()
}

/// The threads a sweep uses by default: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
