//! The events Capstan publishes and consumes, in EventBridge's envelope: "<Kind>
//! Changed" (from the stream router), "Resync" (from re-queues and the drift sweep),
//! and EC2's "Instance State-change Notification".

use capstan_model::item::{self, Item, Part};
use capstan_model::{InstanceState, Kind, ObjectKey, OwnerReference, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ports::{BusEvent, ChangeKind, StreamRecord};
use crate::requeue::Chain;
use crate::routes::{EC2_SOURCE, EC2_STATE_CHANGE, RESYNC, SOURCE, changed};

/// What an object event says: which object, which of its items, and its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEvent {
    pub namespace: String,
    pub cluster: String,
    pub kind: Kind,
    pub name: String,
    /// "spec" or "status"; absent on a resync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    /// INSERT, MODIFY or REMOVE; absent on a resync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// The controlling owner; for objects nobody owns, their Cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerKey>,
    /// On a Cluster's resync: run the autoscaler's pass for the Cluster, not its
    /// reconcile ([`autoscale_event`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub autoscale: bool,
    /// On a requeue: when the reconcile that asked for it began (Unix milliseconds),
    /// so a stale one can be dropped on arrival ([`crate::requeue`]).
    #[serde(
        default,
        rename = "requeuedAt",
        skip_serializing_if = "Option::is_none"
    )]
    pub requeued_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerKey {
    pub kind: Kind,
    pub name: String,
}

impl ObjectEvent {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.cluster, self.kind, &self.name)
    }

    pub fn owner_key(&self) -> Option<ObjectKey> {
        self.owner
            .as_ref()
            .map(|o| ObjectKey::new(&self.namespace, &self.cluster, o.kind, &o.name))
    }
}

/// EC2's state-change detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStateChange {
    #[serde(rename = "instance-id")]
    pub instance_id: String,
    pub state: String,
}

/// Builds an event in EventBridge's envelope.
pub fn envelope(source: &str, detail_type: &str, detail: Value, now: Timestamp) -> BusEvent {
    let mut event = BusEvent::default();
    event.version = Some("0".to_string());
    event.source = source.to_string();
    event.detail_type = detail_type.to_string();
    event.time = chrono::DateTime::from_timestamp_millis(now.as_millisecond());
    event.resources = Some(Vec::new());
    event.detail = detail;
    event
}

/// The event for one stream record, or None when it says nothing new (an identical
/// rewrite) or the item is not Capstan's.
pub fn changed_event(record: &StreamRecord, now: Timestamp) -> Option<BusEvent> {
    if record.kind == ChangeKind::Modify && record.old_image == record.new_image {
        return None;
    }
    let (key, part) = record.key.parse()?;
    let image = record.new_image.as_ref().or(record.old_image.as_ref());
    let owner = image.and_then(controller_of).or_else(|| {
        (key.kind != Kind::Cluster).then(|| OwnerKey {
            kind: Kind::Cluster,
            name: key.cluster.clone(),
        })
    });
    let detail = ObjectEvent {
        namespace: key.namespace.clone(),
        cluster: key.cluster.clone(),
        kind: key.kind,
        name: key.name.clone(),
        part: Some(match part {
            Part::Desired => "spec".to_string(),
            Part::Observed => "status".to_string(),
        }),
        change: Some(
            match record.kind {
                ChangeKind::Insert => "INSERT",
                ChangeKind::Modify => "MODIFY",
                ChangeKind::Remove => "REMOVE",
            }
            .to_string(),
        ),
        owner,
        autoscale: false,
        requeued_at: None,
    };
    let mut event = envelope(
        SOURCE,
        &changed(key.kind),
        serde_json::to_value(detail).ok()?,
        now,
    );
    event.id = Some(format!("{}-{}", record.key.pk, record.sequence));
    Some(event)
}

fn controller_of(image: &Item) -> Option<OwnerKey> {
    let refs = item::from_attr(image.get("ownerReferences")?);
    let refs: Vec<OwnerReference> = serde_json::from_value(refs).ok()?;
    refs.into_iter().find(|r| r.controller).map(|r| OwnerKey {
        kind: r.kind,
        name: r.name,
    })
}

/// Asks the reconciler of `key`'s kind to look at it again.
pub fn resync_event(key: &ObjectKey, now: Timestamp) -> BusEvent {
    let detail = ObjectEvent {
        namespace: key.namespace.clone(),
        cluster: key.cluster.clone(),
        kind: key.kind,
        name: key.name.clone(),
        part: None,
        change: None,
        owner: None,
        autoscale: false,
        requeued_at: None,
    };
    envelope(
        SOURCE,
        RESYNC,
        serde_json::to_value(detail).unwrap_or(Value::Null),
        now,
    )
}

