//! The embedded control plane (`capstan up`): every function in one process over the
//! in-memory adapters (`capstan-sim`), driven by the one driver the way AWS drives the
//! functions — table changes through the stream router onto the bus, rules into one
//! queue per reconciler, EC2 state changes from the default bus, and the drift sweep
//! on a schedule — with the same Lambda event shapes and entry points.
//!
//! Time is either virtual (tests: idle periods are skipped, so a run takes
//! milliseconds) or real (`capstan up`: the simulated EC2 takes seconds to boot).
//! Links no AWS SDK crate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsBatchResponse;

use capstan_model::item::partition_key;
use capstan_model::{Kind, Object, ObjectKey, Timestamp};
use capstan_reconcile::Tree;
use capstan_runtime::apply::{self, Applied, ApplyError};
use capstan_runtime::describe;
use capstan_runtime::driver::{
    Driver, DriverConfig, DriverStats, Invocation, PlatformError, Schedule,
};
use capstan_runtime::functions::{Functions, MetricsSink};
use capstan_runtime::routes::{BATCH_SIZE, Reconciler};
use capstan_runtime::system::{OsEntropy, SystemClock};
use capstan_runtime::table;
use capstan_runtime::{Clock, Entropy, HandlerError, Store, StoreError};
use capstan_sim::bus::{Delivery, MemBus};
use capstan_sim::clock::{ManualClock, SeededEntropy};
use capstan_sim::ec2::{Ec2Config, SimEc2};
use capstan_sim::platform::MemPlatform;
use capstan_sim::store::MemStore;
use capstan_sim::workload::{MemWorkload, WorkloadConfig};
use thiserror::Error;

/// How the embedded control plane behaves.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// Tags every instance; see `capstan_model::labels::TAG_INSTALLATION`.
    pub installation: String,
    pub ec2: Ec2Config,
    pub delivery: Delivery,
    /// How often the drift sweep runs (5 minutes on AWS).
    pub sweep_every: Duration,
    /// Messages a reconciler takes from its queue at once (the Lambda batch size; by
    /// default the template's, [`BATCH_SIZE`]).
    pub batch_size: usize,
    /// The Machine reconciler's batch size. On AWS, above 10 it needs a batching
    /// window (`MaximumBatchingWindowInSeconds`), which is also how long a batched
    /// launch may wait for its members; here the driver hands over what is queued.
    pub machine_batch_size: usize,
    /// Identical launches of one Machine-reconciler invocation share one
    /// RunInstances (issue 16); off, one RunInstances per Machine.
    pub batch_launches: bool,
    /// The in-memory workload clusters (kubelets, pods, evictions).
    pub workload: WorkloadConfig,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            installation: "embedded".to_string(),
            ec2: Ec2Config::default(),
            delivery: Delivery::default(),
            sweep_every: Duration::from_secs(300),
            batch_size: BATCH_SIZE,
            machine_batch_size: BATCH_SIZE,
            batch_launches: true,
            workload: WorkloadConfig::default(),
        }
    }
}

enum Time {
    Virtual(ManualClock),
    Real,
}

/// Counters a person (or a test) may want after a run.
pub type Stats = DriverStats;

/// Why a run stopped short.
#[derive(Debug, Error)]
pub enum EmbeddedError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("drift sweep: {0}")]
    Sweep(#[from] HandlerError),
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Done,
    /// The deadline passed; what was still wrong, one line each.
    TimedOut(Vec<String>),
}

/// What one reconciler's invocations cost, as the embedded runtime measured them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconcilerLoad {
    /// Invocations (each a batch of up to `batch_size` messages).
    pub invocations: u64,
    /// Messages handed to them (each names one object to reconcile).
    pub messages: u64,
    /// Items their Queries and Scans returned, every one of which the handler decodes.
    pub items_read: u64,
}

/// The embedded runtime's scheduling policy: every queue in turn, one invocation at a
/// time, each to its end (its adapters never wait, so nothing times out), metering the
/// items each reconciler reads.
pub struct Metered {
    /// Messages an invocation takes at once (Lambda's batch size).
    pub batch_size: usize,
    /// The Machine reconciler's (see `EmbeddedConfig::machine_batch_size`).
    pub machine_batch_size: usize,
    store: MemStore,
    /// Per reconciler, since the start.
    pub load: BTreeMap<Reconciler, ReconcilerLoad>,
}

impl Schedule for Metered {
    fn batch_size(&mut self, queue: Reconciler) -> usize {
        if queue == Reconciler::Machine {
            self.machine_batch_size
        } else {
            self.batch_size
        }
    }

