//! KubeWorkload against the fixture API server, over real HTTP on 127.0.0.1.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use capstan_kube::fixture::{ApiServer, Fault, Handle};
use capstan_kube::{Connect, KubeWorkload, StaticConnect, Timeouts};
use capstan_model::meta::ConditionStatus;
use capstan_runtime::ports::{
    ClusterAccessKey, Eviction, MatchExpression, NodePatch, Operator, PodFilter, Taint, Workload,
    WorkloadError, WorkloadTarget,
};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::api::storage::v1 as storage;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

fn target() -> WorkloadTarget {
    WorkloadTarget {
        namespace: "default".into(),
        cluster: "prod".into(),
        access: ClusterAccessKey::Eks {
            cluster_name: "prod".into(),
            region: Some("eu-west-1".into()),
        },
    }
}

/// Short timeouts so the unreachable cases cost well under a second each.
fn quick() -> Timeouts {
    Timeouts {
        connect: Duration::from_millis(500),
        read: Duration::from_millis(700),
    }
}

async fn setup() -> (ApiServer, Handle, KubeWorkload<StaticConnect>) {
    let server = ApiServer::start().await.expect("fixture starts");
    let handle = server.handle();
    let connect = StaticConnect::new(&server.url()).expect("url");
    let workload = KubeWorkload::new(connect).with_timeouts(quick());
    (server, handle, workload)
}

fn node(name: &str, instance: &str) -> core::Node {
    core::Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("role".into(), "worker".into())])),
            ..ObjectMeta::default()
        },
        spec: Some(core::NodeSpec {
            provider_id: Some(format!("aws:///eu-west-1a/{instance}")),
            ..core::NodeSpec::default()
        }),
        status: Some(core::NodeStatus {
            conditions: Some(vec![core::NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                ..core::NodeCondition::default()
            }]),
            allocatable: Some(BTreeMap::from([("cpu".into(), Quantity("3920m".into()))])),
            volumes_attached: Some(vec![core::AttachedVolume {
                name: "kubernetes.io/csi/ebs.csi.aws.com^vol-1".into(),
                device_path: String::new(),
            }]),
            node_info: Some(core::NodeSystemInfo {
                kubelet_version: "v1.33.1-eks".into(),
                os_image: "Amazon Linux 2023".into(),
                ..core::NodeSystemInfo::default()
            }),
            ..core::NodeStatus::default()
        }),
    }
}

fn pod(name: &str, node: Option<&str>, phase: &str, labels: &[(&str, &str)]) -> core::Pod {
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
            ..ObjectMeta::default()
        },
        spec: Some(core::PodSpec {
            node_name: node.map(str::to_owned),
            containers: vec![core::Container {
                name: "app".into(),
                resources: Some(core::ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".into(), Quantity("250m".into())),
                        ("memory".into(), Quantity("128Mi".into())),
                    ])),
                    ..core::ResourceRequirements::default()
                }),
                ..core::Container::default()
            }],
            ..core::PodSpec::default()
        }),
        status: Some(core::PodStatus {
            phase: Some(phase.into()),
            ..core::PodStatus::default()
        }),
    }
}

fn budget(name: &str, app: &str, allowed: i32) -> policy::PodDisruptionBudget {
    policy::PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("apps".into()),
            ..ObjectMeta::default()
        },
        spec: Some(policy::PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".into(), app.into())])),
                ..LabelSelector::default()
            }),
            ..policy::PodDisruptionBudgetSpec::default()
        }),
        status: Some(policy::PodDisruptionBudgetStatus {
            disruptions_allowed: allowed,
            desired_healthy: 2,
            current_healthy: 2,
            expected_pods: 2,
            ..policy::PodDisruptionBudgetStatus::default()
        }),
    }
}

