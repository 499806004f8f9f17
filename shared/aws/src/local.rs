//! The local runtime against an AWS-compatible endpoint (`capstan run --endpoint URL`):
//! the same handlers as the Lambda functions, driven the way Lambda drives them, over
//! the real SDK adapters — and the real table, stream, bus, rules and queues of the
//! server it points at.
//!
//! One loop, in the spirit of `capstan_sim::Embedded`:
//! 1. **relay EC2's state changes.** moto emits none, so the runtime describes the
//!    instances carrying this installation's tag (one paginated DescribeInstances per
//!    `relay_every`, never per Machine) and publishes each change it sees onto the
//!    default bus as an "EC2 Instance State-change Notification" in AWS's shape, where
//!    the instance-events rule picks it up as it would in AWS. It logs that it does so.
//! 2. **read the table's stream** (DescribeStream / GetShardIterator / GetRecords — an
//!    event source mapping in moto would need Docker), build the DynamoDB stream event
//!    Lambda would deliver, and hand it to the stream router; on a reported failure it
//!    reads again from the failed record, as Lambda's checkpointing does.
//! 3. **drain each reconciler's queue**: ReceiveMessage (up to the batch size), build
//!    the SQS event Lambda would deliver, hand it to the reconciler, and delete only the
//!    messages not reported failed. An invocation that outlives the function timeout is
//!    abandoned and deletes nothing: its messages come back after the visibility timeout.
//! 4. **run the drift sweep** every `sweep_every`, with a scheduled event.
//!
//! Every event goes through `Functions`, the code the Lambda binaries run.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, Record, ShardIteratorType};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use capstan_model::labels::TAG_INSTALLATION;
use capstan_model::{InstanceState, Timestamp};
use capstan_reconcile::Tree;
use capstan_runtime::HandlerError;
use capstan_runtime::events::envelope;
use capstan_runtime::ports::{Bus, Compute, Instance, Store};
use capstan_runtime::routes::{EC2_SOURCE, EC2_STATE_CHANGE, Reconciler};
use capstan_runtime::system::{OsEntropy, SystemClock};
use serde_json::{Map, Value, json};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::bus::EventBridgeBus;
use crate::clients::{Clients, Names};
use crate::compute::Ec2Compute;
use crate::error::classify;
use crate::lambda::{Functions, MetricsSink};
use crate::provision::{self, DEFAULT_BUS, ProvisionError, Provisioned, QueueOptions};
use crate::store::DynamoStore;

