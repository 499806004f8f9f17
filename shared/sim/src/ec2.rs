//! A simulated EC2: instances with lifecycles on the injected clock, the validation
//! and idempotency RunInstances does, a tag-conditioned TerminateInstances, and the
//! state-change events EC2 sends to EventBridge.
//!
//! Semantics kept from EC2:
//! - ClientToken makes RunInstances idempotent: a repeated token returns the instance
//!   first launched with it, in its current state, even after it terminated; the same
//!   token with different parameters is `IdempotentParameterMismatch`
//!   (<https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html>);
//! - pending → running after the boot delay; shutting-down → terminated and
//!   stopping → stopped after the shutdown delay; terminated instances stay visible
//!   (AWS keeps them about an hour; here, forever) and lose their private IP;
//! - every state change emits an "EC2 Instance State-change Notification" with the
//!   time of the change, in EventBridge's shape
//!   (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitoring-instance-state-changes.html>);
//! - DescribeInstances reports each instance's ClientToken (empty for a launch
//!   without one, such as [`SimEc2::launch_foreign`]);
//! - a TerminateInstances (or CreateTags) whose instances do not all carry the guard
//!   tag is refused whole, as an IAM `aws:ResourceTag` condition refuses the request;
//!   a CreateTags naming a `capstan.dev/` key is refused first, whatever the
//!   instances, as the template's `aws:TagKeys` condition refuses it (checked call by
//!   call against the EC2 adapter over moto: shared/endpoint/tests/moto/parity.rs);
//! - a spot instance can be interrupted: the "EC2 Spot Instance Interruption Warning"
//!   comes first and the instance starts terminating two minutes later
//!   (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html>).
//!
//! - with [`Ec2Config::limits`] on, EC2's API throttling: a request token bucket per
//!   action and, for RunInstances and TerminateInstances, a resource bucket of
//!   instances, refilled on the clock; a call that finds its bucket short fails with
//!   `RequestLimitExceeded` and takes no effect (see [`Ec2Limits`]).
//!
//! Time moves with the clock: every call first applies the transitions that are due,
//! so what a caller sees never lags the clock. [`SimEc2::advance`] does the same
//! without a call, and [`SimEc2::next_transition`] says when to look again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use capstan_model::labels::RESERVED_PREFIX;
use capstan_model::{InstanceState, MarketType, Timestamp};
use capstan_runtime::routes::{EC2_REBALANCE, EC2_SOURCE, EC2_SPOT_INTERRUPTION, EC2_STATE_CHANGE};
use capstan_runtime::{
    BusEvent, Clock, Compute, ComputeError, Instance, InstanceCapacity, LaunchRequest, eni_max_pods,
};
use serde_json::json;

use crate::clock::after;
use crate::rng::{Rng, mix, uuid};

/// What the simulated region offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ec2Config {
    pub region: String,
    pub account: String,
    /// pending → running.
    pub boot_delay: Duration,
    /// shutting-down → terminated, stopping → stopped.
    pub shutdown_delay: Duration,
    /// AMIs that exist.
    pub images: BTreeSet<String>,
    /// Subnet id → availability zone. Each subnet gets its own /20 in 10.0.0.0/8, in
    /// map order.
    pub subnets: BTreeMap<String, String>,
    /// Instance types offered in every zone.
    pub instance_types: BTreeSet<String>,
    /// EC2's API throttling (off: unlimited calls, as tests that count on them expect).
    pub limits: Ec2Limits,
}

/// A token bucket: `capacity` tokens at most, `refill` more every second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub capacity: u32,
    pub refill: u32,
}

impl Bucket {
    pub const fn new(capacity: u32, refill: u32) -> Bucket {
        Bucket { capacity, refill }
    }
}

/// EC2's API throttling per account and region, as token buckets on the clock
/// (<https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html>): every
/// request takes a token from its action's request bucket; RunInstances and
/// TerminateInstances also take one token per instance from a resource bucket. A
/// request that finds either bucket short is refused whole with
/// `RequestLimitExceeded`, takes no tokens and has no effect.
///
/// RunInstances is charged as the EC2 adapter sends it: one request per launch
/// (MinCount = MaxCount = 1), so a set of N launches costs N requests and, for the
/// launches that start an instance, N resource tokens (a repeated ClientToken that
/// returns the first instance starts nothing and takes no resource token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ec2Limits {
    /// Off: every call goes through (the default, which existing tests assume).
    pub enabled: bool,
    pub run_instances: Bucket,
    /// Instances RunInstances may start.
    pub run_instances_resources: Bucket,
    pub terminate_instances: Bucket,
    /// Instances TerminateInstances may terminate.
    pub terminate_instances_resources: Bucket,
    /// DescribeInstances (the Describe* "non-mutating" bucket).
    pub describe: Bucket,
    pub create_tags: Bucket,
}

impl Ec2Limits {
    /// AWS's default buckets, on: RunInstances 5 requests (refill 2/s) and 1,000
    /// instances (refill 2/s); TerminateInstances 100 requests (5/s) and 1,000
    /// instances (20/s); Describe* 100 (20/s); CreateTags 100 (10/s).
    pub const fn aws() -> Ec2Limits {
        Ec2Limits {
            enabled: true,
            run_instances: Bucket::new(5, 2),
            run_instances_resources: Bucket::new(1000, 2),
            terminate_instances: Bucket::new(100, 5),
            terminate_instances_resources: Bucket::new(1000, 20),
            describe: Bucket::new(100, 20),
            create_tags: Bucket::new(100, 10),
        }
    }

    /// AWS's buckets, switched off.
    pub const fn off() -> Ec2Limits {
        Ec2Limits {
            enabled: false,
            ..Ec2Limits::aws()
        }
    }
}

