//! The endpoint runtime (`capstan run --endpoint URL`): the one driver
//! (`capstan_runtime::driver`) over the real SDK adapters, against an AWS-compatible
//! endpoint such as moto_server, with the real table, stream, bus, rules and queues of
//! the server it points at. The platform plays Lambda's triggers:
//! 1. **relay EC2's state changes.** moto emits none, so the runtime describes the
//!    instances carrying this installation's tag (one paginated DescribeInstances per
//!    `relay_every`, never per Machine) and publishes each change it sees onto the
//!    default bus as an "EC2 Instance State-change Notification" in AWS's shape, where
//!    the instance-events rule picks it up as it would in AWS. It logs that it does so.
//! 2. **read the table's stream** (DescribeStream / GetShardIterator / GetRecords — an
//!    event source mapping in moto would need Docker) into the DynamoDB stream event
//!    Lambda would deliver; on a reported failure it reads again from the failed
//!    record, as Lambda's checkpointing does.
//! 3. **play the reconcile dispatcher**: receive from the one work queue (ReceiveMessage,
//!    up to 10), split each batch by the reconciler each message names with the
//!    dispatcher's own `capstan_runtime::dispatch::group` (moto cannot run Lambda
//!    functions, so the dispatch happens in process), hand each reconciler its messages
//!    as the SQS event the dispatcher would invoke it with, and delete only the messages
//!    not reported failed. An invocation that outlives the function timeout is abandoned
//!    and deletes nothing: its messages come back after the visibility timeout; so do
//!    messages that name no reconciler, which reach the dead-letter queue after
//!    `MAX_RECEIVE_COUNT` receives, as the dispatcher's failures do on AWS.
//!
//! The driver runs the drift sweep every `sweep_every` with a scheduled event.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, Record, ShardIteratorType};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use capstan_aws::bus::EventBridgeBus;
use capstan_aws::clients::{Clients, Names};
use capstan_aws::compute::Ec2Compute;
use capstan_aws::error::classify;
use capstan_aws::provision::{self, DEFAULT_BUS, ProvisionError, Provisioned, QueueOptions};
use capstan_aws::store::DynamoStore;
use capstan_model::labels::TAG_INSTALLATION;
use capstan_model::{InstanceState, Timestamp};
use capstan_reconcile::Tree;
use capstan_runtime::HandlerError;
use capstan_runtime::dispatch;
use capstan_runtime::driver::{
    Driver, DriverConfig, DriverStats, Invocation, Platform, PlatformError, Schedule,
};
use capstan_runtime::events::envelope;
use capstan_runtime::functions::{Functions, MetricsSink};
use capstan_runtime::ports::{Bus, Compute, Instance, Store};
use capstan_runtime::routes::{EC2_SOURCE, EC2_STATE_CHANGE, Reconciler};
use capstan_runtime::system::{OsEntropy, SystemClock};
use capstan_runtime::table;
use serde_json::{Map, Value, json};
use thiserror::Error;
use tracing::{debug, info, warn};

/// How the endpoint runtime behaves.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    pub names: Names,
    pub queues: QueueOptions,
    /// Messages a reconciler takes from its queue at once (the Lambda batch size).
    pub batch_size: i32,
    /// Records the stream router takes at once.
    pub stream_batch_size: i32,
    /// How often the drift sweep runs (5 minutes on AWS).
    pub sweep_every: Duration,
    /// How often EC2 is described to relay state changes.
    pub relay_every: Duration,
    /// How long to wait when a round found nothing to do.
    pub idle_sleep: Duration,
    /// An invocation running longer is abandoned, like a Lambda timeout.
    pub function_timeout: Duration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            names: Names::default(),
            queues: QueueOptions::default(),
            batch_size: 10,
            stream_batch_size: 100,
            sweep_every: Duration::from_secs(300),
            relay_every: Duration::from_secs(1),
            idle_sleep: Duration::from_millis(200),
            function_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Error)]
pub enum EndpointError {
    #[error("provisioning: {0}")]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Handler(#[from] HandlerError),
}

fn call_error(action: impl Into<String>, detail: impl std::fmt::Display) -> PlatformError {
    PlatformError::new(action, detail)
}

/// What the endpoint holds now: every cluster's tree, the messages waiting on the
/// queues, the installation's instances.
#[derive(Clone, Debug)]
pub struct Observation {
    pub trees: Vec<Tree>,
    pub queued: u64,
    pub instances: Vec<Instance>,
}