#[tokio::test]
async fn find_node_follows_pages_to_the_provider_id() {
    let (_server, api, workload) = setup().await;
    for i in 0..1200 {
        api.add_node(node(&format!("ip-10-0-{i:04}"), &format!("i-{i:017x}")));
    }
    let workload = workload.with_page_size(500);
    let found = workload
        .find_node(&target(), &format!("i-{:017x}", 1100))
        .await
        .expect("found")
        .expect("some");
    assert_eq!(found.name, "ip-10-0-1100");
    assert!(found.is_ready());
    assert_eq!(found.kubelet_version, "v1.33.1-eks");
    assert_eq!(found.allocatable["cpu"], "3920m");
    assert_eq!(
        found.volumes_attached,
        vec!["kubernetes.io/csi/ebs.csi.aws.com^vol-1"]
    );
    assert!(found.created.is_some());
    let pages: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/nodes")
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(
        pages
            .iter()
            .all(|r| r.query.as_deref().is_some_and(|q| q.contains("limit=500")))
    );

    assert_eq!(
        workload.find_node(&target(), "i-0ffffffffffffffff").await,
        Ok(None)
    );
    assert_eq!(
        workload.list_nodes(&target()).await.expect("list").len(),
        1200
    );
}

#[tokio::test]
async fn patch_sets_and_removes_labels_replaces_taints_and_cordons() {
    let (_server, api, workload) = setup().await;
    api.add_node(node("n1", "i-0000000000000001"));
    api.update_node("n1", |n| {
        n.spec.get_or_insert_with(Default::default).taints = Some(vec![core::Taint {
            key: "old".into(),
            effect: "NoSchedule".into(),
            ..core::Taint::default()
        }]);
    });
    let patch = NodePatch {
        labels: BTreeMap::from([
            ("capstan.dev/machine".into(), Some("web-0".into())),
            ("role".into(), None),
        ]),
        taints: Some(vec![Taint {
            key: "capstan.dev/draining".into(),
            value: Some("true".into()),
            effect: "NoExecute".into(),
        }]),
        unschedulable: Some(true),
    };
    let patched = workload
        .patch_node(&target(), "n1", patch)
        .await
        .expect("patched");
    assert_eq!(
        patched
            .labels
            .get("capstan.dev/machine")
            .map(String::as_str),
        Some("web-0")
    );
    assert!(!patched.labels.contains_key("role"));
    assert_eq!(patched.taints.len(), 1);
    assert_eq!(patched.taints[0].key, "capstan.dev/draining");
    assert!(patched.unschedulable);
    // The server's copy agrees, and the patch went as a merge patch.
    let stored = api.node("n1").expect("node");
    assert_eq!(stored.spec.and_then(|s| s.unschedulable), Some(true));
    let patch_req = api
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .expect("a PATCH");
    assert_eq!(
        patch_req.content_type.as_deref(),
        Some("application/merge-patch+json")
    );

    let uncordon = NodePatch {
        unschedulable: Some(false),
        taints: Some(vec![]),
        ..NodePatch::default()
    };
    let n = workload
        .patch_node(&target(), "n1", uncordon)
        .await
        .expect("patched");
    assert!(!n.unschedulable && n.taints.is_empty());
    assert_eq!(
        n.labels.get("capstan.dev/machine").map(String::as_str),
        Some("web-0")
    );

    // A patch never creates a Node: gone is final.
    let e = workload
        .patch_node(&target(), "absent", NodePatch::default())
        .await
        .expect_err("absent");
    assert!(
        matches!(&e, WorkloadError::Invalid(m) if m.contains("not found")),
        "{e:?}"
    );
    // The API server's validation is final too.
    let bad = NodePatch {
        taints: Some(vec![Taint {
            key: "k".into(),
            value: None,
            effect: "Sometimes".into(),
        }]),
        ..NodePatch::default()
    };
    let e = workload
        .patch_node(&target(), "n1", bad)
        .await
        .expect_err("422");
    assert!(matches!(e, WorkloadError::Invalid(_)), "{e:?}");
}

