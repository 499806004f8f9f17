//! The in-memory platform the driver reads from: the table's stream, the queues and
//! EC2's events of the in-memory adapters, handed over in the shapes Lambda delivers
//! (`DynamoDbEvent`, `SqsEvent`), so the embedded runtime and the simulator run the
//! functions' own entry points.

use std::collections::VecDeque;
use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use capstan_model::Timestamp;
use capstan_model::item::{AttrValue, Item};
use capstan_runtime::driver::{Platform, PlatformError};
use capstan_runtime::ports::{BusEvent, ChangeKind, Clock, StreamRecord};
use capstan_runtime::routes::Reconciler;
use capstan_runtime::wire::item_to_wire;
use serde_json::{Map, Value, json};

use crate::bus::{MemBus, Message};
use crate::ec2::SimEc2;
use crate::store::MemStore;

/// The region the in-memory platform says it is in.
pub const REGION: &str = "local";

/// The stream, the queues and EC2's events of the in-memory adapters.
pub struct MemPlatform {
    pub store: MemStore,
    pub ec2: SimEc2,
    pub bus: MemBus,
    clock: Arc<dyn Clock>,
    /// Records read from the table's stream and not yet routed: the front is where
    /// the stream resumes after a failed batch (Lambda's checkpoint).
    unrouted: VecDeque<StreamRecord>,
}

impl MemPlatform {
    pub fn new(store: MemStore, ec2: SimEc2, bus: MemBus, clock: Arc<dyn Clock>) -> MemPlatform {
        MemPlatform {
            store,
            ec2,
            bus,
            clock,
            unrouted: VecDeque::new(),
        }
    }

    /// EC2's state changes and warnings since the last call (instances move on first).
    pub fn instance_events(&mut self) -> Vec<BusEvent> {
        self.ec2.advance();
        self.ec2.take_events()
    }

    /// The stream's next batch, as the event source mapping delivers it.
    pub fn next_stream_batch(&mut self, max: usize) -> Option<DynamoDbEvent> {
        // The event source mapping's filter drops records before any invocation.
        let filter = capstan_runtime::routes::stream_filter();
        self.unrouted.extend(
            self.store
                .take_stream()
                .into_iter()
                .filter(|r| capstan_runtime::routes::matches(&filter, &stream_record_json(r))),
        );
        if self.unrouted.is_empty() {
            return None;
        }
        let records: Vec<Value> = self
            .unrouted
            .iter()
            .take(max.max(1))
            .map(stream_record_json)
            .collect();
        // The shapes are built here from well-formed items: a failure is a bug in this
        // module, and the records stay queued for the next step.
        match serde_json::from_value(json!({ "Records": records })) {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::error!(error = %e, "building the in-memory stream event");
                None
            }
        }
    }

    /// Lambda's checkpoint: drops the routed records, keeps the rest for next time.
    pub fn checkpoint_stream(&mut self, batch: &DynamoDbEvent, response: &DynamoDbEventResponse) {
        let routed = match response.batch_item_failures.first() {
            None => batch.records.len(),
            Some(failure) => batch
                .records
                .iter()
                .position(|r| r.change.sequence_number == failure.item_identifier)
                .unwrap_or(0),
        };
        self.unrouted.drain(..routed.min(self.unrouted.len()));
    }

    /// Up to `max` messages of `queue` as the SQS event Lambda would deliver.
    pub fn receive_event(&self, queue: Reconciler, max: usize) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = self
            .bus
            .receive(queue, max)
            .iter()
            .map(sqs_message)
            .collect();
        event
    }

    /// Deletes handled messages.
    pub fn delete_messages(&self, queue: Reconciler, handled: &[&SqsMessage]) {
        for m in handled {
            if let Some(receipt) = &m.receipt_handle {
                self.bus.ack(queue, receipt);
            }
        }
    }

    /// Records read from the stream and not yet routed.
    pub fn unrouted(&self) -> usize {
        self.unrouted.len()
    }
}

impl Platform for MemPlatform {
    async fn relay(&mut self) -> Result<usize, PlatformError> {
        let events = self.instance_events();
        let n = events.len();
        self.bus.publish(events);
        Ok(n)
    }

    async fn stream_batch(&mut self, max: usize) -> Result<Option<DynamoDbEvent>, PlatformError> {
        Ok(self.next_stream_batch(max))
    }

    async fn checkpoint(
        &mut self,
        batch: &DynamoDbEvent,
        response: &DynamoDbEventResponse,
    ) -> Result<(), PlatformError> {
        self.checkpoint_stream(batch, response);
        Ok(())
    }

    async fn receive(&mut self, queue: Reconciler, max: usize) -> Result<SqsEvent, PlatformError> {
        Ok(self.receive_event(queue, max))
    }

    async fn delete(
        &mut self,
        queue: Reconciler,
        handled: &[&SqsMessage],
    ) -> Result<(), PlatformError> {
        self.delete_messages(queue, handled);
        Ok(())
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// A stream record in the JSON shape of a DynamoDB stream event's record.
pub fn stream_record_json(record: &StreamRecord) -> Value {
    let name = match record.kind {
        ChangeKind::Insert => "INSERT",
        ChangeKind::Modify => "MODIFY",
        ChangeKind::Remove => "REMOVE",
    };
    let mut keys = Item::new();
    keys.insert("pk".into(), AttrValue::S(record.key.pk.clone()));
    keys.insert("sk".into(), AttrValue::S(record.key.sk.clone()));
    let mut change = Map::new();
    change.insert("Keys".into(), item_to_wire(&keys));
    if let Some(image) = &record.new_image {
        change.insert("NewImage".into(), item_to_wire(image));
    }
    if let Some(image) = &record.old_image {
        change.insert("OldImage".into(), item_to_wire(image));
    }
    change.insert("SequenceNumber".into(), json!(record.sequence.to_string()));
    change.insert("SizeBytes".into(), json!(0));
    change.insert("StreamViewType".into(), json!("NEW_AND_OLD_IMAGES"));
    json!({
        "eventID": record.sequence.to_string(),
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "eventSourceARN": "arn:aws:dynamodb:local:000000000000:table/capstan/stream/in-memory",
        "dynamodb": Value::Object(change),
    })
}

/// A queue message as the SQS event carries it: the EventBridge event as its body.
pub fn sqs_message(m: &Message) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(m.id.clone());
    message.receipt_handle = Some(m.receipt.clone());
    message.body = serde_json::to_string(&m.event).ok();
    message.attributes.insert(
        "ApproximateReceiveCount".to_string(),
        m.receive_count.to_string(),
    );
    message.event_source = Some("aws:sqs".to_string());
    message.aws_region = Some(REGION.to_string());
    message
}
