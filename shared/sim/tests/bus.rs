mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use capstan_model::Kind;
use capstan_runtime::routes::{Reconciler, SOURCE, changed};
use capstan_runtime::{Bus, BusError, BusEvent};
use capstan_sim::{Delivery, ManualClock, MemBus};
use common::{block_on, clock, start};
use serde_json::json;

fn machine_changed(name: &str) -> BusEvent {
    let mut e = BusEvent::default();
    e.source = SOURCE.into();
    e.detail_type = changed(Kind::Machine);
    e.detail = json!({
        "kind": "Machine",
        "namespace": "default",
        "cluster": "prod",
        "name": name,
        "owner": { "kind": "MachineSet", "name": "web-abc" },
    });
    e
}

fn ec2_state_change(id: &str) -> BusEvent {
    let mut e = BusEvent::default();
    e.version = Some("0".into());
    e.id = Some("7bf73129-1428-4cd3-a780-95db273d1602".into());
    e.source = "aws.ec2".into();
    e.detail_type = "EC2 Instance State-change Notification".into();
    e.detail = json!({ "instance-id": id, "state": "running" });
    e
}

fn bus(delivery: Delivery) -> (ManualClock, MemBus) {
    let (clock, shared) = clock();
    (clock, MemBus::new(shared, delivery))
}

fn queues_with_messages(bus: &MemBus) -> BTreeSet<Reconciler> {
    Reconciler::ALL
        .into_iter()
        .filter(|q| !bus.receive(*q, 10).is_empty())
        .collect()
}

#[test]
fn a_machine_change_wakes_its_reconciler_its_machineset_and_health_checks() {
    let (_, bus) = bus(Delivery::default());
    block_on(bus.put_events(vec![machine_changed("web-abc-1")])).unwrap();
    assert_eq!(bus.pending(), 3);
    assert_eq!(
        queues_with_messages(&bus),
        BTreeSet::from([
            Reconciler::Machine,
            Reconciler::MachineSet,
            Reconciler::HealthCheck
        ])
    );
    assert_eq!(bus.published_total(), 1);
}

#[test]
fn ec2_state_changes_go_to_instance_events_only() {
    let (_, bus) = bus(Delivery::default());
    bus.publish(vec![ec2_state_change("i-0123456789abcdef0")]);
    assert_eq!(
        queues_with_messages(&bus),
        BTreeSet::from([Reconciler::InstanceEvents])
    );
}

#[test]
fn put_events_fills_id_version_and_time_like_eventbridge() {
    let (_, bus) = bus(Delivery::default());
    block_on(bus.put_events(vec![machine_changed("m")])).unwrap();
    let m = bus.receive(Reconciler::Machine, 1).remove(0);
    assert_eq!(m.event.version.as_deref(), Some("0"));
    assert_eq!(m.event.id.as_ref().map(String::len), Some(36));
    assert_eq!(
        m.event.time.map(|t| t.timestamp()),
        Some(start().as_second())
    );
    assert_eq!(m.receive_count, 1);
}

#[test]
fn an_unacknowledged_message_comes_back_after_the_visibility_timeout() {
    let (clock, bus) = bus(Delivery::default());
    bus.publish(vec![machine_changed("m")]);
    let first = bus.receive(Reconciler::Machine, 10);
    assert_eq!(first.len(), 1);
    assert!(bus.receive(Reconciler::Machine, 10).is_empty(), "in flight");
    assert_eq!(bus.visible(), 2, "the other two queues' copies");
    assert_eq!(bus.next_visible(), Some(start() + Duration::from_secs(30)));

    clock.advance(Duration::from_secs(30));
    let second = bus.receive(Reconciler::Machine, 10);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(second[0].receipt, first[0].receipt);

    assert!(
        !bus.ack(Reconciler::Machine, &first[0].receipt),
        "a stale receipt deletes nothing"
    );
    assert!(bus.ack(Reconciler::Machine, &second[0].receipt));
    clock.advance(Duration::from_secs(60));
    assert!(bus.receive(Reconciler::Machine, 10).is_empty());
    assert_eq!(bus.pending(), 2);
}

#[test]
fn a_message_received_max_receives_times_goes_to_the_dead_letter_queue() {
    let (clock, bus) = bus(Delivery {
        max_receives: 3,
        ..Delivery::default()
    });
    bus.publish(vec![ec2_state_change("i-0123456789abcdef0")]);
    for n in 1..=3 {
        let got = bus.receive(Reconciler::InstanceEvents, 10);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].receive_count, n);
        clock.advance(Duration::from_secs(30));
    }
    assert!(bus.receive(Reconciler::InstanceEvents, 10).is_empty());
    let dead = bus.dead_letters(Reconciler::InstanceEvents);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].receive_count, 3);
    assert_eq!(dead[0].event.detail["instance-id"], "i-0123456789abcdef0");
    assert_eq!(bus.pending(), 0);
    assert_eq!(bus.next_visible(), None);
}

