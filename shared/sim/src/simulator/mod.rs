//! Deterministic simulation: the same handlers the embedded runtime and the Lambda
//! functions run, over the in-memory adapters, on virtual time, with one seeded RNG
//! deciding every choice — which queue is served next and how much of it, which fault
//! fires, how long EC2 takes. The invariants are checked after every step. The same
//! seed gives the same run, byte for byte (the trace proves it).
//!
//! A run has two phases: the workload's script plays out with faults on; then faults
//! stop (capacity comes back, held events are released) and the tree must converge
//! within [`CONVERGENCE_BOUND`] of virtual time.

pub mod autoscale;
pub mod drain;
pub mod faults;
pub mod hostile;
pub mod invariants;
pub mod lambda;
pub mod sweep;
pub mod workloads;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use capstan_model::labels::TAG_INSTALLATION;
use capstan_model::{InstanceState, Timestamp};
use capstan_reconcile::Tree;
use capstan_runtime::Clock;
use capstan_runtime::apply;
use capstan_runtime::driver::{Driver, DriverConfig};
use capstan_runtime::functions::{Functions, MetricsSink};
use capstan_runtime::table::trees_by_partition;

use crate::bus::{Delivery, MemBus};
use crate::clock::{ManualClock, SeededEntropy, VIRTUAL_EPOCH_SECONDS};
use crate::ec2::{Ec2Config, Ec2Limits, SimEc2};
use crate::platform::MemPlatform;
use crate::rng::Rng;
use crate::store::MemStore;
use crate::workload::{ClusterKey, FlakyApi, MemWorkload, NotReady, WorkloadConfig};
use faults::{Chaos, FaultyBus, FaultyCompute, FaultyStore, SharedChaos, lock};
pub use faults::{FAULT_NAMES, Faults, Mutation};
pub use invariants::Violation;
use invariants::{Checker, World};
pub use lambda::MAX_POLLS_PER_STEP;
use lambda::{SimPlatform, SimSchedule, health_items};
pub use workloads::WORKLOADS;
use workloads::{Op, Script};

/// Once faults stop, the tree must converge within this much virtual time.
pub const CONVERGENCE_BOUND: Duration = Duration::from_secs(45 * 60);
/// Faults stay on this long after the script's last step.
pub const FAULTS_AFTER_SCRIPT: Duration = Duration::from_secs(5 * 60);
/// The drift sweep's period (as deployed).
/// When the `AutoscaleBlind` mutation's lie starts: once the `autoscale` workload's
/// second burst runs on the Nodes it asked for.
const AUTOSCALE_BLIND_FROM: Duration = Duration::from_secs(25 * 60);

pub const SWEEP_EVERY: Duration = Duration::from_secs(5 * 60);
/// A run taking more steps than this has livelocked.
pub const MAX_STEPS: u64 = 200_000;
/// Trace lines kept for a failure report.
pub const TRACE_TAIL: usize = 40;

const INSTALLATION: &str = "sim";

/// One simulation run, fully described by these fields.
#[derive(Clone, Debug)]
pub struct Simulation {
    pub seed: u64,
    pub workload: String,
    pub faults: Faults,
    pub mutation: Option<Mutation>,
}

/// How a run went.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub workload: String,
    /// The faults of the run, as `--faults` takes them (for the replay line).
    pub faults: String,
    pub steps: u64,
    /// Virtual time from start to end.
    pub virtual_time: Duration,
    /// Virtual time from the end of faults to convergence.
    pub converged_after: Option<Duration>,
    pub faults_fired: usize,
    pub launched: u64,
    pub trace: Vec<String>,
    pub violation: Option<Violation>,
    /// Every cluster's tree when the run ended, as `capstan describe` shows it.
    pub final_tree: String,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violation.is_none()
    }

    /// The seed, the broken invariant and the last steps of the trace.
    pub fn failure_text(&self) -> String {
        let Some(v) = &self.violation else {
            return format!("seed {} ({}) passed", self.seed, self.workload);
        };
        let tail = self.trace.len().saturating_sub(TRACE_TAIL);
        format!(
            "seed {} workload {} broke {} after {} steps:\n  {}\nlast steps:\n{}\ntree at the end:\n{}replay: capstan sim --replay {} --workload {} --faults {}",
            self.seed,
            self.workload,
            v.invariant,
            self.steps,
            v.message,
            self.trace[tail..].join("\n"),
            self.final_tree,
            self.seed,
            self.workload,
            self.faults
        )
    }
}

