//! The fixture's own promises that the adapter's tests do not reach: a merge patch
//! carrying a stale resourceVersion is a 409 Status, other patch types are refused,
//! pods that are not running are evicted past their budget.

use std::collections::BTreeMap;

use capstan_kube::fixture::ApiServer;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, Patch, PatchParams};

async fn client(server: &ApiServer) -> kube::Client {
    let url = server.url().parse().expect("url");
    let mut config = kube::Config::new(url);
    config.default_retry = false;
    kube::Client::try_from(config).expect("client")
}

fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("apps".into()),
        labels: Some(BTreeMap::from([("app".into(), "web".into())])),
        ..ObjectMeta::default()
    }
}

#[tokio::test]
async fn a_stale_resource_version_in_a_merge_patch_is_a_409_status() {
    let server = ApiServer::start().await.expect("fixture");
    let api = server.handle();
    api.add_node(core::Node {
        metadata: named("n1"),
        ..core::Node::default()
    });
    let nodes: Api<core::Node> = Api::all(client(&server).await);
    let read = nodes.get("n1").await.expect("get");
    let rv = read.metadata.resource_version.clone().expect("rv");
    api.update_node("n1", |n| n.metadata.annotations = Some(BTreeMap::new()));

    let stale = serde_json::json!({"metadata": {"resourceVersion": rv, "labels": {"x": "1"}}});
    match nodes
        .patch("n1", &PatchParams::default(), &Patch::Merge(&stale))
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(
                s.message.contains("the object has been modified"),
                "{}",
                s.message
            );
        }
        other => panic!("expected 409, got {other:?}"),
    }
    let current = api.node("n1").and_then(|n| n.metadata.resource_version);
    let fresh = serde_json::json!({"metadata": {"resourceVersion": current, "labels": {"x": "1"}}});
    let patched = nodes
        .patch("n1", &PatchParams::default(), &Patch::Merge(&fresh))
        .await
        .expect("current resourceVersion applies");
    assert_ne!(
        patched.metadata.resource_version, current,
        "a write moves it"
    );

    let strategic = nodes
        .patch("n1", &PatchParams::default(), &Patch::Strategic(&fresh))
        .await;
    assert!(matches!(strategic, Err(kube::Error::Api(s)) if s.code == 415));
}

#[tokio::test]
async fn pending_pods_are_evicted_past_a_spent_budget() {
    let server = ApiServer::start().await.expect("fixture");
    let api = server.handle();
    api.add_pod(core::Pod {
        metadata: named("web-0"),
        status: Some(core::PodStatus {
            phase: Some("Pending".into()),
            ..core::PodStatus::default()
        }),
        ..core::Pod::default()
    });
    api.add_budget(policy::PodDisruptionBudget {
        metadata: named("web"),
        spec: Some(policy::PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..LabelSelector::default()
            }),
            ..policy::PodDisruptionBudgetSpec::default()
        }),
        status: Some(policy::PodDisruptionBudgetStatus::default()),
    });
    let body = serde_json::json!({
        "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "web-0", "namespace": "apps"}
    });
    let request = http::Request::post("/api/v1/namespaces/apps/pods/web-0/eviction")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    let status: kube::core::Status = client(&server).await.request(request).await.expect("201");
    assert!(status.is_success());
    assert!(
        api.pod("apps", "web-0")
            .is_some_and(|p| p.metadata.deletion_timestamp.is_some())
    );
    api.finish_terminating();
    assert!(api.pod("apps", "web-0").is_none());
    assert_eq!(
        api.budget("apps", "web")
            .and_then(|b| b.status)
            .map(|s| s.disruptions_allowed),
        Some(0),
        "a budget that was not consulted is not spent"
    );
}