    async fn run<'a>(
        &'a mut self,
        invocations: Vec<Invocation<'a>>,
    ) -> Vec<Option<SqsBatchResponse>> {
        let mut out = Vec::with_capacity(invocations.len());
        for invocation in invocations {
            let before = self.store.items_read();
            out.push(Some(invocation.future.await));
            let load = self.load.entry(invocation.queue).or_default();
            load.invocations += 1;
            load.items_read += self.store.items_read().saturating_sub(before);
        }
        out
    }
}

/// The in-memory functions the embedded driver runs.
pub type EmbeddedDriver = Driver<MemPlatform, MemStore, SimEc2, MemBus, Metered, MemWorkload>;

pub struct Embedded {
    pub driver: EmbeddedDriver,
    pub store: MemStore,
    pub ec2: SimEc2,
    pub bus: MemBus,
    /// The workload clusters of Clusters that declare `spec.access`: a kubelet per
    /// running instance registers its Node after `config.workload.join_delay`.
    pub workload: MemWorkload,
    time: Time,
    clock: Arc<dyn Clock>,
    pub config: EmbeddedConfig,
    /// The EC2 change number the workload has seen the instances up to.
    observed: u64,
}

pub use capstan_sim::clock::VIRTUAL_EPOCH_SECONDS;

impl Embedded {
    /// On virtual time with seeded entropy: deterministic, idle time skipped.
    pub fn virtual_time(config: EmbeddedConfig, seed: u64) -> Embedded {
        let start = Timestamp::from_second(VIRTUAL_EPOCH_SECONDS).unwrap_or(Timestamp::UNIX_EPOCH);
        Embedded::virtual_time_from(config, seed, start)
    }

    /// On virtual time from `start`: a replica of live state (`capstan apply
    /// --dry-run`) starts at the live clock's now, so the times its items hold (a retry
    /// after, a node's startup deadline) mean what they mean there.
    pub fn virtual_time_from(config: EmbeddedConfig, seed: u64, start: Timestamp) -> Embedded {
        let manual = ManualClock::new(start);
        let clock: Arc<dyn Clock> = Arc::new(manual.clone());
        Embedded::build(
            config,
            Time::Virtual(manual),
            clock,
            Arc::new(SeededEntropy::new(seed)),
        )
    }

    /// On the wall clock with the operating system's randomness.
    pub fn real_time(config: EmbeddedConfig) -> Embedded {
        Embedded::build(
            config,
            Time::Real,
            Arc::new(SystemClock),
            Arc::new(OsEntropy),
        )
    }

