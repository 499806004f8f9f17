//! The local control plane that keeps running and remembers (`capstan up` without
//! `-f`): every function in one process, driven by the one driver, over
//!
//! - the table in SQLite (`store`): several processes open the same file — `capstan
//!   up` and the commands of another terminal — and conditional writes hold across
//!   them; the change stream is a table too, read from where this control plane
//!   stopped, so a write made while it was down is routed when it comes back;
//! - the simulated EC2 (`capstan-sim`), its instances saved into the same file after
//!   every step and restored, ids and states, on start;
//! - the in-memory queues: not kept. Events are level-triggered, so on start the drift
//!   sweep runs at once and re-enqueues every object: whatever was queued when the
//!   process stopped is decided again from the table.
//!
//! Runs on the wall clock. May not depend on an AWS SDK crate.

pub mod platform;
pub mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use capstan_model::{InstanceState, Timestamp};
use capstan_runtime::driver::{Driver, DriverConfig, PlatformError, Sequential};
use capstan_runtime::functions::{Functions, MetricsSink};
use capstan_runtime::ports::Instance;
use capstan_runtime::system::{OsEntropy, SystemClock};
use capstan_runtime::{Clock, HandlerError, StoreError};
use capstan_sim::bus::{Delivery, MemBus};
use capstan_sim::ec2::{Ec2Config, SimEc2};
use capstan_sim::workload::{MemWorkload, WorkloadConfig};
use serde_json::{Value, json};
use thiserror::Error;

pub use platform::SqlitePlatform;
pub use store::SqliteStore;

/// The file, in the state directory, that holds the table, its stream and the instances.
pub const STATE_FILE: &str = "state.db";

/// Why the local control plane stopped.
#[derive(Debug, Error)]
pub enum LocalError {
    /// The state file could not be opened or written.
    #[error("the state in {path}: {source}")]
    State {
        path: String,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("drift sweep: {0}")]
    Sweep(#[from] HandlerError),
}

/// How the local control plane behaves.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    pub installation: String,
    pub ec2: Ec2Config,
    pub sweep_every: Duration,
    pub batch_size: usize,
    pub workload: WorkloadConfig,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            installation: "local".to_string(),
            ec2: Ec2Config::default(),
            sweep_every: Duration::from_secs(300),
            batch_size: 10,
            workload: WorkloadConfig::default(),
        }
    }
}

pub type LocalDriver = Driver<SqlitePlatform, SqliteStore, SimEc2, MemBus, Sequential, MemWorkload>;

pub struct LocalControlPlane {
    pub driver: LocalDriver,
    pub store: SqliteStore,
    pub ec2: SimEc2,
    pub bus: MemBus,
    pub workload: MemWorkload,
    clock: Arc<dyn Clock>,
    /// The instances as last saved, to save only when they changed.
    saved: Vec<(String, String)>,
    /// EC2's change number the kubelets have seen ([`MemWorkload::follow`]).
    observed: u64,
    path: String,
}

