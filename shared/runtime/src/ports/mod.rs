//! The ports: one narrow trait per outside system. Functions are generic over them;
//! `capstan-sim` implements them in memory (embedded runtime, simulator) and
//! `capstan-aws` (a later crate) over the AWS SDK.
//!
//! Every method's contract says what is retried and what is final, so an adapter
//! knows what to map each service error to.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

pub use capstan_model::item::Expect;
use capstan_model::item::{Item, ItemKey};
pub use capstan_model::launch::LaunchRequest;
use capstan_model::{InstanceState, Timestamp};
pub use capstan_reconcile::autoscale::InstanceCapacity;
use thiserror::Error;

/// The bus's event envelope: EventBridge's own shape.
pub type BusEvent = aws_lambda_events::event::eventbridge::EventBridgeEvent<serde_json::Value>;

// ---------------------------------------------------------------- Store

/// Why a store call failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The write's condition did not hold: re-read and decide again. Not an error to report.
    #[error("conditional check failed")]
    Conflict,
    /// Throttled (ProvisionedThroughputExceeded, ThrottlingException, RequestLimitExceeded).
    #[error("throttled: {0}")]
    Throttled(String),
    /// A 5xx, a timeout, a dropped connection: the call may or may not have happened.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A request the store refuses (validation, access denied): retrying will not help.
    #[error("store rejected the request: {0}")]
    Rejected(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Throttled(_) | StoreError::Unavailable(_))
    }
}

/// The table. Reads on the base table are strongly consistent; the instance index is
/// eventually consistent (like a DynamoDB GSI). Writes change one item atomically and
/// show up on the change stream in order per key.
pub trait Store: Send + Sync {
    /// Every item of partition `pk` whose sort key starts with `sk_prefix` (all when
    /// None), in sort-key order, read consistently. Pages are followed to the end.
    fn query(
        &self,
        pk: &str,
        sk_prefix: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Item>, StoreError>> + Send;

    /// Writes `item` whole if `expect` holds; `Conflict` otherwise, and nothing changes.
    fn put(
        &self,
        item: Item,
        expect: Expect,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes the item if `expect` holds; deleting an absent item under `Expect::Any` succeeds.
    fn delete(
        &self,
        key: &ItemKey,
        expect: Expect,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every observed item whose `instanceId` is `instance_id`, through the sparse
    /// index: usually one, but anyone who can write the table can write another, so a
    /// caller considers each and trusts none for that alone. At most
    /// [`MAX_INSTANCE_MATCHES`]. Eventually consistent: a just-written id may not be
    /// found yet.
    fn find_by_instance(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Vec<ItemKey>, StoreError>> + Send;

    /// Performs every write or none (DynamoDB TransactWriteItems): if any condition
    /// fails, `Conflict` and nothing changes. At most [`MAX_TRANSACT_WRITES`] writes,
    /// no two on the same item, or `Rejected` (as DynamoDB's ValidationException). A
    /// conflict with another transaction in flight on one of the items
    /// (TransactionConflict) is also `Conflict`: re-read and decide again. Each write
    /// shows up on the stream as its own record.
    fn transact(&self, writes: Vec<Write>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One page of a Scan: items whose sort key starts with `sk_prefix`, across
    /// partitions, from after `start` (None: from the beginning). `next` is where the
    /// following page starts, None after the last. A page is bounded (DynamoDB: 1 MB);
    /// items of one partition come together, in sort-key order, but a partition may
    /// straddle two pages. For the drift sweep only, never on a per-event path.
    fn scan_page(
        &self,
        sk_prefix: &str,
        start: Option<ItemKey>,
    ) -> impl Future<Output = Result<ScanPage, StoreError>> + Send;

    /// Every page of a Scan, collected: for tests and tools, not for a function whose
    /// memory must stay bounded.
    fn scan(&self, sk_prefix: &str) -> impl Future<Output = Result<Vec<Item>, StoreError>> + Send {
        async move {
            let mut items = Vec::new();
            let mut start = None;
            loop {
                let page = self.scan_page(sk_prefix, start).await?;
                items.extend(page.items);
                match page.next {
                    Some(next) => start = Some(next),
                    None => return Ok(items),
                }
            }
        }
    }
}

/// One page of a Scan ([`Store::scan_page`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanPage {
    pub items: Vec<Item>,
    pub next: Option<ItemKey>,
}

/// The most instance-index matches a lookup returns: more than one is already someone
/// else's doing.
pub const MAX_INSTANCE_MATCHES: usize = 16;

/// DynamoDB's limit on the writes of one TransactWriteItems call.
pub const MAX_TRANSACT_WRITES: usize = 100;

/// One write of a transaction ([`Store::transact`]), with its condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    Put {
        item: Item,
        expect: Expect,
    },
    Delete {
        key: ItemKey,
        expect: Expect,
    },
    /// Writes nothing; the transaction fails unless `expect` holds for the item
    /// (DynamoDB's ConditionCheck): how a plan is fenced on an item it read but does
    /// not write, such as the object's desired item.
    Check {
        key: ItemKey,
        expect: Expect,
    },
}

impl Write {
    /// The key of the item written; None for an item without string keys.
    pub fn key(&self) -> Option<ItemKey> {
        match self {
            Write::Put { item, .. } => capstan_model::item::item_key(item),
            Write::Delete { key, .. } | Write::Check { key, .. } => Some(key.clone()),
        }
    }
}

/// What happened to one item, as DynamoDB Streams reports it (NEW_AND_OLD_IMAGES).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Modify,
    Remove,
}

/// One change-stream record.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamRecord {
    /// Increases with every record (per shard; the in-memory table has one shard).
    pub sequence: u64,
    pub kind: ChangeKind,
    pub key: ItemKey,
    pub old_image: Option<Item>,
    pub new_image: Option<Item>,
}