/// Items grouped into one tree per partition.
fn partition_trees(
    items: Vec<(capstan_model::ItemKey, capstan_model::Item)>,
) -> BTreeMap<String, Tree> {
    trees_by_partition(items.into_iter().map(|(_, item)| item))
}

/// Runs a future that never waits on anything outside the process (the in-memory
/// adapters answer at once) to completion, without an async runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// The simulated functions, as the one driver runs them.
type SimDriver =
    Driver<SimPlatform, FaultyStore, FaultyCompute, FaultyBus, SimSchedule, MemWorkload>;

struct Run {
    clock: ManualClock,
    store: MemStore,
    ec2: SimEc2,
    bus: MemBus,
    faulty_bus: FaultyBus,
    /// The workload clusters of Clusters that declare `spec.access`.
    workload: MemWorkload,
    chaos: SharedChaos,
    driver: SimDriver,
    trace: Vec<String>,
    start: Timestamp,
    foreign: BTreeMap<String, InstanceState>,
    /// Machines whose instance a hostile write named.
    victims: Vec<hostile::Victim>,
    capacity_out: Vec<(String, String)>,
    /// Instances whose Node the nodes fault made NotReady.
    not_ready: Vec<String>,
    /// EC2's change number the kubelets have seen ([`MemWorkload::follow`]).
    observed: u64,
    steps: u64,
    /// An invariant broken inside a step, reported by the next check.
    broken: Option<Violation>,
    /// The drain's invariants' memory (terminations judged, Nodes seen cordoned).
    drain: drain::DrainChecker,
    /// The autoscaler's invariants' memory (replicas seen, Machines seen marked).
    autoscale: autoscale::AutoscaleChecker,
}

impl Simulation {
    pub fn new(seed: u64, workload: &str, faults: Faults) -> Simulation {
        Simulation {
            seed,
            workload: workload.to_string(),
            faults,
            mutation: None,
        }
    }

    pub fn with_mutation(mut self, mutation: Mutation) -> Simulation {
        self.mutation = Some(mutation);
        self
    }

