//! Who hears what: the event names, each reconciler's EventBridge rule patterns, and
//! how a message on the one work queue names the reconciler it is for (`wrap`,
//! `unwrap`, `Reconciler::input_template`). The in-memory bus, the SAM template (checked
//! by a test), the endpoint runtime's provisioning, the AWS bus's re-queues and the
//! reconcile dispatcher are all built from this one list.

use capstan_model::Kind;
use serde_json::{Value, json};

/// Source of the events Capstan publishes about its own objects.
pub const SOURCE: &str = "capstan";
/// Source and detail types of the EC2 events Capstan consumes from the default bus.
pub const EC2_SOURCE: &str = "aws.ec2";
pub const EC2_STATE_CHANGE: &str = "EC2 Instance State-change Notification";
/// EC2's two-minute warning before it reclaims a spot instance
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html>).
pub const EC2_SPOT_INTERRUPTION: &str = "EC2 Spot Instance Interruption Warning";
/// EC2's signal that a spot instance is at elevated risk of interruption
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/rebalance-recommendations.html>).
pub const EC2_REBALANCE: &str = "EC2 Instance Rebalance Recommendation";
/// Detail type the drift sweep and re-queues use to ask for a reconcile.
pub const RESYNC: &str = "Resync";

/// The detail type of a change to an object of `kind`: "Machine Changed".
pub fn changed(kind: Kind) -> String {
    format!("{kind} Changed")
}

/// Each controller that consumes a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reconciler {
    Cluster,
    Deployment,
    MachineSet,
    Machine,
    HealthCheck,
    InstanceEvents,
}

/// Messages one reconciler invocation takes at once: the SQS event source mapping's
/// `BatchSize` in infra/template.yaml (tests/tests/infra.rs holds them equal), gathered
/// for at most a second. 100 rather than SQS's default 10 so that a pool's events
/// coalesce: its MachineSet and health check are reconciled once per up to 100 of
/// their Machines' events, each pass reading the set's Machines, and the Machine
/// reconciler's identical launches share one call (issue 16).
pub const BATCH_SIZE: usize = 100;

impl Reconciler {
    pub const ALL: [Reconciler; 6] = [
        Reconciler::Cluster,
        Reconciler::Deployment,
        Reconciler::MachineSet,
        Reconciler::Machine,
        Reconciler::HealthCheck,
        Reconciler::InstanceEvents,
    ];