// ---------------------------------------------------------------- Compute

/// An instance as EC2 describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub instance_id: String,
    pub state: InstanceState,
    pub instance_type: String,
    pub subnet_id: String,
    pub availability_zone: String,
    pub private_ip: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub launch_time: Timestamp,
    /// The ClientToken it was launched with, where EC2 reports it (DescribeInstances
    /// does: empty for a launch without one; moto does not: None). Capstan launches
    /// with the Machine's uid, so a token that differs from the machine-uid tag says
    /// someone else launched the instance (or tagged it by hand).
    pub client_token: Option<String>,
    /// Its AmiLaunchIndex: its place, from 0, among the instances one RunInstances
    /// started (0 for a launch of one). A batched launch's member *k* owns index *k*.
    /// None where the adapter was not told (an instance EC2 did not describe with it).
    pub launch_index: Option<u32>,
}

/// Why an EC2 call failed, classified by error code (never by message).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ComputeError {
    /// RequestLimitExceeded and friends: retry with backoff.
    #[error("{code}: throttled")]
    Throttled { code: String },
    /// InsufficientInstanceCapacity, MaxSpotInstanceCountExceeded, VcpuLimitExceeded,
    /// Unsupported, InsufficientFreeAddressesInSubnet: this offering cannot be had now;
    /// another instance type or subnet may work.
    #[error("{code}: {message}")]
    Unfulfillable { code: String, message: String },
    /// InvalidAMIID.NotFound, InvalidSubnetID.NotFound, InvalidParameterValue,
    /// UnauthorizedOperation…: the request is wrong; retrying will not fix it.
    #[error("{code}: {message}")]
    Invalid { code: String, message: String },
    /// A 5xx or a timeout: the call may have happened.
    #[error("EC2 unavailable: {0}")]
    Unavailable(String),
}

impl ComputeError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ComputeError::Throttled { .. } | ComputeError::Unavailable(_)
        )
    }

    pub fn code(&self) -> &str {
        match self {
            ComputeError::Throttled { code } => code,
            ComputeError::Unfulfillable { code, .. } | ComputeError::Invalid { code, .. } => code,
            ComputeError::Unavailable(_) => "ServiceUnavailable",
        }
    }
}

/// EC2.
pub trait Compute: Send + Sync {
    /// Launches a set of instances, one result per request in the same order. Requests
    /// are independent: one failing does not fail the others. Launches are taken as a
    /// set so identical ones can later share a call.
    fn run_instances(
        &self,
        launches: Vec<LaunchRequest>,
    ) -> impl Future<Output = Vec<Result<Instance, ComputeError>>> + Send;

