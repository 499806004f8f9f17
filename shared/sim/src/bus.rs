//! An in-memory EventBridge bus feeding one SQS work queue (with its dead-letter
//! queue) per reconciler, routed by the same rule patterns the AWS deployment uses
//! ([`capstan_runtime::routes`]).
//!
//! Semantics kept from EventBridge and SQS standard queues:
//! - PutEvents assigns each event an id, `version` "0" and a `time` when it has none;
//!   every rule that matches delivers it to its queue, at least once
//!   ([`Delivery::duplicate`] makes that "exactly twice");
//! - a received message is invisible for the visibility timeout; not deleted in time, it
//!   is delivered again with a new receipt handle and a higher receive count; after
//!   `max_receives` receives it moves to the dead-letter queue (redrive policy
//!   `maxReceiveCount`);
//! - only the latest receipt handle deletes or re-times a message; an older one is
//!   accepted and does nothing, as SQS documents for DeleteMessage
//!   (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteMessage.html>);
//! - delays are capped as SQS caps them: DelaySeconds at 15 minutes, a visibility
//!   timeout at 12 hours;
//! - standard queues do not promise order: by default messages come back in send order,
//!   with [`Delivery::shuffle_seed`] in a seeded random order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use capstan_model::Timestamp;
use capstan_runtime::routes::{Reconciler, targets};
use capstan_runtime::{Bus, BusError, BusEvent, Clock};

use crate::clock::after;
use crate::rng::{Rng, uuid};

/// SQS's longest DelaySeconds.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// SQS's longest visibility timeout.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// How the queues deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Every event is delivered twice (two messages with the same event).
    pub duplicate: bool,
    /// `receive` returns visible messages in an order drawn from this seed instead of
    /// send order.
    pub shuffle_seed: Option<u64>,
    /// How long a received message stays invisible (SQS VisibilityTimeout).
    pub visibility_timeout: Duration,
    /// Receives before a message moves to the dead-letter queue (maxReceiveCount);
    /// 0 means no redrive policy.
    pub max_receives: u32,
}

impl Default for Delivery {
    fn default() -> Delivery {
        Delivery {
            duplicate: false,
            shuffle_seed: None,
            visibility_timeout: Duration::from_secs(30),
            max_receives: 5,
        }
    }
}

/// A received message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The SQS message id: the same on every delivery of this message.
    pub id: String,
    /// This delivery's receipt handle (empty for dead letters).
    pub receipt: String,
    pub event: BusEvent,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

/// The bus and its queues. Clones share them.
#[derive(Clone)]
pub struct MemBus {
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MemBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("MemBus")
            .field("delivery", &s.delivery)
            .field("published_total", &s.published_total)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Queued {
    id: String,
    event: BusEvent,
    receive_count: u32,
    visible_at: Timestamp,
    /// The latest receipt handle, once received.
    receipt: Option<String>,
}

#[derive(Debug, Default)]
struct Queue {
    /// By send order.
    messages: BTreeMap<u64, Queued>,
    dead: Vec<Message>,
    /// Each message's latest receipt handle → the message (indexes `messages`, so a
    /// DeleteMessage does not scan the queue).
    receipts: BTreeMap<String, u64>,
    /// Messages received `max_receives` times: the only ones the redrive looks at.
    exhausted: BTreeSet<u64>,
}

impl Queue {
    /// Removes a message and what indexes it.
    fn remove(&mut self, seq: u64) -> Option<Queued> {
        let m = self.messages.remove(&seq)?;
        if let Some(r) = &m.receipt {
            self.receipts.remove(r);
        }
        self.exhausted.remove(&seq);
        Some(m)
    }
}

#[derive(Debug)]
struct State {
    delivery: Delivery,
    queues: BTreeMap<Reconciler, Queue>,
    sent: u64,
    receipts: u64,
    ids: Rng,
    shuffle: Option<Rng>,
    published_total: u64,
    faults: VecDeque<BusError>,
    requeues: RequeueCount,
    /// Per (queue, object): the earliest due time of a requeue sent for it, kept while
    /// it is in the future (what [`RequeueCount::redundant`] counts against).
    pending_requeues: BTreeMap<(Reconciler, String), Timestamp>,
}

/// Requeues sent (SendMessage with a delay), and of them how many asked for an
/// object that already had one pending, due no later: a second chain of re-looks for
/// one object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequeueCount {
    pub sent: u64,
    pub redundant: u64,
}

impl MemBus {
    pub fn new(clock: Arc<dyn Clock>, delivery: Delivery) -> MemBus {
        let queues = Reconciler::ALL
            .into_iter()
            .map(|r| (r, Queue::default()))
            .collect();
        MemBus {
            clock,
            state: Arc::new(Mutex::new(State {
                shuffle: delivery.shuffle_seed.map(Rng::new),
                delivery,
                queues,
                sent: 0,
                receipts: 0,
                ids: Rng::new(0xb05_e7e7),
                published_total: 0,
                requeues: RequeueCount::default(),
                pending_requeues: BTreeMap::new(),
                faults: VecDeque::new(),
            })),
        }
    }