impl Default for Ec2Limits {
    fn default() -> Ec2Limits {
        Ec2Limits::off()
    }
}

/// Thousandths of a token, so refills on a millisecond clock stay exact.
const MILLI: u64 = 1000;

/// A bucket's level, filled lazily from the clock.
#[derive(Clone, Copy, Debug)]
struct Level {
    bucket: Bucket,
    /// Thousandths of a token.
    milli: u64,
    at: Option<Timestamp>,
}

impl Level {
    fn full(bucket: Bucket) -> Level {
        Level {
            bucket,
            milli: u64::from(bucket.capacity) * MILLI,
            at: None,
        }
    }

    fn refill(&mut self, now: Timestamp) {
        let cap = u64::from(self.bucket.capacity) * MILLI;
        if let Some(at) = self.at {
            let elapsed = now.duration_since(at).as_millis().max(0) as u64;
            // refill tokens per second = refill thousandths per millisecond.
            let added = elapsed.saturating_mul(u64::from(self.bucket.refill));
            self.milli = self.milli.saturating_add(added).min(cap);
        }
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
    }

    fn has(&self, tokens: u64) -> bool {
        self.milli >= tokens.saturating_mul(MILLI)
    }

    fn take(&mut self, tokens: u64) {
        self.milli = self.milli.saturating_sub(tokens.saturating_mul(MILLI));
    }
}

/// Every bucket's level.
#[derive(Debug)]
struct Buckets {
    enabled: bool,
    levels: BTreeMap<Limited, Level>,
}

/// What a bucket limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Limited {
    RunInstances,
    RunInstancesResources,
    TerminateInstances,
    TerminateInstancesResources,
    Describe,
    CreateTags,
}

impl Buckets {
    fn new(limits: &Ec2Limits) -> Buckets {
        let levels = [
            (Limited::RunInstances, limits.run_instances),
            (
                Limited::RunInstancesResources,
                limits.run_instances_resources,
            ),
            (Limited::TerminateInstances, limits.terminate_instances),
            (
                Limited::TerminateInstancesResources,
                limits.terminate_instances_resources,
            ),
            (Limited::Describe, limits.describe),
            (Limited::CreateTags, limits.create_tags),
        ]
        .into_iter()
        .map(|(l, b)| (l, Level::full(b)))
        .collect();
        Buckets {
            enabled: limits.enabled,
            levels,
        }
    }

    /// Whether `tokens` of `limited` are there now (always, when limits are off).
    fn has(&mut self, limited: Limited, tokens: u64, now: Timestamp) -> bool {
        if !self.enabled {
            return true;
        }
        self.levels.get_mut(&limited).is_none_or(|level| {
            level.refill(now);
            level.has(tokens)
        })
    }

    fn take(&mut self, limited: Limited, tokens: u64, now: Timestamp) {
        if let Some(level) = self.levels.get_mut(&limited).filter(|_| self.enabled) {
            level.refill(now);
            level.take(tokens);
        }
    }
}

/// What EC2 answers when a bucket is empty.
fn request_limit_exceeded() -> ComputeError {
    ComputeError::Throttled {
        code: "RequestLimitExceeded".into(),
    }
}

impl Default for Ec2Config {
    fn default() -> Ec2Config {
        let families = ["m5", "m6i", "m7i", "c6i", "c7i", "r6i", "r7i"];
        let sizes = ["large", "xlarge", "2xlarge", "4xlarge", "8xlarge"];
        let burstable = [
            "t3.nano",
            "t3.micro",
            "t3.small",
            "t3.medium",
            "t3.large",
            "t3.xlarge",
            "t3.2xlarge",
        ];
        let instance_types = families
            .iter()
            .flat_map(|f| sizes.iter().map(move |s| format!("{f}.{s}")))
            .chain(burstable.iter().map(|t| t.to_string()))
            .collect();
        Ec2Config {
            region: "us-east-1".into(),
            account: "123456789012".into(),
            boot_delay: Duration::from_secs(3),
            shutdown_delay: Duration::from_secs(2),
            images: ["ami-0abcdef1234567890", "ami-0fedcba9876543210"]
                .map(String::from)
                .into(),
            subnets: [
                ("subnet-0a1b2c3d4e5f60001", "us-east-1a"),
                ("subnet-0a1b2c3d4e5f60002", "us-east-1b"),
                ("subnet-0a1b2c3d4e5f60003", "us-east-1c"),
            ]
            .map(|(s, z)| (s.to_string(), z.to_string()))
            .into(),
            instance_types,
            limits: Ec2Limits::off(),
        }
    }
}

/// An EC2 API operation, for fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ec2Op {
    RunInstances,
    TerminateInstances,
    DescribeInstances,
}

/// API requests made through the `Compute` port, as the EC2 adapter sends them: one
/// RunInstances per launch (MinCount = MaxCount = 1), one TerminateInstances,
/// DescribeInstances or CreateTags per call however many instances it names. Throttled
/// requests count too (they were sent); `throttled` says how many of them there were.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ec2Calls {
    pub run_instances: u64,
    pub terminate_instances: u64,
    pub describe_instances: u64,
    pub create_tags: u64,
    pub describe_instance_types: u64,
    /// Requests refused with `RequestLimitExceeded` by the modelled buckets.
    pub throttled: u64,
}

/// Addresses per subnet (/20) and the ones AWS reserves: the first four and the last.
const SUBNET_SIZE: u32 = 4096;
const FIRST_HOST: u32 = 4;
const LAST_HOST: u32 = SUBNET_SIZE - 2;