/// How the local runtime behaves.
#[derive(Clone, Debug)]
pub struct LocalConfig {
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

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
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
pub enum LocalError {
    #[error("provisioning: {0}")]
    Provision(#[from] ProvisionError),
    #[error("{action}: {detail}")]
    Call { action: String, detail: String },
    #[error(transparent)]
    Handler(#[from] HandlerError),
}

fn call_error(action: impl Into<String>, detail: impl std::fmt::Display) -> LocalError {
    LocalError::Call {
        action: action.into(),
        detail: detail.to_string(),
    }
}

/// Counters a person (or a test) may want after a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalStats {
    pub rounds: u64,
    pub stream_records: u64,
    pub batches: u64,
    pub messages: u64,
    pub failed_messages: u64,
    pub timed_out_invocations: u64,
    pub relayed_state_changes: u64,
    pub sweeps: u64,
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
        let mut problems: Vec<String> = self
            .trees
            .iter()
            .flat_map(capstan_runtime::describe::not_converged)
            .collect();
        if self.queued > 0 {
            problems.push(format!("{} events still queued", self.queued));
        }
        problems
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
pub enum LocalOutcome {
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

/// The local runtime, generic over Compute so a test can put a fault in front of EC2.
pub struct LocalRuntime<C: Compute = Ec2Compute> {
    pub clients: Clients,
    pub config: LocalConfig,
    pub functions: Functions<DynamoStore, C, EventBridgeBus>,
    pub provisioned: Provisioned,
    /// Describes instances for the relay and observations, never through a test's fault.
    ec2: Ec2Compute,
    default_bus: EventBridgeBus,
    shards: BTreeMap<String, Shard>,
    next_shard_scan: Instant,
    known_states: HashMap<String, Relayed>,
    next_relay: Instant,
    next_sweep: Instant,
    pub stats: LocalStats,
}

impl LocalRuntime<Ec2Compute> {
    /// Provisions what is missing and builds the runtime over the real adapters.
    pub async fn start(clients: Clients, config: LocalConfig) -> Result<Self, LocalError> {
        let compute = Ec2Compute::new(clients.ec2.clone());
        LocalRuntime::start_with(clients, config, compute).await
    }
}

impl<C: Compute> LocalRuntime<C> {
    /// As `start`, with `compute` in front of EC2 for the reconcilers.
    pub async fn start_with(
        clients: Clients,
        config: LocalConfig,
        compute: C,
    ) -> Result<Self, LocalError> {
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
            "local runtime started; EC2 state changes are relayed from DescribeInstances onto the default bus (moto emits none)"
        );
        let now = Instant::now();
        Ok(LocalRuntime {
            ec2: Ec2Compute::new(clients.ec2.clone()),
            default_bus: bus.on_bus(DEFAULT_BUS),
            clients,
            functions,
            provisioned,
            shards: BTreeMap::new(),
            next_shard_scan: now,
            known_states: HashMap::new(),
            next_relay: now,
            next_sweep: now + config.sweep_every,
            config,
            stats: LocalStats::default(),
        })
    }

    /// One round: relay EC2's changes, route the stream, give each reconciler one batch,
    /// sweep when due. True if anything happened.
    pub async fn step(&mut self) -> Result<bool, LocalError> {
        self.stats.rounds += 1;
        let mut worked = false;
        if Instant::now() >= self.next_relay {
            worked |= self.relay().await? > 0;
            self.next_relay = Instant::now() + self.config.relay_every;
        }
        worked |= self.read_stream().await? > 0;
        for reconciler in Reconciler::ALL {
            worked |= self.drain(reconciler).await? > 0;
        }
        if Instant::now() >= self.next_sweep {
            self.sweep().await;
            worked = true;
        }
        Ok(worked)
    }

    /// Runs the drift sweep now (it also runs every `sweep_every`).
    pub async fn sweep(&mut self) {
        self.stats.sweeps += 1;
        let event = envelope("aws.events", "Scheduled Event", json!({}), Timestamp::now());
        // A failed sweep is logged by the handler; the next one repairs what it missed.
        let _ = self.functions.schedule(&event).await;
        self.next_sweep = Instant::now() + self.config.sweep_every;
    }

    /// Runs until `done` finds nothing wrong after an idle round, or `timeout` passes.
    pub async fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Observation) -> Option<Vec<String>>,
    ) -> Result<LocalOutcome, LocalError> {
        let deadline = Instant::now() + timeout;
        loop {
            let worked = self.step().await?;
            if worked && Instant::now() < deadline {
                continue;
            }
            let observation = self.observe().await?;
            let Some(problems) = done(&observation) else {
                return Ok(LocalOutcome::Done);
            };
            if Instant::now() >= deadline {
                return Ok(LocalOutcome::TimedOut(problems));
            }
            tokio::time::sleep(self.config.idle_sleep).await;
        }
    }

    /// Runs until the process is stopped.
    pub async fn run_forever(&mut self) -> Result<(), LocalError> {
        loop {
            if !self.step().await? {
                tokio::time::sleep(self.config.idle_sleep).await;
            }
        }
    }

    /// What the endpoint holds now.
    pub async fn observe(&self) -> Result<Observation, LocalError> {
        let items = self
            .functions
            .control_plane
            .store
            .inner
            .scan("")
            .await
            .map_err(HandlerError::from)?;
        let mut by_partition: BTreeMap<String, Vec<capstan_model::Item>> = BTreeMap::new();
        for item in items {
            if let Some(key) = capstan_model::item::item_key(&item) {
                by_partition.entry(key.pk).or_default().push(item);
            }
        }
        let trees = by_partition
            .values()
            .map(|items| Tree::from_items(items))
            .collect();
        let mut queued = 0;
        for queue in self.provisioned.queues.values() {
            let out = self
                .clients
                .sqs
                .get_queue_attributes()
                .queue_url(&queue.url)
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
        }
        let instances = self
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

    /// Publishes the state changes EC2 would have announced since the last look.
    async fn relay(&mut self) -> Result<usize, LocalError> {
        let instances = self
            .ec2
            .describe_instances(vec![(
                TAG_INSTALLATION.to_string(),
                self.config.names.installation.clone(),
            )])
            .await
            .map_err(HandlerError::from)?;
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
                .map_err(HandlerError::from)?;
            self.stats.relayed_state_changes += n as u64;
        }
        Ok(n)
    }