    /// Publishes events and routes them to the queues (PutEvents that cannot fail:
    /// the relay of EC2's events from the default bus).
    pub fn publish(&self, events: Vec<BusEvent>) {
        let now = self.clock.now();
        let mut state = self.settled(now);
        for event in events {
            state.publish(event, now);
        }
    }

    /// Up to `max` visible messages of `queue`. Each becomes invisible for the
    /// visibility timeout; one received `max_receives` times and not deleted goes to
    /// the dead-letter queue instead of coming back.
    pub fn receive(&self, queue: Reconciler, max: usize) -> Vec<Message> {
        let now = self.clock.now();
        let mut guard = self.settled(now);
        let state = &mut *guard;
        let Some(q) = state.queues.get_mut(&queue) else {
            return Vec::new();
        };
        let visible = q
            .messages
            .iter()
            .filter(|(_, m)| m.visible_at <= now)
            .map(|(seq, _)| *seq);
        // In send order, the first `max` are enough; shuffled, every visible one draws.
        let ready: Vec<u64> = match state.shuffle.as_mut() {
            Some(rng) => {
                let mut all: Vec<u64> = visible.collect();
                rng.shuffle(&mut all);
                all
            }
            None => visible.take(max).collect(),
        };
        let max_receives = state.delivery.max_receives;
        let hidden_until = after(now, state.delivery.visibility_timeout.min(MAX_VISIBILITY));
        let mut out = Vec::new();
        for seq in ready.into_iter().take(max) {
            let Some(m) = q.messages.get_mut(&seq) else {
                continue;
            };
            state.receipts += 1;
            let receipt = format!("{}#{}", m.id, state.receipts);
            m.receive_count += 1;
            m.visible_at = hidden_until;
            if let Some(old) = m.receipt.replace(receipt.clone()) {
                q.receipts.remove(&old);
            }
            q.receipts.insert(receipt.clone(), seq);
            if max_receives > 0 && m.receive_count >= max_receives {
                q.exhausted.insert(seq);
            }
            out.push(Message {
                id: m.id.clone(),
                receipt,
                event: m.event.clone(),
                receive_count: m.receive_count,
            });
        }
        out
    }

    /// Deletes the message `receipt` was issued for (DeleteMessage). False when the
    /// receipt is not the message's latest, or the message is gone.
    pub fn ack(&self, queue: Reconciler, receipt: &str) -> bool {
        let now = self.clock.now();
        let mut state = self.settled(now);
        let Some(q) = state.queues.get_mut(&queue) else {
            return false;
        };
        match find(q, receipt) {
            Some(seq) => q.remove(seq).is_some(),
            None => false,
        }
    }

    /// Makes an in-flight message visible again after `delay` (ChangeMessageVisibility;
    /// capped at 12 hours). False when the receipt is stale or the message is no longer
    /// in flight.
    pub fn retry_later(&self, queue: Reconciler, receipt: &str, delay: Duration) -> bool {
        let now = self.clock.now();
        let mut state = self.settled(now);
        let Some(q) = state.queues.get_mut(&queue) else {
            return false;
        };
        let Some(m) = find(q, receipt).and_then(|seq| q.messages.get_mut(&seq)) else {
            return false;
        };
        if m.visible_at <= now {
            return false;
        }
        m.visible_at = after(now, delay.min(MAX_VISIBILITY));
        true
    }

    /// When the earliest message that is not visible now becomes visible.
    pub fn next_visible(&self) -> Option<Timestamp> {
        let now = self.clock.now();
        let state = self.settled(now);
        state
            .queues
            .values()
            .flat_map(|q| q.messages.values())
            .map(|m| m.visible_at)
            .filter(|t| *t > now)
            .min()
    }

    /// Messages in the work queues, visible or not (dead letters excluded).
    pub fn pending(&self) -> usize {
        let now = self.clock.now();
        let state = self.settled(now);
        state.queues.values().map(|q| q.messages.len()).sum()
    }

    /// Messages a receive would return now, across the work queues.
    pub fn visible(&self) -> usize {
        let now = self.clock.now();
        let state = self.settled(now);
        state
            .queues
            .values()
            .flat_map(|q| q.messages.values())
            .filter(|m| m.visible_at <= now)
            .count()
    }

    /// The dead-letter queue of `queue`, oldest first.
    pub fn dead_letters(&self, queue: Reconciler) -> Vec<Message> {
        let now = self.clock.now();
        let state = self.settled(now);
        state
            .queues
            .get(&queue)
            .map(|q| q.dead.clone())
            .unwrap_or_default()
    }

