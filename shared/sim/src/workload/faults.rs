//! Faults: per instance (never joins, goes NotReady, kubelet flags) and per cluster
//! (unreachable, throttled, flaky, a queued error), and the gate every call passes.

use super::*;

/// API priority and fairness answering 429 to every `every`-th call (1: every call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    pub every: u64,
    pub retry_after: Option<Duration>,
}

/// Each call fails with these probabilities, drawn from a generator seeded with `seed`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlakyApi {
    pub seed: u64,
    pub unavailable: f64,
    pub throttled: f64,
}

/// A Node that stops being Ready while its kubelet runs (disk full, runtime down…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    pub at: Timestamp,
    pub reason: String,
}

#[derive(Debug, Default)]
pub(super) struct InstanceFaults {
    pub(super) never_join: bool,
    pub(super) not_ready: Option<NotReady>,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) taints: Vec<Taint>,
}

#[derive(Debug, Default)]
pub(super) struct ClusterFaults {
    pub(super) unreachable_until: Option<Timestamp>,
    pub(super) throttle: Option<Throttle>,
    pub(super) flaky: Option<(FlakyApi, Rng)>,
    pub(super) queued: VecDeque<WorkloadError>,
}

impl Cluster {
    /// The faults' answer to one call, before it reaches the objects.
    pub(super) fn gate(&mut self, key: &ClusterKey, now: Timestamp) -> Result<(), WorkloadError> {
        self.calls += 1;
        let f = &mut self.faults;
        if f.unreachable_until.is_some_and(|until| now < until) {
            return Err(WorkloadError::Unavailable(format!(
                "Get \"https://{}.{}.eks.amazonaws.com/api\": dial tcp: i/o timeout",
                key.cluster, key.namespace
            )));
        }
        if let Some(err) = f.queued.pop_front() {
            return Err(err);
        }
        if let Some(t) = f.throttle
            && t.every > 0
            && self.calls.is_multiple_of(t.every)
        {
            return Err(throttled(t.retry_after));
        }
        if let Some((flaky, rng)) = &mut f.flaky {
            if rng.chance(flaky.unavailable) {
                return Err(WorkloadError::Unavailable(
                    "the server is currently unable to handle the request".into(),
                ));
            }
            if rng.chance(flaky.throttled) {
                return Err(throttled(Some(Duration::from_secs(1))));
            }
        }
        Ok(())
    }
}

fn throttled(retry_after: Option<Duration>) -> WorkloadError {
    WorkloadError::Throttled {
        retry_after,
        message: "the server has received too many requests and has asked us to try again later"
            .into(),
    }
}
