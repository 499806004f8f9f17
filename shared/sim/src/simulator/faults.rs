//! Faults, injected at the ports: wrappers around the in-memory adapters that, on the
//! simulation's one seeded RNG, throttle, fail before or after taking effect, race a
//! concurrent writer, lag behind, drop, duplicate and delay events. Functions see
//! exactly what AWS could show them.
//!
//! The same wrappers carry the *mutations*: deliberately broken behaviour at a port,
//! used by tests to show that each invariant can trip.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use capstan_model::item::{ItemKey, RV, item_key, version_of};
use capstan_model::{InstanceState, Item, Timestamp};
use capstan_runtime::{
    Bus, BusError, BusEvent, Clock, Compute, ComputeError, Expect, Instance, LaunchRequest,
    ScanPage, Store, StoreError, Write,
};

use capstan_runtime::routes::Reconciler;

use crate::bus::MemBus;
use crate::ec2::SimEc2;
use crate::rng::Rng;
use crate::store::MemStore;

/// Which faults fire, and how often (probabilities per call, per event or per step).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// An event published to the bus is lost.
    pub drop: f64,
    /// An event is delivered twice.
    pub duplicate: f64,
    /// An event is held back for up to a minute.
    pub delay: f64,
    /// Queues hand out visible messages in random order.
    pub reorder: bool,
    /// A call is throttled at this flat rate (ThrottlingException, RequestLimitExceeded).
    /// With `ec2_limits` on, EC2 calls are throttled by the modelled buckets instead,
    /// and this rate applies to DynamoDB, EventBridge and SQS only.
    pub throttle: f64,
    /// EC2's API throttling modelled as AWS applies it: token buckets per action on the
    /// virtual clock (see `capstan_sim::ec2::Ec2Limits::aws`), in force for the whole
    /// run, after faults stop too (the limits are EC2's, not a fault that passes).
    pub ec2_limits: bool,
    /// A call fails with a 5xx before taking effect.
    pub server_error: f64,
    /// A call takes effect, then the client times out: the handler stops there, as if it
    /// crashed between that action and the next.
    pub timeout_after_success: f64,
    /// Another writer updates the item just before a conditional write.
    pub concurrent_write: f64,
    /// Eventually consistent reads where AWS has them: the instance index lags, and
    /// DescribeInstances does not yet show just-launched instances.
    pub stale_reads: bool,
    /// Per step: an offering (instance type in an AZ) runs out of capacity.
    pub capacity: f64,
    /// Per step: an instance is stopped or terminated from outside Capstan.
    pub external: f64,
    /// Per step: EC2 interrupts a spot instance (a two-minute warning, then terminates
    /// it) or recommends rebalancing one.
    pub spot: f64,
    /// Instances without Capstan's tags in the same account.
    pub foreign_instances: u32,
    /// RunInstances does not honour ClientToken (as moto does, and as a token past its
    /// idempotency window would not): only finding instances by tag prevents duplicates.
    pub ignore_client_token: bool,
    /// How many invocations of one reconciler may run at once, interleaved at every
    /// port call (Lambda's `MaximumConcurrency` on the SQS event source; 0 or 1: one
    /// at a time).
    pub concurrency: u32,
    /// Per step: a raw write by someone with table access (see `hostile`): unknown
    /// status fields and stray conditions, invalid desired items, forged items naming
    /// another namespace's instance, oversize values, a partition whose cluster
    /// disagrees with the spec.
    pub hostile: f64,
    /// Per step, for a Cluster that declares `spec.access`: a worker's kubelet never
    /// joins, or its Node goes NotReady; and while faults last, the workload cluster's
    /// API server answers this share of calls unavailable and as many throttled.
    pub nodes: f64,
}

/// The reconcilers' `MaximumConcurrency` in infra/template.yaml.
pub const TEMPLATE_CONCURRENCY: u32 = 5;

/// Every fault name `--faults` takes.
pub const FAULT_NAMES: &[&str] = &[
    "drop",
    "duplicate",
    "delay",
    "reorder",
    "throttle",
    "throttling",
    "5xx",
    "timeout",
    "conflict",
    "stale",
    "capacity",
    "external",
    "spot",
    "foreign",
    "no-idempotency",
    "concurrency",
    "hostile",
    "nodes",
];

impl Faults {
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Every fault at the rates the CI suite uses.
    pub fn all() -> Faults {
        Faults {
            drop: 0.05,
            duplicate: 0.1,
            delay: 0.1,
            reorder: true,
            throttle: 0.03,
            ec2_limits: true,
            server_error: 0.02,
            timeout_after_success: 0.03,
            concurrent_write: 0.03,
            stale_reads: true,
            capacity: 0.01,
            external: 0.002,
            spot: 0.002,
            foreign_instances: 2,
            ignore_client_token: true,
            concurrency: TEMPLATE_CONCURRENCY,
            hostile: 0.01,
            nodes: 0.01,
        }
    }