impl Observation {
    /// Everything that keeps the table from having converged (as `capstan up` judges).
    pub fn not_converged(&self) -> Vec<String> {
        table::not_converged(&self.trees, self.queued)
    }

    pub fn live_instances(&self) -> Vec<&Instance> {
        self.instances
            .iter()
            .filter(|i| i.state.is_live())
            .collect()
    }
}

/// How a bounded run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointOutcome {
    Done,
    TimedOut(Vec<String>),
}

/// What the relay last announced about one instance.
struct Relayed {
    state: InstanceState,
    /// When to announce the same state once more (None once done): see `relay`.
    again_at: Option<Instant>,
}

/// How long after announcing a state the relay announces it once more.
const RELAY_SETTLE: Duration = Duration::from_secs(2);

struct Shard {
    iterator: Option<String>,
    last_sequence: Option<String>,
}

/// The batch handed to the router, kept for the checkpoint.
struct InFlight {
    shard_id: String,
    records: Vec<Record>,
    next_iterator: Option<String>,
}

/// Lambda's triggers over the endpoint: the table's stream, the queues, and EC2's
/// state changes relayed from DescribeInstances.
pub struct EndpointPlatform {
    pub clients: Clients,
    pub provisioned: Provisioned,
    installation: String,
    stream_batch_size: i32,
    relay_every: Duration,
    /// Describes instances for the relay, never through a test's fault.
    ec2: Ec2Compute,
    default_bus: EventBridgeBus,
    shards: BTreeMap<String, Shard>,
    next_shard_scan: Instant,
    in_flight: Option<InFlight>,
    known_states: HashMap<String, Relayed>,
    next_relay: Instant,
    /// Messages received from the work queue for a reconciler not yet served this
    /// round, unwrapped (still hidden by their visibility timeout until deleted).
    waiting: BTreeMap<Reconciler, VecDeque<SqsMessage>>,
}

impl Platform for EndpointPlatform {
    async fn relay(&mut self) -> Result<usize, PlatformError> {
        if Instant::now() < self.next_relay {
            return Ok(0);
        }
        let n = self.relay_state_changes().await?;
        self.next_relay = Instant::now() + self.relay_every;
        Ok(n)
    }

    async fn stream_batch(&mut self, max: usize) -> Result<Option<DynamoDbEvent>, PlatformError> {
        let limit = i32::try_from(max)
            .unwrap_or(i32::MAX)
            .min(self.stream_batch_size);
        self.read_stream(limit).await
    }

    async fn checkpoint(
        &mut self,
        _batch: &DynamoDbEvent,
        response: &DynamoDbEventResponse,
    ) -> Result<(), PlatformError> {
        let Some(done) = self.in_flight.take() else {
            return Ok(());
        };
        let failed = response
            .batch_item_failures
            .first()
            .and_then(|f| f.item_identifier.clone());
        let shard = self.shards.entry(done.shard_id).or_insert(Shard {
            iterator: None,
            last_sequence: None,
        });
        let sequence = |r: &Record| r.dynamodb.as_ref().and_then(|d| d.sequence_number.clone());
        match failed {
            // Lambda's checkpoint: everything before the failed record is done.
            Some(seq) => {
                warn!(step = "route", sequence = %seq, "stream batch reported failed; reading again from the failed record");
                let position = done
                    .records
                    .iter()
                    .position(|r| sequence(r).as_deref() == Some(seq.as_str()));
                if let Some(i) = position.filter(|i| *i > 0) {
                    shard.last_sequence = sequence(&done.records[i - 1]);
                }
                shard.iterator = None;
            }
            None => {
                shard.last_sequence = done.records.last().and_then(sequence);
                shard.iterator = done.next_iterator;
            }
        }
        Ok(())
    }

    async fn receive(&mut self, queue: Reconciler, max: usize) -> Result<SqsEvent, PlatformError> {
        if self.waiting.get(&queue).is_none_or(VecDeque::is_empty) {
            self.receive_work().await?;
        }
        let mut event = SqsEvent::default();
        if let Some(waiting) = self.waiting.get_mut(&queue) {
            let n = max.min(waiting.len());
            event.records = waiting.drain(..n).collect();
        }
        Ok(event)
    }

    async fn delete(
        &mut self,
        queue: Reconciler,
        handled: &[&SqsMessage],
    ) -> Result<(), PlatformError> {
        let entries: Vec<DeleteMessageBatchRequestEntry> = handled
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle.clone()?)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        self.clients
            .sqs
            .delete_message_batch()
            .queue_url(&self.provisioned.work.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                call_error(
                    format!("deleting {}'s messages", queue.name()),
                    classify(&e),
                )
            })?;
        debug!(
            function = queue.name(),
            deleted = handled.len(),
            "batch handled"
        );
        Ok(())
    }

    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

