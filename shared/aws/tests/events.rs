//! Every function's handler on the sample events in `events/` (real AWS shapes), over
//! the in-memory adapters: what the Lambda functions and the local runtime run.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use capstan_aws::{Functions, MetricsSink};
use capstan_model::item::{ItemKey, Part};
use capstan_model::{Kind, ObjectKey, Timestamp};
use capstan_runtime::ports::BusEvent;
use capstan_runtime::routes::Reconciler;
use capstan_sim::bus::{Delivery, MemBus};
use capstan_sim::clock::{ManualClock, SeededEntropy};
use capstan_sim::ec2::{Ec2Config, SimEc2};
use capstan_sim::store::MemStore;
use serde::de::DeserializeOwned;

const EVENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events");

fn sample<T: DeserializeOwned>(name: &str) -> T {
    let path = format!("{EVENTS}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not the expected event: {e}"))
}

struct World {
    functions: Functions<MemStore, SimEc2, MemBus>,
    store: MemStore,
    bus: MemBus,
}

/// The handlers over in-memory adapters, at `at` (RFC 3339).
fn world(at: &str) -> World {
    let start: Timestamp = at.parse().expect("timestamp");
    let clock: Arc<dyn capstan_runtime::Clock> = Arc::new(ManualClock::new(start));
    let store = MemStore::new(clock.clone());
    let ec2 = SimEc2::new(Ec2Config::default(), clock.clone());
    let bus = MemBus::new(clock.clone(), Delivery::default());
    let functions = Functions::new(
        store.clone(),
        ec2,
        bus.clone(),
        clock,
        Arc::new(SeededEntropy::new(7)),
        "events-test",
        MetricsSink::Log,
    );
    World {
        functions,
        store,
        bus,
    }
}

#[test]
fn every_sample_reads_as_its_aws_lambda_events_type_and_round_trips() {
    fn round_trip<T: DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug>(
        name: &str,
    ) {
        let event: T = sample(name);
        let again: T = serde_json::from_value(serde_json::to_value(&event).expect("serialize"))
            .expect("deserialize");
        assert_eq!(event, again, "{name}");
    }
    round_trip::<DynamoDbEvent>("dynamodb-stream-batch.json");
    round_trip::<DynamoDbEvent>("dynamodb-stream-malformed.json");
    round_trip::<SqsEvent>("sqs-cluster-changed.json");
    round_trip::<SqsEvent>("sqs-instance-state-change.json");
    round_trip::<SqsEvent>("sqs-spot-interruption-warning.json");
    round_trip::<SqsEvent>("sqs-work-queue.json");
    round_trip::<BusEvent>("ec2-instance-state-change.json");
    round_trip::<BusEvent>("spot-interruption-warning.json");
    round_trip::<BusEvent>("scheduled-event.json");
}

#[tokio::test]
async fn stream_router_publishes_one_changed_event_per_record_with_its_owner() {
    let w = world("2026-01-01T00:00:05Z");
    let response = w
        .functions
        .stream(&sample("dynamodb-stream-batch.json"))
        .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    // INSERT Cluster → cluster-reconciler; MODIFY Machine (owned by a MachineSet) →
    // machine-, machineset- and healthcheck-reconciler; REMOVE MachineSet (owned by a
    // MachineDeployment) → machineset- and deployment-reconciler.
    let cluster = w.bus.receive(Reconciler::Cluster, 10);
    assert_eq!(cluster.len(), 1);
    assert_eq!(cluster[0].event.detail_type, "Cluster Changed");
    assert_eq!(cluster[0].event.detail["change"], "INSERT");
    let machine = w.bus.receive(Reconciler::Machine, 10);
    assert_eq!(machine.len(), 1);
    assert_eq!(machine[0].event.detail["owner"]["kind"], "MachineSet");
    assert_eq!(w.bus.receive(Reconciler::MachineSet, 10).len(), 2);
    assert_eq!(w.bus.receive(Reconciler::Deployment, 10).len(), 1);
}

#[tokio::test]
async fn stream_router_reports_a_malformed_record_by_its_sequence_number_after_routing_the_ones_before()
 {
    let w = world("2026-01-01T00:00:05Z");
    let response = w
        .functions
        .stream(&sample("dynamodb-stream-malformed.json"))
        .await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, vec![Some("300000000000000499660".to_string())]);
    // The record before it was routed (a MachineClass change reaches the deployment
    // reconciler, and its Cluster's); the one after it (a Cluster change) waits for the
    // retry, so nothing is reordered.
    assert_eq!(w.bus.receive(Reconciler::Deployment, 10).len(), 1);
    let cluster = w.bus.receive(Reconciler::Cluster, 10);
    assert_eq!(cluster.len(), 1);
    assert_eq!(cluster[0].event.detail["kind"], "MachineClass");
}