    /// The function's (and its queue's) name.
    pub fn name(self) -> &'static str {
        match self {
            Reconciler::Cluster => "cluster-reconciler",
            Reconciler::Deployment => "deployment-reconciler",
            Reconciler::MachineSet => "machineset-reconciler",
            Reconciler::Machine => "machine-reconciler",
            Reconciler::HealthCheck => "healthcheck-reconciler",
            Reconciler::InstanceEvents => "instance-events",
        }
    }

    pub fn from_name(name: &str) -> Option<Reconciler> {
        Reconciler::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The kind whose objects this reconciler owns (none for instance events).
    pub fn kind(self) -> Option<Kind> {
        match self {
            Reconciler::Cluster => Some(Kind::Cluster),
            Reconciler::Deployment => Some(Kind::MachineDeployment),
            Reconciler::MachineSet => Some(Kind::MachineSet),
            Reconciler::Machine => Some(Kind::Machine),
            Reconciler::HealthCheck => Some(Kind::MachineHealthCheck),
            Reconciler::InstanceEvents => None,
        }
    }

    /// The reconciler that owns objects of `kind`. MachineClasses have no reconciler of
    /// their own: the deployment reconciler takes them in with the deployments that use them.
    pub fn for_kind(kind: Kind) -> Reconciler {
        match kind {
            Kind::Cluster => Reconciler::Cluster,
            Kind::MachineClass | Kind::MachineDeployment => Reconciler::Deployment,
            Kind::MachineSet => Reconciler::MachineSet,
            Kind::Machine => Reconciler::Machine,
            Kind::MachineHealthCheck => Reconciler::HealthCheck,
        }
    }

    /// EventBridge event patterns; an event matching any of them lands on this queue.
    pub fn patterns(self) -> Vec<Value> {
        let own = |kinds: &[Kind]| {
            json!({
                "source": [SOURCE],
                "detail-type": kinds.iter().map(|k| changed(*k)).chain([RESYNC.to_string()]).collect::<Vec<_>>(),
                "detail": { "kind": kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>() },
            })
        };
        let owned_by = |kind: Kind| json!({ "source": [SOURCE], "detail": { "owner": { "kind": [kind.as_str()] } } });
        match self {
            Reconciler::Cluster => vec![own(&[Kind::Cluster]), owned_by(Kind::Cluster)],
            Reconciler::Deployment => vec![
                own(&[Kind::MachineDeployment, Kind::MachineClass]),
                owned_by(Kind::MachineDeployment),
            ],
            Reconciler::MachineSet => vec![own(&[Kind::MachineSet]), owned_by(Kind::MachineSet)],
            Reconciler::Machine => vec![own(&[Kind::Machine])],
            // A Machine's health feeds every check that selects it.
            Reconciler::HealthCheck => vec![
                own(&[Kind::MachineHealthCheck]),
                json!({ "source": [SOURCE], "detail-type": [changed(Kind::Machine)] }),
            ],
            Reconciler::InstanceEvents => vec![json!({
                "source": [EC2_SOURCE],
                "detail-type": [EC2_STATE_CHANGE, EC2_SPOT_INTERRUPTION, EC2_REBALANCE],
            })],
        }
    }
}

/// Whether `event` (an EventBridge event, or a stream record, as JSON) matches
/// `pattern`. The subset of the pattern language Capstan uses: nested objects whose
/// leaves are arrays of allowed values or `{"prefix": …}` rules; a field the pattern
/// names must be present and equal one of them, or begin with the prefix.
pub fn matches(pattern: &Value, event: &Value) -> bool {
    match (pattern, event) {
        (Value::Object(p), Value::Object(e)) => p
            .iter()
            .all(|(k, sub)| e.get(k).is_some_and(|v| matches(sub, v))),
        (Value::Array(allowed), v) => allowed.iter().any(|a| match (a, v) {
            (Value::Object(rule), Value::String(s)) if rule.len() == 1 => rule
                .get("prefix")
                .and_then(Value::as_str)
                .is_some_and(|p| s.starts_with(p)),
            _ => a == v,
        }),
        _ => false,
    }
}

/// The stream mapping's filter (infra/template.yaml, `TableStream`'s `FilterCriteria`):
/// only records of Capstan's objects invoke the stream router. Every kind's sort key
/// begins `Cluster#` or `Machine`; requeue markers (`Requeue#…`, [`crate::requeue`])
/// and items of other writers' making would invoke it for nothing.
pub fn stream_filter() -> Value {
    json!({"dynamodb": {"Keys": {"sk": {"S": [{"prefix": "Cluster#"}, {"prefix": "Machine"}]}}}})
}

/// The queues an event goes to.
pub fn targets(event: &Value) -> Vec<Reconciler> {
    Reconciler::ALL
        .into_iter()
        .filter(|r| r.patterns().iter().any(|p| matches(p, event)))
        .collect()
}

// ---------------------------------------------------------------- the work queue

/// The name (after the installation's prefix) of the one work queue every reconciler's
/// rule feeds (`<installation>-work`), read by the reconcile dispatcher.
pub const WORK_QUEUE: &str = "work";
/// The name (after the prefix) of the one dead-letter queue (`<installation>-dlq`): the
/// work queue's redrive target and the stream router's and drift sweep's on-failure
/// destination.
pub const DEAD_LETTER_QUEUE: &str = "dlq";
/// The field of a work-queue message that names the reconciler it is for.
pub const WRAPPER_RECONCILER: &str = "reconciler";
/// The field of a work-queue message that holds the EventBridge event.
pub const WRAPPER_EVENT: &str = "event";