    /// Events published (not messages: one event routed to three queues counts once).
    pub fn published_total(&self) -> u64 {
        self.lock().published_total
    }

    /// Requeues sent so far, and how many of them were redundant.
    pub fn requeues(&self) -> RequeueCount {
        self.lock().requeues
    }

    /// The next `put_events` or `requeue` fails with `err` and has no effect. Faults
    /// queue up.
    pub fn fail_next(&self, err: BusError) {
        self.lock().faults.push_back(err);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, with every message that has used up its receives dead-lettered.
    fn settled(&self, now: Timestamp) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        state.redrive(now);
        state
    }
}

impl State {
    fn redrive(&mut self, now: Timestamp) {
        let max = self.delivery.max_receives;
        if max == 0 {
            return;
        }
        for q in self.queues.values_mut() {
            let spent: Vec<u64> = q
                .exhausted
                .iter()
                .filter(|seq| {
                    q.messages
                        .get(seq)
                        .is_some_and(|m| m.receive_count >= max && m.visible_at <= now)
                })
                .copied()
                .collect();
            for seq in spent {
                if let Some(m) = q.remove(seq) {
                    q.dead.push(Message {
                        id: m.id,
                        receipt: String::new(),
                        event: m.event,
                        receive_count: m.receive_count,
                    });
                }
            }
        }
    }

    fn publish(&mut self, mut event: BusEvent, now: Timestamp) {
        self.published_total += 1;
        // EventBridge fills these in on PutEvents.
        if event.id.is_none() {
            event.id = Some(uuid(self.ids.next_u128()));
        }
        if event.version.is_none() {
            event.version = Some("0".into());
        }
        if event.time.is_none() {
            event.time = chrono::DateTime::from_timestamp(now.as_second(), 0);
        }
        let routed = match serde_json::to_value(&event) {
            Ok(json) => targets(&json),
            Err(err) => {
                tracing::warn!(%err, detail_type = %event.detail_type, "event does not serialize; no rule can match it");
                Vec::new()
            }
        };
        if routed.is_empty() {
            tracing::debug!(detail_type = %event.detail_type, source = %event.source, "no rule matches the event");
        }
        let copies = if self.delivery.duplicate { 2 } else { 1 };
        for queue in routed {
            for _ in 0..copies {
                self.send(queue, event.clone(), now);
            }
        }
    }

    /// Counts a requeue of `event`'s object to `queue`, due at `due`.
    fn count_requeue(
        &mut self,
        queue: Reconciler,
        event: &BusEvent,
        now: Timestamp,
        due: Timestamp,
    ) {
        self.requeues.sent += 1;
        let pending = self
            .pending_requeues
            .entry((queue, requeued_object(event)))
            .or_insert(now);
        if *pending > now && *pending <= due {
            self.requeues.redundant += 1;
        } else {
            *pending = due;
        }
    }

    /// SendMessage.
    fn send(&mut self, queue: Reconciler, event: BusEvent, visible_at: Timestamp) {
        self.sent += 1;
        let id = uuid(self.ids.next_u128());
        self.queues.entry(queue).or_default().messages.insert(
            self.sent,
            Queued {
                id,
                event,
                receive_count: 0,
                visible_at,
                receipt: None,
            },
        );
    }
}

/// The object (and whether it is the autoscaler's pass) a requeued event is about.
fn requeued_object(event: &BusEvent) -> String {
    let field = |name: &str| {
        event
            .detail
            .get(name)
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    ["namespace", "cluster", "kind", "name", "autoscale"]
        .map(field)
        .join("/")
}

fn find(q: &Queue, receipt: &str) -> Option<u64> {
    q.receipts.get(receipt).copied()
}

impl Bus for MemBus {
    async fn put_events(&self, events: Vec<BusEvent>) -> Result<(), BusError> {
        let now = self.clock.now();
        let mut state = self.settled(now);
        if let Some(err) = state.faults.pop_front() {
            return Err(err);
        }
        for event in events {
            state.publish(event, now);
        }
        Ok(())
    }

    async fn requeue(&self, queue: &str, event: BusEvent, delay: Duration) -> Result<(), BusError> {
        let now = self.clock.now();
        let mut state = self.settled(now);
        if let Some(err) = state.faults.pop_front() {
            return Err(err);
        }
        let Some(target) = Reconciler::from_name(queue) else {
            return Err(BusError::Unavailable(format!(
                "AWS.SimpleQueueService.NonExistentQueue: the queue {queue} does not exist"
            )));
        };
        if delay > MAX_DELAY {
            tracing::warn!(
                queue,
                ?delay,
                "SQS caps DelaySeconds at 900; delivering after 15 minutes"
            );
        }
        let due = after(now, delay.min(MAX_DELAY));
        state.count_requeue(target, &event, now, due);
        state.send(target, event, due);
        Ok(())
    }
}