#[tokio::test]
async fn a_conflict_is_conflict() {
    let (_server, api, workload) = setup().await;
    api.add_node(node("n1", "i-0000000000000001"));
    api.push_fault(Fault::Status(409));
    let e = workload
        .patch_node(&target(), "n1", NodePatch::default())
        .await
        .expect_err("409");
    assert!(matches!(e, WorkloadError::Conflict(_)), "{e:?}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn delete_twice_succeeds_twice() {
    let (_server, api, workload) = setup().await;
    api.add_node(node("n1", "i-0000000000000001"));
    workload
        .delete_node(&target(), "n1")
        .await
        .expect("deleted");
    assert!(api.node("n1").is_none());
    workload
        .delete_node(&target(), "n1")
        .await
        .expect("already gone");
}

#[tokio::test]
async fn pods_on_a_node_and_unscheduled_pods() {
    let (_server, api, workload) = setup().await;
    let mut ds = pod("ds-1", Some("n1"), "Running", &[("app", "agent")]);
    ds.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: "agent".into(),
        uid: "u".into(),
        controller: Some(true),
        ..OwnerReference::default()
    }]);
    ds.spec.get_or_insert_with(Default::default).volumes = Some(vec![core::Volume {
        name: "scratch".into(),
        empty_dir: Some(core::EmptyDirVolumeSource::default()),
        ..core::Volume::default()
    }]);
    api.add_pod(ds);
    let mut mirror = pod("kube-proxy-n1", Some("n1"), "Running", &[]);
    mirror.metadata.annotations = Some(BTreeMap::from([(
        "kubernetes.io/config.mirror".into(),
        "abc".into(),
    )]));
    api.add_pod(mirror);
    api.add_pod(pod("web-0", Some("n2"), "Running", &[("app", "web")]));
    let mut waiting = pod("web-1", None, "Pending", &[("app", "web")]);
    waiting
        .status
        .get_or_insert_with(Default::default)
        .conditions = Some(vec![core::PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        ..core::PodCondition::default()
    }]);
    api.add_pod(waiting);
    api.add_pod(pod("web-2", None, "Pending", &[("app", "web")]));

    let mut on_n1 = workload
        .list_pods(&target(), PodFilter::OnNode("n1".into()))
        .await
        .expect("listed");
    on_n1.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = on_n1.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["ds-1", "kube-proxy-n1"]);
    assert_eq!(on_n1[0].controller_kind.as_deref(), Some("DaemonSet"));
    assert!(on_n1[0].local_volumes && !on_n1[0].mirror);
    assert!(on_n1[1].mirror);
    assert_eq!(
        (on_n1[0].cpu_millis, on_n1[0].memory_bytes),
        (250, 128 << 20)
    );
    assert_eq!(on_n1[0].node_name.as_deref(), Some("n1"));

    let unscheduled = workload
        .list_pods(&target(), PodFilter::Unscheduled)
        .await
        .expect("listed");
    let flags: BTreeMap<_, _> = unscheduled
        .iter()
        .map(|p| (p.name.as_str(), p.unschedulable))
        .collect();
    assert_eq!(flags, BTreeMap::from([("web-1", true), ("web-2", false)]));
    assert!(api.requests().iter().any(|r| {
        r.query
            .as_deref()
            .is_some_and(|q| q.contains("fieldSelector=spec.nodeName%3D%2Cstatus.phase%3DPending"))
    }));
}

#[tokio::test]
async fn active_pods_are_listed_in_one_call_with_their_required_node_affinity() {
    let (_server, api, workload) = setup().await;
    api.add_pod(pod("web-0", Some("n1"), "Running", &[("app", "web")]));
    api.add_pod(pod("job-0", Some("n1"), "Succeeded", &[]));
    api.add_pod(pod("job-1", Some("n2"), "Failed", &[]));
    let mut pinned = pod("gpu-0", None, "Pending", &[]);
    let requirement = |key: &str, operator: &str, values: &[&str]| core::NodeSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
    };
    pinned.spec.get_or_insert_with(Default::default).affinity = Some(core::Affinity {
        node_affinity: Some(core::NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(core::NodeSelector {
                node_selector_terms: vec![
                    core::NodeSelectorTerm {
                        match_expressions: Some(vec![requirement(
                            "node.kubernetes.io/instance-type",
                            "In",
                            &["g5.xlarge", "g5.2xlarge"],
                        )]),
                        match_fields: None,
                    },
                    core::NodeSelectorTerm {
                        match_expressions: Some(vec![requirement("gpu-count", "Gt", &["3"])]),
                        match_fields: None,
                    },
                ],
            }),
            ..core::NodeAffinity::default()
        }),
        ..core::Affinity::default()
    });
    api.add_pod(pinned);

    let mut active = workload
        .list_pods(&target(), PodFilter::Active)
        .await
        .expect("listed");
    active.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = active.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["gpu-0", "web-0"], "finished pods are not listed");
    let terms = &active[0].affinity;
    assert_eq!(terms.len(), 2);
    assert_eq!(
        terms[0].match_expressions,
        [MatchExpression {
            key: "node.kubernetes.io/instance-type".into(),
            operator: Operator::In,
            values: vec!["g5.xlarge".into(), "g5.2xlarge".into()],
        }]
    );
    // Gt is not modelled: the term matches no node.
    assert_eq!(terms[1].match_expressions[0].operator, Operator::In);
    assert!(terms[1].match_expressions[0].values.is_empty());
    assert!(active[1].affinity.is_empty());
    assert!(api.requests().iter().any(|r| {
        r.query.as_deref().is_some_and(|q| {
            q.contains("fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed")
        })
    }));
}