/// A resync of `cluster` (a Cluster's key) that asks for the autoscaler's pass: the
/// scheduled check and its follow-ups while pods wait. It travels the Cluster's own
/// route to the cluster-reconciler's queue, so no rule or queue is added for it.
pub fn autoscale_event(cluster: &ObjectKey, now: Timestamp) -> BusEvent {
    let mut event = resync_event(cluster, now);
    if let Some(detail) = event.detail.as_object_mut() {
        detail.insert("autoscale".into(), Value::Bool(true));
    }
    event
}

/// The message that looks at `key`'s `chain` again, asked for by a reconcile that
/// began at `requested_at` ([`crate::requeue`]).
pub fn requeue_event(
    key: &ObjectKey,
    chain: Chain,
    requested_at: Timestamp,
    now: Timestamp,
) -> BusEvent {
    let mut event = match chain {
        Chain::Reconcile => resync_event(key, now),
        Chain::Autoscale => autoscale_event(key, now),
    };
    if let Some(detail) = event.detail.as_object_mut() {
        detail.insert("requeuedAt".into(), requested_at.as_millisecond().into());
    }
    event
}

/// When the reconcile that asked for `event` (a requeue) began; None for any other event.
pub fn requeued_at(event: &BusEvent) -> Option<Timestamp> {
    let ms = event.detail.get("requeuedAt")?.as_i64()?;
    Timestamp::from_millisecond(ms).ok()
}

/// An EC2 state-change notification's instance, state and time; None if it is not one.
pub fn instance_state_change(event: &BusEvent) -> Option<(String, InstanceState, Timestamp)> {
    if event.source != EC2_SOURCE || event.detail_type != EC2_STATE_CHANGE {
        return None;
    }
    let detail: InstanceStateChange = serde_json::from_value(event.detail.clone()).ok()?;
    let state = InstanceState::parse(&detail.state)?;
    let at = event
        .time
        .and_then(|t| Timestamp::from_millisecond(t.timestamp_millis()).ok())?;
    Some((detail.instance_id, state, at))
}

/// When the event was published.
pub fn event_time(event: &BusEvent) -> Option<Timestamp> {
    event
        .time
        .and_then(|t| Timestamp::from_millisecond(t.timestamp_millis()).ok())
}

/// Which scheduled job an EventBridge schedule's event asks the drift-sweep function
/// for. One function serves two schedules (infra/template.yaml: `Schedule`, every 5
/// minutes, the sweep; `Autoscale`, every minute, [`Functions::autoscale_schedule`]),
/// so idle cost gains no function, log group or alarm.
///
/// The minute schedule sends a constant input (EventBridge then replaces the whole
/// event with it) whose detail is `{"check": "autoscale"}`; anything else, including
/// EventBridge's own `Scheduled Event` with its empty detail, is the sweep. A sweep is
/// the safe reading of an unknown event: it does the autoscale check's work too.
///
/// [`Functions::autoscale_schedule`]: crate::functions::Functions::autoscale_schedule
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduledJob {
    /// The drift sweep (`Functions::schedule`).
    Sweep,
    /// The autoscaler's minute check (`Functions::autoscale_schedule`).
    AutoscaleCheck,
}

/// The detail's `check` value that asks for the autoscaler's minute check.
pub const AUTOSCALE_CHECK: &str = "autoscale";

impl ScheduledJob {
    /// The job `event` asks for.
    pub fn of(event: &BusEvent) -> Self {
        match event.detail.get("check").and_then(Value::as_str) {
            Some(AUTOSCALE_CHECK) => Self::AutoscaleCheck,
            _ => Self::Sweep,
        }
    }
}

#[cfg(test)]
mod scheduled_job_tests {
    use super::*;

    /// EventBridge's scheduled event, as the five-minute rule delivers it.
    const SCHEDULED_EVENT: &str = r#"{
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-01T08:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/capstan-drift-sweep"],
        "detail": {}
    }"#;

    /// The minute rule's constant input, exactly as infra/template.yaml writes it.
    fn autoscale_input() -> String {
        let template = include_str!("../../../infra/template.yaml");
        let line = template
            .lines()
            .find(|l| l.contains(r#""check":"autoscale""#))
            .expect("the template's autoscale schedule input");
        let quoted = line.trim().trim_start_matches("Input:").trim();
        quoted.trim_matches('\'').to_string()
    }

    #[test]
    fn the_five_minute_scheduled_event_is_the_sweep() {
        let event: BusEvent = serde_json::from_str(SCHEDULED_EVENT).unwrap();
        assert_eq!(ScheduledJob::of(&event), ScheduledJob::Sweep);
    }

    #[test]
    fn the_minute_rules_input_is_the_autoscale_check() {
        let event: BusEvent = serde_json::from_str(&autoscale_input()).unwrap();
        assert_eq!(ScheduledJob::of(&event), ScheduledJob::AutoscaleCheck);
    }

    #[test]
    fn an_unknown_check_is_the_sweep() {
        let mut event: BusEvent = serde_json::from_str(SCHEDULED_EVENT).unwrap();
        event.detail = serde_json::json!({"check": "something-else"});
        assert_eq!(ScheduledJob::of(&event), ScheduledJob::Sweep);
    }
}