    pub fn run(&self) -> Report {
        let Some(script) = workloads::script(&self.workload) else {
            return self.report_error(format!(
                "unknown workload {:?}: use one of {}",
                self.workload,
                WORKLOADS.join(", ")
            ));
        };
        let mut rng = Rng::new(self.seed);
        let start = Timestamp::from_second(VIRTUAL_EPOCH_SECONDS).unwrap_or(Timestamp::UNIX_EPOCH);
        let clock = ManualClock::new(start);
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let chaos: SharedChaos = Arc::new(Mutex::new(Chaos::new(
            rng.next_u64(),
            self.faults.clone(),
            self.mutation,
        )));

        // EC2's timing is drawn from the seed too.
        let ec2_config = Ec2Config {
            boot_delay: Duration::from_millis(rng.below(30_000)),
            shutdown_delay: Duration::from_millis(rng.below(20_000)),
            limits: if self.faults.ec2_limits {
                Ec2Limits::aws()
            } else {
                Ec2Limits::off()
            },
            ..Ec2Config::default()
        };
        // Small Scan pages, from the seed without drawing from the RNG (so seeds replay
        // as before): the sweep meets partitions that straddle pages.
        let mut store = MemStore::new(shared.clone()).with_page_size(1 + (self.seed % 16) as usize);
        if self.faults.stale_reads {
            store = store.with_index_lag(Duration::from_millis(rng.below(5_000)));
        }
        let ec2 = SimEc2::new(ec2_config, shared.clone());
        let delivery = Delivery {
            duplicate: false,
            shuffle_seed: self.faults.reorder.then(|| rng.next_u64()),
            ..Delivery::default()
        };
        let bus = MemBus::new(shared.clone(), delivery);
        let faulty_bus = FaultyBus {
            inner: bus.clone(),
            chaos: chaos.clone(),
            clock: shared.clone(),
        };
        // Kubelets join 10–40 s after their instance runs (drawn after everything
        // else, so seeds without nodes replay as before).
        let workload = MemWorkload::new(
            WorkloadConfig {
                join_delay: Duration::from_secs(10),
                seed: self.seed,
                ..WorkloadConfig::default()
            },
            shared.clone(),
        );
        workload.hide_pods(self.mutation == Some(Mutation::HidePods));
        let functions = Functions::new(
            FaultyStore {
                inner: store.clone(),
                chaos: chaos.clone(),
            },
            FaultyCompute {
                inner: ec2.clone(),
                chaos: chaos.clone(),
                clock: shared.clone(),
            },
            faulty_bus.clone(),
            shared.clone(),
            Arc::new(SeededEntropy::new(rng.next_u64())),
            INSTALLATION,
            MetricsSink::Discard,
        )
        .with_workload(workload.clone());
        let platform = SimPlatform {
            mem: MemPlatform::new(store.clone(), ec2.clone(), bus.clone(), shared.clone()),
            faulty_bus: faulty_bus.clone(),
        };
        let schedule = SimSchedule {
            rng: Rng::new(rng.next_u64()),
            concurrency: self.faults.concurrency.max(1) as usize,
            chaos: chaos.clone(),
            store: store.clone(),
            health_before: None,
        };
        let driver = Driver::new(
            platform,
            functions,
            schedule,
            DriverConfig {
                sweep_every: SWEEP_EVERY,
                // The autoscaler's once-a-minute check only where a pool is
                // autoscaled, so the other workloads' seeds replay as they did.
                autoscale_every: (self.workload == "autoscale").then_some(Duration::from_secs(60)),
                ..DriverConfig::default()
            },
        );
        let mut run = Run {
            clock,
            store,
            ec2,
            bus,
            faulty_bus,
            workload,
            chaos,
            driver,
            trace: Vec::new(),
            start,
            foreign: BTreeMap::new(),
            victims: Vec::new(),
            capacity_out: Vec::new(),
            not_ready: Vec::new(),
            observed: 0,
            steps: 0,
            broken: None,
            drain: drain::DrainChecker::default(),
            autoscale: autoscale::AutoscaleChecker::default(),
        };
        let outcome = run.play(&script, &self.faults, rng);
        let launched = run.ec2.launched_total();
        let final_tree = run
            .trees()
            .iter()
            .map(capstan_runtime::describe::render)
            .collect::<Vec<_>>()
            .join("\n");
        let faults_fired = run.trace.iter().filter(|l| l.contains("fault:")).count();
        Report {
            seed: self.seed,
            workload: self.workload.clone(),
            faults: self.faults.spec(),
            steps: run.steps,
            virtual_time: Duration::try_from(run.clock.now().duration_since(run.start))
                .unwrap_or_default(),
            converged_after: outcome.as_ref().ok().copied(),
            faults_fired,
            launched,
            trace: run.trace,
            violation: outcome.err(),
            final_tree,
        }
    }

    fn report_error(&self, message: String) -> Report {
        Report {
            seed: self.seed,
            workload: self.workload.clone(),
            faults: self.faults.spec(),
            steps: 0,
            virtual_time: Duration::ZERO,
            converged_after: None,
            faults_fired: 0,
            launched: 0,
            trace: Vec::new(),
            final_tree: String::new(),
            violation: Some(Violation {
                invariant: "setup",
                message,
            }),
        }
    }
}

impl Run {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn at(&self, offset: Duration) -> Timestamp {
        self.start.checked_add(offset).unwrap_or(self.start)
    }

    fn log(&mut self, line: String) {
        let t = Duration::try_from(self.now().duration_since(self.start)).unwrap_or_default();
        self.trace.push(format!(
            "[{:>8.3}s #{}] {line}",
            t.as_secs_f64(),
            self.steps
        ));
    }

    /// Moves the chaos log into the trace, in order.
    fn flush_faults(&mut self) {
        let lines: Vec<String> = lock(&self.chaos).log.drain(..).collect();
        for l in lines {
            self.log(l);
        }
    }

