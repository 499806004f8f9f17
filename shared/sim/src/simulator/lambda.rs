//! Lambda as the simulator plays it, through the one driver: EC2's events reach the
//! bus through the faulty bus (which may hold them back), and a seeded schedule
//! decides which queues are served, how many invocations run at once (up to the
//! `concurrency` fault), their batch sizes, and which invocation runs up to its next
//! port call — every call of the faulty adapters is an interleaving point.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use capstan_model::{Item, ItemKey, Timestamp};
use capstan_runtime::driver::{Invocation, Platform, PlatformError, Schedule};
use capstan_runtime::routes::Reconciler;

use super::faults::{FaultyBus, SharedChaos, lock};
use crate::platform::MemPlatform;
use crate::rng::Rng;
use crate::store::MemStore;

/// Port calls all invocations of one step may make before they are abandoned, as at
/// the function timeout.
pub const MAX_POLLS_PER_STEP: u64 = 100_000;

/// The in-memory platform with EC2's events relayed through the faulty bus.
pub struct SimPlatform {
    pub mem: MemPlatform,
    pub faulty_bus: FaultyBus,
}

impl Platform for SimPlatform {
    async fn relay(&mut self) -> Result<usize, PlatformError> {
        let events = self.mem.instance_events();
        let n = events.len();
        if n > 0 {
            self.faulty_bus.relay(events);
        }
        Ok(n + usize::from(self.faulty_bus.release_due()))
    }

    async fn stream_batch(&mut self, max: usize) -> Result<Option<DynamoDbEvent>, PlatformError> {
        Ok(self.mem.next_stream_batch(max))
    }

    async fn checkpoint(
        &mut self,
        batch: &DynamoDbEvent,
        response: &DynamoDbEventResponse,
    ) -> Result<(), PlatformError> {
        self.mem.checkpoint_stream(batch, response);
        Ok(())
    }

    async fn receive(&mut self, queue: Reconciler, max: usize) -> Result<SqsEvent, PlatformError> {
        Ok(self.mem.receive_event(queue, max))
    }

    async fn delete(
        &mut self,
        queue: Reconciler,
        handled: &[&SqsMessage],
    ) -> Result<(), PlatformError> {
        self.mem.delete_messages(queue, handled);
        Ok(())
    }

    fn now(&self) -> Timestamp {
        self.mem.now()
    }
}

/// Lambda's scheduling, drawn from the seed.
pub struct SimSchedule {
    pub rng: Rng,
    /// Invocations of one reconciler that may run at once.
    pub concurrency: usize,
    pub chaos: SharedChaos,
    pub store: MemStore,
    /// The Machines and health checks just before a step's health-check invocations
    /// ran (taken only then: decoding every step costs too much).
    pub health_before: Option<Vec<(ItemKey, Item)>>,
}

impl Schedule for SimSchedule {
    /// Queues in a random order; after each that had work, the step may stop.
    fn queues(&mut self) -> Vec<Reconciler> {
        let mut queues = Reconciler::ALL.to_vec();
        self.rng.shuffle(&mut queues);
        queues
    }

    /// Invocations of different reconcilers overlap too, as on Lambda.
    fn queues_side_by_side(&self) -> bool {
        true
    }

    fn invocations(&mut self, _queue: Reconciler) -> usize {
        1 + self.rng.below(self.concurrency.max(1) as u64) as usize
    }

    fn batch_size(&mut self, _queue: Reconciler) -> usize {
        1 + self.rng.below(10) as usize
    }

    fn stop_after(&mut self, _queue: Reconciler) -> bool {
        self.rng.chance(0.5)
    }

    /// Each turn, one invocation chosen at random runs up to its next port call. The
    /// in-memory adapters never wait on anything, so a turn always makes progress.
    async fn run<'a>(
        &'a mut self,
        mut invocations: Vec<Invocation<'a>>,
    ) -> Vec<Option<SqsBatchResponse>> {
        if invocations
            .iter()
            .any(|i| i.queue == Reconciler::HealthCheck)
        {
            self.health_before = Some(health_items(&self.store));
        }
        if invocations.len() > 1 {
            let names: Vec<&str> = invocations.iter().map(|i| i.queue.name()).collect();
            lock(&self.chaos).log.push(format!(
                "{} invocations at once: {}",
                invocations.len(),
                names.join(", ")
            ));
        }
        let mut answers: Vec<Option<SqsBatchResponse>> = vec![None; invocations.len()];
        let mut running: Vec<usize> = (0..invocations.len()).collect();
        let mut cx = Context::from_waker(Waker::noop());
        let mut polls = 0u64;
        while !running.is_empty() {
            polls += 1;
            if polls > MAX_POLLS_PER_STEP {
                lock(&self.chaos).log.push(format!(
                    "{} invocation(s) abandoned at the function timeout",
                    running.len()
                ));
                break;
            }
            let pick = self.rng.below(running.len() as u64) as usize;
            let i = running[pick];
            let invocation = &mut invocations[i];
            lock(&self.chaos).serving = Some(invocation.queue);
            let polled = poll_once(&mut invocation.future, &mut cx);
            lock(&self.chaos).serving = None;
            if let Poll::Ready(answer) = polled {
                running.remove(pick);
                answers[i] = Some(answer);
            }
        }
        answers
    }
}

fn poll_once<T>(future: &mut Pin<Box<dyn Future<Output = T> + '_>>, cx: &mut Context) -> Poll<T> {
    future.as_mut().poll(cx)
}

/// The items a health check decides on: Machines and MachineHealthChecks.
pub fn health_items(store: &MemStore) -> Vec<(ItemKey, Item)> {
    store.with_items(|all| {
        all.iter()
            .filter(|(k, _)| {
                k.sk.starts_with("Machine#") || k.sk.starts_with("MachineHealthCheck#")
            })
            .map(|(k, i)| (k.clone(), i.clone()))
            .collect()
    })
}