    /// Parses a comma-separated list of fault names (see [`FAULT_NAMES`]), or `all`, or
    /// `none`; `name=rate` sets a fault's rate (a probability from 0 to 1; for
    /// `foreign`, a count of instances).
    pub fn parse(list: &str) -> Result<Faults, String> {
        let all = Faults::all();
        let mut f = Faults::none();
        for entry in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = match entry.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim())),
                None => (entry, None),
            };
            let rate = |default: f64| value.map_or(Ok(default), |v| parse_rate(name, v));
            match (name, value) {
                (
                    "all" | "none" | "reorder" | "stale" | "no-idempotency" | "throttling",
                    Some(_),
                ) => {
                    return Err(format!("fault {name:?} takes no rate: write it alone"));
                }
                ("all", _) => f = all.clone(),
                ("none", _) => f = Faults::none(),
                ("drop", _) => f.drop = rate(all.drop)?,
                ("duplicate", _) => f.duplicate = rate(all.duplicate)?,
                ("delay", _) => f.delay = rate(all.delay)?,
                ("reorder", _) => f.reorder = true,
                ("throttle", _) => f.throttle = rate(all.throttle)?,
                ("throttling", _) => f.ec2_limits = true,
                ("5xx", _) => f.server_error = rate(all.server_error)?,
                ("timeout", _) => f.timeout_after_success = rate(all.timeout_after_success)?,
                ("conflict", _) => f.concurrent_write = rate(all.concurrent_write)?,
                ("stale", _) => f.stale_reads = true,
                ("capacity", _) => f.capacity = rate(all.capacity)?,
                ("external", _) => f.external = rate(all.external)?,
                ("spot", _) => f.spot = rate(all.spot)?,
                ("foreign", None) => f.foreign_instances = all.foreign_instances,
                ("foreign", Some(n)) => {
                    f.foreign_instances = n.parse().ok().filter(|n| *n <= 1_000).ok_or_else(|| {
                        format!("foreign={n}: give a number of instances from 0 to 1000, e.g. foreign=3")
                    })?;
                }
                ("no-idempotency", _) => f.ignore_client_token = true,
                ("hostile", _) => f.hostile = rate(all.hostile)?,
                ("nodes", _) => f.nodes = rate(all.nodes)?,
                ("concurrency", None) => f.concurrency = all.concurrency,
                ("concurrency", Some(n)) => {
                    f.concurrency = n.parse().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
                        format!("concurrency={n}: give a number of invocations at once from 1 to 100, e.g. concurrency=5")
                    })?;
                }
                (other, _) => {
                    return Err(format!(
                        "unknown fault {other:?}: use {} , all or none",
                        FAULT_NAMES.join(", ")
                    ));
                }
            }
        }
        Ok(f)
    }
}

impl Faults {
    /// The `--faults` list that [`Faults::parse`] reads back as these faults: `all`
    /// when they are, otherwise each fault on with its rate. For the replay line.
    pub fn spec(&self) -> String {
        if *self == Faults::all() {
            return "all".into();
        }
        let rates = [
            ("drop", self.drop),
            ("duplicate", self.duplicate),
            ("delay", self.delay),
            ("throttle", self.throttle),
            ("5xx", self.server_error),
            ("timeout", self.timeout_after_success),
            ("conflict", self.concurrent_write),
            ("capacity", self.capacity),
            ("external", self.external),
            ("spot", self.spot),
            ("hostile", self.hostile),
            ("nodes", self.nodes),
        ];
        let flags = [
            ("reorder", self.reorder),
            ("throttling", self.ec2_limits),
            ("stale", self.stale_reads),
            ("no-idempotency", self.ignore_client_token),
        ];
        let mut out: Vec<String> = rates
            .iter()
            .filter(|(_, r)| *r > 0.0)
            .map(|(name, r)| format!("{name}={r}"))
            .collect();
        out.extend(
            flags
                .iter()
                .filter(|(_, on)| *on)
                .map(|(name, _)| name.to_string()),
        );
        if self.foreign_instances > 0 {
            out.push(format!("foreign={}", self.foreign_instances));
        }
        if self.concurrency > 0 {
            out.push(format!("concurrency={}", self.concurrency));
        }
        if out.is_empty() {
            "none".into()
        } else {
            out.join(",")
        }
    }
}

/// A fault's rate from `name=rate`: a probability from 0 to 1.
fn parse_rate(name: &str, rate: &str) -> Result<f64, String> {
    match rate.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{name}={rate}: a rate is a probability from 0 to 1, e.g. {name}=0.05"
        )),
    }
}

