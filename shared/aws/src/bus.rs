//! The Bus port on EventBridge (publishing) and SQS (re-queueing with a delay).
//!
//! Contract, on top of the port's:
//! - `put_events` sends at most 10 entries per PutEvents call (the API's limit). Entries
//!   EventBridge reports failed (throttled or internal, per entry) are sent again, up to
//!   `PUT_ATTEMPTS` times with backoff; what still fails is `Throttled` or
//!   `Unavailable`, and the caller retries the whole batch (delivery is at least once,
//!   so a repeat is harmless).
//! - `requeue` is one SQS SendMessage to the work queue, the body the event wrapped with
//!   the reconciler it is for (`routes::wrap`), exactly as the reconciler's rule's input
//!   transformer delivers it, and DelaySeconds (at most 900, SQS's limit). The work
//!   queue's URL is looked up by name once and cached.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_eventbridge::config::http::HttpResponse;
use aws_sdk_eventbridge::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use capstan_runtime::ports::{Bus, BusError, BusEvent};
use capstan_runtime::routes::{Reconciler, wrap};

use crate::clients::Names;
use crate::error::{Class, classify, is_throttling};

/// How often one entry is offered to PutEvents before the call fails.
pub const PUT_ATTEMPTS: u32 = 4;

/// EventBridge + SQS.
#[derive(Clone, Debug)]
pub struct EventBridgeBus {
    events: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
    bus_name: String,
    names: Names,
    /// The work queue's URL, once looked up.
    work_queue_url: Arc<Mutex<Option<String>>>,
}

impl EventBridgeBus {
    pub fn new(
        events: aws_sdk_eventbridge::Client,
        sqs: aws_sdk_sqs::Client,
        names: Names,
    ) -> EventBridgeBus {
        EventBridgeBus {
            events,
            sqs,
            bus_name: names.bus.clone(),
            names,
            work_queue_url: Arc::default(),
        }
    }

    /// Publishes to `bus` rather than the installation's own (the local runtime relays
    /// EC2's events onto the default bus this way).
    pub fn on_bus(&self, bus: &str) -> EventBridgeBus {
        EventBridgeBus {
            bus_name: bus.to_string(),
            ..self.clone()
        }
    }

    async fn work_queue_url(&self) -> Result<String, BusError> {
        if let Some(url) = self.work_queue_url.lock().ok().and_then(|u| u.clone()) {
            return Ok(url);
        }
        let name = self.names.work_queue();
        let out = self
            .sqs
            .get_queue_url()
            .queue_name(&name)
            .send()
            .await
            .map_err(bus_error)?;
        let url = out
            .queue_url
            .ok_or_else(|| BusError::Unavailable(format!("no URL for queue {name}")))?;
        if let Ok(mut u) = self.work_queue_url.lock() {
            *u = Some(url.clone());
        }
        Ok(url)
    }

    fn entry(&self, event: &BusEvent) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus_name)
            .source(&event.source)
            .detail_type(&event.detail_type)
            .detail(event.detail.to_string())
            .set_resources(event.resources.clone().filter(|r| !r.is_empty()))
            .set_time(
                event
                    .time
                    .map(|t| aws_smithy_types::DateTime::from_millis(t.timestamp_millis())),
            )
            .build()
    }
}

fn bus_error<E>(err: SdkError<E, HttpResponse>) -> BusError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let failure = classify(&err);
    match failure.class {
        Class::Throttled => BusError::Throttled(failure.to_string()),
        _ => BusError::Unavailable(failure.to_string()),
    }
}

impl Bus for EventBridgeBus {
    async fn put_events(&self, events: Vec<BusEvent>) -> Result<(), BusError> {
        for chunk in events.chunks(10) {
            let mut pending: Vec<PutEventsRequestEntry> =
                chunk.iter().map(|e| self.entry(e)).collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                attempt += 1;
                let out = self
                    .events
                    .put_events()
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(bus_error)?;
                if out.failed_entry_count == 0 {
                    break;
                }
                // Results are in request order; an entry with an error code failed.
                let mut last_code = String::new();
                pending = pending
                    .into_iter()
                    .zip(out.entries())
                    .filter(|(_, result)| result.error_code().is_some())
                    .map(|(entry, result)| {
                        last_code = result.error_code().unwrap_or_default().to_string();
                        entry
                    })
                    .collect();
                if attempt >= PUT_ATTEMPTS {
                    let message = format!(
                        "{} of {} events not accepted after {attempt} attempts ({last_code})",
                        pending.len(),
                        chunk.len()
                    );
                    return Err(if is_throttling(&last_code) {
                        BusError::Throttled(message)
                    } else {
                        BusError::Unavailable(message)
                    });
                }
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        }
        Ok(())
    }

    async fn requeue(&self, queue: &str, event: BusEvent, delay: Duration) -> Result<(), BusError> {
        let reconciler = Reconciler::from_name(queue)
            .ok_or_else(|| BusError::Unavailable(format!("no reconciler {queue}")))?;
        let url = self.work_queue_url().await?;
        let event = serde_json::to_value(&event)
            .map_err(|e| BusError::Unavailable(format!("encoding the event: {e}")))?;
        let body = wrap(reconciler, &event).to_string();
        let delay = delay.as_secs_f64().ceil().clamp(0.0, 900.0) as i32;
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .delay_seconds(delay)
            .send()
            .await
            .map_err(bus_error)?;
        Ok(())
    }
}