    /// Launches up to `count` identical instances in one call (RunInstances with
    /// MinCount = 1 and MaxCount = `count`), each tagged with `launch.tags`.
    /// Idempotent by `launch.client_token`, as EC2 is: the same token with the same
    /// parameters (`count` included) returns the first call's instances and starts
    /// none; with other parameters it is `Invalid { code:
    /// "IdempotentParameterMismatch" }`. EC2 may start fewer than `count` (capacity,
    /// addresses), never none without an error; every instance reports its
    /// `launch_index`. An error means nothing was started (or, `Unavailable`, that the
    /// call may have happened).
    fn run_batch(
        &self,
        launch: LaunchRequest,
        count: u32,
    ) -> impl Future<Output = Result<Vec<Instance>, ComputeError>> + Send;

    /// Terminates instances; returns each one's state after the call. Terminating an
    /// already terminated instance succeeds. An adapter refuses instances that do not
    /// carry `tag_guard` (key, value) with `Invalid { code: "UnauthorizedOperation" }`,
    /// as the IAM policy does in AWS.
    fn terminate_instances(
        &self,
        instance_ids: Vec<String>,
        tag_guard: (String, String),
    ) -> impl Future<Output = Result<Vec<(String, InstanceState)>, ComputeError>> + Send;

    /// Adds or overwrites `tags` on instances (CreateTags; tags not named are left as
    /// they are). Retrying is safe: applying the same tags twice changes nothing. As
    /// with termination, an adapter refuses instances that do not carry `tag_guard`
    /// with `Invalid { code: "UnauthorizedOperation" }`, and never lets `tags` change
    /// the guard tag itself. An unknown instance is `Invalid { code:
    /// "InvalidInstanceID.NotFound" }`. Required of every adapter and decorator: a
    /// default would let a wrapper silently drop the call.
    fn create_tags(
        &self,
        instance_ids: Vec<String>,
        tags: BTreeMap<String, String>,
        tag_guard: (String, String),
    ) -> impl Future<Output = Result<(), ComputeError>> + Send;

    /// Every instance carrying all of `tags`, following pages. For the drift sweep and
    /// for crash recovery (finding a launch whose id was never recorded), never per event.
    fn describe_instances(
        &self,
        tags: Vec<(String, String)>,
    ) -> impl Future<Output = Result<Vec<Instance>, ComputeError>> + Send;

    /// What each of `instance_types` offers (DescribeInstanceTypes): vCPUs, memory, and
    /// the pods its network allows ([`eni_max_pods`]), in no particular order. As EC2
    /// does, a type it does not offer fails the whole call with `Invalid { code:
    /// "InvalidInstanceType" }`: a caller asks type by type to learn which. For the
    /// autoscaler, which caches the answers in the table; never per event.
    fn describe_instance_types(
        &self,
        instance_types: Vec<String>,
    ) -> impl Future<Output = Result<Vec<(String, InstanceCapacity)>, ComputeError>> + Send;
}

/// The pods an instance can run with the VPC CNI without prefix delegation, as EKS's
/// `eni-max-pods.txt` computes it: one IP per pod on every ENI but its primary address,
/// plus 2 for the host-network pods (aws-node, kube-proxy).
/// <https://github.com/awslabs/amazon-eks-ami/blob/main/templates/shared/runtime/eni-max-pods.txt>
pub fn eni_max_pods(network_interfaces: u32, ipv4_per_interface: u32) -> u32 {
    network_interfaces
        .saturating_mul(ipv4_per_interface.saturating_sub(1))
        .saturating_add(2)
}

// ---------------------------------------------------------------- Bus

/// Why publishing failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BusError {
    #[error("throttled: {0}")]
    Throttled(String),
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// EventBridge (publishing) and the work queues (re-queueing with a delay).
pub trait Bus: Send + Sync {
    /// Publishes events to the `capstan` bus; rules route each to the queues that want it.
    /// Delivery is at least once.
    fn put_events(
        &self,
        events: Vec<BusEvent>,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Puts `event` back on `queue` to be delivered again after `delay` (SQS DelaySeconds).
    fn requeue(
        &self,
        queue: &str,
        event: BusEvent,
        delay: Duration,
    ) -> impl Future<Output = Result<(), BusError>> + Send;
}

// ---------------------------------------------------------------- Clock, Entropy

/// Wall time, or virtual time in tests and simulation. Nothing else reads the clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// Fresh randomness for uids and generated names, injectable so a simulation replays.
pub trait Entropy: Send + Sync {
    fn next_u128(&self) -> u128;
}

// ---------------------------------------------------------------- Workload cluster

mod workload;
pub use workload::*;