/// Deliberately broken behaviour at a port, to prove an invariant can trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Every RunInstances launches a second instance for the same Machine.
    DoubleLaunch,
    /// TerminateInstances reports success without terminating anything.
    SkipTerminate,
    /// The workload clusters' API servers list no pods on any Node: every drain finds
    /// its Node empty and lets the instance go with its pods.
    HidePods,
    /// A lying EC2: DescribeInstances ignores its tag filter and reports every
    /// untagged instance with a consistent set of Capstan tags (and the matching
    /// ClientToken); TerminateInstances ignores its guard.
    IgnoreTagGuard,
    /// Conditional writes are made unconditionally.
    UnconditionalWrites,
    /// Deleting a MachineSet's desired item also removes its observed item at once,
    /// orphaning its Machines.
    DropOwnerFinalizer,
    /// A MachineSet's replicas are doubled when written.
    OvershootSurge,
    /// Machine status writes are silently lost.
    LoseMachineStatus,
    /// A new MachineSet is created under its name with a suffix (as Kubernetes'
    /// `generateName` would): the deployment never finds the set it made by name, and
    /// creating one twice creates two.
    SuffixedSetNames,
    /// A MachineSet shrunk by any amount is shrunk to zero: a rollout that lets go of
    /// its old Machines at once.
    DrainOldSets,
    /// The health-check reconciler reads MachineHealthChecks without their remediation
    /// limits (`maxInFlight`, `triggerIf`).
    IgnoreRemediationLimits,
    /// Plans are not fenced: a plan's writes are made one by one, and the reconciled
    /// object's observed item whatever its version, so two invocations deciding from
    /// the same read both act.
    Unfenced,
    /// As `Unfenced`, for the machine reconciler's plans only (so that the
    /// MachineSets' own overshoot does not hide what unfenced launches do).
    UnfencedMachines,
    /// As `Unfenced`, for the health-check reconciler's plans only: two passes that
    /// read the Machines a moment apart each remediate what they saw.
    UnfencedHealthChecks,
    /// The scoped-ownership check trusts the item: a lookup of a Machine's instance by
    /// its identity tags (`ownership_tags`: installation, namespace, cluster, machine,
    /// machine uid) matches on the installation and the uid alone, as before calls were
    /// scoped to the acting Machine. A forged item in another namespace that copies a
    /// Machine's uid then passes for its owner (terminate, tag, adopt).
    TrustForgedItems,
    /// A MachineDeployment's replicas, when raised, are raised to twice the new
    /// value: an autoscaler that overshoots its pool's max.
    AutoscaleOvershoot,
    /// A MachineDeployment's `status.autoscaling` loses its last scale-up and has its
    /// Nodes unneeded since an hour before: an autoscaler without its memory, which
    /// removes Nodes right after it added them.
    AutoscaleForgets,
    /// From 25 minutes in, the autoscaler's list of pods is empty: each Node looks
    /// empty and is removed after the quiet period, its pods fitting elsewhere or not.
    AutoscaleBlind,
}

/// The simulation's shared chaos: the RNG every choice draws from, the fault rates,
/// whether faults are on, the mutation, and what happened (for the trace).
pub struct Chaos {
    pub rng: Rng,
    pub faults: Faults,
    pub enabled: bool,
    pub mutation: Option<Mutation>,
    /// The reconciler whose batch is being handled, if any.
    pub serving: Option<Reconciler>,
    pub log: Vec<String>,
    /// Writes that went through although the item had moved past the version they expected.
    pub stale_writes: Vec<String>,
    /// Events held back, with when to release them.
    pub delayed: Vec<(Timestamp, BusEvent)>,
    /// ClientTokens RunInstances has seen, and how often.
    pub tokens: std::collections::BTreeMap<String, u32>,
    /// Machines whose desired item a health check deleted (remediations), in order.
    pub remediated: Vec<ItemKey>,
    /// The launches asked for at the current instant: (Machine, instance type, subnet),
    /// the Machine named by its tags. The same launch twice at one instant was decided
    /// twice from one read.
    pub launches_now: (
        Timestamp,
        std::collections::BTreeSet<(String, String, String)>,
    ),
    /// Launches asked for again by a pass that decided from the same read as another.
    pub repeated_launches: Vec<String>,
    /// Every instance Capstan asked TerminateInstances for.
    pub terminated: std::collections::BTreeSet<String>,
}

impl Chaos {
    pub fn new(seed: u64, faults: Faults, mutation: Option<Mutation>) -> Chaos {
        Chaos {
            rng: Rng::new(seed),
            faults,
            enabled: true,
            mutation,
            serving: None,
            log: Vec::new(),
            stale_writes: Vec::new(),
            delayed: Vec::new(),
            tokens: std::collections::BTreeMap::new(),
            remediated: Vec::new(),
            launches_now: (Timestamp::UNIX_EPOCH, Default::default()),
            repeated_launches: Vec::new(),
            terminated: Default::default(),
        }
    }

    fn roll(&mut self, p: f64) -> bool {
        self.enabled && self.rng.chance(p)
    }
}

pub type SharedChaos = Arc<Mutex<Chaos>>;

pub(crate) fn lock(chaos: &SharedChaos) -> MutexGuard<'_, Chaos> {
    chaos.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a call goes, decided before making it.
enum Fate {
    Normal,
    Throttled,
    ServerError,
    TimeoutAfterSuccess,
}

fn fate(chaos: &SharedChaos, what: &str) -> Fate {
    fate_at(chaos, what, false)
}

/// An EC2 call's fate: with EC2's limits modelled, its throttling comes from the
/// buckets, not from the flat rate.
fn ec2_fate(chaos: &SharedChaos, what: &str) -> Fate {
    fate_at(chaos, what, true)
}

fn fate_at(chaos: &SharedChaos, what: &str, ec2: bool) -> Fate {
    let mut c = lock(chaos);
    let throttle = if ec2 && c.faults.ec2_limits {
        0.0
    } else {
        c.faults.throttle
    };
    let (t, s, a) = (
        throttle,
        c.faults.server_error,
        c.faults.timeout_after_success,
    );
    let fate = if c.roll(t) {
        Fate::Throttled
    } else if c.roll(s) {
        Fate::ServerError
    } else if c.roll(a) {
        Fate::TimeoutAfterSuccess
    } else {
        Fate::Normal
    };
    match fate {
        Fate::Normal => {}
        Fate::Throttled => c.log.push(format!("fault: {what} throttled")),
        Fate::ServerError => c.log.push(format!("fault: {what} failed with a 5xx")),
        Fate::TimeoutAfterSuccess => c.log.push(format!(
            "fault: {what} took effect, then timed out (handler stops)"
        )),
    }
    fate
}