    /// Plays the script with faults, then without; Ok(time to converge) or the violation.
    fn play(
        &mut self,
        script: &Script,
        faults: &Faults,
        mut rng: Rng,
    ) -> Result<Duration, Violation> {
        for i in 0..faults.foreign_instances {
            let subnet = if i % 2 == 0 {
                "subnet-0a1b2c3d4e5f60001"
            } else {
                "subnet-0a1b2c3d4e5f60002"
            };
            if let Ok(instance) = self.ec2.launch_foreign(subnet, [("team", "someone-else")]) {
                self.log(format!(
                    "foreign instance {} launched (no Capstan tags)",
                    instance.instance_id
                ));
                self.foreign
                    .insert(instance.instance_id, InstanceState::Pending);
            }
        }
        if faults.nodes > 0.0 {
            // The workload clusters' API servers fail calls while faults last.
            for (namespace, cluster, _, _) in &script.expect {
                let key = ClusterKey::new(namespace, cluster);
                self.workload.set_flaky(
                    key,
                    Some(FlakyApi {
                        seed: rng.next_u64(),
                        unavailable: faults.nodes * 5.0,
                        throttled: faults.nodes * 5.0,
                    }),
                );
            }
        }
        let mut checker = Checker::default();
        let mut pending: Vec<(Timestamp, Op)> = script
            .ops
            .iter()
            .map(|(d, op)| (self.at(*d), op.clone()))
            .collect();
        let script_end = pending.iter().map(|(t, _)| *t).max().unwrap_or(self.start);
        let faults_end = script_end
            .checked_add(FAULTS_AFTER_SCRIPT)
            .unwrap_or(script_end);
        let mut faults_on = true;
        let mut calm_since: Option<Timestamp> = None;

        loop {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(Violation {
                    invariant: "bounded_steps",
                    message: format!("more than {MAX_STEPS} steps: a livelock"),
                });
            }
            let now = self.now();
            // The script.
            let due: Vec<Op> = {
                let (due, later): (Vec<_>, Vec<_>) =
                    pending.drain(..).partition(|(t, _)| *t <= now);
                pending = later;
                due.into_iter().map(|(_, op)| op).collect()
            };
            for op in due {
                self.perform(op);
            }
            // Faults stop.
            if faults_on && now >= faults_end {
                faults_on = false;
                calm_since = Some(now);
                self.calm();
            }
            if faults_on {
                self.outside_world(faults, &mut rng);
            }
            let worked = self.step();
            self.flush_faults();
            // Foreign instances settle into running on their own; that is not our doing.
            for (id, state) in self.foreign.iter_mut() {
                if *state == InstanceState::Pending
                    && let Some(i) = self.ec2.instance(id)
                    && i.state == InstanceState::Running
                {
                    *state = InstanceState::Running;
                }
            }
            self.check(&mut checker)?;

            if let Some(calm) = calm_since
                && !worked
            {
                let trees = self.workload_trees();
                let problems = self.unconverged(script, &trees);
                if problems.is_empty() {
                    invariants::status_counts_what_exists(&trees)?;
                    invariants::one_node_per_machine(&trees, &self.workload)?;
                    self.log("converged".to_string());
                    return Ok(
                        Duration::try_from(self.now().duration_since(calm)).unwrap_or_default()
                    );
                }
                if self.person_remediates(&trees) {
                    continue;
                }
                if self.now().duration_since(calm)
                    > jiff::SignedDuration::try_from(CONVERGENCE_BOUND).unwrap_or_default()
                {
                    return Err(Violation {
                        invariant: "converges_once_faults_stop",
                        message: format!(
                            "not converged {} minutes after faults stopped: {}",
                            CONVERGENCE_BOUND.as_secs() / 60,
                            problems.join("; ")
                        ),
                    });
                }
            }
            if !worked {
                self.advance(&pending);
            }
        }
    }

    fn perform(&mut self, op: Op) {
        match op {
            Op::Apply(objects) => {
                let result = block_on(apply::apply(&self.store, &objects));
                self.log(format!(
                    "person: apply {} objects: {}",
                    objects.len(),
                    match result {
                        Ok(applied) => format!("{} written", applied.len()),
                        Err(e) => format!("refused: {e}"),
                    }
                ));
            }
            Op::Delete(key) => {
                let result = block_on(apply::delete(&self.store, &key));
                self.log(format!("person: delete {key}: {result:?}"));
            }
            Op::Pods(op) => {
                self.log(format!("person: in the workload cluster, {op:?}"));
                op.perform(&self.workload);
            }
            Op::Outage { workers } => {
                for id in self.running_workers().into_iter().take(workers) {
                    self.ec2.terminate_externally(&id);
                    self.log(format!("outage: {id} terminated from outside Capstan"));
                }
            }
        }
    }

    /// Outside Capstan: capacity comes and goes, someone stops or terminates an
    /// instance, someone with table access writes what `capstan apply` never would.
    fn outside_world(&mut self, faults: &Faults, rng: &mut Rng) {
        if rng.chance(faults.hostile)
            && let Some(w) = hostile::write(&self.store, rng, self.steps, self.now())
        {
            self.log(format!("fault: hostile write: {}", w.what));
            self.victims.extend(w.victim);
        }
        if rng.chance(faults.capacity) {
            let types = ["m7i.large", "m7i.xlarge"];
            let zones = ["us-east-1a", "us-east-1b", "us-east-1c"];
            let t = types[rng.below(types.len() as u64) as usize];
            let z = zones[rng.below(zones.len() as u64) as usize];
            self.ec2.set_capacity(t, z, false);
            self.capacity_out.push((t.to_string(), z.to_string()));
            self.log(format!("fault: no capacity for {t} in {z}"));
        }
        if rng.chance(faults.external)
            && let Some(id) = self.random_worker(rng)
        {
            if rng.chance(0.5) {
                self.ec2.stop_instance(&id);
                self.log(format!("fault: {id} stopped from outside Capstan"));
            } else {
                self.ec2.terminate_externally(&id);
                self.log(format!("fault: {id} terminated from outside Capstan"));
            }
        }
        if rng.chance(faults.nodes)
            && let Some(id) = self.random_worker(rng)
        {
            if rng.chance(0.5) {
                self.workload.never_join(&id);
                self.log(format!(
                    "fault: {id}'s kubelet never joins (if it has not yet)"
                ));
            } else {
                self.workload.set_not_ready(
                    &id,
                    Some(NotReady {
                        at: self.now(),
                        reason: "KubeletNotReady".into(),
                    }),
                );
                self.log(format!("fault: {id}'s Node goes NotReady"));
                self.not_ready.push(id);
            }
        }
        if rng.chance(faults.spot)
            && let Some(id) = self.random_worker(rng)
        {
            if rng.chance(0.5) {
                if self.ec2.interrupt_spot(&id) {
                    self.log(format!("fault: spot interruption warning for {id}"));
                }
            } else if self.ec2.recommend_rebalance(&id) {
                self.log(format!("fault: rebalance recommendation for {id}"));
            }
        }
    }

    /// A random running worker instance of ours (worker pools carry a health check
    /// that remediates; the control plane, as in Cluster API without control-plane
    /// remediation, does not).
    /// The running worker instances Capstan launched, in EC2's order.
    fn running_workers(&self) -> Vec<String> {
        self.ec2
            .instances()
            .into_iter()
            .filter(|i| i.state == InstanceState::Running && i.tags.contains_key(TAG_INSTALLATION))
            .filter(|i| {
                i.tags
                    .get(capstan_model::labels::TAG_MACHINE)
                    .is_some_and(|m| m.contains("-workers-"))
            })
            .map(|i| i.instance_id)
            .collect()
    }

    fn random_worker(&self, rng: &mut Rng) -> Option<String> {
        let workers = self.running_workers();
        (!workers.is_empty()).then(|| workers[rng.below(workers.len() as u64) as usize].clone())
    }

    /// Faults stop: capacity returns, held events are released, no more injected errors.
    fn calm(&mut self) {
        lock(&self.chaos).enabled = false;
        // Whoever wrote the hostile items removes them: an unreadable item is left alone
        // by design (and holds its Cluster's deletion), so a person must.
        let junk: Vec<capstan_model::ItemKey> = self.store.with_items(|all| {
            all.keys()
                .filter(|k| hostile::is_hostile(k))
                .cloned()
                .collect()
        });
        for key in &junk {
            let _ = block_on(capstan_runtime::Store::delete(
                &self.store,
                key,
                capstan_model::Expect::Any,
            ));
        }
        if !junk.is_empty() {
            self.log(format!("person: removes {} hostile items", junk.len()));
        }
        for (t, z) in std::mem::take(&mut self.capacity_out) {
            self.ec2.set_capacity(&t, &z, true);
        }
        // The API servers answer again, and a person fixes the kubelets that went
        // NotReady and were not replaced (a health check that finds too many unhealthy
        // at once leaves them to a person, as in Cluster API).
        for key in self.workload.clusters() {
            self.workload.set_flaky(key, None);
        }
        for id in std::mem::take(&mut self.not_ready) {
            self.workload.set_not_ready(&id, None);
        }
        let released = self.faulty_bus.next_release().is_some();
        if released {
            lock(&self.chaos)
                .delayed
                .iter_mut()
                .for_each(|(t, _)| *t = self.clock.now());
        }
        self.log("faults stop".to_string());
    }

    /// One step of the driver; true if anything happened. A health check's
    /// remediations are judged on the Machines around the step.
    fn step(&mut self) -> bool {
        if lock(&self.chaos).mutation == Some(Mutation::AutoscaleBlind) {
            let since =
                Duration::try_from(self.now().duration_since(self.start)).unwrap_or_default();
            self.workload
                .hide_active_pods(since >= AUTOSCALE_BLIND_FROM);
        }
        self.observed = self.workload.follow(self.now(), &self.ec2, self.observed);
        let remediated_before = lock(&self.chaos).remediated.len();
        let report = match block_on(self.driver.step()) {
            Ok(report) => report,
            // The in-memory platform's calls cannot fail.
            Err(e) => {
                self.log(format!("driver: {e}"));
                return true;
            }
        };
        if report.stream_failed {
            self.log(format!(
                "stream-router reported a failed record; the stream delivers it again ({} unrouted)",
                self.driver.platform.mem.unrouted()
            ));
        }
        for served in &report.served {
            self.log(if served.timed_out {
                format!(
                    "{}: {} message(s), abandoned",
                    served.queue.name(),
                    served.messages
                )
            } else {
                format!(
                    "{}: {} message(s), {} failed",
                    served.queue.name(),
                    served.messages,
                    served.failed
                )
            });
        }
        match &report.sweep {
            Some(Ok(r)) => self.log(format!(
                "drift-sweep: {} resynced, {} states repaired, {} orphans terminated",
                r.resynced,
                r.states_repaired,
                r.orphans_terminated.len()
            )),
            Some(Err(e)) => self.log(format!("drift-sweep failed: {e}")),
            None => {}
        }
        if let Some(before) = self.driver.schedule.health_before.take() {
            let all: Vec<capstan_model::ItemKey> = lock(&self.chaos).remediated.clone();
            let this_step = &all[remediated_before..];
            if !this_step.is_empty()
                && let Err(v) = invariants::health_checks_within_limits(
                    &partition_trees(before),
                    &partition_trees(health_items(&self.store)),
                    &invariants::Remediations {
                        this_step,
                        all: &all,
                    },
                    self.now(),
                )
            {
                self.broken.get_or_insert(v);
            }
        }
        report.worked()
    }

    /// Jumps virtual time to the next thing that happens on its own.
    fn advance(&mut self, pending: &[(Timestamp, Op)]) {
        let next = [
            self.ec2.next_transition(),
            self.bus.next_visible(),
            self.faulty_bus.next_release(),
            Some(self.driver.next_sweep()),
            pending.iter().map(|(t, _)| *t).min(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.driver.next_sweep());
        let now = self.now();
        // Always move forward a little, so time-based decisions make progress.
        let next = next.max(now.checked_add(Duration::from_millis(1)).unwrap_or(now));
        self.clock.set(next);
    }

    fn trees(&self) -> Vec<Tree> {
        trees_by_partition(self.store.items())
            .into_values()
            .collect()
    }

    /// The workload's trees: without what the hostile writer made, which is not the
    /// workload's to converge (and is left alone by design).
    fn workload_trees(&self) -> Vec<Tree> {
        let items = self.store.with_items(|all| {
            all.iter()
                .filter(|(k, _)| !hostile::is_hostile(k))
                .map(|(_, i)| i.clone())
                .collect::<Vec<_>>()
        });
        trees_by_partition(items).into_values().collect()
    }

    fn check(&mut self, checker: &mut Checker) -> Result<(), Violation> {
        if let Some(v) = self.broken.take() {
            return Err(v);
        }
        let instances = self.ec2.instances();
        let (stale_writes, repeated_launches, terminated) = {
            let c = lock(&self.chaos);
            (
                c.stale_writes.clone(),
                c.repeated_launches.clone(),
                c.terminated.clone(),
            )
        };
        let victims = &self.victims;
        let now = self.now();
        let foreign = &self.foreign;
        let workload = &self.workload;
        let drain = &mut self.drain;
        let autoscale = &mut self.autoscale;
        self.store.with_items(|all| {
            let items: Vec<&capstan_model::Item> = all.values().collect();
            let mut rollout_items: BTreeMap<&str, Vec<capstan_model::Item>> = BTreeMap::new();
            for (k, item) in all {
                if k.sk.starts_with("MachineDeployment#") || k.sk.starts_with("MachineSet#") {
                    rollout_items
                        .entry(k.pk.as_str())
                        .or_default()
                        .push(item.clone());
                }
            }
            let rollouts: Vec<Tree> = rollout_items
                .values()
                .map(|i| Tree::from_items(i))
                .collect();
            let world = World {
                now,
                installation: INSTALLATION,
                items: &items,
                rollouts: &rollouts,
                instances: &instances,
                foreign,
                stale_writes: &stale_writes,
                repeated_launches: &repeated_launches,
                victims,
                terminated: &terminated,
            };
            checker.check(&world)?;
            drain.check(now, workload, &terminated, &items)?;
            autoscale.check(now, workload, &items)
        })
    }

    /// What keeps the run from having converged: the script's end state, every object
    /// reconciled, every Machine Running (or Failed for a reason it states), every
    /// instance of a deleted Machine terminated, nothing queued.
    /// Once nothing moves after the faults: where a health check found too many
    /// unhealthy at once and stopped remediating (`RemediationAllowed` False), a person
    /// deletes the Machines that failed from outside, as Cluster API leaves it to them.
    /// True if anything was deleted.
    fn person_remediates(&mut self, trees: &[Tree]) -> bool {
        let mut doomed = Vec::new();
        for tree in trees {
            let held = tree
                .of_kind(capstan_model::Kind::MachineHealthCheck)
                .any(|s| {
                    s.object
                        .conditions()
                        .get(capstan_model::meta::condition::REMEDIATION_ALLOWED)
                        .is_some_and(|c| c.status == capstan_model::ConditionStatus::False)
                });
            if !held {
                continue;
            }
            doomed.extend(
                tree.of_kind(capstan_model::Kind::Machine)
                    .filter(|s| !s.is_deleting())
                    .filter(|s| {
                        s.object
                            .as_machine()
                            .is_some_and(|m| m.status.phase == capstan_model::MachinePhase::Failed)
                    })
                    .map(|s| s.object.key()),
            );
        }
        for key in &doomed {
            self.log(format!(
                "person: the health check stopped remediating (TooManyUnhealthy); deletes Failed {key}"
            ));
            self.perform(Op::Delete(key.clone()));
        }
        !doomed.is_empty()
    }

    fn unconverged(&self, script: &Script, trees: &[Tree]) -> Vec<String> {
        let left: Vec<String> = self.store.with_items(|all| {
            all.keys()
                .filter(|k| !hostile::is_hostile(k))
                .map(|k| format!("{} {}", k.pk, k.sk))
                .collect()
        });
        let mut problems = workloads::unmet(script, trees, &left);
        for tree in trees {
            // A Machine failed from outside stays Failed until a health check remediates
            // it, and its owners report not Ready because of it: both are expected.
            let failed_outside = tree
                .of_kind(capstan_model::Kind::Machine)
                .filter_map(|s| s.object.as_machine())
                .any(|m| {
                    matches!(
                        m.status.failure_reason.as_deref(),
                        Some("InstanceStopped" | "InstanceTerminated")
                    )
                });
            for p in capstan_runtime::describe::not_converged(tree) {
                let outside = p.contains("InstanceStopped") || p.contains("InstanceTerminated");
                let owner_not_ready = failed_outside && p.contains("is not Ready");
                if !outside && !owner_not_ready {
                    problems.push(p);
                }
            }
        }
        let machine_instances: Vec<String> = trees
            .iter()
            .flat_map(|t| t.of_kind(capstan_model::Kind::Machine))
            .filter_map(|s| {
                s.object
                    .as_machine()
                    .and_then(|m| m.status.instance_id.clone())
            })
            .collect();
        for i in self.ec2.instances() {
            let ours = i.tags.get(TAG_INSTALLATION).map(String::as_str) == Some(INSTALLATION);
            if ours && i.state.is_live() && !machine_instances.contains(&i.instance_id) {
                problems.push(format!(
                    "instance {} is {} with no Machine",
                    i.instance_id,
                    i.state.as_str()
                ));
            }
        }
        if self.bus.visible() > 0 {
            problems.push(format!("{} messages still queued", self.bus.visible()));
        }
        problems
    }
}