/// The simulated EC2. Clones share it.
#[derive(Clone)]
pub struct SimEc2 {
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimEc2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("SimEc2")
            .field("instances", &s.instances.len())
            .field("calls", &s.calls)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct SimInstance {
    instance: Instance,
    /// Offset of the private IP in its subnet, while the instance holds one.
    address: Option<u32>,
    /// The transition this instance is waiting for.
    next: Option<(Timestamp, InstanceState)>,
    /// Launched on the spot market (only those can be interrupted).
    spot: bool,
    /// The change number of its latest change (see `State::changes`).
    changed: u64,
}

#[derive(Debug)]
struct State {
    config: Ec2Config,
    instances: Vec<SimInstance>,
    by_id: BTreeMap<String, usize>,
    /// ClientToken → the instance first launched with it and the request that did.
    tokens: BTreeMap<String, (usize, LaunchRequest)>,
    /// A batched launch's ClientToken → its instances, the request and the count.
    batch_tokens: BTreeMap<String, (Vec<usize>, LaunchRequest, u32)>,
    /// Due transitions, by (time, launch order).
    schedule: BTreeSet<(Timestamp, usize)>,
    /// Subnet → address offsets in use.
    addresses: BTreeMap<String, BTreeSet<u32>>,
    /// (instance type, availability zone) pairs out of capacity.
    no_capacity: BTreeSet<(String, String)>,
    events: Vec<BusEvent>,
    event_ids: Rng,
    launched_total: u64,
    calls: Ec2Calls,
    terminated_by_request: Vec<String>,
    faults: BTreeMap<Ec2Op, VecDeque<ComputeError>>,
    buckets: Buckets,
    /// Bumped by every change to an instance (state, tags, a launch).
    changes: u64,
}

/// How long after its interruption warning EC2 reclaims a spot instance.
pub const SPOT_WARNING: Duration = Duration::from_secs(120);

impl SimEc2 {
    pub fn new(config: Ec2Config, clock: Arc<dyn Clock>) -> SimEc2 {
        let buckets = Buckets::new(&config.limits);
        SimEc2 {
            clock,
            state: Arc::new(Mutex::new(State {
                config,
                instances: Vec::new(),
                by_id: BTreeMap::new(),
                tokens: BTreeMap::new(),
                batch_tokens: BTreeMap::new(),
                schedule: BTreeSet::new(),
                addresses: BTreeMap::new(),
                no_capacity: BTreeSet::new(),
                events: Vec::new(),
                event_ids: Rng::new(0xec2_e7e7),
                launched_total: 0,
                calls: Ec2Calls::default(),
                terminated_by_request: Vec::new(),
                faults: BTreeMap::new(),
                buckets,
                changes: 0,
            })),
        }
    }

    /// Applies every transition due at or before the clock's now, in time order.
    pub fn advance(&self) {
        drop(self.settled());
    }

    /// When the next transition is due, if any instance is waiting for one.
    pub fn next_transition(&self) -> Option<Timestamp> {
        self.settled().schedule.first().map(|(t, _)| *t)
    }

    /// Drains the state-change events, oldest first.
    pub fn take_events(&self) -> Vec<BusEvent> {
        std::mem::take(&mut self.settled().events)
    }

    /// Every instance, terminated ones included, in launch order.
    pub fn instances(&self) -> Vec<Instance> {
        self.settled()
            .instances
            .iter()
            .map(|i| i.instance.clone())
            .collect()
    }

    pub fn instance(&self, id: impl AsRef<str>) -> Option<Instance> {
        let state = self.settled();
        state
            .by_id
            .get(id.as_ref())
            .map(|&i| state.instances[i].instance.clone())
    }

    /// The request that launched `instance_id` through `run_instances` (its user data,
    /// say), as EC2 keeps it; None for a foreign or restored instance.
    pub fn launch_request(&self, instance_id: impl AsRef<str>) -> Option<LaunchRequest> {
        let state = self.lock();
        let idx = *state.by_id.get(instance_id.as_ref())?;
        state
            .tokens
            .values()
            .find(|(i, _)| *i == idx)
            .map(|(_, request)| request.clone())
            .or_else(|| {
                state
                    .batch_tokens
                    .values()
                    .find(|(ids, _, _)| ids.contains(&idx))
                    .map(|(_, request, _)| request.clone())
            })
    }

    /// Instances launched through `run_instances` (a repeated ClientToken launches
    /// nothing; foreign instances are not counted).
    pub fn launched_total(&self) -> u64 {
        self.lock().launched_total
    }

    pub fn calls(&self) -> Ec2Calls {
        self.lock().calls
    }

    /// The instances that changed (state, tags, launched) after change number `seen`,
    /// transitions due by now included, in launch order, and the latest change number:
    /// a caller that mirrors the instances (the embedded runtime's kubelets) copies
    /// only what moved since it last looked (0: everything).
    pub fn instances_changed_after(&self, seen: u64) -> (Vec<Instance>, u64) {
        let state = self.settled();
        let changed = state
            .instances
            .iter()
            .filter(|i| i.changed > seen)
            .map(|i| i.instance.clone())
            .collect();
        (changed, state.changes)
    }

    /// Instances that `terminate_instances` moved to shutting-down, in order.
    pub fn terminated_by_request(&self) -> Vec<String> {
        self.lock().terminated_by_request.clone()
    }

    /// The next call of `op` fails with `err` and has no effect (for RunInstances, every
    /// launch of the call gets `err`). Faults queue up per operation.
    pub fn fail_next(&self, op: Ec2Op, err: ComputeError) {
        self.lock().faults.entry(op).or_default().push_back(err);
    }