#[tokio::test]
async fn evictions_start_are_blocked_by_a_budget_or_find_the_pod_gone() {
    let (_server, api, workload) = setup().await;
    api.add_pod(pod("web-0", Some("n1"), "Running", &[("app", "web")]));
    api.add_pod(pod("web-1", Some("n1"), "Running", &[("app", "web")]));
    api.add_pod(pod("db-0", Some("n1"), "Running", &[("app", "db")]));
    api.add_budget(budget("web-pdb", "web", 1));
    api.add_budget(budget("db-pdb", "db", 0));

    assert_eq!(
        workload.evict(&target(), "apps", "web-0", Some(20)).await,
        Ok(Eviction::Started)
    );
    let evicted = api.pod("apps", "web-0").expect("terminating, not gone");
    assert!(evicted.metadata.deletion_timestamp.is_some());
    assert_eq!(
        evicted.metadata.deletion_grace_period_seconds,
        Some(20),
        "grace override reached the server"
    );

    // The budget's one disruption is spent: the next is refused with its name.
    match workload.evict(&target(), "apps", "web-1", None).await {
        Ok(Eviction::Blocked { message }) => {
            assert!(message.contains("disruption budget"), "{message}");
            assert!(message.contains("web-pdb"), "{message}");
        }
        other => panic!("expected Blocked, got {other:?}"),
    }
    assert!(matches!(
        workload.evict(&target(), "apps", "db-0", None).await,
        Ok(Eviction::Blocked { message }) if message.contains("db-pdb needs 2 healthy pods and has 2 currently")
    ));
    assert_eq!(
        workload.evict(&target(), "apps", "nope", None).await,
        Ok(Eviction::Gone)
    );
    // A grace of 0 removes the pod at once; a terminating pod is evicted past budgets.
    assert_eq!(
        workload.evict(&target(), "apps", "web-0", Some(0)).await,
        Ok(Eviction::Started)
    );
    assert!(api.pod("apps", "web-0").is_none());
    assert!(matches!(
        workload.evict(&target(), "apps", "../x", None).await,
        Err(WorkloadError::Invalid(_))
    ));
}

#[tokio::test]
async fn volume_attachments_of_one_node() {
    let (_server, api, workload) = setup().await;
    for (name, node, attached) in [
        ("va-1", "n1", true),
        ("va-2", "n2", true),
        ("va-3", "n1", false),
    ] {
        api.add_volume_attachment(storage::VolumeAttachment {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: storage::VolumeAttachmentSpec {
                attacher: "ebs.csi.aws.com".into(),
                node_name: node.into(),
                source: storage::VolumeAttachmentSource {
                    persistent_volume_name: Some(format!("pv-{name}")),
                    ..storage::VolumeAttachmentSource::default()
                },
            },
            status: Some(storage::VolumeAttachmentStatus {
                attached,
                ..storage::VolumeAttachmentStatus::default()
            }),
        });
    }
    let vas = workload
        .volume_attachments(&target(), "n1")
        .await
        .expect("listed");
    let seen: Vec<_> = vas.iter().map(|v| (v.name.as_str(), v.attached)).collect();
    assert_eq!(seen, [("va-1", true), ("va-3", false)]);
}

