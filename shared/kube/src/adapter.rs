//! [`KubeWorkload`]: the [`Workload`] port over kube-rs.
//!
//! One client per target, kept for the life of the process (a warm Lambda reuses it)
//! and rebuilt when the API server answers 401 — an EKS token lasts 15 minutes — after
//! which the call is made once more: a 401 is decided before the request does anything.
//! kube's own retry layer is off: a 429 or 503 goes back to the caller, who gives up
//! for this pass (the port's contract), and a PodDisruptionBudget's 429 is an answer.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use capstan_runtime::ports::{
    EksCluster, Eviction, Node, NodePatch, Pod, PodFilter, VolumeAttachment, Workload,
    WorkloadError, WorkloadTarget, instance_id_of,
};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::api::storage::v1 as storage;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::client::ClientBuilder;
use kube::core::Status;
use kube::{Api, Client};
use serde::de::DeserializeOwned;

use crate::connect::Connect;
use crate::convert;
use crate::error::{describe, from_kube, from_status, is_not_found, is_unauthorized};
use crate::retry_after::RetryAfterLayer;

/// How long a call may take. A Lambda has seconds, and an unreachable API server must
/// cost one pass, not the invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// Waiting for the server's bytes (and for the socket to take ours).
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            read: Duration::from_secs(10),
        }
    }
}

/// The `Workload` port over the Kubernetes API. See the module documentation.
pub struct KubeWorkload<C> {
    connect: C,
    clients: Mutex<HashMap<WorkloadTarget, Client>>,
    /// DescribeCluster's answers, reused for [`EKS_CLUSTER_TTL`]: a scale-up launches
    /// many Machines of one cluster at once.
    eks_clusters: Mutex<HashMap<WorkloadTarget, (Instant, EksCluster)>>,
    timeouts: Timeouts,
    page_size: u32,
}

/// How long a cluster's endpoint and certificate authority are reused for bootstrap
/// user data: a rotated authority reaches new nodes within this.
pub const EKS_CLUSTER_TTL: Duration = Duration::from_secs(300);

/// Items per list page: the API server's default chunk size for kubectl.
const PAGE_SIZE: u32 = 500;

