//! Who hears what: the event names, each reconciler's queue, and the EventBridge rule
//! patterns that feed it. The in-memory bus and (later) the SAM template and the
//! endpoint runtime are all built from this one list.

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

/// Whether `event` (an EventBridge event as JSON) matches `pattern`. The subset of the
/// pattern language Capstan uses: nested objects whose leaves are arrays of allowed
/// values; a field the pattern names must be present and equal one of them.
pub fn matches(pattern: &Value, event: &Value) -> bool {
    match (pattern, event) {
        (Value::Object(p), Value::Object(e)) => p
            .iter()
            .all(|(k, sub)| e.get(k).is_some_and(|v| matches(sub, v))),
        (Value::Array(allowed), v) => allowed.iter().any(|a| a == v),
        _ => false,
    }
}

/// The queues an event goes to.
pub fn targets(event: &Value) -> Vec<Reconciler> {
    Reconciler::ALL
        .into_iter()
        .filter(|r| r.patterns().iter().any(|p| matches(p, event)))
        .collect()
}