#[tokio::test]
async fn throttling_carries_retry_after() {
    let (_server, api, workload) = setup().await;
    api.push_fault(Fault::Throttle {
        retry_after_seconds: 1,
    });
    let e = workload.list_nodes(&target()).await.expect_err("429");
    match &e {
        WorkloadError::Throttled {
            retry_after,
            message,
        } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(1)));
            assert!(message.contains("Too many requests"), "{message}");
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert!(e.is_retryable());
    // One request only: kube's own retry is off, the caller decides.
    assert_eq!(api.requests().len(), 1);
    assert_eq!(workload.list_nodes(&target()).await, Ok(vec![]));
}

#[tokio::test]
async fn server_errors_are_unavailable_and_refusals_final() {
    let (_server, api, workload) = setup().await;
    for (code, retryable) in [
        (503, true),
        (500, true),
        (403, false),
        (422, false),
        (400, false),
    ] {
        api.push_fault(Fault::Status(code));
        let e = workload.list_nodes(&target()).await.expect_err("fault");
        let kind_ok = match code {
            500..=599 => matches!(e, WorkloadError::Unavailable(_)),
            403 => matches!(e, WorkloadError::Forbidden(_)),
            _ => matches!(e, WorkloadError::Invalid(_)),
        };
        assert!(kind_ok, "{code}: {e:?}");
        assert_eq!(e.is_retryable(), retryable, "{code}");
    }
}