impl LocalControlPlane {
    /// Opens the state in `dir` (creating it), restores the instances, and schedules a
    /// sweep for the first step.
    pub fn open(dir: &Path, config: LocalConfig) -> Result<LocalControlPlane, LocalError> {
        let path = dir.join(STATE_FILE);
        let state = |source| LocalError::State {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| state(StoreError::Unavailable(e.to_string())))?;
        let store = SqliteStore::open(&path).map_err(state)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ec2 = SimEc2::new(config.ec2.clone(), clock.clone());
        for instance in saved_instances(&store).map_err(state)? {
            ec2.restore(instance);
        }
        let bus = MemBus::new(clock.clone(), Delivery::default());
        let workload = MemWorkload::new(config.workload.clone(), clock.clone());
        let functions = Functions::new(
            store.clone(),
            ec2.clone(),
            bus.clone(),
            clock.clone(),
            Arc::new(OsEntropy),
            &config.installation,
            MetricsSink::Log,
        )
        .with_workload(workload.clone());
        let platform = SqlitePlatform::new(store.clone(), ec2.clone(), bus.clone(), clock.clone())?;
        let mut driver = Driver::new(
            platform,
            functions,
            Sequential {
                batch_size: config.batch_size,
            },
            DriverConfig {
                sweep_every: config.sweep_every,
                ..DriverConfig::default()
            },
        );
        driver.sweep_soon();
        let saved = snapshot(&ec2);
        Ok(LocalControlPlane {
            driver,
            store,
            ec2,
            bus,
            workload,
            clock,
            saved,
            observed: 0,
            path: path.display().to_string(),
        })
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// One round of the driver; saves the instances when they changed. True if
    /// anything happened.
    pub async fn step(&mut self) -> Result<bool, LocalError> {
        self.observed = self.workload.follow(self.now(), &self.ec2, self.observed);
        let report = self.driver.step().await?;
        if let Some(Err(e)) = report.sweep {
            return Err(e.into());
        }
        let now = snapshot(&self.ec2);
        if now != self.saved {
            self.store
                .save_instances(&now)
                .map_err(|source| LocalError::State {
                    path: self.path.clone(),
                    source,
                })?;
            self.saved = now;
        }
        Ok(report.worked())
    }

    /// How long to sleep when idle: until the next thing due (an instance's
    /// transition, a delayed message, the sweep), but never longer than `poll`, since
    /// another process may write the table at any time.
    pub fn idle_for(&self, poll: Duration) -> Duration {
        let next = [
            self.ec2.next_transition(),
            self.bus.next_visible(),
            Some(self.driver.next_sweep()),
        ]
        .into_iter()
        .flatten()
        .min();
        let wait = next
            .map(|t| Duration::try_from(t.duration_since(self.now())).unwrap_or_default())
            .unwrap_or(poll);
        wait.clamp(Duration::from_millis(10), poll)
    }
}

/// The simulated instances as the local control plane last saved them.
pub fn saved_instances(store: &SqliteStore) -> Result<Vec<Instance>, StoreError> {
    Ok(store
        .saved_instances()?
        .iter()
        .filter_map(instance_from_json)
        .collect())
}

/// Every instance, as (id, JSON), in id order.
fn snapshot(ec2: &SimEc2) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = ec2
        .instances()
        .iter()
        .map(|i| (i.instance_id.clone(), instance_to_json(i).to_string()))
        .collect();
    all.sort();
    all
}

fn instance_to_json(i: &Instance) -> Value {
    json!({
        "instanceId": i.instance_id,
        "state": i.state.as_str(),
        "instanceType": i.instance_type,
        "subnetId": i.subnet_id,
        "availabilityZone": i.availability_zone,
        "privateIp": i.private_ip,
        "tags": i.tags,
        "launchTime": i.launch_time.to_string(),
        "clientToken": i.client_token,
        "launchIndex": i.launch_index,
    })
}

fn instance_from_json(v: &Value) -> Option<Instance> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Some(Instance {
        instance_id: s("instanceId")?,
        state: InstanceState::parse(&s("state")?)?,
        instance_type: s("instanceType")?,
        subnet_id: s("subnetId")?,
        availability_zone: s("availabilityZone")?,
        private_ip: s("privateIp"),
        tags: serde_json::from_value(v.get("tags")?.clone()).ok()?,
        launch_time: s("launchTime")?.parse().ok()?,
        client_token: s("clientToken"),
        launch_index: v
            .get("launchIndex")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_survives_its_json() {
        let instance = Instance {
            instance_id: "i-0123".into(),
            state: InstanceState::Running,
            instance_type: "m5.large".into(),
            subnet_id: "subnet-1".into(),
            availability_zone: "us-east-1a".into(),
            private_ip: Some("10.0.0.4".into()),
            tags: [("a".to_string(), "b".to_string())].into(),
            launch_time: Timestamp::UNIX_EPOCH,
            client_token: Some("uid".into()),
            launch_index: Some(0),
        };
        assert_eq!(
            instance_from_json(&instance_to_json(&instance)),
            Some(instance)
        );
    }
}
