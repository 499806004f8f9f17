//! A local Kubernetes API server for tests: plain HTTP on 127.0.0.1 (a free port), the
//! documented API for exactly what [`crate::KubeWorkload`] uses, with k8s-openapi types
//! for bodies. No kube-apiserver can be installed on the project's machines, so this is
//! what the adapter is tested against over real HTTP.
//!
//! Covered, as the API server does it:
//! - `GET /api/v1/nodes` (`limit`/`continue` pagination, `remainingItemCount`), `GET`,
//!   `PATCH` (`application/merge-patch+json`, RFC 7386: null removes, lists replace;
//!   409 `Conflict` when the patch carries a `metadata.resourceVersion` that is not the
//!   current one; 422 for taint effects and label values the API refuses; 404 for a
//!   missing Node — a patch never creates), `DELETE` (200 with the object; 404).
//! - `GET /api/v1/pods` and `/api/v1/namespaces/{ns}/pods` with `fieldSelector` on
//!   `spec.nodeName`, `status.phase`, `metadata.name`, `metadata.namespace` (`=`, `==`,
//!   `!=`; any other field is 400 `field label not supported`), paginated.
//! - `POST /api/v1/namespaces/{ns}/pods/{name}/eviction` (`policy/v1` Eviction):
//!   201 Status Success; 404 when the pod is absent; with exactly one matching
//!   PodDisruptionBudget whose `status.disruptionsAllowed` is 0, 429 `TooManyRequests`
//!   "Cannot evict pod as it would violate the pod's disruption budget." with the cause
//!   `DisruptionBudget` "The disruption budget <name> needs <desired> healthy pods and
//!   has <current> currently"; otherwise the budget's allowance is spent (as the
//!   eviction REST handler does); two matching budgets are a 500. Pods that are not
//!   Running, or already terminating, are evicted without consulting budgets
//!   (`canIgnorePDB`). An evicted pod gets `deletionTimestamp` and
//!   `deletionGracePeriodSeconds` (the Eviction's `deleteOptions.gracePeriodSeconds`,
//!   else its `terminationGracePeriodSeconds`, else 30); with a grace of 0 it is gone at
//!   once, otherwise it stays, terminating, until the test plays the kubelet with
//!   [`Handle::finish_terminating`] — a fixture that waited for real grace periods would
//!   make tests slow.
//! - `GET /apis/storage.k8s.io/v1/volumeattachments`, paginated.
//! - Every error is a `meta/v1` Status (`kind`, `apiVersion`, `status: Failure`,
//!   `message`, `reason`, `code`, `details`), except the throttling fault, which answers
//!   as API priority and fairness does: 429, `Retry-After`, a plain-text body.
//!
//! Faults a test injects ([`Handle::push_fault`]), one per following request: 429 with
//! `Retry-After`, any Status error (500, 503, 403, 401 …), or a request that never gets
//! an answer. [`ApiServer::stop`] closes the listener and every connection, so later
//! calls are refused. [`Handle::require_token`] answers 401 to a request without that
//! bearer token.
//!
//! Only a real kube-apiserver would show: strategic-merge, JSON and server-side-apply
//! patches (415 here), watch, label selectors (400 here), authentication beyond one
//! bearer token, authorization, admission (webhooks, defaulting, most validation),
//! consistent list snapshots (pages here read the live state), `resourceVersion` on
//! reads, the PodDisruptionBudget controller (the test sets the status), garbage
//! collection, the kubelet, and protobuf or table output.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::api::storage::v1 as storage;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ListMeta, Status, StatusCause, StatusDetails, Time,
};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the next request gets instead of its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: <seconds>` and a plain-text body, as API priority and
    /// fairness rejects a request.
    Throttle { retry_after_seconds: u32 },
    /// A Status error with this code (and the reason the API server gives it).
    Status(u16),
    /// No answer, ever: the connection stays open.
    Hang,
}

/// A request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Default)]
struct State {
    resource_version: u64,
    uid: u64,
    nodes: BTreeMap<String, core::Node>,
    pods: BTreeMap<(String, String), core::Pod>,
    budgets: BTreeMap<(String, String), policy::PodDisruptionBudget>,
    volume_attachments: BTreeMap<String, storage::VolumeAttachment>,
    faults: VecDeque<Fault>,
    token: Option<String>,
    requests: Vec<Recorded>,
}

impl State {
    fn next_rv(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// Stamps what the API server sets on create: uid, resourceVersion, creation time.
    fn created(&mut self, meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
        self.uid += 1;
        meta.uid
            .get_or_insert_with(|| format!("00000000-0000-4000-8000-{:012}", self.uid));
        meta.resource_version = Some(self.next_rv());
        meta.creation_timestamp
            .get_or_insert_with(|| Time(k8s_openapi::jiff::Timestamp::now()));
    }
}

/// Seeds and inspects the server's objects; cheap to clone, shared with the server.
#[derive(Clone, Default)]
pub struct Handle {
    state: Arc<Mutex<State>>,
}

impl Handle {
    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked holding the lock leaves plain data behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds (or replaces) a Node, stamping uid, resourceVersion and creation time.
    pub fn add_node(&self, mut node: core::Node) {
        let mut s = self.state();
        s.created(&mut node.metadata);
        let name = node.metadata.name.clone().unwrap_or_default();
        s.nodes.insert(name, node);
    }

    pub fn node(&self, name: &str) -> Option<core::Node> {
        self.state().nodes.get(name).cloned()
    }

    pub fn node_names(&self) -> Vec<String> {
        self.state().nodes.keys().cloned().collect()
    }

    /// Changes a Node as another writer would (the kubelet, another controller),
    /// moving its resourceVersion.
    pub fn update_node(&self, name: &str, change: impl FnOnce(&mut core::Node)) {
        let mut s = self.state();
        let rv = s.next_rv();
        if let Some(n) = s.nodes.get_mut(name) {
            change(n);
            n.metadata.resource_version = Some(rv);
        }
    }

    /// Adds a pod (namespace `default` when none is set).
    pub fn add_pod(&self, mut pod: core::Pod) {
        let mut s = self.state();
        s.created(&mut pod.metadata);
        let ns = pod
            .metadata
            .namespace
            .get_or_insert_with(|| "default".to_owned())
            .clone();
        let name = pod.metadata.name.clone().unwrap_or_default();
        s.pods.insert((ns, name), pod);
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<core::Pod> {
        self.state()
            .pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Removes every terminating pod, as kubelets would once their grace periods end.
    pub fn finish_terminating(&self) {
        self.state()
            .pods
            .retain(|_, p| p.metadata.deletion_timestamp.is_none());
    }

    /// Adds a PodDisruptionBudget; its `status` (disruptionsAllowed, desiredHealthy,
    /// currentHealthy) is what the eviction handler reads, as the disruption controller
    /// would have written it.
    pub fn add_budget(&self, mut pdb: policy::PodDisruptionBudget) {
        let mut s = self.state();
        s.created(&mut pdb.metadata);
        let ns = pdb
            .metadata
            .namespace
            .get_or_insert_with(|| "default".to_owned())
            .clone();
        let name = pdb.metadata.name.clone().unwrap_or_default();
        s.budgets.insert((ns, name), pdb);
    }

    /// Sets a budget's `status.disruptionsAllowed`.
    pub fn set_disruptions_allowed(&self, namespace: &str, name: &str, allowed: i32) {
        let mut s = self.state();
        if let Some(b) = s.budgets.get_mut(&(namespace.to_owned(), name.to_owned())) {
            b.status
                .get_or_insert_with(Default::default)
                .disruptions_allowed = allowed;
        }
    }

    pub fn budget(&self, namespace: &str, name: &str) -> Option<policy::PodDisruptionBudget> {
        self.state()
            .budgets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn add_volume_attachment(&self, mut va: storage::VolumeAttachment) {
        let mut s = self.state();
        s.created(&mut va.metadata);
        let name = va.metadata.name.clone().unwrap_or_default();
        s.volume_attachments.insert(name, va);
    }

    /// The next request gets `fault` (faults queue up, one per request).
    pub fn push_fault(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// The next `n` requests get `fault`.
    pub fn push_faults(&self, fault: Fault, n: usize) {
        let mut s = self.state();
        s.faults.extend(std::iter::repeat_n(fault, n));
    }

    /// Requests without `Authorization: Bearer <token>` get 401 (None: no check).
    pub fn require_token(&self, token: Option<&str>) {
        self.state().token = token.map(str::to_owned);
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }
}

/// The running server. Dropping it stops it.
pub struct ApiServer {
    addr: SocketAddr,
    handle: Handle,
    task: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Listens on 127.0.0.1 on a free port.
    pub async fn start() -> std::io::Result<ApiServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let handle = Handle::default();
        let task = tokio::spawn(serve(listener, handle.clone()));
        Ok(ApiServer {
            addr,
            handle,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Closes the listener and every open connection: later calls are refused.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts connections until aborted; aborting drops the listener and, with the
/// JoinSet, every connection task.
async fn serve(listener: TcpListener, handle: Handle) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(answer(&handle, req).await) }
            });
            // A client that hangs up mid-request is its own business.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
}

type Reply = Response<Full<Bytes>>;

async fn answer(handle: &Handle, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let fault = {
        let mut s = handle.state();
        s.requests.push(Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
        let authorized = s.token.as_ref().is_none_or(|t| {
            parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                == Some(format!("Bearer {t}").as_str())
        });
        if !authorized {
            return status(401, "Unauthorized", "Unauthorized".into(), None);
        }
        s.faults.pop_front()
    };
    match fault {
        Some(Fault::Hang) => std::future::pending().await,
        Some(Fault::Throttle {
            retry_after_seconds,
        }) => {
            return Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header(header::RETRY_AFTER, retry_after_seconds.to_string())
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Full::from("Too many requests, please try again later.\n"))
                .unwrap_or_default();
        }
        Some(Fault::Status(code)) => {
            return status(
                code,
                reason_of(code),
                format!("injected fault: {code}"),
                None,
            );
        }
        None => {}
    }
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return status(400, "BadRequest", format!("reading the body: {e}"), None),
    };
    let query = parse_query(parts.uri.query());
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let path = parts.uri.path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut s = handle.state();
    match (&parts.method, segments.as_slice()) {
        (&Method::GET, ["api", "v1", "nodes"]) => list_nodes(&s, &query),
        (&Method::GET, ["api", "v1", "nodes", name]) => match s.nodes.get(*name) {
            Some(n) => ok(200, n),
            None => not_found("", "nodes", name),
        },
        (&Method::PATCH, ["api", "v1", "nodes", name]) => {
            patch_node(&mut s, name, &content_type, &body)
        }
        (&Method::DELETE, ["api", "v1", "nodes", name]) => match s.nodes.remove(*name) {
            Some(n) => ok(200, &n),
            None => not_found("", "nodes", name),
        },
        (&Method::GET, ["api", "v1", "pods"]) => list_pods(&s, None, &query),
        (&Method::GET, ["api", "v1", "namespaces", ns, "pods"]) => list_pods(&s, Some(ns), &query),
        (&Method::GET, ["api", "v1", "namespaces", ns, "pods", name]) => {
            match s.pods.get(&((*ns).to_owned(), (*name).to_owned())) {
                Some(p) => ok(200, p),
                None => not_found("", "pods", name),
            }
        }
        (&Method::POST, ["api", "v1", "namespaces", ns, "pods", name, "eviction"]) => {
            evict(&mut s, ns, name, &body)
        }
        (&Method::GET, ["apis", "storage.k8s.io", "v1", "volumeattachments"]) => {
            match refuse_selectors(&query) {
                Some(refusal) => refusal,
                None => {
                    let items: Vec<_> = s
                        .volume_attachments
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    list(&s, items, &query)
                }
            }
        }
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            None,
        ),
    }
}

fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Label selectors and, where unsupported, field selectors: not in this fixture.
fn refuse_selectors(query: &BTreeMap<String, String>) -> Option<Reply> {
    if query.get("labelSelector").is_some_and(|s| !s.is_empty()) {
        return Some(status(
            400,
            "BadRequest",
            "labelSelector is not supported by the test fixture".into(),
            None,
        ));
    }
    if let Some(f) = query.get("fieldSelector").filter(|s| !s.is_empty()) {
        let field = f.split(['=', '!']).next().unwrap_or_default();
        return Some(status(
            400,
            "BadRequest",
            format!("field label not supported: {field}"),
            None,
        ));
    }
    None
}

fn list_nodes(s: &State, query: &BTreeMap<String, String>) -> Reply {
    if let Some(refusal) = refuse_selectors(query) {
        return refusal;
    }
    let items: Vec<_> = s
        .nodes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    list(s, items, query)
}

/// One term of a field selector.
struct FieldTerm {
    field: String,
    value: String,
    equal: bool,
}

fn field_terms(selector: &str) -> Result<Vec<FieldTerm>, String> {
    selector
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|term| {
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return Err(format!(
                    "invalid selector: '{selector}'; can't understand '{term}'"
                ));
            };
            Ok(FieldTerm {
                field: field.trim().to_owned(),
                value: value.trim().to_owned(),
                equal,
            })
        })
        .collect()
}

fn list_pods(s: &State, namespace: Option<&str>, query: &BTreeMap<String, String>) -> Reply {
    if query.get("labelSelector").is_some_and(|l| !l.is_empty()) {
        return status(
            400,
            "BadRequest",
            "labelSelector is not supported by the test fixture".into(),
            None,
        );
    }
    let terms = match field_terms(query.get("fieldSelector").map_or("", String::as_str)) {
        Ok(t) => t,
        Err(message) => return status(400, "BadRequest", message, None),
    };
    for t in &terms {
        if !matches!(
            t.field.as_str(),
            "spec.nodeName" | "status.phase" | "metadata.name" | "metadata.namespace"
        ) {
            return status(
                400,
                "BadRequest",
                format!("field label not supported: {}", t.field),
                None,
            );
        }
    }
    let items: Vec<_> = s
        .pods
        .iter()
        .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
        .filter(|(_, p)| {
            terms.iter().all(|t| {
                let actual = match t.field.as_str() {
                    "spec.nodeName" => p.spec.as_ref().and_then(|s| s.node_name.clone()),
                    "status.phase" => p.status.as_ref().and_then(|s| s.phase.clone()),
                    "metadata.name" => p.metadata.name.clone(),
                    _ => p.metadata.namespace.clone(),
                }
                .unwrap_or_default();
                (actual == t.value) == t.equal
            })
        })
        .map(|((ns, name), p)| (format!("{ns}/{name}"), p.clone()))
        .collect();
    list(s, items, query)
}

/// The continue token: where the next page starts (the real one also pins a
/// resourceVersion; pages here read live state).
#[derive(serde::Deserialize, Serialize)]
struct Continue {
    start: String,
}

/// A page of `items` (sorted by key) per `limit` and `continue`.
fn list<T>(s: &State, items: Vec<(String, T)>, query: &BTreeMap<String, String>) -> Reply
where
    T: k8s_openapi::ListableResource + Serialize,
{
    let start = match query.get("continue").filter(|c| !c.is_empty()) {
        None => None,
        Some(token) => match URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| serde_json::from_slice::<Continue>(&b).ok())
        {
            Some(c) => Some(c.start),
            None => {
                return status(
                    400,
                    "BadRequest",
                    "continue key is not valid: incorrect encoded start resourceVersion".into(),
                    None,
                );
            }
        },
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|&l| l > 0);
    let mut rest: Vec<(String, T)> = items
        .into_iter()
        .filter(|(k, _)| start.as_ref().is_none_or(|s| k >= s))
        .collect();
    let mut metadata = ListMeta {
        resource_version: Some(s.resource_version.to_string()),
        ..ListMeta::default()
    };
    if let Some(limit) = limit.filter(|&l| rest.len() > l) {
        let next = rest.split_off(limit);
        metadata.remaining_item_count = i64::try_from(next.len()).ok();
        let token = Continue {
            start: next.first().map(|(k, _)| k.clone()).unwrap_or_default(),
        };
        metadata.continue_ = serde_json::to_vec(&token)
            .ok()
            .map(|b| URL_SAFE_NO_PAD.encode(b));
    }
    let list = k8s_openapi::List {
        items: rest.into_iter().map(|(_, v)| v).collect(),
        metadata,
    };
    ok(200, &list)
}

fn patch_node(s: &mut State, name: &str, content_type: &str, body: &[u8]) -> Reply {
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media != "application/merge-patch+json" {
        return status(
            415,
            "UnsupportedMediaType",
            format!("the test fixture only takes application/merge-patch+json, not {media:?}"),
            None,
        );
    }
    let Some(current) = s.nodes.get(name) else {
        return not_found("", "nodes", name);
    };
    let patch: Value = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return status(
                400,
                "BadRequest",
                format!("error decoding patch: {e}"),
                None,
            );
        }
    };
    let current_rv = current
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    if let Some(rv) = patch
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        && rv != current_rv
    {
        return status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on nodes \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some(details("", "nodes", name)),
        );
    }
    if let Some(other) = patch.pointer("/metadata/name").and_then(Value::as_str)
        && other != name
    {
        return status(
            400,
            "BadRequest",
            format!("the name of the object ({other}) does not match the name on the URL ({name})"),
            None,
        );
    }
    let mut doc = match serde_json::to_value(current) {
        Ok(d) => d,
        Err(e) => return status(500, "InternalError", e.to_string(), None),
    };
    merge(&mut doc, &patch);
    let mut node: core::Node = match serde_json::from_value(doc) {
        Ok(n) => n,
        Err(e) => {
            return status(
                422,
                "Invalid",
                format!("Node \"{name}\" is invalid: {e}"),
                Some(details("", "Node", name)),
            );
        }
    };
    if let Some(problem) = invalid_node(&node) {
        return status(
            422,
            "Invalid",
            format!("Node \"{name}\" is invalid: {problem}"),
            Some(details("", "Node", name)),
        );
    }
    node.metadata.resource_version = Some(s.next_rv());
    s.nodes.insert(name.to_owned(), node.clone());
    ok(200, &node)
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The validation the API server applies to what the adapter patches: taint effects
/// and keys, label values (k8s.io/apimachinery `validation.IsValidLabelValue`).
fn invalid_node(node: &core::Node) -> Option<String> {
    for (i, t) in node
        .spec
        .iter()
        .flat_map(|s| s.taints.iter().flatten())
        .enumerate()
    {
        if t.key.is_empty() {
            return Some(format!("spec.taints[{i}].key: Required value"));
        }
        if !matches!(
            t.effect.as_str(),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute"
        ) {
            return Some(format!(
                "spec.taints[{i}].effect: Unsupported value: \"{}\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
                t.effect
            ));
        }
    }
    for (k, v) in node.metadata.labels.iter().flatten() {
        let ok_chars = v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let ok_ends = v.is_empty()
            || (v.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
                && v.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric));
        if v.len() > 63 || !ok_chars || !ok_ends {
            return Some(format!(
                "metadata.labels: Invalid value: \"{v}\" (label {k})"
            ));
        }
    }
    None
}

/// The eviction subresource (pkg/registry/core/pod/storage/eviction.go).
fn evict(s: &mut State, ns: &str, name: &str, body: &[u8]) -> Reply {
    let eviction: policy::Eviction = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => {
            return status(
                400,
                "BadRequest",
                format!("error decoding Eviction: {e}"),
                None,
            );
        }
    };
    if eviction.metadata.name.as_deref() != Some(name) {
        return status(
            400,
            "BadRequest",
            "name in URL does not match name in Eviction object".into(),
            Some(details("policy", "Eviction", name)),
        );
    }
    let key = (ns.to_owned(), name.to_owned());
    let Some(pod) = s.pods.get(&key) else {
        return not_found("", "pods", name);
    };
    let phase = pod.status.as_ref().and_then(|st| st.phase.as_deref());
    let ignore_budgets = pod.metadata.deletion_timestamp.is_some()
        || matches!(phase, Some("Succeeded" | "Failed" | "Pending"));
    if !ignore_budgets {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let matching: Vec<(String, String)> = s
            .budgets
            .iter()
            .filter(|((bns, _), b)| {
                bns == ns
                    && b.spec
                        .as_ref()
                        .and_then(|sp| sp.selector.as_ref())
                        .is_some_and(|sel| selects(sel, &labels))
            })
            .map(|(k, _)| k.clone())
            .collect();
        if matching.len() > 1 {
            return status(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
                None,
            );
        }
        if let Some(budget) = matching.first().and_then(|k| s.budgets.get_mut(k)) {
            let st = budget.status.get_or_insert_with(Default::default);
            if st.disruptions_allowed <= 0 {
                let budget_name = budget.metadata.name.clone().unwrap_or_default();
                let mut d = details("", "", "");
                d.causes = Some(vec![StatusCause {
                    reason: Some("DisruptionBudget".into()),
                    message: Some(format!(
                        "The disruption budget {budget_name} needs {} healthy pods and has {} currently",
                        st.desired_healthy, st.current_healthy
                    )),
                    field: None,
                }]);
                return status(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.".into(),
                    Some(d),
                );
            }
            st.disruptions_allowed -= 1;
        }
    }
    let grace = eviction
        .delete_options
        .and_then(|d| d.grace_period_seconds)
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|sp| sp.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    let already_deleting = pod.metadata.deletion_timestamp.is_some();
    if grace <= 0 {
        s.pods.remove(&key);
    } else if !already_deleting {
        let rv = s.next_rv();
        if let Some(p) = s.pods.get_mut(&key) {
            p.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
            p.metadata.deletion_grace_period_seconds = Some(grace);
            p.metadata.resource_version = Some(rv);
        }
    }
    let body = Status {
        status: Some("Success".into()),
        code: Some(201),
        ..Status::default()
    };
    ok(201, &body)
}

/// A label selector's verdict (`matchLabels` and `matchExpressions`).
fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let has = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => has.is_some_and(|v| values.contains(v)),
            "NotIn" => has.is_none_or(|v| !values.contains(v)),
            "Exists" => has.is_some(),
            "DoesNotExist" => has.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

fn reason_of(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

fn details(group: &str, kind: &str, name: &str) -> StatusDetails {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    StatusDetails {
        group: some(group),
        kind: some(kind),
        name: some(name),
        ..StatusDetails::default()
    }
}

fn not_found(group: &str, resource: &str, name: &str) -> Reply {
    let qualified = if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    };
    status(
        404,
        "NotFound",
        format!("{qualified} \"{name}\" not found"),
        Some(details(group, resource, name)),
    )
}

/// A `meta/v1` Status failure.
fn status(code: u16, reason: &str, message: String, details: Option<StatusDetails>) -> Reply {
    let body = Status {
        status: Some("Failure".into()),
        code: Some(i32::from(code)),
        reason: Some(reason.to_owned()),
        message: Some(message),
        details,
        ..Status::default()
    };
    ok(code, &body)
}

fn ok<T: Serialize>(code: u16, body: &T) -> Reply {
    let (code, bytes) = match serde_json::to_vec(body) {
        Ok(b) => (code, b),
        Err(e) => (500, format!("encoding the answer: {e}").into_bytes()),
    };
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::from(bytes))
        .unwrap_or_default()
}