/// A point where the simulator may switch to another invocation in flight: pending
/// once, then ready. Every port call of the faulty adapters starts with one, so
/// concurrent invocations interleave at every call, as Lambda's may.
pub(crate) fn interleave() -> Interleave {
    Interleave(false)
}

pub(crate) struct Interleave(bool);

impl std::future::Future for Interleave {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

// ---------------------------------------------------------------- Store

/// The table, with faults.
#[derive(Clone)]
pub struct FaultyStore {
    pub inner: MemStore,
    pub chaos: SharedChaos,
}

impl FaultyStore {
    fn before(&self, what: &str) -> Result<bool, StoreError> {
        match fate(&self.chaos, what) {
            Fate::Normal => Ok(false),
            Fate::Throttled => Err(StoreError::Throttled("ThrottlingException".into())),
            Fate::ServerError => Err(StoreError::Unavailable("InternalServerError".into())),
            Fate::TimeoutAfterSuccess => Ok(true),
        }
    }

    /// A read that times out fails like any other: nothing took effect.
    fn read(&self, what: &str) -> Result<(), StoreError> {
        match self.before(what)? {
            true => Err(StoreError::Unavailable("timeout".into())),
            false => Ok(()),
        }
    }

    /// A concurrent writer bumps the item's version just before our conditional write.
    async fn race(&self, key: &ItemKey, expect: Expect) {
        let Expect::Version(_) = expect else { return };
        let p = lock(&self.chaos).faults.concurrent_write;
        if !lock(&self.chaos).roll(p) {
            return;
        }
        if let Some(mut current) = self.inner.get(key) {
            let rv = version_of(&current);
            current.insert(RV.into(), capstan_model::AttrValue::N((rv + 1).to_string()));
            if self.inner.put(current, Expect::Version(rv)).await.is_ok() {
                lock(&self.chaos).log.push(format!(
                    "fault: a concurrent writer updated {}/{}",
                    key.pk, key.sk
                ));
            }
        }
    }

    /// Remembers Machines whose desired item the health-check reconciler deleted.
    fn note_remediations<'a>(&self, deleted: impl IntoIterator<Item = &'a ItemKey>) {
        let mut c = lock(&self.chaos);
        if c.serving != Some(Reconciler::HealthCheck) {
            return;
        }
        for key in deleted {
            if key.sk.starts_with("Machine#") && key.sk.ends_with("#spec") {
                c.remediated.push(key.clone());
            }
        }
    }

    /// Applies the mutation under test to one put; None drops the write.
    fn mutate_put(&self, key: &ItemKey, item: &mut Item, expect: Expect) -> Option<Expect> {
        let mutation = lock(&self.chaos).mutation;
        let mut expect = expect;
        match mutation {
            Some(Mutation::UnconditionalWrites) => {
                self.audit(key, expect);
                expect = Expect::Any;
            }
            Some(Mutation::LoseMachineStatus)
                if key.sk.starts_with("Machine#")
                    && key.sk.ends_with("#status")
                    && self.inner.get(key).is_some() =>
            {
                return None;
            }
            Some(Mutation::DrainOldSets)
                if key.sk.starts_with("MachineSet#") && key.sk.ends_with("#spec") =>
            {
                let shrinks = self
                    .inner
                    .get(key)
                    .and_then(|old| spec_replicas(&old))
                    .zip(spec_replicas(item))
                    .is_some_and(|(old, new)| new < old);
                if shrinks && let Some(capstan_model::AttrValue::M(spec)) = item.get_mut("spec") {
                    spec.insert("replicas".into(), capstan_model::AttrValue::N("0".into()));
                }
            }
            Some(Mutation::SuffixedSetNames)
                if key.sk.starts_with("MachineSet#")
                    && key.sk.ends_with("#spec")
                    && expect == Expect::Absent =>
            {
                if let Some(capstan_model::AttrValue::S(name)) = item.get("name").cloned() {
                    let renamed = format!("{name}-{}", self.inner.len());
                    item.insert("name".into(), capstan_model::AttrValue::S(renamed.clone()));
                    item.insert(
                        "sk".into(),
                        capstan_model::AttrValue::S(format!("MachineSet#{renamed}#spec")),
                    );
                }
            }
            Some(Mutation::AutoscaleOvershoot)
                if key.sk.starts_with("MachineDeployment#") && key.sk.ends_with("#spec") =>
            {
                let raised = self
                    .inner
                    .get(key)
                    .and_then(|old| spec_replicas(&old))
                    .zip(spec_replicas(item))
                    .filter(|(old, new)| new > old)
                    .map(|(_, new)| new);
                if let Some(new) = raised
                    && let Some(capstan_model::AttrValue::M(spec)) = item.get_mut("spec")
                {
                    spec.insert(
                        "replicas".into(),
                        capstan_model::AttrValue::N((new * 2).to_string()),
                    );
                }
            }
            Some(Mutation::AutoscaleForgets)
                if key.sk.starts_with("MachineDeployment#") && key.sk.ends_with("#status") =>
            {
                if let Some(capstan_model::AttrValue::M(status)) = item.get_mut("status")
                    && let Some(capstan_model::AttrValue::M(memory)) = status.get_mut("autoscaling")
                {
                    memory.remove("lastScaleUp");
                    if let Some(capstan_model::AttrValue::M(since)) =
                        memory.get_mut("unneededSince")
                    {
                        for t in since.values_mut() {
                            *t = capstan_model::AttrValue::S("2000-01-01T00:00:00Z".into());
                        }
                    }
                }
            }
            Some(Mutation::OvershootSurge)
                if key.sk.starts_with("MachineSet#") && key.sk.ends_with("#spec") =>
            {
                if let Some(capstan_model::AttrValue::M(spec)) = item.get_mut("spec")
                    && let Some(capstan_model::AttrValue::N(n)) = spec.get_mut("replicas")
                {
                    let doubled = n.parse::<i64>().unwrap_or(0) * 2;
                    *n = doubled.to_string();
                }
            }
            _ => {}
        }
        Some(expect)
    }