impl EndpointPlatform {
    /// One batch from the work queue, split by reconciler into `waiting` (what the
    /// reconcile dispatcher does with a batch on AWS).
    async fn receive_work(&mut self) -> Result<(), PlatformError> {
        let out = self
            .clients
            .sqs
            .receive_message()
            .queue_url(&self.provisioned.work.url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| call_error("receiving from the work queue", classify(&e)))?;
        let batch = sqs_event(
            &out.messages.unwrap_or_default(),
            &self.provisioned.work.arn,
            &self.clients.region,
        );
        let groups = dispatch::group(&batch);
        for (reconciler, event) in groups.by_reconciler {
            let waiting = self.waiting.entry(reconciler).or_default();
            for mut message in event.records {
                message.body = message.body.as_deref().map(moto_event_time);
                waiting.push_back(message);
            }
        }
        Ok(())
    }

    /// Messages received and waiting for their reconciler.
    fn waiting(&self) -> u64 {
        self.waiting.values().map(|w| w.len() as u64).sum()
    }

    /// Publishes the state changes EC2 would have announced since the last look.
    async fn relay_state_changes(&mut self) -> Result<usize, PlatformError> {
        let instances = self
            .ec2
            .describe_instances(vec![(
                TAG_INSTALLATION.to_string(),
                self.installation.clone(),
            )])
            .await
            .map_err(|e| call_error("describing instances", e))?;
        // EventBridge carries event times to the second, so a change is stamped with the
        // next whole second: it is then never older than a state recorded before we saw it.
        let now = Timestamp::now();
        let stamp = Timestamp::from_second(now.as_second() + 1).unwrap_or(now);
        let mut events = Vec::new();
        for instance in instances {
            let again = match self.known_states.get(&instance.instance_id) {
                Some(known) if known.state == instance.state => {
                    // moto makes instances `running` at once, often before the launch
                    // is recorded on the Machine, which then records `pending` as newer.
                    // One more announcement a moment later settles it (a duplicate is
                    // harmless: recording a state is idempotent).
                    match known.again_at {
                        Some(at) if Instant::now() >= at => true,
                        _ => continue,
                    }
                }
                _ => false,
            };
            if !again {
                info!(step = "relay", instance = %instance.instance_id, state = instance.state.as_str(), "relaying an EC2 state change (moto emits none)");
            }
            self.known_states.insert(
                instance.instance_id.clone(),
                Relayed {
                    state: instance.state,
                    again_at: (!again).then(|| Instant::now() + RELAY_SETTLE),
                },
            );
            events.push(state_change_event(&self.clients.region, &instance, stamp));
        }
        let n = events.len();
        if n > 0 {
            self.default_bus
                .put_events(events)
                .await
                .map_err(|e| call_error("relaying state changes", e))?;
        }
        Ok(n)
    }

    /// The first shard with new records, as a stream event; the batch is kept for the
    /// checkpoint.
    async fn read_stream(&mut self, limit: i32) -> Result<Option<DynamoDbEvent>, PlatformError> {
        let streams = &self.clients.streams;
        let arn = self.provisioned.stream_arn.clone();
        if self.shards.is_empty() || Instant::now() >= self.next_shard_scan {
            let out = streams
                .describe_stream()
                .stream_arn(&arn)
                .send()
                .await
                .map_err(|e| call_error("describing the stream", classify(&e)))?;
            for shard in out
                .stream_description
                .map(|d| d.shards.unwrap_or_default())
                .unwrap_or_default()
            {
                let Some(id) = shard.shard_id else { continue };
                self.shards.entry(id).or_insert(Shard {
                    iterator: None,
                    last_sequence: None,
                });
            }
            self.next_shard_scan = Instant::now() + Duration::from_secs(10);
        }
        let shard_ids: Vec<String> = self.shards.keys().cloned().collect();
        for shard_id in shard_ids {
            let iterator = match self.shards.get(&shard_id).and_then(|s| s.iterator.clone()) {
                Some(it) => it,
                None => {
                    let last = self
                        .shards
                        .get(&shard_id)
                        .and_then(|s| s.last_sequence.clone());
                    let mut request = streams
                        .get_shard_iterator()
                        .stream_arn(&arn)
                        .shard_id(&shard_id);
                    request = match last {
                        Some(seq) => request
                            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                            .sequence_number(seq),
                        None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
                    };
                    let out = request
                        .send()
                        .await
                        .map_err(|e| call_error("getting a shard iterator", classify(&e)))?;
                    match out.shard_iterator {
                        Some(it) => it,
                        None => continue,
                    }
                }
            };
            let out = match streams
                .get_records()
                .shard_iterator(&iterator)
                .limit(limit.max(1))
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    let failure = classify(&e);
                    if failure.code == "ExpiredIteratorException"
                        || failure.code == "TrimmedDataAccessException"
                    {
                        if let Some(s) = self.shards.get_mut(&shard_id) {
                            s.iterator = None;
                        }
                        continue;
                    }
                    return Err(call_error("reading the stream", failure));
                }
            };
            let records = out.records.unwrap_or_default();
            if records.is_empty() {
                if let Some(s) = self.shards.get_mut(&shard_id) {
                    s.iterator = out.next_shard_iterator;
                }
                continue;
            }
            let event = stream_event(&records, &arn, &self.clients.region)?;
            self.in_flight = Some(InFlight {
                shard_id,
                records,
                next_iterator: out.next_shard_iterator,
            });
            return Ok(Some(event));
        }
        Ok(None)
    }
}