impl<C: Connect> KubeWorkload<C> {
    pub fn new(connect: C) -> Self {
        KubeWorkload {
            connect,
            clients: Mutex::new(HashMap::new()),
            eks_clusters: Mutex::new(HashMap::new()),
            timeouts: Timeouts::default(),
            page_size: PAGE_SIZE,
        }
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Items asked for per list request (`limit`); pages are followed with `continue`.
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    async fn client(&self, target: &WorkloadTarget) -> Result<Client, WorkloadError> {
        if let Some(client) = self.cache().get(target) {
            return Ok(client.clone());
        }
        // rustls needs one process-wide crypto provider; should another crate enable
        // ring as well, it could not choose. An error means one is installed already.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut config = self.connect.config(target).await?;
        config.connect_timeout = Some(self.timeouts.connect);
        config.read_timeout = Some(self.timeouts.read);
        config.write_timeout = Some(self.timeouts.read);
        config.default_retry = false;
        let client = ClientBuilder::try_from(config)
            .map_err(from_kube)?
            .with_layer(&RetryAfterLayer)
            .build();
        self.cache().insert(target.clone(), client.clone());
        Ok(client)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<WorkloadTarget, Client>> {
        // The map holds no invariant a panicking holder could break.
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `call` with the target's client; on 401, once more with a fresh one.
    async fn with_client<T, F, Fut>(
        &self,
        target: &WorkloadTarget,
        call: F,
    ) -> Result<Result<T, kube::Error>, WorkloadError>
    where
        F: Fn(Client) -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, kube::Error>> + Send,
        T: Send,
    {
        let first = call(self.client(target).await?).await;
        match first {
            Err(e) if is_unauthorized(&e) => {
                tracing::debug!(
                    namespace = %target.namespace,
                    cluster = %target.cluster,
                    "401 from the API server: rebuilding its client"
                );
                self.cache().remove(target);
                Ok(call(self.client(target).await?).await)
            }
            other => Ok(other),
        }
    }
}

/// Lists every page of `api` with `params` (its `limit` set), handing each item to
/// `each` until it breaks.
async fn list_pages<K, F>(
    api: &Api<K>,
    mut params: ListParams,
    mut each: F,
) -> Result<(), kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
    F: FnMut(K) -> ControlFlow<()>,
{
    loop {
        let page = api.list(&params).await?;
        for item in page.items {
            if each(item).is_break() {
                return Ok(());
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params.continue_token = Some(token),
            _ => return Ok(()),
        }
    }
}

impl<C: Connect> Workload for KubeWorkload<C> {
    async fn find_node(
        &self,
        target: &WorkloadTarget,
        instance_id: &str,
    ) -> Result<Option<Node>, WorkloadError> {
        let params = ListParams::default().limit(self.page_size);
        self.with_client(target, |client| {
            let params = params.clone();
            async move {
                let mut found = None;
                list_pages(&Api::<core::Node>::all(client), params, |n: core::Node| {
                    let ours = n
                        .spec
                        .as_ref()
                        .and_then(|s| s.provider_id.as_deref())
                        .and_then(instance_id_of)
                        == Some(instance_id);
                    if ours {
                        found = Some(n);
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .await?;
                Ok(found)
            }
        })
        .await?
        .map(|n| n.map(convert::node))
        .map_err(from_kube)
    }

    async fn list_nodes(&self, target: &WorkloadTarget) -> Result<Vec<Node>, WorkloadError> {
        let params = ListParams::default().limit(self.page_size);
        self.with_client(target, |client| {
            let params = params.clone();
            async move {
                let mut nodes = Vec::new();
                list_pages(&Api::<core::Node>::all(client), params, |n| {
                    nodes.push(convert::node(n));
                    ControlFlow::Continue(())
                })
                .await?;
                Ok(nodes)
            }
        })
        .await?
        .map_err(from_kube)
    }

    async fn patch_node(
        &self,
        target: &WorkloadTarget,
        node: &str,
        patch: NodePatch,
    ) -> Result<Node, WorkloadError> {
        let body = convert::merge_patch(&patch);
        let result = self
            .with_client(target, |client| {
                let body = body.clone();
                async move {
                    Api::<core::Node>::all(client)
                        .patch(node, &PatchParams::default(), &Patch::Merge(body))
                        .await
                }
            })
            .await?;
        match result {
            Ok(n) => Ok(convert::node(n)),
            // The port: a patch never creates a Node, and one that is gone is final.
            Err(kube::Error::Api(s)) if s.code == 404 => Err(WorkloadError::Invalid(format!(
                "node {node} not found: {}",
                describe(&s)
            ))),
            Err(e) => Err(from_kube(e)),
        }
    }

    async fn delete_node(&self, target: &WorkloadTarget, node: &str) -> Result<(), WorkloadError> {
        let result = self
            .with_client(target, |client| async move {
                Api::<core::Node>::all(client)
                    .delete(node, &DeleteParams::default())
                    .await
            })
            .await?;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(from_kube(e)),
        }
    }

    async fn list_pods(
        &self,
        target: &WorkloadTarget,
        filter: PodFilter,
    ) -> Result<Vec<Pod>, WorkloadError> {
        // Field selectors pods support (pkg/registry/core/pod `ToSelectableFields`).
        // An empty spec.nodeName is "not bound"; a Pending pod is not finished.
        let selector = match &filter {
            PodFilter::OnNode(node) => format!("spec.nodeName={node}"),
            PodFilter::Unscheduled => "spec.nodeName=,status.phase=Pending".to_owned(),
            PodFilter::Active => "status.phase!=Succeeded,status.phase!=Failed".to_owned(),
        };
        let params = ListParams::default()
            .fields(&selector)
            .limit(self.page_size);
        self.with_client(target, |client| {
            let params = params.clone();
            async move {
                let mut pods = Vec::new();
                list_pages(&Api::<core::Pod>::all(client), params, |p| {
                    pods.push(convert::pod(p));
                    ControlFlow::Continue(())
                })
                .await?;
                Ok(pods)
            }
        })
        .await?
        .map_err(from_kube)
    }

    /// POSTs a `policy/v1` Eviction of our own making rather than kube's
    /// `Api::evict`: kube 5 sends the delete options as `delete_options`, a field the
    /// API server does not know, so a grace period override would be dropped.
    async fn evict(
        &self,
        target: &WorkloadTarget,
        namespace: &str,
        pod: &str,
        grace_seconds: Option<i64>,
    ) -> Result<Eviction, WorkloadError> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}/eviction",
            path_segment(namespace)?,
            path_segment(pod)?
        );
        let eviction = policy::Eviction {
            metadata: ObjectMeta {
                name: Some(pod.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            delete_options: grace_seconds.map(|g| DeleteOptions {
                grace_period_seconds: Some(g),
                ..DeleteOptions::default()
            }),
        };
        let body = serde_json::to_vec(&eviction)
            .map_err(|e| WorkloadError::Invalid(format!("encoding the eviction: {e}")))?;
        let result = self
            .with_client(target, |client| {
                let request = http::Request::post(path.as_str())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                async move {
                    let request = request.map_err(kube::Error::HttpError)?;
                    client.request::<Status>(request).await
                }
            })
            .await?;
        match result {
            Ok(_) => Ok(Eviction::Started),
            Err(e) if is_not_found(&e) => Ok(Eviction::Gone),
            Err(kube::Error::Api(s)) => match budget_refusal(&s) {
                Some(message) => Ok(Eviction::Blocked { message }),
                None => Err(from_status(&s)),
            },
            Err(e) => Err(from_kube(e)),
        }
    }

    async fn volume_attachments(
        &self,
        target: &WorkloadTarget,
        node: &str,
    ) -> Result<Vec<VolumeAttachment>, WorkloadError> {
        // VolumeAttachments have no field selector on spec.nodeName: filter here.
        let params = ListParams::default().limit(self.page_size);
        self.with_client(target, |client| {
            let params = params.clone();
            async move {
                let mut out = Vec::new();
                list_pages(
                    &Api::<storage::VolumeAttachment>::all(client),
                    params,
                    |v| {
                        if v.spec.node_name == node {
                            out.push(convert::volume_attachment(v));
                        }
                        ControlFlow::Continue(())
                    },
                )
                .await?;
                Ok(out)
            }
        })
        .await?
        .map_err(from_kube)
    }

    async fn eks_cluster(&self, target: &WorkloadTarget) -> Result<EksCluster, WorkloadError> {
        let cached = {
            let cache = self
                .eks_clusters
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            cache
                .get(target)
                .filter(|(at, _)| at.elapsed() < EKS_CLUSTER_TTL)
                .map(|(_, cluster)| cluster.clone())
        };
        if let Some(cluster) = cached {
            return Ok(cluster);
        }
        let cluster = self.connect.eks_cluster(target).await?;
        self.eks_clusters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target.clone(), (Instant::now(), cluster.clone()));
        Ok(cluster)
    }
}

/// A 429 whose Status has a `DisruptionBudget` cause (pkg/registry/core/pod/storage
/// `eviction.go`): the message and the causes', which name the budget.
fn budget_refusal(s: &Status) -> Option<String> {
    if s.code != 429 {
        return None;
    }
    let causes: Vec<&str> = s
        .details
        .iter()
        .flat_map(|d| &d.causes)
        .filter(|c| c.reason == "DisruptionBudget")
        .map(|c| c.message.as_str())
        .collect();
    if causes.is_empty() {
        return None;
    }
    Some(
        format!("{} {}", s.message, causes.join("; "))
            .trim()
            .to_owned(),
    )
}

/// A namespace or pod name as one path segment. Names are DNS labels or subdomains;
/// anything else would address another resource, so it is refused.
fn path_segment(name: &str) -> Result<&str, WorkloadError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(name)
    } else {
        Err(WorkloadError::Invalid(format!(
            "not an object name: {name:?}"
        )))
    }
}
