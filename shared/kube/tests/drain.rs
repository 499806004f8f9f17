//! A deleting Machine's drain passes through KubeWorkload against the fixture API
//! server, over real HTTP: the cordon is a merge patch, a budget's 429 (a `Status` with
//! a `DisruptionBudget` cause) is recorded on the Machine with the budget's name and
//! tried again on the next pass, DaemonSet and mirror pods are left, and the drain ends
//! once the evicted pods are gone.

use std::collections::BTreeMap;

use capstan_kube::fixture::ApiServer;
use capstan_kube::{KubeWorkload, StaticConnect};
use capstan_model::meta::condition;
use capstan_model::{
    ClusterAccess, DeletionStep, EksAccess, Machine, MachinePhase, NodeRef, Timestamp,
};
use capstan_reconcile::drain::{Gate, before_terminate};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

const INSTANCE: &str = "i-0123456789abcdef0";

fn access() -> ClusterAccess {
    ClusterAccess {
        eks: Some(EksAccess {
            cluster_name: "prod".into(),
            region: Some("eu-west-1".into()),
        }),
        kubeconfig: None,
    }
}

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_767_225_600 + s).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn node() -> core::Node {
    core::Node {
        metadata: ObjectMeta {
            name: Some("n1".into()),
            ..ObjectMeta::default()
        },
        spec: Some(core::NodeSpec {
            provider_id: Some(format!("aws:///eu-west-1a/{INSTANCE}")),
            ..core::NodeSpec::default()
        }),
        status: Some(core::NodeStatus {
            conditions: Some(vec![core::NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..core::NodeCondition::default()
            }]),
            ..core::NodeStatus::default()
        }),
    }
}

fn pod(name: &str, owner: Option<&str>, labels: &[(&str, &str)]) -> core::Pod {
    core::Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("apps".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            owner_references: owner.map(|kind| {
                vec![OwnerReference {
                    kind: kind.into(),
                    name: format!("{name}-owner"),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(core::PodSpec {
            node_name: Some("n1".into()),
            containers: vec![core::Container {
                name: "app".into(),
                ..core::Container::default()
            }],
            ..core::PodSpec::default()
        }),
        status: Some(core::PodStatus {
            phase: Some("Running".into()),
            ..core::PodStatus::default()
        }),
    }
}

fn budget(allowed: i32) -> policy::PodDisruptionBudget {
    policy::PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some("web-pdb".into()),
            namespace: Some("apps".into()),
            ..ObjectMeta::default()
        },
        spec: Some(policy::PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..LabelSelector::default()
            }),
            ..policy::PodDisruptionBudgetSpec::default()
        }),
        status: Some(policy::PodDisruptionBudgetStatus {
            disruptions_allowed: allowed,
            desired_healthy: 3,
            current_healthy: 3,
            expected_pods: 3,
            ..policy::PodDisruptionBudgetStatus::default()
        }),
    }
}

fn deleting_machine() -> Machine {
    let mut m = Machine::default();
    m.metadata.name = "web-1".into();
    m.metadata.namespace = "default".into();
    m.spec.cluster_name = "prod".into();
    m.status.phase = MachinePhase::Deleting;
    m.status.instance_id = Some(INSTANCE.into());
    m.status.node_ref = Some(NodeRef {
        name: "n1".into(),
        uid: String::new(),
    });
    m
}

#[tokio::test]
async fn a_budget_refusal_over_http_is_named_and_the_next_pass_evicts() {
    let server = ApiServer::start().await.expect("fixture starts");
    let api = server.handle();
    let workload = KubeWorkload::new(StaticConnect::new(&server.url()).expect("url"));
    api.add_node(node());
    api.add_pod(pod("web-0", Some("ReplicaSet"), &[("app", "web")]));
    api.add_pod(pod("agent-n1", Some("DaemonSet"), &[]));
    api.add_budget(budget(0));

    let mut m = deleting_machine();
    assert_eq!(before_terminate(&mut m, at(0)), Gate::Workload);
    let m = capstan_runtime::drain::pass(&workload, &m, INSTANCE, &access(), false, at(1))
        .await
        .expect("recorded");
    // Cordoned with a merge patch; the eviction was refused by the budget, by name.
    let cordoned = api.node("n1").expect("node");
    assert_eq!(cordoned.spec.and_then(|s| s.unschedulable), Some(true));
    let d = m.status.deletion.clone().expect("recorded");
    assert_eq!(d.step, DeletionStep::DrainingNode);
    let c = m
        .status
        .conditions
        .get(condition::DELETING)
        .cloned()
        .expect("Deleting");
    assert!(
        c.message.contains("pod apps/web-0: cannot evict"),
        "{}",
        c.message
    );
    assert!(c.message.contains("web-pdb"), "{}", c.message);
    assert!(
        api.pod("apps", "web-0")
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    );

    // The budget allows one: the next pass evicts (the DaemonSet's pod is left).
    api.set_disruptions_allowed("apps", "web-pdb", 1);
    let m = capstan_runtime::drain::pass(&workload, &m, INSTANCE, &access(), false, at(20))
        .await
        .expect("recorded");
    assert!(
        api.pod("apps", "web-0")
            .is_some_and(|p| p.metadata.deletion_timestamp.is_some())
    );
    assert!(
        api.pod("apps", "agent-n1")
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    );
    let c = m
        .status
        .conditions
        .get(condition::DELETING)
        .cloned()
        .expect("Deleting");
    assert!(c.message.contains("deletionTimestamp"), "{}", c.message);

    // Once the evicted pod is gone, the drain is complete.
    api.finish_terminating();
    let m = capstan_runtime::drain::pass(&workload, &m, INSTANCE, &access(), false, at(40))
        .await
        .expect("recorded");
    let d = m.status.deletion.clone().expect("recorded");
    assert_eq!(d.step, DeletionStep::WaitingForVolumeDetach);
}