/// Invocations one at a time, each abandoned at the function timeout.
pub struct TimedSchedule {
    pub batch_size: usize,
    pub function_timeout: Duration,
}

impl Schedule for TimedSchedule {
    fn batch_size(&mut self, _queue: Reconciler) -> usize {
        self.batch_size
    }

    async fn run<'a>(
        &'a mut self,
        invocations: Vec<Invocation<'a>>,
    ) -> Vec<Option<SqsBatchResponse>> {
        let mut answers = Vec::with_capacity(invocations.len());
        for invocation in invocations {
            answers.push(
                tokio::time::timeout(self.function_timeout, invocation.future)
                    .await
                    .ok(),
            );
        }
        answers
    }
}

/// The endpoint runtime, generic over Compute so a test can put a fault in front of EC2.
pub struct EndpointRuntime<C: Compute = Ec2Compute> {
    pub config: EndpointConfig,
    pub driver: Driver<EndpointPlatform, DynamoStore, C, EventBridgeBus, TimedSchedule>,
}

impl EndpointRuntime<Ec2Compute> {
    /// Provisions what is missing and builds the runtime over the real adapters.
    pub async fn start(clients: Clients, config: EndpointConfig) -> Result<Self, EndpointError> {
        let compute = Ec2Compute::new(clients.ec2.clone());
        EndpointRuntime::start_with(clients, config, compute).await
    }
}

impl<C: Compute> EndpointRuntime<C> {
    /// As `start`, with `compute` in front of EC2 for the reconcilers.
    pub async fn start_with(
        clients: Clients,
        config: EndpointConfig,
        compute: C,
    ) -> Result<Self, EndpointError> {
        let provisioned = provision::ensure(&clients, &config.names, &config.queues).await?;
        let bus = EventBridgeBus::new(
            clients.eventbridge.clone(),
            clients.sqs.clone(),
            config.names.clone(),
        );
        let functions = Functions::new(
            DynamoStore::new(clients.dynamodb.clone(), &config.names.table),
            compute,
            bus.clone(),
            Arc::new(SystemClock),
            Arc::new(OsEntropy),
            &config.names.installation,
            MetricsSink::Log,
        );
        info!(
            step = "start",
            table = %config.names.table,
            installation = %config.names.installation,
            "endpoint runtime started; EC2 state changes are relayed from DescribeInstances onto the default bus (moto emits none)"
        );
        let now = Instant::now();
        let platform = EndpointPlatform {
            ec2: Ec2Compute::new(clients.ec2.clone()),
            default_bus: bus.on_bus(DEFAULT_BUS),
            installation: config.names.installation.clone(),
            stream_batch_size: config.stream_batch_size.max(1),
            relay_every: config.relay_every,
            clients,
            provisioned,
            shards: BTreeMap::new(),
            next_shard_scan: now,
            in_flight: None,
            known_states: HashMap::new(),
            next_relay: now,
            waiting: BTreeMap::new(),
        };
        let schedule = TimedSchedule {
            batch_size: usize::try_from(config.batch_size).unwrap_or(10),
            function_timeout: config.function_timeout,
        };
        let driver = Driver::new(
            platform,
            functions,
            schedule,
            DriverConfig {
                sweep_every: config.sweep_every,
                stream_batch_size: usize::try_from(config.stream_batch_size).unwrap_or(100),
                ..DriverConfig::default()
            },
        );
        Ok(EndpointRuntime { config, driver })
    }

