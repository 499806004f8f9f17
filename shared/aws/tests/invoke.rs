//! The dispatcher's Invoke over HTTP, with the real SDK, against a small loopback
//! fixture that speaks Lambda's documented Invoke API
//! (<https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html>):
//! `POST /2015-03-31/functions/{FunctionName}/invocations` with the event as the body
//! and `X-Amz-Invocation-Type: RequestResponse`; 200 with the function's answer, 200
//! with `X-Amz-Function-Error` when the function failed, 429 TooManyRequestsException
//! when no concurrency is left.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_lambda::config::retry::RetryConfig;
use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
use capstan_aws::Names;
use capstan_aws::invoke::LambdaInvoker;
use capstan_runtime::dispatch::{Invoke, InvokeError, dispatch, failed_ids};
use capstan_runtime::routes::{Reconciler, wrap};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the fixture answers an invocation of one function.
#[derive(Clone, Debug)]
enum Behaviour {
    /// 200 with this JSON answer.
    Answer(Value),
    /// 200 with `X-Amz-Function-Error: Unhandled` and Lambda's error document.
    FunctionError,
    /// 429 TooManyRequestsException, every time.
    Throttled,
}

/// One request the fixture received.
#[derive(Clone, Debug)]
struct Received {
    function: String,
    invocation_type: Option<String>,
    body: Value,
}

