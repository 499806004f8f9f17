//! Helpers shared by the test files.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;

use capstan_model::Timestamp;
use capstan_sim::ManualClock;

/// Runs a future to completion on a current-thread runtime (the adapters never wait).
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
        .block_on(f)
}

pub fn start() -> Timestamp {
    "2025-01-01T00:00:00Z".parse().expect("a valid timestamp")
}

/// A manual clock at [`start`], and the same clock as the adapters take it.
pub fn clock() -> (ManualClock, Arc<dyn capstan_runtime::Clock>) {
    let clock = ManualClock::new(start());
    let shared: Arc<dyn capstan_runtime::Clock> = Arc::new(clock.clone());
    (clock, shared)
}