    pub fn clients(&self) -> &Clients {
        &self.driver.platform.clients
    }

    pub fn provisioned(&self) -> &Provisioned {
        &self.driver.platform.provisioned
    }

    pub fn functions(&self) -> &Functions<DynamoStore, C, EventBridgeBus> {
        &self.driver.functions
    }

    pub fn stats(&self) -> &DriverStats {
        &self.driver.stats
    }

    /// One round of the driver. True if anything happened.
    pub async fn step(&mut self) -> Result<bool, EndpointError> {
        // A failed sweep is logged by the function; the next one repairs what it missed.
        Ok(self.driver.step().await?.worked())
    }

    /// Runs the drift sweep now (it also runs every `sweep_every`).
    pub async fn sweep(&mut self) {
        let _ = self.driver.sweep().await;
    }

    /// Runs until `done` finds nothing wrong after an idle round, or `timeout` passes.
    pub async fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Observation) -> Option<Vec<String>>,
    ) -> Result<EndpointOutcome, EndpointError> {
        let deadline = Instant::now() + timeout;
        loop {
            let worked = self.step().await?;
            if worked && Instant::now() < deadline {
                continue;
            }
            let observation = self.observe().await?;
            let Some(problems) = done(&observation) else {
                return Ok(EndpointOutcome::Done);
            };
            if Instant::now() >= deadline {
                return Ok(EndpointOutcome::TimedOut(problems));
            }
            tokio::time::sleep(self.config.idle_sleep).await;
        }
    }

    /// Runs until the process is stopped.
    pub async fn run_forever(&mut self) -> Result<(), EndpointError> {
        loop {
            if !self.step().await? {
                tokio::time::sleep(self.config.idle_sleep).await;
            }
        }
    }

    /// What the endpoint holds now.
    pub async fn observe(&self) -> Result<Observation, EndpointError> {
        let items = self
            .driver
            .functions
            .control_plane
            .store
            .inner
            .scan("")
            .await
            .map_err(HandlerError::from)?;
        let trees = table::trees_by_partition(items).into_values().collect();
        let clients = self.clients();
        // Received messages still waiting for their reconciler are work too.
        let mut queued = self.driver.platform.waiting();
        let out = clients
            .sqs
            .get_queue_attributes()
            .queue_url(&self.provisioned().work.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| call_error("reading queue depth", classify(&e)))?;
        queued += out
            .attributes
            .and_then(|a| {
                a.get(&QueueAttributeName::ApproximateNumberOfMessages)
                    .cloned()
            })
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let instances = self
            .driver
            .platform
            .ec2
            .describe_instances(vec![(
                TAG_INSTALLATION.to_string(),
                self.config.names.installation.clone(),
            )])
            .await
            .map_err(HandlerError::from)?;
        Ok(Observation {
            trees,
            queued,
            instances,
        })
    }
}

/// EC2's state-change notification for `instance`, as AWS publishes it.
pub fn state_change_event(
    region: &str,
    instance: &Instance,
    now: Timestamp,
) -> capstan_runtime::BusEvent {
    let mut event = envelope(
        EC2_SOURCE,
        EC2_STATE_CHANGE,
        json!({ "instance-id": instance.instance_id, "state": instance.state.as_str() }),
        now,
    );
    event.region = Some(region.to_string());
    event.resources = Some(vec![format!(
        "arn:aws:ec2:{region}:123456789012:instance/{}",
        instance.instance_id
    )]);
    event
}