    /// Takes an offering out of capacity (or gives it back): launches of
    /// `instance_type` in `availability_zone` fail with `InsufficientInstanceCapacity`.
    pub fn set_capacity(&self, instance_type: &str, availability_zone: &str, available: bool) {
        let key = (instance_type.to_string(), availability_zone.to_string());
        let mut state = self.lock();
        if available {
            state.no_capacity.remove(&key);
        } else {
            state.no_capacity.insert(key);
        }
    }

    /// Someone stops a running instance behind our back: stopping, then stopped after
    /// the shutdown delay. False (and nothing happens) unless it is running.
    pub fn stop_instance(&self, id: impl AsRef<str>) -> bool {
        let now = self.clock.now();
        let mut state = self.settled();
        let Some(&idx) = state.by_id.get(id.as_ref()) else {
            return false;
        };
        if state.instances[idx].instance.state != InstanceState::Running {
            return false;
        }
        state.set_state(idx, InstanceState::Stopping, now);
        true
    }

    /// Someone terminates an instance behind our back (console, another tool, a
    /// health-check replacement). False if it is already shutting down or gone.
    pub fn terminate_externally(&self, id: impl AsRef<str>) -> bool {
        let now = self.clock.now();
        let mut state = self.settled();
        let Some(&idx) = state.by_id.get(id.as_ref()) else {
            return false;
        };
        state.begin_termination(idx, now)
    }

    /// Whether the instance was launched on the spot market.
    pub fn is_spot(&self, id: impl AsRef<str>) -> bool {
        let state = self.lock();
        state
            .by_id
            .get(id.as_ref())
            .is_some_and(|&i| state.instances[i].spot)
    }

    /// EC2 reclaims a running spot instance: emits the "EC2 Spot Instance Interruption
    /// Warning" now (detail `{"instance-id", "instance-action": "terminate"}`) and
    /// begins terminating the instance two minutes later, as EC2 does. False (nothing
    /// happens) unless the instance is a running spot instance.
    pub fn interrupt_spot(&self, id: impl AsRef<str>) -> bool {
        let now = self.clock.now();
        let mut state = self.settled();
        let Some(idx) = state.running_spot(id.as_ref()) else {
            return false;
        };
        let id = state.instances[idx].instance.instance_id.clone();
        let event = state.event(
            EC2_SPOT_INTERRUPTION,
            &id,
            json!({ "instance-id": id, "instance-action": "terminate" }),
            now,
        );
        state.events.push(event);
        state.reschedule(
            idx,
            Some((after(now, SPOT_WARNING), InstanceState::ShuttingDown)),
        );
        true
    }

    /// EC2 recommends rebalancing a running spot instance: emits the "EC2 Instance
    /// Rebalance Recommendation" (detail `{"instance-id"}`); the instance keeps running.
    pub fn recommend_rebalance(&self, id: impl AsRef<str>) -> bool {
        let now = self.clock.now();
        let mut state = self.settled();
        let Some(idx) = state.running_spot(id.as_ref()) else {
            return false;
        };
        let id = state.instances[idx].instance.instance_id.clone();
        let event = state.event(EC2_REBALANCE, &id, json!({ "instance-id": id }), now);
        state.events.push(event);
        true
    }

    /// CreateTags calls made (one per call).
    pub fn create_tags_calls(&self) -> u64 {
        self.lock().calls.create_tags
    }

    /// An instance Capstan did not launch (another team's, or a leak from before), in
    /// `subnet_id`, carrying `tags`. Emits the same events as any launch.
    pub fn launch_foreign<K, V>(
        &self,
        subnet_id: impl AsRef<str>,
        tags: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Instance, ComputeError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let now = self.clock.now();
        let mut state = self.settled();
        let subnet_id = subnet_id.as_ref();
        let instance_type = state
            .config
            .instance_types
            .first()
            .cloned()
            .unwrap_or_else(|| "t3.micro".into());
        let tags = tags
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let idx = state.launch(subnet_id, &instance_type, tags, now)?;
        Ok(state.instances[idx].instance.clone())
    }

    /// An instance that exists elsewhere (a live installation's), copied in as it is,
    /// id, tags and state: how a replica of that installation is built (`capstan
    /// apply --dry-run` plans on one). Emits no event for the copy; an instance in a
    /// passing state (pending, shutting down, stopping) moves on after the configured
    /// delay. Its subnet joins the configuration if unknown. Copying an id already
    /// present changes nothing.
    pub fn restore(&self, instance: Instance) {
        let now = self.clock.now();
        let mut state = self.settled();
        if state.by_id.contains_key(&instance.instance_id) {
            return;
        }
        state
            .config
            .subnets
            .entry(instance.subnet_id.clone())
            .or_insert_with(|| instance.availability_zone.clone());
        let idx = state.instances.len();
        let follow = match instance.state {
            InstanceState::Pending => {
                Some((after(now, state.config.boot_delay), InstanceState::Running))
            }
            InstanceState::Stopping => Some((
                after(now, state.config.shutdown_delay),
                InstanceState::Stopped,
            )),
            InstanceState::ShuttingDown => Some((
                after(now, state.config.shutdown_delay),
                InstanceState::Terminated,
            )),
            InstanceState::Running | InstanceState::Stopped | InstanceState::Terminated => None,
        };
        state.by_id.insert(instance.instance_id.clone(), idx);
        // A copy is a change: whoever follows changes (the kubelets) sees it.
        state.changes += 1;
        let changed = state.changes;
        state.instances.push(SimInstance {
            instance,
            address: None,
            next: None,
            spot: false,
            changed,
        });
        state.reschedule(idx, follow);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, with every transition due by now applied.
    fn settled(&self) -> MutexGuard<'_, State> {
        let now = self.clock.now();
        let mut state = self.lock();
        state.advance_to(now);
        state
    }
}

impl State {
    /// The index of `id` if it is a running spot instance (only those are interrupted or
    /// told to rebalance).
    fn running_spot(&self, id: &str) -> Option<usize> {
        let &idx = self.by_id.get(id)?;
        let inst = &self.instances[idx];
        (inst.spot && inst.instance.state == InstanceState::Running).then_some(idx)
    }

