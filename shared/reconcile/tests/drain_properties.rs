//! Properties of the drain decisions over random Nodes, pods, eviction outcomes and
//! clocks: what is evicted, when a drain may end, and that a deletion never steps back.

use std::collections::BTreeMap;

use capstan_model::labels::{DRAIN_LABEL, DRAIN_SKIP, DRAIN_WAIT_COMPLETED, EXCLUDE_NODE_DRAINING};
use capstan_model::*;
use capstan_reconcile::drain::{
    DrainNode, DrainPod, Evicted, Gate, MAX_EVICTIONS_PER_PASS, NodeView, PassOutcome, PodVerdict,
    before_terminate, record, verdict, work,
};
use proptest::prelude::*;

fn at(s: u32) -> Timestamp {
    Timestamp::from_second(1_767_225_600 + i64::from(s)).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn pod_strategy(i: usize) -> impl Strategy<Value = DrainPod> {
    (
        0u8..4, // owner: ReplicaSet, DaemonSet, Job, none
        any::<bool>(),
        0u8..3, // drain label: none, skip, wait-completed
        prop::option::of(0u32..120),
        0u8..4, // phase
    )
        .prop_map(move |(owner, mirror, label, deleting, phase)| {
            let mut labels = BTreeMap::new();
            match label {
                1 => {
                    labels.insert(DRAIN_LABEL.to_string(), DRAIN_SKIP.to_string());
                }
                2 => {
                    labels.insert(DRAIN_LABEL.to_string(), DRAIN_WAIT_COMPLETED.to_string());
                }
                _ => {}
            }
            DrainPod {
                namespace: "default".into(),
                name: format!("pod-{i}"),
                labels,
                controller_kind: match owner {
                    0 => Some("ReplicaSet".into()),
                    1 => Some("DaemonSet".into()),
                    2 => Some("Job".into()),
                    _ => None,
                },
                mirror: mirror && owner == 3,
                deleting_since: deleting.map(at),
                phase: ["Pending", "Running", "Succeeded", "Failed"][usize::from(phase)].into(),
            }
        })
}

fn pods_strategy() -> impl Strategy<Value = Vec<DrainPod>> {
    (0usize..40).prop_flat_map(|n| (0..n).map(pod_strategy).collect::<Vec<_>>())
}

fn node_strategy() -> impl Strategy<Value = DrainNode> {
    (any::<bool>(), 0u8..3).prop_map(|(cordoned, ready)| DrainNode {
        name: "ip-10-0-1-5.ec2.internal".into(),
        unschedulable: cordoned,
        ready: Some(
            [
                ConditionStatus::True,
                ConditionStatus::False,
                ConditionStatus::Unknown,
            ][usize::from(ready)],
        ),
        volumes_attached: Vec::new(),
    })
}

fn draining(timeout: Option<i32>, since: u32) -> Machine {
    let mut m = Machine::default();
    m.metadata.name = "web-1".into();
    m.spec.deletion.node_drain_timeout_seconds = timeout;
    let gate = before_terminate(&mut m, at(since));
    assert_eq!(gate, Gate::Workload);
    m
}

proptest! {
    /// Only pods that need it are evicted, at most the cap a pass, in a stable order;
    /// an uncordoned Node is cordoned first.
    #[test]
    fn a_pass_evicts_only_pods_that_need_it(
        pods in pods_strategy(),
        node in node_strategy(),
        now in 100u32..200,
    ) {
        let m = draining(None, 0);
        let view = NodeView::Found { node: node.clone(), pods: pods.clone(), attachments: vec![] };
        let w = work(&m, &view, at(now));
        prop_assert!(w.evict.len() <= MAX_EVICTIONS_PER_PASS);
        prop_assert_eq!(w.cordon.is_some(), !node.unschedulable);
        let mut sorted = w.evict.clone();
        sorted.sort();
        prop_assert_eq!(&sorted, &w.evict);
        for key in &w.evict {
            let pod = pods.iter().find(|p| p.key() == *key).expect("a pod of the node");
            prop_assert!(pod.controller_kind.as_deref() != Some("DaemonSet"));
            prop_assert!(!pod.mirror);
            prop_assert!(pod.deleting_since.is_none());
            prop_assert!(!pod.labels.contains_key(DRAIN_LABEL));
            prop_assert!(pod.phase == "Pending" || pod.phase == "Running");
        }
        let need = pods.iter().filter(|p| verdict(p, &node, at(now)) == PodVerdict::Evict).count();
        prop_assert_eq!(w.evict.len(), need.min(MAX_EVICTIONS_PER_PASS));
    }

    /// The drain ends (the step moves on) only when no pod is left that needs eviction,
    /// is terminating or is waited for; otherwise the step stays and says why.
    #[test]
    fn the_drain_ends_only_when_nothing_is_left_to_wait_for(
        pods in pods_strategy(),
        node in node_strategy(),
        blocked in any::<bool>(),
        now in 100u32..200,
    ) {
        let m = draining(None, 0);
        let view = NodeView::Found { node: node.clone(), pods: pods.clone(), attachments: vec![] };
        let w = work(&m, &view, at(now));
        let outcome = PassOutcome {
            cordon_failed: None,
            evictions: w.evict.iter().map(|k| (k.clone(), if blocked {
                Evicted::Blocked("would violate the pod's disruption budget web".into())
            } else {
                Evicted::Started
            })).collect(),
            ..PassOutcome::default()
        };
        let waiting = pods.iter().any(|p| verdict(p, &node, at(now)) != PodVerdict::Ignore);
        let next = record(&m, &view, &outcome, at(now)).unwrap_or_else(|| m.clone());
        let step = next.status.deletion.as_ref().map(|d| d.step);
        if waiting {
            prop_assert_eq!(step, Some(DeletionStep::DrainingNode));
            let c = next.status.conditions.get("Deleting").expect("Deleting");
            prop_assert!(!c.message.is_empty());
        } else {
            prop_assert_eq!(step, Some(DeletionStep::WaitingForVolumeDetach));
        }
    }

    /// Without a drain timeout or the exclusion, a drain that never completes holds the
    /// termination forever; with a timeout, exactly until it passes.
    #[test]
    fn only_the_timeout_or_the_exclusion_lets_an_unfinished_drain_go(
        timeout in prop::option::of(1i32..3600),
        excluded in any::<bool>(),
        later in 0u32..100_000,
    ) {
        let mut m = draining(timeout, 0);
        if excluded {
            m.metadata.annotations.insert(EXCLUDE_NODE_DRAINING.into(), String::new());
        }
        let before = m.status.deletion.clone().expect("recorded").step;
        before_terminate(&mut m, at(later));
        let d = m.status.deletion.clone().expect("recorded");
        prop_assert!(d.step >= before, "never steps back");
        let out_of_time = timeout.is_some_and(|t| u64::from(later) >= u64::try_from(t).unwrap_or(0));
        prop_assert_eq!(d.step > DeletionStep::DrainingNode, excluded || out_of_time);
        prop_assert_eq!(d.drain_skipped.is_some(), excluded || out_of_time);
    }
}