/// The DynamoDB stream event Lambda would deliver for `records`.
pub fn stream_event(
    records: &[Record],
    stream_arn: &str,
    region: &str,
) -> Result<DynamoDbEvent, PlatformError> {
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            let change = r.dynamodb.as_ref();
            let image = |m: Option<&HashMap<String, StreamValue>>| m.map(stream_item_to_wire);
            let mut dynamodb = Map::new();
            if let Some(t) = change.and_then(|c| c.approximate_creation_date_time()) {
                dynamodb.insert("ApproximateCreationDateTime".into(), json!(t.secs()));
            }
            if let Some(keys) = image(change.and_then(|c| c.keys.as_ref())) {
                dynamodb.insert("Keys".into(), keys);
            }
            if let Some(new) = image(change.and_then(|c| c.new_image.as_ref())) {
                dynamodb.insert("NewImage".into(), new);
            }
            if let Some(old) = image(change.and_then(|c| c.old_image.as_ref())) {
                dynamodb.insert("OldImage".into(), old);
            }
            if let Some(seq) = change.and_then(|c| c.sequence_number()) {
                dynamodb.insert("SequenceNumber".into(), json!(seq));
            }
            dynamodb.insert(
                "SizeBytes".into(),
                json!(change.and_then(|c| c.size_bytes()).unwrap_or(0)),
            );
            dynamodb.insert("StreamViewType".into(), json!("NEW_AND_OLD_IMAGES"));
            json!({
                "eventID": r.event_id(),
                "eventName": r.event_name().map(|n| n.as_str()),
                "eventVersion": r.event_version(),
                "eventSource": "aws:dynamodb",
                "awsRegion": r.aws_region().unwrap_or(region),
                "eventSourceARN": stream_arn,
                "dynamodb": Value::Object(dynamodb),
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records }))
        .map_err(|e| call_error("building the stream event", e))
}

fn stream_item_to_wire(item: &HashMap<String, StreamValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), stream_value_to_wire(v)))
            .collect(),
    )
}

fn stream_value_to_wire(value: &StreamValue) -> Value {
    let b64 = |b: &aws_smithy_types::Blob| aws_smithy_types::base64::encode(b.as_ref());
    match value {
        StreamValue::S(s) => json!({ "S": s }),
        StreamValue::N(n) => json!({ "N": n }),
        StreamValue::Bool(b) => json!({ "BOOL": b }),
        StreamValue::Null(_) => json!({ "NULL": true }),
        StreamValue::L(l) => json!({ "L": l.iter().map(stream_value_to_wire).collect::<Vec<_>>() }),
        StreamValue::M(m) => json!({ "M": stream_item_to_wire(m) }),
        StreamValue::Ss(ss) => json!({ "SS": ss }),
        StreamValue::Ns(ns) => json!({ "NS": ns }),
        StreamValue::B(b) => json!({ "B": b64(b) }),
        StreamValue::Bs(bs) => json!({ "BS": bs.iter().map(b64).collect::<Vec<_>>() }),
        _ => json!({ "NULL": true }),
    }
}

/// moto's one difference from EventBridge in a wrapped message: its
/// `<aws.events.event.json>` carries the event's `time` as epoch seconds (EventBridge
/// writes RFC 3339, which the event type reads) and an extra `ingestion-time`. Rewrites
/// the time as EventBridge would; any other body is returned as it is.
pub fn moto_event_time(body: &str) -> String {
    let Ok(mut event) = serde_json::from_str::<Value>(body) else {
        return body.to_string();
    };
    let Some(seconds) = event.get("time").and_then(Value::as_f64) else {
        return body.to_string();
    };
    match Timestamp::from_second(seconds.floor() as i64) {
        Ok(t) => {
            event["time"] = json!(t.to_string());
            event.to_string()
        }
        Err(_) => body.to_string(),
    }
}

/// The SQS event Lambda would deliver for `messages`.
pub fn sqs_event(
    messages: &[aws_sdk_sqs::types::Message],
    queue_arn: &str,
    region: &str,
) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut message = SqsMessage::default();
            message.message_id = m.message_id.clone();
            message.receipt_handle = m.receipt_handle.clone();
            message.body = m.body.clone();
            message.md5_of_body = m.md5_of_body.clone();
            message.attributes = m
                .attributes
                .as_ref()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            message.event_source = Some("aws:sqs".to_string());
            message.event_source_arn = Some(queue_arn.to_string());
            message.aws_region = Some(region.to_string());
            message
        })
        .collect();
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn motos_epoch_time_reads_as_eventbridges_rfc_3339_and_other_bodies_pass_through() {
        let moto = r#"{"source":"capstan","detail-type":"Resync","time":1767225600.25,"ingestion-time":1767225600.3,"detail":{}}"#;
        let fixed: Value = serde_json::from_str(&moto_event_time(moto)).expect("JSON");
        assert_eq!(fixed["time"], "2026-01-01T00:00:00Z");
        let event: capstan_runtime::BusEvent = serde_json::from_value(fixed).expect("an event");
        assert_eq!(event.source, "capstan");
        let aws = r#"{"source":"capstan","time":"2026-01-01T00:00:00Z","detail":{}}"#;
        assert_eq!(moto_event_time(aws), aws);
        assert_eq!(moto_event_time("not json"), "not json");
    }
}