#[test]
fn a_requeued_event_is_delivered_after_its_delay() {
    let (clock, bus) = bus(Delivery::default());
    block_on(bus.requeue(
        "machineset-reconciler",
        machine_changed("m"),
        Duration::from_secs(10),
    ))
    .unwrap();
    assert_eq!((bus.pending(), bus.visible()), (1, 0));
    assert_eq!(bus.next_visible(), Some(start() + Duration::from_secs(10)));
    clock.advance(Duration::from_secs(9));
    assert!(bus.receive(Reconciler::MachineSet, 10).is_empty());
    clock.advance(Duration::from_secs(1));
    let got = bus.receive(Reconciler::MachineSet, 10);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event.detail["name"], "m");
    // Only to the queue named: a requeue is not a publish.
    assert_eq!(bus.published_total(), 0);
    assert_eq!(bus.pending(), 1);

    let unknown = block_on(bus.requeue("no-such-queue", machine_changed("m"), Duration::ZERO));
    assert!(matches!(unknown, Err(BusError::Unavailable(_))));
}

#[test]
fn retry_later_makes_a_message_visible_after_the_delay() {
    let (clock, bus) = bus(Delivery::default());
    bus.publish(vec![ec2_state_change("i-0123456789abcdef0")]);
    let m = bus.receive(Reconciler::InstanceEvents, 1).remove(0);
    assert!(bus.retry_later(
        Reconciler::InstanceEvents,
        &m.receipt,
        Duration::from_secs(5)
    ));
    assert_eq!(bus.next_visible(), Some(start() + Duration::from_secs(5)));
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        bus.receive(Reconciler::InstanceEvents, 1)[0].receive_count,
        2
    );
    assert!(
        !bus.retry_later(Reconciler::InstanceEvents, &m.receipt, Duration::ZERO),
        "stale receipt"
    );
}

#[test]
fn duplicate_delivery_sends_every_event_twice() {
    let (_, bus) = bus(Delivery {
        duplicate: true,
        ..Delivery::default()
    });
    bus.publish(vec![ec2_state_change("i-0123456789abcdef0")]);
    let got = bus.receive(Reconciler::InstanceEvents, 10);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].event, got[1].event, "the same event");
    assert_ne!(got[0].id, got[1].id, "in two messages");
    assert_eq!(bus.published_total(), 1);
}

#[test]
fn a_seeded_shuffle_is_deterministic() {
    let order = |seed: Option<u64>| -> Vec<String> {
        let (_, bus) = bus(Delivery {
            shuffle_seed: seed,
            ..Delivery::default()
        });
        bus.publish(
            (0..10)
                .map(|i| ec2_state_change(&format!("i-{i:08x}")))
                .collect(),
        );
        bus.receive(Reconciler::InstanceEvents, 10)
            .into_iter()
            .map(|m| {
                m.event.detail["instance-id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let fifo = order(None);
    assert_eq!(
        fifo,
        (0..10).map(|i| format!("i-{i:08x}")).collect::<Vec<_>>()
    );
    let shuffled = order(Some(42));
    assert_eq!(shuffled, order(Some(42)));
    assert_ne!(shuffled, fifo);
    let mut sorted = shuffled.clone();
    sorted.sort();
    assert_eq!(sorted, fifo);
}

#[test]
fn receive_returns_at_most_max() {
    let (_, bus) = bus(Delivery::default());
    bus.publish(
        (0..5)
            .map(|i| ec2_state_change(&format!("i-{i:08x}")))
            .collect(),
    );
    assert_eq!(bus.receive(Reconciler::InstanceEvents, 2).len(), 2);
    assert_eq!(bus.receive(Reconciler::InstanceEvents, 10).len(), 3);
}

#[test]
fn fail_next_fails_one_publish_without_effect() {
    let (_, bus) = bus(Delivery::default());
    bus.fail_next(BusError::Throttled("ThrottlingException".into()));
    assert!(block_on(bus.put_events(vec![machine_changed("m")])).is_err());
    assert_eq!(bus.pending(), 0);
    block_on(bus.put_events(vec![machine_changed("m")])).unwrap();
    assert_eq!(bus.pending(), 3);
}