#[tokio::test]
async fn cluster_reconciler_reconciles_the_named_cluster_once_and_reports_only_the_malformed_message()
 {
    let w = world("2026-01-01T00:00:05Z");
    apply_quickstart(&w).await;
    let response = w
        .functions
        .queue(Reconciler::Cluster, &sample("sqs-cluster-changed.json"))
        .await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["d3b07384-d113-4ec8-98c4-b3a2f1d0e9c8"]);
    // The Cluster was taken in (its observed item exists) and expanded into deployments.
    let cluster = ObjectKey::new("default", "demo", Kind::Cluster, "demo");
    assert!(
        w.store
            .get(&ItemKey::of(&cluster, Part::Observed))
            .is_some()
    );
    let deployment = ObjectKey::new("default", "demo", Kind::MachineDeployment, "demo-workers");
    assert!(
        w.store
            .get(&ItemKey::of(&deployment, Part::Desired))
            .is_some()
    );
}

/// The reconcile dispatcher, with each reconciler's function played in process by its
/// handler: what the work queue's sample batch becomes.
struct InProcess<'a>(&'a Functions<MemStore, SimEc2, MemBus>);

impl capstan_runtime::dispatch::Invoke for InProcess<'_> {
    async fn invoke(
        &self,
        reconciler: Reconciler,
        event: SqsEvent,
    ) -> Result<
        aws_lambda_events::event::sqs::SqsBatchResponse,
        capstan_runtime::dispatch::InvokeError,
    > {
        Ok(self.0.queue(reconciler, &event).await)
    }
}

#[test]
fn the_work_queue_sample_splits_into_the_reconcilers_own_samples() {
    let groups = capstan_runtime::dispatch::group(&sample("sqs-work-queue.json"));
    let bodies = |e: &SqsEvent| -> Vec<serde_json::Value> {
        e.records
            .iter()
            .filter_map(|m| serde_json::from_str(m.body.as_deref()?).ok())
            .collect()
    };
    let own: SqsEvent = sample("sqs-cluster-changed.json");
    let mut expected = bodies(&own);
    expected.retain(|b| b.get("detail-type").is_some());
    assert_eq!(
        bodies(&groups.by_reconciler[&Reconciler::Cluster]),
        expected
    );
    assert_eq!(
        bodies(&groups.by_reconciler[&Reconciler::InstanceEvents]),
        bodies(&sample("sqs-instance-state-change.json"))
    );
    assert_eq!(groups.by_reconciler.len(), 2);
    assert_eq!(
        groups.unreadable,
        vec!["d3b07384-d113-4ec8-98c4-b3a2f1d0e9c8"]
    );
}

#[tokio::test]
async fn the_dispatcher_hands_each_reconciler_its_share_and_answers_their_failures() {
    // An hour after the events: instance-events drops the old notification.
    let w = world("2026-01-01T01:00:00Z");
    apply_quickstart(&w).await;
    let response = capstan_runtime::dispatch::dispatch(
        &InProcess(&w.functions),
        &sample("sqs-work-queue.json"),
    )
    .await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["d3b07384-d113-4ec8-98c4-b3a2f1d0e9c8"]);
    let deployment = ObjectKey::new("default", "demo", Kind::MachineDeployment, "demo-workers");
    assert!(
        w.store
            .get(&ItemKey::of(&deployment, Part::Desired))
            .is_some(),
        "the cluster reconciler expanded the Cluster"
    );
}

#[tokio::test]
async fn instance_events_drops_an_old_notification_for_an_instance_no_machine_records() {
    // An hour after the event: past the patience for unrecorded launches.
    let w = world("2026-01-01T01:00:00Z");
    let response = w
        .functions
        .queue(
            Reconciler::InstanceEvents,
            &sample("sqs-instance-state-change.json"),
        )
        .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
}

#[tokio::test]
async fn instance_events_retries_a_fresh_notification_for_an_instance_not_recorded_yet() {
    // A second after the event: the launch may not be recorded yet, or the index may lag.
    let w = world("2026-01-01T00:00:01Z");
    let response = w
        .functions
        .queue(
            Reconciler::InstanceEvents,
            &sample("sqs-instance-state-change.json"),
        )
        .await;
    assert_eq!(response.batch_item_failures.len(), 1);
}

#[tokio::test]
async fn instance_events_takes_a_spot_interruption_warning_for_an_unknown_instance_without_failing()
{
    let w = world("2026-01-01T00:00:01Z");
    let response = w
        .functions
        .queue(
            Reconciler::InstanceEvents,
            &sample("sqs-spot-interruption-warning.json"),
        )
        .await;
    // No Machine records the instance: nothing to mark, nothing to retry.
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
}

#[tokio::test]
async fn drift_sweep_runs_on_the_scheduled_event() {
    let w = world("2026-01-01T00:05:00Z");
    apply_quickstart(&w).await;
    let report = w
        .functions
        .schedule(&sample("scheduled-event.json"))
        .await
        .expect("sweep");
    assert_eq!(report.resynced, 3, "the Cluster and its two MachineClasses");
    assert!(report.orphans_terminated.is_empty());
}

/// `capstan apply -f examples/quickstart.yaml` into the world's table.
async fn apply_quickstart(w: &World) {
    let objects = capstan_model::manifest::read_manifests(
        "quickstart.yaml",
        include_str!("../../../examples/quickstart.yaml"),
    )
    .expect("quickstart");
    capstan_runtime::apply::apply(&w.store, &objects)
        .await
        .expect("apply");
}