    fn advance_to(&mut self, now: Timestamp) {
        while let Some(&(due, idx)) = self.schedule.first() {
            if due > now {
                break;
            }
            self.schedule.pop_first();
            if let Some((_, to)) = self.instances[idx].next.take() {
                self.set_state(idx, to, due);
            }
        }
    }

    /// Takes every bucket's tokens, or none and `RequestLimitExceeded` if one is short.
    fn throttle(&mut self, costs: &[(Limited, u64)], now: Timestamp) -> Result<(), ComputeError> {
        if costs
            .iter()
            .all(|&(limited, tokens)| self.buckets.has(limited, tokens, now))
        {
            for &(limited, tokens) in costs {
                self.buckets.take(limited, tokens, now);
            }
            Ok(())
        } else {
            self.calls.throttled += 1;
            Err(request_limit_exceeded())
        }
    }

    /// One RunInstances request's tokens: a request token, and an instance token unless
    /// the ClientToken was seen before (EC2 returns the first instance, starting none).
    fn throttle_launch(&mut self, req: &LaunchRequest, now: Timestamp) -> Result<(), ComputeError> {
        let starts = u64::from(!self.tokens.contains_key(&req.client_token));
        self.throttle(
            &[
                (Limited::RunInstances, 1),
                (Limited::RunInstancesResources, starts),
            ],
            now,
        )
    }

    fn take_fault(&mut self, op: Ec2Op) -> Option<ComputeError> {
        self.faults.get_mut(&op).and_then(VecDeque::pop_front)
    }

    /// Replaces the instance's pending transition.
    fn reschedule(&mut self, idx: usize, next: Option<(Timestamp, InstanceState)>) {
        if let Some((t, _)) = self.instances[idx].next.take() {
            self.schedule.remove(&(t, idx));
        }
        if let Some((t, _)) = next {
            self.schedule.insert((t, idx));
        }
        self.instances[idx].next = next;
    }

    /// Moves an instance to `to` at time `at`: records it, emits the event, and
    /// schedules what follows.
    fn set_state(&mut self, idx: usize, to: InstanceState, at: Timestamp) {
        self.changes += 1;
        let inst = &mut self.instances[idx];
        inst.changed = self.changes;
        inst.instance.state = to;
        let id = inst.instance.instance_id.clone();
        if to == InstanceState::Terminated {
            inst.instance.private_ip = None;
            let freed = inst.address.take();
            if let (Some(offset), Some(used)) =
                (freed, self.addresses.get_mut(&inst.instance.subnet_id))
            {
                used.remove(&offset);
            }
        }
        let event = self.event(
            EC2_STATE_CHANGE,
            &id,
            json!({ "instance-id": id, "state": to.as_str() }),
            at,
        );
        self.events.push(event);
        let follow = match to {
            InstanceState::Pending => {
                Some((after(at, self.config.boot_delay), InstanceState::Running))
            }
            InstanceState::Stopping => Some((
                after(at, self.config.shutdown_delay),
                InstanceState::Stopped,
            )),
            InstanceState::ShuttingDown => Some((
                after(at, self.config.shutdown_delay),
                InstanceState::Terminated,
            )),
            InstanceState::Running | InstanceState::Stopped | InstanceState::Terminated => None,
        };
        self.reschedule(idx, follow);
    }

    /// Starts terminating an instance; false if it already is (or is gone).
    fn begin_termination(&mut self, idx: usize, now: Timestamp) -> bool {
        match self.instances[idx].instance.state {
            InstanceState::ShuttingDown | InstanceState::Terminated => false,
            InstanceState::Pending
            | InstanceState::Running
            | InstanceState::Stopping
            | InstanceState::Stopped => {
                self.set_state(idx, InstanceState::ShuttingDown, now);
                true
            }
        }
    }

    fn event(
        &mut self,
        detail_type: &str,
        id: &str,
        detail: serde_json::Value,
        at: Timestamp,
    ) -> BusEvent {
        let mut e = BusEvent::default();
        e.version = Some("0".into());
        e.id = Some(uuid(self.event_ids.next_u128()));
        e.detail_type = detail_type.into();
        e.source = EC2_SOURCE.into();
        e.account = Some(self.config.account.clone());
        e.time = event_time(at);
        e.region = Some(self.config.region.clone());
        e.resources = Some(vec![format!(
            "arn:aws:ec2:{}:{}:instance/{id}",
            self.config.region, self.config.account
        )]);
        e.detail = detail;
        e
    }

