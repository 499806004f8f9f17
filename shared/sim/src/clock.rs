//! Virtual time and seeded entropy: the only sources of time and randomness the
//! in-memory adapters see, so a run replays exactly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_model::Timestamp;
use capstan_runtime::{Clock, Entropy};

use crate::rng::Rng;

/// A clock that moves only when told to. Clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<Mutex<Timestamp>>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Sets the time. Going backwards is allowed (a clock step), though AWS's own
    /// clocks never do that to us; adapters treat times as given.
    pub fn set(&self, t: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// Moves the time forward by `d` (saturating at the end of time).
    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = after(*now, d);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Entropy from a seeded splitmix64: the same seed gives the same uids, in the same order.
#[derive(Clone, Debug)]
pub struct SeededEntropy {
    rng: Arc<Mutex<Rng>>,
}

impl SeededEntropy {
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy {
            rng: Arc::new(Mutex::new(Rng::new(seed))),
        }
    }
}

impl Entropy for SeededEntropy {
    fn next_u128(&self) -> u128 {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_u128()
    }
}

/// `t + d`, saturating at `Timestamp::MAX`.
pub(crate) fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// The virtual epoch simulations and tests start at.
pub const VIRTUAL_EPOCH_SECONDS: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
