//! The real clock and the operating system's randomness, for runtimes that are not
//! simulated.

use capstan_model::Timestamp;

use crate::ports::{Clock, Entropy};

/// Wall-clock time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Randomness from the operating system; falls back to the clock if none is available.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn next_u128(&self) -> u128 {
        let mut bytes = [0u8; 16];
        match getrandom::fill(&mut bytes) {
            Ok(()) => u128::from_le_bytes(bytes),
            Err(_) => Timestamp::now().as_nanosecond() as u128,
        }
    }
}