#[derive(Clone, Default)]
struct Fixture {
    behaviours: Arc<BTreeMap<String, Behaviour>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Fixture {
    async fn start(behaviours: BTreeMap<String, Behaviour>) -> (Fixture, String) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("the fixture's address")
        );
        let fixture = Fixture {
            behaviours: Arc::new(behaviours),
            received: Arc::default(),
        };
        let serving = fixture.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let f = serving.clone();
                tokio::spawn(async move { f.serve(stream).await });
            }
        });
        (fixture, url)
    }

    fn received(&self, function: &str) -> Vec<Received> {
        self.received
            .lock()
            .expect("the fixture's log")
            .iter()
            .filter(|r| r.function == function)
            .cloned()
            .collect()
    }

    /// One request per connection (answered with `Connection: close`).
    async fn serve(&self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let Ok(n) = stream.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let Ok(n) = stream.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let request_line = head.lines().next().unwrap_or_default().to_string();
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let function = path
            .strip_prefix("/2015-03-31/functions/")
            .and_then(|p| p.strip_suffix("/invocations"))
            .map(str::to_string);
        let (status, extra, body) = match (method, function) {
            ("POST", Some(function)) => {
                let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
                self.received
                    .lock()
                    .expect("the fixture's log")
                    .push(Received {
                        function: function.clone(),
                        invocation_type: header("x-amz-invocation-type"),
                        body,
                    });
                match self.behaviours.get(&function) {
                    Some(Behaviour::Answer(v)) => ("200 OK", String::new(), v.to_string()),
                    Some(Behaviour::FunctionError) => (
                        "200 OK",
                        "X-Amz-Function-Error: Unhandled\r\n".to_string(),
                        json!({"errorType": "Runtime.ExitError", "errorMessage": "Task timed out after 30.00 seconds"}).to_string(),
                    ),
                    Some(Behaviour::Throttled) => (
                        "429 Too Many Requests",
                        "x-amzn-ErrorType: TooManyRequestsException\r\n".to_string(),
                        json!({"Type": "User", "message": "Rate Exceeded.", "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"}).to_string(),
                    ),
                    None => (
                        "404 Not Found",
                        "x-amzn-ErrorType: ResourceNotFoundException\r\n".to_string(),
                        json!({"Type": "User", "Message": format!("Function not found: {function}")}).to_string(),
                    ),
                }
            }
            _ => ("400 Bad Request", String::new(), "{}".to_string()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Amz-Executed-Version: $LATEST\r\n{extra}Connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

fn invoker(url: &str) -> LambdaInvoker {
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .build();
    LambdaInvoker::new(
        aws_sdk_lambda::Client::from_conf(config),
        Names::for_installation("capstan"),
    )
}

fn message(id: &str, r: Reconciler, name: &str) -> SqsMessage {
    let event = json!({
        "version": "0", "id": format!("e-{id}"), "source": "capstan",
        "detail-type": "Machine Changed", "account": "123456789012",
        "time": "2026-12-01T12:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"kind": "Machine", "namespace": "default", "cluster": "c", "name": name},
    });
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_string());
    m.receipt_handle = Some(format!("rh-{id}"));
    m.body = Some(wrap(r, &event).to_string());
    m
}

#[tokio::test]
async fn a_batch_is_dispatched_over_lambdas_invoke_api_and_each_failure_kind_fails_its_group() {
    let behaviours: BTreeMap<String, Behaviour> = [
        (
            "capstan-machine-reconciler",
            Behaviour::Answer(json!({"batchItemFailures": [{"itemIdentifier": "2"}]})),
        ),
        ("capstan-cluster-reconciler", Behaviour::FunctionError),
        ("capstan-machineset-reconciler", Behaviour::Throttled),
        (
            "capstan-healthcheck-reconciler",
            Behaviour::Answer(json!({"batchItemFailures": []})),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (fixture, url) = Fixture::start(behaviours).await;
    let invoker = invoker(&url);

    let mut batch = SqsEvent::default();
    batch.records = vec![
        message("1", Reconciler::Machine, "web-0"),
        message("2", Reconciler::Machine, "web-1"),
        message("3", Reconciler::Cluster, "c"),
        message("4", Reconciler::MachineSet, "web"),
        message("5", Reconciler::HealthCheck, "web-0"),
    ];
    let response = dispatch(&invoker, &batch).await;
    // Reported by the machine reconciler: 2; the cluster reconciler's function error: 3;
    // the machineset reconciler throttled after the SDK's retries: 4.
    assert_eq!(failed_ids(&response), vec!["2", "3", "4"]);

    // Each reconciler got its own messages, synchronously, unwrapped to the event.
    let machine = fixture.received("capstan-machine-reconciler");
    assert_eq!(machine.len(), 1);
    assert_eq!(
        machine[0].invocation_type.as_deref(),
        Some("RequestResponse")
    );
    let event: SqsEvent =
        serde_json::from_value(machine[0].body.clone()).expect("an SQS event was invoked");
    let ids: Vec<_> = event
        .records
        .iter()
        .map(|m| m.message_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(ids, vec!["1", "2"]);
    let body: Value = serde_json::from_str(event.records[0].body.as_deref().unwrap_or("null"))
        .expect("the body is the event");
    assert_eq!(body["detail-type"], "Machine Changed");
    assert_eq!(body["detail"]["name"], "web-0");
    assert!(body.get("reconciler").is_none(), "unwrapped");
    // Throttling was retried by the SDK (3 attempts), a function error was not.
    assert_eq!(fixture.received("capstan-machineset-reconciler").len(), 3);
    assert_eq!(fixture.received("capstan-cluster-reconciler").len(), 1);
    // Nothing for the reconcilers without messages.
    assert!(fixture.received("capstan-deployment-reconciler").is_empty());
}

#[tokio::test]
async fn each_failure_is_told_apart_by_what_lambda_answered() {
    let behaviours: BTreeMap<String, Behaviour> = [
        ("capstan-cluster-reconciler", Behaviour::FunctionError),
        ("capstan-machineset-reconciler", Behaviour::Throttled),
        (
            "capstan-healthcheck-reconciler",
            Behaviour::Answer(json!("not a batch response")),
        ),
        ("capstan-machine-reconciler", Behaviour::Answer(Value::Null)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (_fixture, url) = Fixture::start(behaviours).await;
    let invoker = invoker(&url);
    let event = |r| {
        let mut e = SqsEvent::default();
        e.records = vec![message("1", r, "x")];
        e
    };
    assert!(matches!(
        invoker.invoke(Reconciler::Cluster, event(Reconciler::Cluster)).await,
        Err(InvokeError::Function { kind, detail }) if kind == "Unhandled" && detail.contains("Task timed out")
    ));
    assert!(matches!(
        invoker
            .invoke(Reconciler::MachineSet, event(Reconciler::MachineSet))
            .await,
        Err(InvokeError::Throttled(_))
    ));
    assert!(matches!(
        invoker
            .invoke(Reconciler::HealthCheck, event(Reconciler::HealthCheck))
            .await,
        Err(InvokeError::Answer(_))
    ));
    // A handler that answers null handled everything.
    let answer = invoker
        .invoke(Reconciler::Machine, event(Reconciler::Machine))
        .await
        .expect("null is no failure");
    assert!(answer.batch_item_failures.is_empty());
    // A function that does not exist: not throttling, not a function error.
    assert!(matches!(
        invoker
            .invoke(Reconciler::Deployment, event(Reconciler::Deployment))
            .await,
        Err(InvokeError::Unavailable(_))
    ));
}
