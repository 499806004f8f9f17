//! What the driver reads from on the local control plane: the SQLite table's stream
//! (from where this control plane last stopped, whichever process wrote it), the
//! in-memory queues, and the simulated EC2's events.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use capstan_model::Timestamp;
use capstan_runtime::driver::{Platform, PlatformError};
use capstan_runtime::ports::Clock;
use capstan_runtime::routes::Reconciler;
use capstan_sim::bus::MemBus;
use capstan_sim::ec2::SimEc2;
use capstan_sim::platform::{sqs_message, stream_record_json};
use serde_json::json;

use crate::store::SqliteStore;

/// The stream reader's name in the `cursors` table.
pub const ROUTER: &str = "stream-router";

pub struct SqlitePlatform {
    pub store: SqliteStore,
    pub ec2: SimEc2,
    pub bus: MemBus,
    clock: Arc<dyn Clock>,
    /// The last record routed: the stream resumes after it, also after a restart.
    cursor: u64,
}

impl SqlitePlatform {
    pub fn new(
        store: SqliteStore,
        ec2: SimEc2,
        bus: MemBus,
        clock: Arc<dyn Clock>,
    ) -> Result<SqlitePlatform, PlatformError> {
        let cursor = store
            .cursor(ROUTER)
            .map_err(|e| PlatformError::new("reading the stream's cursor", e))?;
        Ok(SqlitePlatform {
            store,
            ec2,
            bus,
            clock,
            cursor,
        })
    }
}

impl Platform for SqlitePlatform {
    async fn relay(&mut self) -> Result<usize, PlatformError> {
        self.ec2.advance();
        let events = self.ec2.take_events();
        let n = events.len();
        self.bus.publish(events);
        Ok(n)
    }

    async fn stream_batch(&mut self, max: usize) -> Result<Option<DynamoDbEvent>, PlatformError> {
        let records = self
            .store
            .stream_after(self.cursor, max.max(1))
            .map_err(|e| PlatformError::new("reading the stream", e))?;
        if records.is_empty() {
            return Ok(None);
        }
        let records: Vec<_> = records.iter().map(stream_record_json).collect();
        serde_json::from_value(json!({ "Records": records }))
            .map(Some)
            .map_err(|e| PlatformError::new("building the stream event", e))
    }

    async fn checkpoint(
        &mut self,
        batch: &DynamoDbEvent,
        response: &DynamoDbEventResponse,
    ) -> Result<(), PlatformError> {
        let routed = match response.batch_item_failures.first() {
            None => batch.records.len(),
            Some(failure) => batch
                .records
                .iter()
                .position(|r| r.change.sequence_number == failure.item_identifier)
                .unwrap_or(0),
        };
        let last = routed
            .checked_sub(1)
            .and_then(|i| batch.records.get(i))
            .and_then(|r| r.change.sequence_number.as_deref())
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(seq) = last {
            self.cursor = seq;
            self.store
                .set_cursor(ROUTER, seq)
                .map_err(|e| PlatformError::new("saving the stream's cursor", e))?;
        }
        Ok(())
    }

    async fn receive(&mut self, queue: Reconciler, max: usize) -> Result<SqsEvent, PlatformError> {
        let mut event = SqsEvent::default();
        event.records = self
            .bus
            .receive(queue, max)
            .iter()
            .map(sqs_message)
            .collect();
        Ok(event)
    }

    async fn delete(
        &mut self,
        queue: Reconciler,
        handled: &[&SqsMessage],
    ) -> Result<(), PlatformError> {
        for m in handled {
            if let Some(receipt) = &m.receipt_handle {
                self.bus.ack(queue, receipt);
            }
        }
        Ok(())
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }
}