    /// Applies the mutation under test to one delete; `extra` collects further items
    /// the broken store removes with it.
    fn mutate_delete(&self, key: &ItemKey, expect: Expect, extra: &mut Vec<ItemKey>) -> Expect {
        let mutation = lock(&self.chaos).mutation;
        let mut expect = expect;
        if mutation == Some(Mutation::UnconditionalWrites) {
            self.audit(key, expect);
            expect = Expect::Any;
        }
        if mutation == Some(Mutation::DropOwnerFinalizer)
            && key.sk.starts_with("MachineSet#")
            && key.sk.ends_with("#spec")
        {
            extra.push(ItemKey {
                pk: key.pk.clone(),
                sk: key.sk.replace("#spec", "#status"),
            });
        }
        expect
    }

    /// Records a write that would succeed although its expected version is stale.
    fn audit(&self, key: &ItemKey, expect: Expect) {
        let current = self.inner.get(key);
        let stale = match (expect, &current) {
            (Expect::Version(n), Some(item)) => version_of(item) != n,
            (Expect::Version(_), None) => true,
            (Expect::Absent, Some(_)) => true,
            _ => false,
        };
        if stale {
            lock(&self.chaos).stale_writes.push(format!(
                "{}/{} written expecting {expect:?}, found version {:?}",
                key.pk,
                key.sk,
                current.as_ref().map(version_of)
            ));
        }
    }
}

impl Store for FaultyStore {
    async fn query(&self, pk: &str, sk_prefix: Option<&str>) -> Result<Vec<Item>, StoreError> {
        self.read("Query")?;
        interleave().await;
        let mut items = self.inner.query(pk, sk_prefix).await?;
        let broken_check = {
            let c = lock(&self.chaos);
            c.mutation == Some(Mutation::IgnoreRemediationLimits)
                && c.serving == Some(Reconciler::HealthCheck)
        };
        if broken_check {
            for item in &mut items {
                let is_check = matches!(item.get("sk"), Some(capstan_model::AttrValue::S(sk))
                    if sk.starts_with("MachineHealthCheck#") && sk.ends_with("#spec"));
                if is_check && let Some(capstan_model::AttrValue::M(spec)) = item.get_mut("spec") {
                    spec.remove("remediation");
                }
            }
        }
        Ok(items)
    }

    async fn put(&self, mut item: Item, expect: Expect) -> Result<(), StoreError> {
        let after = self.before("PutItem")?;
        interleave().await;
        let Some(key) = item_key(&item) else {
            return self.inner.put(item, expect).await;
        };
        self.race(&key, expect).await;
        let Some(expect) = self.mutate_put(&key, &mut item, expect) else {
            return Ok(());
        };
        self.inner.put(item, expect).await?;
        if after {
            return Err(StoreError::Unavailable(
                "timeout after the write took effect".into(),
            ));
        }
        Ok(())
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let after = self.before("TransactWriteItems")?;
        interleave().await;
        let mut mutated = Vec::with_capacity(writes.len());
        let mut extra = Vec::new();
        for write in writes {
            match write {
                Write::Put { mut item, expect } => {
                    let Some(key) = item_key(&item) else {
                        mutated.push(Write::Put { item, expect });
                        continue;
                    };
                    self.race(&key, expect).await;
                    if let Some(expect) = self.mutate_put(&key, &mut item, expect) {
                        mutated.push(Write::Put { item, expect });
                    }
                }
                Write::Delete { key, expect } => {
                    self.race(&key, expect).await;
                    let expect = self.mutate_delete(&key, expect, &mut extra);
                    mutated.push(Write::Delete { key, expect });
                }
                Write::Check { key, expect } => {
                    self.race(&key, expect).await;
                    mutated.push(Write::Check { key, expect });
                }
            }
        }
        let unfenced = {
            let c = lock(&self.chaos);
            match c.mutation {
                Some(Mutation::Unfenced) => true,
                Some(Mutation::UnfencedMachines) => c.serving == Some(Reconciler::Machine),
                Some(Mutation::UnfencedHealthChecks) => c.serving == Some(Reconciler::HealthCheck),
                _ => false,
            }
        };
        if unfenced {
            // The fence removed: each write on its own, and the reconciled object's
            // observed item written whatever its version (as before plans were fenced,
            // when an unchanged status was not written at all).
            for write in mutated {
                match write {
                    Write::Put { item, expect } => {
                        let fence = item_key(&item).is_some_and(|k| k.sk.ends_with("#status"));
                        let expect = if fence { Expect::Any } else { expect };
                        self.inner.put(item, expect).await?;
                    }
                    Write::Delete { key, expect } => {
                        self.inner.delete(&key, expect).await?;
                        self.note_remediations([&key]);
                    }
                    Write::Check { .. } => {}
                }
            }
        } else if !mutated.is_empty() {
            let deleted: Vec<ItemKey> = mutated
                .iter()
                .filter_map(|w| match w {
                    Write::Delete { key, .. } => Some(key.clone()),
                    Write::Put { .. } | Write::Check { .. } => None,
                })
                .collect();
            self.inner.transact(mutated).await?;
            self.note_remediations(&deleted);
        }
        for key in extra {
            self.inner.delete(&key, Expect::Any).await?;
        }
        if after {
            return Err(StoreError::Unavailable(
                "timeout after the transaction took effect".into(),
            ));
        }
        Ok(())
    }