    /// Routes whatever the stream has since the last read.
    async fn read_stream(&mut self) -> Result<usize, LocalError> {
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
        let mut routed = 0;
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
                .limit(self.config.stream_batch_size)
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
            let next = out.next_shard_iterator;
            if records.is_empty() {
                if let Some(s) = self.shards.get_mut(&shard_id) {
                    s.iterator = next;
                }
                continue;
            }
            let event = stream_event(&records, &arn, &self.clients.region)?;
            let response = self.functions.stream(event).await;
            self.stats.stream_records += records.len() as u64;
            let failed = response
                .batch_item_failures
                .first()
                .and_then(|f| f.item_identifier.clone());
            let shard = self.shards.entry(shard_id).or_insert(Shard {
                iterator: None,
                last_sequence: None,
            });
            match failed {
                // Lambda's checkpoint: everything before the failed record is done.
                Some(seq) => {
                    warn!(step = "route", sequence = %seq, "stream batch reported failed; reading again from the failed record");
                    let position = records.iter().position(|r| {
                        r.dynamodb.as_ref().and_then(|d| d.sequence_number()) == Some(seq.as_str())
                    });
                    shard.last_sequence = match position {
                        Some(0) | None => shard.last_sequence.clone(),
                        Some(i) => records[i - 1]
                            .dynamodb
                            .as_ref()
                            .and_then(|d| d.sequence_number.clone()),
                    };
                    shard.iterator = None;
                    routed += position.unwrap_or(0);
                }
                None => {
                    shard.last_sequence = records
                        .last()
                        .and_then(|r| r.dynamodb.as_ref())
                        .and_then(|d| d.sequence_number.clone());
                    shard.iterator = next;
                    routed += records.len();
                }
            }
        }
        Ok(routed)
    }

    /// Gives one batch from `reconciler`'s queue to its handler.
    async fn drain(&mut self, reconciler: Reconciler) -> Result<usize, LocalError> {
        let Some(queue) = self.provisioned.queues.get(&reconciler).cloned() else {
            return Ok(0);
        };
        let out = self
            .clients
            .sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(self.config.batch_size.clamp(1, 10))
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| {
                call_error(
                    format!("receiving from {}", reconciler.name()),
                    classify(&e),
                )
            })?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(0);
        }
        self.stats.batches += 1;
        self.stats.messages += messages.len() as u64;
        let event = sqs_event(&messages, &queue.arn, &self.clients.region);
        let response = match tokio::time::timeout(
            self.config.function_timeout,
            self.functions.queue(reconciler, event),
        )
        .await
        {
            Ok(response) => response,
            Err(_) => {
                self.stats.timed_out_invocations += 1;
                warn!(
                    function = reconciler.name(),
                    step = "invoke",
                    timeout_s = self.config.function_timeout.as_secs_f64(),
                    "invocation timed out; as in Lambda, nothing is deleted and the messages come back after the visibility timeout"
                );
                return Ok(messages.len());
            }
        };
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        self.stats.failed_messages += failed.len() as u64;
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|m| !failed.contains(&m.message_id().unwrap_or_default()))
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if !done.is_empty() {
            self.clients
                .sqs
                .delete_message_batch()
                .queue_url(&queue.url)
                .set_entries(Some(done))
                .send()
                .await
                .map_err(|e| {
                    call_error(format!("deleting from {}", reconciler.name()), classify(&e))
                })?;
        }
        debug!(
            function = reconciler.name(),
            messages = messages.len(),
            failed = failed.len(),
            "batch handled"
        );
        Ok(messages.len())
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
) -> Result<DynamoDbEvent, LocalError> {
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