    fn build(
        config: EmbeddedConfig,
        time: Time,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Embedded {
        let store = MemStore::new(clock.clone());
        let ec2 = SimEc2::new(config.ec2.clone(), clock.clone());
        let bus = MemBus::new(clock.clone(), config.delivery.clone());
        let workload = MemWorkload::new(config.workload.clone(), clock.clone());
        let functions = Functions::new(
            store.clone(),
            ec2.clone(),
            bus.clone(),
            clock.clone(),
            entropy,
            &config.installation,
            MetricsSink::Log,
        )
        .with_workload(workload.clone());
        let mut functions = functions;
        functions.control_plane.batch_launches = config.batch_launches;
        let platform = MemPlatform::new(store.clone(), ec2.clone(), bus.clone(), clock.clone());
        let schedule = Metered {
            batch_size: config.batch_size,
            machine_batch_size: config.machine_batch_size,
            store: store.clone(),
            load: BTreeMap::new(),
        };
        let driver = Driver::new(
            platform,
            functions,
            schedule,
            DriverConfig {
                sweep_every: config.sweep_every,
                ..DriverConfig::default()
            },
        );
        Embedded {
            driver,
            store,
            ec2,
            bus,
            workload,
            time,
            clock,
            config,
            observed: 0,
        }
    }

    /// What the driver counted.
    pub fn stats(&self) -> &Stats {
        &self.driver.stats
    }

    /// The EMF metric lines the functions wrote since the last call (the last
    /// [`capstan_runtime::metrics::KEPT_LINES`]), oldest first.
    pub fn take_metric_lines(&self) -> Vec<capstan_runtime::metrics::Line> {
        self.driver.functions.recent.take()
    }

    /// What each reconciler's invocations read and handled since the start.
    pub fn load(&self) -> &BTreeMap<Reconciler, ReconcilerLoad> {
        &self.driver.schedule.load
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// `capstan apply` against the embedded table.
    pub async fn apply(&self, objects: &[Object]) -> Result<Vec<Applied>, ApplyError> {
        apply::apply(&self.store, objects).await
    }

    /// `capstan delete`: removes the desired item; the control plane does the rest.
    /// Removes an annotation, as a deletion hook's owner does to let it go on
    /// ([`capstan_runtime::apply::remove_annotation`]).
    pub async fn remove_annotation(
        &self,
        key: &ObjectKey,
        annotation: &str,
    ) -> Result<bool, ApplyError> {
        capstan_runtime::apply::remove_annotation(&self.store, key, annotation).await
    }

    pub async fn delete(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        apply::delete(&self.store, key).await
    }

    /// One round of the driver: relay EC2's events, route the table's changes, give
    /// each reconciler one batch, run the sweep when due. True if anything happened.
    pub async fn step(&mut self) -> Result<bool, EmbeddedError> {
        // The kubelets see the instances that changed since they last looked (all of
        // them every step made a 10,000-instance run quadratic; seeing an unchanged
        // instance again changes nothing).
        self.observed = self.workload.follow(self.now(), &self.ec2, self.observed);
        let report = self.driver.step().await?;
        for served in &report.served {
            let load = self.driver.schedule.load.entry(served.queue).or_default();
            load.messages += served.messages as u64;
        }
        if let Some(Err(e)) = report.sweep {
            return Err(e.into());
        }
        Ok(report.worked())
    }

    /// When something next happens on its own (an instance changing state, a delayed
    /// message becoming visible, the sweep).
    pub fn next_wakeup(&self) -> Timestamp {
        let sweep = self.driver.next_sweep();
        [
            self.ec2.next_transition(),
            self.bus.next_visible(),
            Some(sweep),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(sweep)
    }

    /// Virtual time only: moves the clock to the next wakeup (at most to `limit`)
    /// without stepping, so a test can look at the control plane after every single
    /// step. False on real time, or when the clock is already at `limit`.
    pub fn skip_to_next_wakeup(&self, limit: Timestamp) -> bool {
        let now = self.now();
        match &self.time {
            Time::Virtual(clock) if now < limit => {
                clock.set(self.next_wakeup().min(limit).max(now));
                true
            }
            _ => false,
        }
    }

    /// Runs until `done` holds after a step with nothing left to do, or `timeout` passes
    /// (in virtual or real time). `watch` sees the control plane after every idle step.
    pub async fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Embedded) -> Option<Vec<String>>,
        mut watch: impl FnMut(&Embedded),
    ) -> Result<RunOutcome, EmbeddedError> {
        let deadline = self.now().checked_add(timeout).unwrap_or(self.now());
        loop {
            let worked = self.step().await?;
            if worked {
                continue;
            }
            watch(self);
            let problems = match done(self) {
                None => return Ok(RunOutcome::Done),
                Some(problems) => problems,
            };
            let now = self.now();
            if now >= deadline {
                return Ok(RunOutcome::TimedOut(problems));
            }
            let wake = self.next_wakeup().min(deadline);
            match &self.time {
                Time::Virtual(clock) => clock.set(wake.max(now)),
                Time::Real => {
                    let wait =
                        Duration::try_from(wake.duration_since(now)).unwrap_or(Duration::ZERO);
                    tokio::time::sleep(
                        wait.clamp(Duration::from_millis(20), Duration::from_millis(250)),
                    )
                    .await;
                }
            }
        }
    }

    /// The tree of every cluster in the table, one Tree per cluster partition.
    pub fn trees(&self) -> Vec<Tree> {
        table::trees_by_partition(self.store.items())
            .into_values()
            .collect()
    }

    /// The tree of one cluster.
    pub fn tree(&self, namespace: &str, cluster: &str) -> Tree {
        let pk = partition_key(namespace, cluster);
        let items: Vec<_> = self
            .store
            .items()
            .into_iter()
            .filter(|i| capstan_model::item::item_key(i).is_some_and(|k| k.pk == pk))
            .collect();
        Tree::from_items(&items)
    }

    /// What keeps the whole table from having converged: every object reconciled,
    /// Ready, every Machine Running, nothing left on the queues.
    pub fn not_converged(&self) -> Vec<String> {
        table::not_converged(&self.trees(), self.bus.visible() as u64)
    }

    /// Renders every cluster's tree.
    pub fn describe(&self) -> String {
        self.trees()
            .iter()
            .filter(|t| t.of_kind(Kind::Cluster).next().is_some())
            .map(describe::render)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Reads one object back, as the control plane sees it.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        let pk = partition_key(&key.namespace, &key.cluster);
        let items = self
            .store
            .query(
                &pk,
                Some(&capstan_model::item::object_prefix(key.kind, &key.name)),
            )
            .await?;
        Ok(Tree::from_items(&items)
            .get(key.kind, &key.name)
            .map(|s| s.object.clone()))
    }
}