    async fn delete(&self, key: &ItemKey, expect: Expect) -> Result<(), StoreError> {
        let after = self.before("DeleteItem")?;
        interleave().await;
        self.race(key, expect).await;
        let mut extra = Vec::new();
        let expect = self.mutate_delete(key, expect, &mut extra);
        self.inner.delete(key, expect).await?;
        self.note_remediations([key]);
        for key in extra {
            self.inner.delete(&key, Expect::Any).await?;
        }
        if after {
            return Err(StoreError::Unavailable(
                "timeout after the delete took effect".into(),
            ));
        }
        Ok(())
    }

    async fn find_by_instance(&self, instance_id: &str) -> Result<Vec<ItemKey>, StoreError> {
        self.read("Query(instance-index)")?;
        interleave().await;
        self.inner.find_by_instance(instance_id).await
    }

    async fn scan_page(
        &self,
        sk_prefix: &str,
        start: Option<ItemKey>,
    ) -> Result<ScanPage, StoreError> {
        self.read("Scan")?;
        interleave().await;
        self.inner.scan_page(sk_prefix, start).await
    }
}

// ---------------------------------------------------------------- Compute

/// How long DescribeInstances may not yet show a just-launched instance.
pub const DESCRIBE_LAG: Duration = Duration::from_secs(5);

/// EC2, with faults.
#[derive(Clone)]
pub struct FaultyCompute {
    pub inner: SimEc2,
    pub chaos: SharedChaos,
    pub clock: Arc<dyn Clock>,
}

fn compute_error(fate: &Fate) -> Option<ComputeError> {
    match fate {
        Fate::Throttled => Some(ComputeError::Throttled {
            code: "RequestLimitExceeded".into(),
        }),
        Fate::ServerError => Some(ComputeError::Unavailable("InternalError".into())),
        _ => None,
    }
}

impl Compute for FaultyCompute {
    async fn run_instances(
        &self,
        mut launches: Vec<LaunchRequest>,
    ) -> Vec<Result<Instance, ComputeError>> {
        let fate = ec2_fate(&self.chaos, "RunInstances");
        interleave().await;
        if let Some(e) = compute_error(&fate) {
            return launches.iter().map(|_| Err(e.clone())).collect();
        }
        let mutation = {
            let mut c = lock(&self.chaos);
            let now = self.clock.now();
            if c.launches_now.0 != now {
                c.launches_now = (now, Default::default());
            }
            for l in &launches {
                let tag = |k: &str| l.tags.get(k).cloned().unwrap_or_default();
                let machine = format!(
                    "{}/{}/{}",
                    tag(capstan_model::labels::TAG_NAMESPACE),
                    tag(capstan_model::labels::TAG_CLUSTER),
                    tag(capstan_model::labels::TAG_MACHINE)
                );
                let launch = (
                    machine.clone(),
                    l.instance_type.clone(),
                    l.subnet_id.clone(),
                );
                if !c.launches_now.1.insert(launch) {
                    let line = format!(
                        "RunInstances for Machine {machine} ({} in {}) twice at {now} (ClientToken {})",
                        l.instance_type, l.subnet_id, l.client_token
                    );
                    c.repeated_launches.push(line);
                }
            }
            if c.faults.ignore_client_token {
                for l in &mut launches {
                    let seen = c.tokens.entry(l.client_token.clone()).or_default();
                    *seen += 1;
                    if *seen > 1 {
                        l.client_token = format!("{}#{seen}", l.client_token);
                    }
                }
            }
            c.mutation
        };
        if mutation == Some(Mutation::DoubleLaunch) {
            let twins: Vec<LaunchRequest> = launches
                .iter()
                .map(|l| LaunchRequest {
                    client_token: format!("{}-twin", l.client_token),
                    ..l.clone()
                })
                .collect();
            let _ = self.inner.run_instances(twins).await;
        }
        let tokens: Vec<String> = launches.iter().map(|l| l.client_token.clone()).collect();
        let results = self.inner.run_instances(launches).await;
        {
            let mut c = lock(&self.chaos);
            for (token, r) in tokens.iter().zip(&results) {
                let outcome = match r {
                    Ok(i) => i.instance_id.clone(),
                    Err(e) => e.to_string(),
                };
                c.log
                    .push(format!("ec2: RunInstances token {token} -> {outcome}"));
            }
        }
        if matches!(fate, Fate::TimeoutAfterSuccess) {
            return results
                .iter()
                .map(|_| {
                    Err(ComputeError::Unavailable(
                        "timeout after RunInstances took effect".into(),
                    ))
                })
                .collect();
        }
        results
    }