#[tokio::test]
async fn a_hung_or_gone_server_is_unavailable_within_the_timeout() {
    let (mut server, api, workload) = setup().await;
    api.push_fault(Fault::Hang);
    let started = Instant::now();
    let e = workload.list_nodes(&target()).await.expect_err("hang");
    assert!(matches!(e, WorkloadError::Unavailable(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    server.stop();
    let started = Instant::now();
    let e = workload
        .delete_node(&target(), "n1")
        .await
        .expect_err("refused");
    assert!(matches!(e, WorkloadError::Unavailable(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// Hands out the current token of a rotating credential and counts how often it was
/// asked: the adapter must ask again after a 401.
#[derive(Clone)]
struct Rotating {
    url: String,
    token: Arc<std::sync::Mutex<String>>,
    calls: Arc<AtomicUsize>,
}

impl Connect for Rotating {
    async fn config(&self, target: &WorkloadTarget) -> Result<kube::Config, WorkloadError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let token = self.token.lock().map(|t| t.clone()).unwrap_or_default();
        StaticConnect::new(&self.url)?
            .with_token(token)
            .config(target)
            .await
    }
}

#[tokio::test]
async fn an_expired_token_rebuilds_the_client_once() {
    let server = ApiServer::start().await.expect("fixture");
    let api = server.handle();
    api.add_node(node("n1", "i-0000000000000001"));
    api.require_token(Some("t1"));
    let connect = Rotating {
        url: server.url(),
        token: Arc::new(std::sync::Mutex::new("t1".into())),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let workload = KubeWorkload::new(connect.clone()).with_timeouts(quick());
    assert_eq!(workload.list_nodes(&target()).await.map(|n| n.len()), Ok(1));
    assert_eq!(workload.list_nodes(&target()).await.map(|n| n.len()), Ok(1));
    assert_eq!(
        connect.calls.load(Ordering::SeqCst),
        1,
        "one client per target"
    );

    // The server now wants a new token, which the credential source already has.
    api.require_token(Some("t2"));
    if let Ok(mut t) = connect.token.lock() {
        *t = "t2".into();
    }
    assert_eq!(workload.list_nodes(&target()).await.map(|n| n.len()), Ok(1));
    assert_eq!(connect.calls.load(Ordering::SeqCst), 2);

    // A token the server never takes is Forbidden, after one rebuild.
    api.require_token(Some("t3"));
    let e = workload.list_nodes(&target()).await.expect_err("401");
    assert!(matches!(e, WorkloadError::Forbidden(_)), "{e:?}");
    assert_eq!(connect.calls.load(Ordering::SeqCst), 3);

    // Another target gets its own client.
    let other = WorkloadTarget {
        cluster: "staging".into(),
        ..target()
    };
    api.require_token(None);
    assert!(workload.list_nodes(&other).await.is_ok());
    assert_eq!(connect.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_pod_carries_when_it_was_created_and_when_it_was_bound() {
    let (_server, api, workload) = setup().await;
    let at = |s: &str| {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            s.parse::<k8s_openapi::jiff::Timestamp>().expect("time"),
        )
    };
    let condition = |status: &str, reason: Option<&str>, time: Option<&str>| core::PodCondition {
        type_: "PodScheduled".into(),
        status: status.into(),
        reason: reason.map(str::to_owned),
        last_transition_time: time.map(at),
        ..core::PodCondition::default()
    };
    let mut bound = pod("web-0", Some("n1"), "Running", &[]);
    bound.metadata.creation_timestamp = Some(at("2026-01-01T00:00:00Z"));
    bound.status.get_or_insert_with(Default::default).conditions =
        Some(vec![condition("True", None, Some("2026-01-01T00:01:10Z"))]);
    api.add_pod(bound);
    let mut waiting = pod("web-1", None, "Pending", &[]);
    waiting.metadata.creation_timestamp = Some(at("2026-01-01T00:00:30Z"));
    waiting
        .status
        .get_or_insert_with(Default::default)
        .conditions = Some(vec![condition(
        "False",
        Some("Unschedulable"),
        Some("2026-01-01T00:00:31Z"),
    )]);
    api.add_pod(waiting);

    let mut active = workload
        .list_pods(&target(), PodFilter::Active)
        .await
        .expect("listed");
    active.sort_by(|a, b| a.name.cmp(&b.name));
    let ts = |s: &str| s.parse::<capstan_model::Timestamp>().expect("time");
    assert_eq!(active[0].created, Some(ts("2026-01-01T00:00:00Z")));
    assert_eq!(
        active[0].scheduled_at,
        Some(ts("2026-01-01T00:01:10Z")),
        "PodScheduled=True's lastTransitionTime"
    );
    assert_eq!(active[1].created, Some(ts("2026-01-01T00:00:30Z")));
    assert!(active[1].unschedulable);
    assert_eq!(
        active[1].scheduled_at, None,
        "PodScheduled=False: not bound"
    );
}

#[tokio::test]
async fn node_conditions_keep_their_status() {
    let (_server, api, workload) = setup().await;
    let mut n = node("n1", "i-0000000000000001");
    if let Some(status) = n.status.as_mut() {
        status.conditions = Some(vec![
            core::NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusUnknown".into()),
                message: Some("Kubelet stopped posting node status.".into()),
                ..core::NodeCondition::default()
            },
            core::NodeCondition {
                type_: "DiskPressure".into(),
                status: "False".into(),
                ..core::NodeCondition::default()
            },
        ]);
    }
    api.add_node(n);
    let found = workload
        .find_node(&target(), "i-0000000000000001")
        .await
        .expect("ok")
        .expect("found");
    assert!(!found.is_ready());
    assert_eq!(
        found.condition("Ready").map(|c| c.status),
        Some(ConditionStatus::Unknown)
    );
    assert_eq!(
        found.condition("DiskPressure").map(|c| c.status),
        Some(ConditionStatus::False)
    );
    assert_eq!(
        found.provider_id.as_deref(),
        Some("aws:///eu-west-1a/i-0000000000000001")
    );
}

#[tokio::test]
async fn an_https_target_builds_its_tls_client_and_reports_refusal_as_unavailable() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let connect = StaticConnect::new(&format!("https://{closed}")).expect("url");
    let workload = KubeWorkload::new(connect).with_timeouts(quick());
    let e = workload.list_nodes(&target()).await.expect_err("refused");
    assert!(matches!(e, WorkloadError::Unavailable(_)), "{e:?}");

    let e = StaticConnect::new("http://127.0.0.1:1")
        .expect("url")
        .with_ca_pem("not a certificate")
        .expect_err("no PEM");
    assert!(matches!(e, WorkloadError::Forbidden(_)), "{e:?}");
    assert!(matches!(
        StaticConnect::new("nowhere"),
        Err(WorkloadError::Invalid(_))
    ));
}