    /// One RunInstances with MinCount = 1 and MaxCount = `count`: as many instances
    /// as can be placed, at least one, or an error and none. A repeated token returns
    /// the first call's instances (same parameters) or `IdempotentParameterMismatch`.
    fn run_batch(
        &mut self,
        req: &LaunchRequest,
        count: u32,
        now: Timestamp,
    ) -> Result<Vec<Instance>, ComputeError> {
        if let Some((ids, first, first_count)) = self.batch_tokens.get(&req.client_token) {
            if first != req || *first_count != count {
                return Err(invalid(
                    "IdempotentParameterMismatch",
                    format!(
                        "The client token '{}' was already used with different parameters.",
                        req.client_token
                    ),
                ));
            }
            return Ok(ids
                .iter()
                .map(|i| self.instances[*i].instance.clone())
                .collect());
        }
        if count == 0 {
            return Err(invalid(
                "InvalidParameterValue",
                "MaxCount must be at least 1".into(),
            ));
        }
        self.validate(req)?;
        let mut launched = Vec::new();
        for k in 0..count {
            match self.launch(&req.subnet_id, &req.instance_type, req.tags.clone(), now) {
                Ok(idx) => {
                    let inst = &mut self.instances[idx];
                    inst.spot = req.market.market_type == MarketType::Spot;
                    inst.instance.client_token = Some(req.client_token.clone());
                    inst.instance.launch_index = Some(k);
                    self.launched_total += 1;
                    launched.push(idx);
                }
                // MinCount = 1: an error only when not even one could start.
                Err(e) if launched.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        if !req.client_token.is_empty() {
            self.batch_tokens.insert(
                req.client_token.clone(),
                (launched.clone(), req.clone(), count),
            );
        }
        Ok(launched
            .iter()
            .map(|i| self.instances[*i].instance.clone())
            .collect())
    }

    /// What EC2 refuses in any RunInstances, before it starts anything.
    fn validate(&self, req: &LaunchRequest) -> Result<(), ComputeError> {
        if req.client_token.len() > 64 || !req.client_token.is_ascii() {
            return Err(invalid(
                "InvalidParameterValue",
                "The client token must be at most 64 ASCII characters.".into(),
            ));
        }
        if !self.config.images.contains(&req.image_id) {
            return Err(invalid(
                "InvalidAMIID.NotFound",
                format!("The image id '[{}]' does not exist", req.image_id),
            ));
        }
        if !self.config.subnets.contains_key(&req.subnet_id) {
            return Err(invalid(
                "InvalidSubnetID.NotFound",
                format!("The subnet ID '{}' does not exist", req.subnet_id),
            ));
        }
        if !self.config.instance_types.contains(&req.instance_type) {
            return Err(invalid(
                "InvalidParameterValue",
                format!("Invalid value '{}' for InstanceType.", req.instance_type),
            ));
        }
        validate_tags(&req.tags)?;
        if req.user_data.as_ref().is_some_and(|u| u.len() > 16 * 1024) {
            return Err(invalid(
                "InvalidParameterValue",
                "User data is limited to 16384 bytes".into(),
            ));
        }
        Ok(())
    }

    /// One RunInstances launch, after its token was checked.
    fn run_one(&mut self, req: &LaunchRequest, now: Timestamp) -> Result<Instance, ComputeError> {
        if let Some((idx, first)) = self.tokens.get(&req.client_token) {
            if first != req {
                return Err(invalid(
                    "IdempotentParameterMismatch",
                    format!(
                        "The client token '{}' was already used with different parameters.",
                        req.client_token
                    ),
                ));
            }
            return Ok(self.instances[*idx].instance.clone());
        }
        self.validate(req)?;
        let idx = self.launch(&req.subnet_id, &req.instance_type, req.tags.clone(), now)?;
        self.instances[idx].spot = req.market.market_type == MarketType::Spot;
        self.instances[idx].instance.client_token = Some(req.client_token.clone());
        self.instances[idx].instance.launch_index = Some(0);
        self.launched_total += 1;
        if !req.client_token.is_empty() {
            self.tokens
                .insert(req.client_token.clone(), (idx, req.clone()));
        }
        Ok(self.instances[idx].instance.clone())
    }

    /// Places a new pending instance in `subnet_id`.
    fn launch(
        &mut self,
        subnet_id: &str,
        instance_type: &str,
        tags: BTreeMap<String, String>,
        now: Timestamp,
    ) -> Result<usize, ComputeError> {
        let Some((subnet_index, zone)) = self
            .config
            .subnets
            .iter()
            .enumerate()
            .find(|(_, (s, _))| s.as_str() == subnet_id)
            .map(|(i, (_, z))| (i, z.clone()))
        else {
            return Err(invalid(
                "InvalidSubnetID.NotFound",
                format!("The subnet ID '{subnet_id}' does not exist"),
            ));
        };
        if self
            .no_capacity
            .contains(&(instance_type.to_string(), zone.clone()))
        {
            return Err(ComputeError::Unfulfillable {
                code: "InsufficientInstanceCapacity".into(),
                message: format!(
                    "We currently do not have sufficient {instance_type} capacity in the Availability Zone you requested ({zone}). Our system will be working on provisioning additional capacity. You can currently get {instance_type} capacity by not specifying an Availability Zone in your request or choosing a different Availability Zone."
                ),
            });
        }
        let used = self.addresses.entry(subnet_id.to_string()).or_default();
        let Some(offset) = (FIRST_HOST..=LAST_HOST).find(|o| !used.contains(o)) else {
            return Err(ComputeError::Unfulfillable {
                code: "InsufficientFreeAddressesInSubnet".into(),
                message: format!(
                    "There are not enough free addresses in subnet '{subnet_id}' to satisfy the requested number of instances."
                ),
            });
        };
        used.insert(offset);
        let idx = self.instances.len();
        // mix is a bijection, so ids from a counter are unique and look like EC2's.
        let instance_id = format!("i-0{:016x}", mix(idx as u64 ^ 0xc4a5_7a11));
        let address = (10u32 << 24) + (subnet_index as u32) * SUBNET_SIZE + offset;
        self.instances.push(SimInstance {
            instance: Instance {
                instance_id: instance_id.clone(),
                state: InstanceState::Pending,
                instance_type: instance_type.to_string(),
                subnet_id: subnet_id.to_string(),
                availability_zone: zone,
                private_ip: Some(std::net::Ipv4Addr::from(address).to_string()),
                tags,
                launch_time: now,
                // What DescribeInstances reports for a launch without a token.
                client_token: Some(String::new()),
                launch_index: None,
            },
            address: Some(offset),
            next: None,
            spot: false,
            changed: 0,
        });
        self.by_id.insert(instance_id, idx);
        self.set_state(idx, InstanceState::Pending, now);
        Ok(idx)
    }
}

impl Compute for SimEc2 {
    async fn run_instances(
        &self,
        launches: Vec<LaunchRequest>,
    ) -> Vec<Result<Instance, ComputeError>> {
        let now = self.clock.now();
        let mut state = self.settled();
        if let Some(err) = state.take_fault(Ec2Op::RunInstances) {
            state.calls.run_instances += launches.len().max(1) as u64;
            return launches.iter().map(|_| Err(err.clone())).collect();
        }
        launches
            .iter()
            .map(|req| {
                // One request per launch, as the adapter sends them.
                state.calls.run_instances += 1;
                state.throttle_launch(req, now)?;
                state.run_one(req, now)
            })
            .collect()
    }

    async fn run_batch(
        &self,
        launch: LaunchRequest,
        count: u32,
    ) -> Result<Vec<Instance>, ComputeError> {
        let now = self.clock.now();
        let mut state = self.settled();
        state.calls.run_instances += 1;
        if let Some(err) = state.take_fault(Ec2Op::RunInstances) {
            return Err(err);
        }
        // One request token, and an instance token per instance it may start (none
        // for a repeated ClientToken: EC2 returns the first call's instances).
        let starts = if state.batch_tokens.contains_key(&launch.client_token) {
            0
        } else {
            u64::from(count)
        };
        state.throttle(
            &[
                (Limited::RunInstances, 1),
                (Limited::RunInstancesResources, starts),
            ],
            now,
        )?;
        state.run_batch(&launch, count, now)
    }

    async fn terminate_instances(
        &self,
        instance_ids: Vec<String>,
        tag_guard: (String, String),
    ) -> Result<Vec<(String, InstanceState)>, ComputeError> {
        // Terminating nothing is nothing: the adapter sends no call (EC2 would refuse
        // an empty TerminateInstances with MissingParameter).
        if instance_ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let mut state = self.settled();
        state.calls.terminate_instances += 1;
        if let Some(err) = state.take_fault(Ec2Op::TerminateInstances) {
            return Err(err);
        }
        let mut ids: Vec<String> = Vec::with_capacity(instance_ids.len());
        for id in instance_ids {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        state.throttle(
            &[
                (Limited::TerminateInstances, 1),
                (Limited::TerminateInstancesResources, ids.len() as u64),
            ],
            now,
        )?;
        if let Some(bad) = ids.iter().find(|id| !well_formed(id)) {
            return Err(invalid(
                "InvalidInstanceID.Malformed",
                format!("Invalid id: \"{bad}\""),
            ));
        }
        let missing: Vec<&str> = ids
            .iter()
            .filter(|id| !state.by_id.contains_key(id.as_str()))
            .map(String::as_str)
            .collect();
        match missing.as_slice() {
            [] => {}
            [one] => {
                return Err(invalid(
                    "InvalidInstanceID.NotFound",
                    format!("The instance ID '{one}' does not exist"),
                ));
            }
            many => {
                return Err(invalid(
                    "InvalidInstanceID.NotFound",
                    format!("The instance IDs '{}' do not exist", many.join(", ")),
                ));
            }
        }
        let indices: Vec<usize> = ids
            .iter()
            .filter_map(|id| state.by_id.get(id).copied())
            .collect();
        let (key, value) = &tag_guard;
        if let Some(&idx) = indices
            .iter()
            .find(|&&i| state.instances[i].instance.tags.get(key) != Some(value))
        {
            return Err(invalid(
                "UnauthorizedOperation",
                format!(
                    "You are not authorized to perform this operation. ec2:TerminateInstances on resource arn:aws:ec2:{}:{}:instance/{} is allowed only with tag {key}={value}.",
                    state.config.region,
                    state.config.account,
                    state.instances[idx].instance.instance_id
                ),
            ));
        }
        let mut result = Vec::with_capacity(indices.len());
        for idx in indices {
            if state.begin_termination(idx, now) {
                let id = state.instances[idx].instance.instance_id.clone();
                state.terminated_by_request.push(id);
            }
            let inst = &state.instances[idx].instance;
            result.push((inst.instance_id.clone(), inst.state));
        }
        Ok(result)
    }

    async fn create_tags(
        &self,
        instance_ids: Vec<String>,
        tags: BTreeMap<String, String>,
        tag_guard: (String, String),
    ) -> Result<(), ComputeError> {
        let (key, value) = &tag_guard;
        // As the template's IAM (`aws:TagKeys` may not name a `capstan.dev/` key, the
        // guard's included) and the EC2 adapter: an instance's identity is set at
        // launch. IAM refuses the request before EC2 looks at the instances.
        if let Some(reserved) = tags
            .keys()
            .find(|k| *k == key || k.starts_with(RESERVED_PREFIX))
        {
            return Err(invalid(
                "UnauthorizedOperation",
                format!("You are not authorized to set the tag {reserved}."),
            ));
        }
        // The adapter sends no CreateTags for nothing (EC2 would refuse it).
        if instance_ids.is_empty() || tags.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let mut state = self.settled();
        state.calls.create_tags += 1;
        state.throttle(&[(Limited::CreateTags, 1)], now)?;
        let missing: Vec<&String> = instance_ids
            .iter()
            .filter(|id| !state.by_id.contains_key(*id))
            .collect();
        if let Some(first) = missing.first() {
            return Err(invalid(
                "InvalidInstanceID.NotFound",
                format!("The instance ID '{first}' does not exist"),
            ));
        }
        let indices: Vec<usize> = instance_ids
            .iter()
            .filter_map(|id| state.by_id.get(id).copied())
            .collect();
        if let Some(&idx) = indices
            .iter()
            .find(|&&i| state.instances[i].instance.tags.get(key) != Some(value))
        {
            return Err(invalid(
                "UnauthorizedOperation",
                format!(
                    "You are not authorized to perform this operation. ec2:CreateTags on resource arn:aws:ec2:{}:{}:instance/{} is allowed only with tag {key}={value}.",
                    state.config.region,
                    state.config.account,
                    state.instances[idx].instance.instance_id
                ),
            ));
        }
        for &idx in &indices {
            let mut merged = state.instances[idx].instance.tags.clone();
            merged.extend(tags.clone());
            validate_tags(&merged)?;
        }
        state.changes += 1;
        let change = state.changes;
        for idx in indices {
            let inst = &mut state.instances[idx];
            inst.instance.tags.extend(tags.clone());
            inst.changed = change;
        }
        Ok(())
    }

    async fn describe_instances(
        &self,
        tags: Vec<(String, String)>,
    ) -> Result<Vec<Instance>, ComputeError> {
        let now = self.clock.now();
        let mut state = self.settled();
        state.calls.describe_instances += 1;
        if let Some(err) = state.take_fault(Ec2Op::DescribeInstances) {
            return Err(err);
        }
        state.throttle(&[(Limited::Describe, 1)], now)?;
        Ok(state
            .instances
            .iter()
            .filter(|i| tags.iter().all(|(k, v)| i.instance.tags.get(k) == Some(v)))
            .map(|i| i.instance.clone())
            .collect())
    }

    /// From [`catalogue`], for the types this EC2 offers (`Ec2Config::instance_types`);
    /// any other fails the call as EC2 does.
    async fn describe_instance_types(
        &self,
        instance_types: Vec<String>,
    ) -> Result<Vec<(String, InstanceCapacity)>, ComputeError> {
        let now = self.clock.now();
        let mut state = self.settled();
        state.calls.describe_instance_types += 1;
        state.throttle(&[(Limited::Describe, 1)], now)?;
        let mut out = Vec::with_capacity(instance_types.len());
        for t in instance_types {
            let known = state.config.instance_types.contains(&t);
            match catalogue(&t).filter(|_| known) {
                Some(c) => out.push((t, c)),
                None => {
                    return Err(invalid(
                        "InvalidInstanceType",
                        format!("The following supplied instance types do not exist: [{t}]"),
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// What DescribeInstanceTypes says of the types the simulated EC2 offers (`VCpuInfo
/// .DefaultVCpus`, `MemoryInfo.SizeInMiB`, `NetworkInfo.{MaximumNetworkInterfaces,
/// Ipv4AddressesPerInterface}`, as AWS lists them), pods by [`eni_max_pods`].
pub fn catalogue(instance_type: &str) -> Option<InstanceCapacity> {
    let (family, size) = instance_type.split_once('.')?;
    let (vcpus, memory_mib, enis, ips): (u32, u64, u32, u32) = match (family, size) {
        ("t3", "nano") => (2, 512, 2, 2),
        ("t3", "micro") => (2, 1024, 2, 2),
        ("t3", "small") => (2, 2048, 3, 4),
        ("t3", "medium") => (2, 4096, 3, 6),
        ("t3", "large") => (2, 8192, 3, 12),
        ("t3", "xlarge") => (4, 16384, 4, 15),
        ("t3", "2xlarge") => (8, 32768, 4, 15),
        (f, s) => {
            let per_vcpu: u64 = match f {
                "m5" | "m6i" | "m7i" => 4096,
                "c5" | "c6i" | "c7i" => 2048,
                "r6i" | "r7i" => 8192,
                _ => return None,
            };
            let (vcpus, enis, ips) = match s {
                "large" => (2, 3, 10),
                "xlarge" => (4, 4, 15),
                "2xlarge" => (8, 4, 15),
                "4xlarge" => (16, 8, 30),
                "8xlarge" => (32, 8, 30),
                _ => return None,
            };
            (vcpus, per_vcpu * u64::from(vcpus), enis, ips)
        }
    };
    Some(InstanceCapacity {
        vcpus,
        memory_mib,
        max_pods: eni_max_pods(enis, ips),
    })
}

fn invalid(code: &str, message: String) -> ComputeError {
    ComputeError::Invalid {
        code: code.into(),
        message,
    }
}

/// `i-` and 8 or 17 lowercase hex digits.
fn well_formed(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The tag rules TagSpecifications enforce
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions>).
fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), ComputeError> {
    if tags.len() > 50 {
        return Err(invalid(
            "TagLimitExceeded",
            "The maximum number of tags per resource is 50.".into(),
        ));
    }
    for (k, v) in tags {
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid(
                "InvalidParameterValue",
                format!(
                    "Tag key '{k}' is invalid: tag keys starting with 'aws:' are reserved for internal use"
                ),
            ));
        }
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(invalid(
                "InvalidParameterValue",
                format!("Tag '{k}' is invalid: keys are 1 to 128 characters, values at most 256"),
            ));
        }
    }
    Ok(())
}

/// EventBridge's `time`: the change's time, to the second, as AWS writes it.
fn event_time(at: Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(at.as_second(), 0)
}