    async fn run_batch(
        &self,
        mut launch: LaunchRequest,
        count: u32,
    ) -> Result<Vec<Instance>, ComputeError> {
        let fate = ec2_fate(&self.chaos, "RunInstances");
        interleave().await;
        if let Some(e) = compute_error(&fate) {
            return Err(e);
        }
        let mutation = {
            let mut c = lock(&self.chaos);
            if c.faults.ignore_client_token {
                let seen = c.tokens.entry(launch.client_token.clone()).or_default();
                *seen += 1;
                if *seen > 1 {
                    launch.client_token = format!("{}#{seen}", launch.client_token);
                }
            }
            c.mutation
        };
        if mutation == Some(Mutation::DoubleLaunch) {
            let twin = LaunchRequest {
                client_token: format!("{}-twin", launch.client_token),
                ..launch.clone()
            };
            let _ = self.inner.run_batch(twin, count).await;
        }
        let token = launch.client_token.clone();
        let result = self.inner.run_batch(launch, count).await;
        {
            let mut c = lock(&self.chaos);
            let outcome = match &result {
                Ok(instances) => instances
                    .iter()
                    .map(|i| i.instance_id.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                Err(e) => e.to_string(),
            };
            c.log.push(format!(
                "ec2: RunInstances (batch of {count}) token {token} -> {outcome}"
            ));
        }
        if matches!(fate, Fate::TimeoutAfterSuccess) {
            return Err(ComputeError::Unavailable(
                "timeout after RunInstances took effect".into(),
            ));
        }
        result
    }

    async fn terminate_instances(
        &self,
        instance_ids: Vec<String>,
        tag_guard: (String, String),
    ) -> Result<Vec<(String, InstanceState)>, ComputeError> {
        let fate = ec2_fate(&self.chaos, "TerminateInstances");
        interleave().await;
        if let Some(e) = compute_error(&fate) {
            return Err(e);
        }
        if lock(&self.chaos).mutation == Some(Mutation::SkipTerminate) {
            return Ok(instance_ids
                .into_iter()
                .map(|id| (id, InstanceState::Terminated))
                .collect());
        }
        if lock(&self.chaos).mutation == Some(Mutation::IgnoreTagGuard) {
            for id in &instance_ids {
                self.inner.terminate_externally(id);
            }
            return Ok(instance_ids
                .into_iter()
                .map(|id| (id, InstanceState::ShuttingDown))
                .collect());
        }
        {
            let mut c = lock(&self.chaos);
            c.log.push(format!(
                "ec2: TerminateInstances {}",
                instance_ids.join(" ")
            ));
            c.terminated.extend(instance_ids.iter().cloned());
        }
        let result = self
            .inner
            .terminate_instances(instance_ids, tag_guard)
            .await;
        if matches!(fate, Fate::TimeoutAfterSuccess) {
            return Err(ComputeError::Unavailable(
                "timeout after TerminateInstances took effect".into(),
            ));
        }
        result
    }

    async fn create_tags(
        &self,
        instance_ids: Vec<String>,
        tags: BTreeMap<String, String>,
        tag_guard: (String, String),
    ) -> Result<(), ComputeError> {
        let fate = ec2_fate(&self.chaos, "CreateTags");
        interleave().await;
        if let Some(e) = compute_error(&fate) {
            return Err(e);
        }
        lock(&self.chaos).log.push(format!(
            "ec2: CreateTags {} ({} tags)",
            instance_ids.join(" "),
            tags.len()
        ));
        let result = self.inner.create_tags(instance_ids, tags, tag_guard).await;
        if matches!(fate, Fate::TimeoutAfterSuccess) {
            return Err(ComputeError::Unavailable(
                "timeout after CreateTags took effect".into(),
            ));
        }
        result
    }

    async fn describe_instances(
        &self,
        tags: Vec<(String, String)>,
    ) -> Result<Vec<Instance>, ComputeError> {
        let fate = ec2_fate(&self.chaos, "DescribeInstances");
        interleave().await;
        if let Some(e) = compute_error(&fate) {
            return Err(e);
        }
        let (mutation, stale) = {
            let c = lock(&self.chaos);
            (c.mutation, c.enabled && c.faults.stale_reads)
        };
        let lying = mutation == Some(Mutation::IgnoreTagGuard);
        let asked = tags.clone();
        let tags = if lying {
            Vec::new()
        } else if mutation == Some(Mutation::TrustForgedItems)
            && tags
                .iter()
                .any(|(k, _)| k == capstan_model::labels::TAG_MACHINE_UID)
        {
            tags.into_iter()
                .filter(|(k, _)| {
                    k == capstan_model::labels::TAG_INSTALLATION
                        || k == capstan_model::labels::TAG_MACHINE_UID
                })
                .collect()
        } else {
            tags
        };
        let mut found = self.inner.describe_instances(tags).await?;
        if lying {
            // Every instance is reported with the tags asked for, and an untagged one
            // with a whole, consistent set of Capstan tags and the matching ClientToken.
            for i in &mut found {
                if i.tags.contains_key(capstan_model::labels::TAG_MACHINE_UID) {
                    continue;
                }
                let ghost = format!("ghost-{}", i.instance_id);
                i.tags.extend(asked.iter().cloned());
                i.tags.insert(
                    capstan_model::labels::TAG_NAMESPACE.into(),
                    "default".into(),
                );
                i.tags
                    .insert(capstan_model::labels::TAG_CLUSTER.into(), "ghost".into());
                i.tags
                    .insert("kubernetes.io/cluster/ghost".into(), "owned".into());
                i.tags
                    .insert(capstan_model::labels::TAG_MACHINE.into(), ghost.clone());
                i.tags
                    .insert(capstan_model::labels::TAG_MACHINE_UID.into(), ghost.clone());
                i.client_token = Some(ghost);
            }
        }
        if stale {
            let now = self.clock.now();
            found.retain(|i| {
                i.launch_time
                    .checked_add(DESCRIBE_LAG)
                    .map(|t| t <= now)
                    .unwrap_or(true)
            });
        }
        Ok(found)
    }

    async fn describe_instance_types(
        &self,
        instance_types: Vec<String>,
    ) -> Result<Vec<(String, capstan_runtime::InstanceCapacity)>, ComputeError> {
        let fate = ec2_fate(&self.chaos, "DescribeInstanceTypes");
        interleave().await;
        if let Some(e) = compute_error(&fate) {
            return Err(e);
        }
        self.inner.describe_instance_types(instance_types).await
    }
}

// ---------------------------------------------------------------- Bus

/// EventBridge and the queues, with faults on every event.
#[derive(Clone)]
pub struct FaultyBus {
    pub inner: MemBus,
    pub chaos: SharedChaos,
    pub clock: Arc<dyn Clock>,
}

impl FaultyBus {
    /// Publishes events with per-event faults: lost, duplicated, or held back.
    pub fn relay(&self, events: Vec<BusEvent>) {
        let now = self.clock.now();
        let mut out = Vec::new();
        {
            let mut c = lock(&self.chaos);
            let (drop, dup, delay) = (c.faults.drop, c.faults.duplicate, c.faults.delay);
            for event in events {
                if c.roll(drop) {
                    c.log.push(format!(
                        "fault: event {} {} lost",
                        event.detail_type,
                        short(&event)
                    ));
                    continue;
                }
                if c.roll(delay) {
                    let wait = Duration::from_millis(1000 + c.rng.below(59_000));
                    c.log.push(format!(
                        "fault: event {} {} delayed {}s",
                        event.detail_type,
                        short(&event),
                        wait.as_secs()
                    ));
                    let at = now.checked_add(wait).unwrap_or(now);
                    c.delayed.push((at, event));
                    continue;
                }
                if c.roll(dup) {
                    c.log.push(format!(
                        "fault: event {} {} duplicated",
                        event.detail_type,
                        short(&event)
                    ));
                    out.push(event.clone());
                }
                out.push(event);
            }
        }
        self.inner.publish(out);
    }