/// Why a work-queue message cannot be handed to a reconciler.
#[derive(Debug, thiserror::Error)]
pub enum UnwrapError {
    #[error("the body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("no \"reconciler\" field naming a reconciler")]
    NoReconciler,
    #[error("unknown reconciler {0:?}")]
    UnknownReconciler(String),
    #[error("no \"event\" object")]
    NoEvent,
}

impl Reconciler {
    /// The InputTransformer template of this reconciler's rule: the whole event
    /// (`<aws.events.event.json>`, which EventBridge documents as the full original
    /// event, detail included; `<aws.events.event>` is the event *without* its detail)
    /// wrapped with the reconciler's name, as [`wrap`] writes it and [`unwrap`] reads it.
    /// <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html>
    pub fn input_template(self) -> String {
        format!(
            "{{\"{WRAPPER_RECONCILER}\":\"{}\",\"{WRAPPER_EVENT}\":<aws.events.event.json>}}",
            self.name()
        )
    }
}

/// A work-queue message body: `event` (an EventBridge event as JSON) for `reconciler`,
/// in the shape the rules' input transformers deliver (Bus::requeue writes the same).
pub fn wrap(reconciler: Reconciler, event: &Value) -> Value {
    json!({ WRAPPER_RECONCILER: reconciler.name(), WRAPPER_EVENT: event })
}

/// The reconciler a work-queue message body is for, and the event it carries.
pub fn unwrap(body: &str) -> Result<(Reconciler, Value), UnwrapError> {
    let mut v: Value = serde_json::from_str(body).map_err(UnwrapError::NotJson)?;
    let name = v
        .get(WRAPPER_RECONCILER)
        .and_then(Value::as_str)
        .ok_or(UnwrapError::NoReconciler)?;
    let reconciler =
        Reconciler::from_name(name).ok_or_else(|| UnwrapError::UnknownReconciler(name.into()))?;
    match v.get_mut(WRAPPER_EVENT).map(Value::take) {
        Some(event @ Value::Object(_)) => Ok((reconciler, event)),
        _ => Err(UnwrapError::NoEvent),
    }
}

#[cfg(test)]
mod wrapping_tests {
    use super::*;

    #[test]
    fn a_wrapped_event_unwraps_to_its_reconciler_and_event() {
        let event = json!({"source": SOURCE, "detail-type": "Machine Changed", "detail": {"kind": "Machine"}});
        for r in Reconciler::ALL {
            let body = wrap(r, &event).to_string();
            let (got, inner) = unwrap(&body).expect("unwraps");
            assert_eq!((got, inner), (r, event.clone()));
        }
    }

    #[test]
    fn the_input_template_with_an_event_in_it_is_what_wrap_writes() {
        let event = json!({"source": SOURCE, "detail": {"kind": "Cluster"}});
        let body = Reconciler::Cluster
            .input_template()
            .replace("<aws.events.event.json>", &event.to_string());
        let v: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v, wrap(Reconciler::Cluster, &event));
    }

    #[test]
    fn a_body_without_a_known_reconciler_or_an_event_does_not_unwrap() {
        assert!(matches!(unwrap("{"), Err(UnwrapError::NotJson(_))));
        assert!(matches!(
            unwrap(r#"{"source":"capstan"}"#),
            Err(UnwrapError::NoReconciler)
        ));
        assert!(matches!(
            unwrap(r#"{"reconciler":"nope","event":{}}"#),
            Err(UnwrapError::UnknownReconciler(_))
        ));
        assert!(matches!(
            unwrap(r#"{"reconciler":"machine-reconciler","event":"x"}"#),
            Err(UnwrapError::NoEvent)
        ));
    }
}