    /// Releases held-back events that are due; true if any were.
    pub fn release_due(&self) -> bool {
        let now = self.clock.now();
        let due: Vec<BusEvent> = {
            let mut c = lock(&self.chaos);
            let (due, later): (Vec<_>, Vec<_>) = c.delayed.drain(..).partition(|(t, _)| *t <= now);
            c.delayed = later;
            due.into_iter().map(|(_, e)| e).collect()
        };
        let any = !due.is_empty();
        self.inner.publish(due);
        any
    }

    pub fn next_release(&self) -> Option<Timestamp> {
        lock(&self.chaos).delayed.iter().map(|(t, _)| *t).min()
    }
}

fn short(event: &BusEvent) -> String {
    let d = &event.detail;
    match (d.get("kind"), d.get("name"), d.get("instance-id")) {
        (Some(k), Some(n), _) => format!(
            "{}/{}",
            k.as_str().unwrap_or("?"),
            n.as_str().unwrap_or("?")
        ),
        (_, _, Some(i)) => format!(
            "{}={}",
            i.as_str().unwrap_or("?"),
            d.get("state").and_then(|s| s.as_str()).unwrap_or("?")
        ),
        _ => String::new(),
    }
}

impl Bus for FaultyBus {
    async fn put_events(&self, events: Vec<BusEvent>) -> Result<(), BusError> {
        interleave().await;
        match fate(&self.chaos, "PutEvents") {
            Fate::Throttled => return Err(BusError::Throttled("ThrottlingException".into())),
            Fate::ServerError => return Err(BusError::Unavailable("InternalException".into())),
            _ => {}
        }
        self.relay(events);
        Ok(())
    }

    async fn requeue(&self, queue: &str, event: BusEvent, delay: Duration) -> Result<(), BusError> {
        interleave().await;
        if let Fate::Throttled | Fate::ServerError = fate(&self.chaos, "SendMessage") {
            return Err(BusError::Unavailable("InternalError".into()));
        }
        self.inner.requeue(queue, event, delay).await
    }
}

/// A desired item's `spec.replicas`, as the mutations that rewrite it read it.
fn spec_replicas(item: &Item) -> Option<i64> {
    match item.get("spec") {
        Some(capstan_model::AttrValue::M(spec)) => match spec.get("replicas") {
            Some(capstan_model::AttrValue::N(n)) => n.parse::<i64>().ok(),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faults_spec_reads_back_as_the_same_faults() {
        for list in [
            "all",
            "none",
            "timeout,no-idempotency",
            "drop=0.2,reorder,throttling,foreign=3,concurrency=5",
            "hostile=0.05,nodes,stale,spot=1",
        ] {
            let faults = Faults::parse(list).expect("a known list");
            let spec = faults.spec();
            assert_eq!(Faults::parse(&spec), Ok(faults), "{list} → {spec}");
        }
        assert_eq!(Faults::all().spec(), "all");
        assert_eq!(Faults::none().spec(), "none");
    }
}
