//! The reconcile dispatcher's behaviour on one work-queue batch: each reconciler gets
//! exactly its messages, unwrapped to the event it would have read from a queue of its
//! own, the groups run side by side, and the answer is the union of their failures —
//! a whole group when its invocation failed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use capstan_runtime::dispatch::{Invoke, InvokeError, dispatch, failed_ids, group};
use capstan_runtime::routes::{Reconciler, wrap};
use serde_json::{Value, json};

/// A stateful fake of Lambda's Invoke: records what each reconciler was given, answers
/// what it was told to (default: every message handled), and can be made to wait.
#[derive(Default)]
struct FakeLambda {
    calls: RefCell<Vec<(Reconciler, SqsEvent)>>,
    answers: BTreeMap<Reconciler, Answer>,
    /// How long each invocation takes (virtual-free: a real sleep, kept short).
    delay: Option<Duration>,
    in_flight: RefCell<(usize, usize)>,
}

enum Answer {
    Fail(Vec<&'static str>),
    Throttled,
    FunctionError,
}

impl FakeLambda {
    fn answering(mut self, r: Reconciler, a: Answer) -> Self {
        self.answers.insert(r, a);
        self
    }

    fn given(&self, r: Reconciler) -> Vec<(String, Value)> {
        self.calls
            .borrow()
            .iter()
            .filter(|(c, _)| *c == r)
            .flat_map(|(_, e)| e.records.clone())
            .map(|m| {
                (
                    m.message_id.unwrap_or_default(),
                    serde_json::from_str(m.body.as_deref().unwrap_or("null")).unwrap_or_default(),
                )
            })
            .collect()
    }
}

impl Invoke for FakeLambda {
    async fn invoke(
        &self,
        reconciler: Reconciler,
        event: SqsEvent,
    ) -> Result<SqsBatchResponse, InvokeError> {
        self.calls.borrow_mut().push((reconciler, event));
        {
            let mut f = self.in_flight.borrow_mut();
            f.0 += 1;
            f.1 = f.1.max(f.0);
        }
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        self.in_flight.borrow_mut().0 -= 1;
        match self.answers.get(&reconciler) {
            None => Ok(SqsBatchResponse::default()),
            Some(Answer::Fail(ids)) => {
                let mut r = SqsBatchResponse::default();
                r.batch_item_failures = ids
                    .iter()
                    .map(|id| {
                        let mut f = BatchItemFailure::default();
                        f.item_identifier = id.to_string();
                        f
                    })
                    .collect();
                Ok(r)
            }
            Some(Answer::Throttled) => Err(InvokeError::Throttled("Rate exceeded".into())),
            Some(Answer::FunctionError) => Err(InvokeError::Function {
                kind: "Unhandled".into(),
                detail: "Task timed out after 30.00 seconds".into(),
            }),
        }
    }
}

fn changed(kind: &str, name: &str) -> Value {
    json!({
        "version": "0", "id": format!("e-{name}"), "source": "capstan",
        "detail-type": format!("{kind} Changed"), "account": "123456789012",
        "time": "2026-12-01T12:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"kind": kind, "namespace": "default", "cluster": "c", "name": name},
    })
}

fn message(id: &str, body: String) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_string());
    m.receipt_handle = Some(format!("rh-{id}"));
    m.body = Some(body);
    m.attributes = [("ApproximateReceiveCount".to_string(), "2".to_string())].into();
    m.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:capstan-work".into());
    m
}

fn batch(messages: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = messages;
    e
}

fn wrapped(id: &str, r: Reconciler, event: &Value) -> SqsMessage {
    message(id, wrap(r, event).to_string())
}

/// The mixed batch a burst gives: a Machine's change wakes its own reconciler, its
/// MachineSet's and the health checks; a Cluster changed beside it.
fn mixed_batch() -> SqsEvent {
    let m = changed("Machine", "web-0");
    batch(vec![
        wrapped("1", Reconciler::Machine, &m),
        wrapped("2", Reconciler::MachineSet, &m),
        wrapped("3", Reconciler::HealthCheck, &m),
        wrapped("4", Reconciler::Cluster, &changed("Cluster", "c")),
        wrapped("5", Reconciler::Machine, &changed("Machine", "web-1")),
    ])
}

#[tokio::test]
async fn each_reconciler_is_given_exactly_its_messages_unwrapped_to_the_event() {
    let lambda = FakeLambda::default();
    let response = dispatch(&lambda, &mixed_batch()).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(
        lambda.calls.borrow().len(),
        4,
        "one invocation per reconciler"
    );
    assert_eq!(
        lambda.given(Reconciler::Machine),
        vec![
            ("1".to_string(), changed("Machine", "web-0")),
            ("5".to_string(), changed("Machine", "web-1")),
        ]
    );
    assert_eq!(
        lambda.given(Reconciler::MachineSet),
        vec![("2".to_string(), changed("Machine", "web-0"))]
    );
    assert_eq!(
        lambda.given(Reconciler::Cluster),
        vec![("4".to_string(), changed("Cluster", "c"))]
    );
    assert!(lambda.given(Reconciler::Deployment).is_empty());
    // Everything else about a message is what SQS delivered: the reconciler's partial
    // batch response names the same ids, and its logs the same receive count.
    let calls = lambda.calls.borrow();
    let (_, machine) = calls
        .iter()
        .find(|(r, _)| *r == Reconciler::Machine)
        .expect("the machine reconciler was invoked");
    assert_eq!(machine.records[0].receipt_handle.as_deref(), Some("rh-1"));
    assert_eq!(
        machine.records[0].attributes.get("ApproximateReceiveCount"),
        Some(&"2".to_string())
    );
}

#[tokio::test]
async fn the_answer_is_the_union_of_what_each_reconciler_reported() {
    let lambda = FakeLambda::default()
        .answering(Reconciler::Machine, Answer::Fail(vec!["5"]))
        .answering(Reconciler::HealthCheck, Answer::Fail(vec!["3"]));
    let response = dispatch(&lambda, &mixed_batch()).await;
    assert_eq!(failed_ids(&response), vec!["3", "5"]);
}

#[tokio::test]
async fn a_throttled_invocation_fails_its_whole_group_and_nothing_else() {
    let lambda = FakeLambda::default().answering(Reconciler::Machine, Answer::Throttled);
    let response = dispatch(&lambda, &mixed_batch()).await;
    assert_eq!(failed_ids(&response), vec!["1", "5"]);
}

#[tokio::test]
async fn a_function_error_fails_its_whole_group_beside_reported_failures() {
    let lambda = FakeLambda::default()
        .answering(Reconciler::Cluster, Answer::FunctionError)
        .answering(Reconciler::MachineSet, Answer::Fail(vec!["2"]));
    let response = dispatch(&lambda, &mixed_batch()).await;
    assert_eq!(failed_ids(&response), vec!["2", "4"]);
}

#[tokio::test]
async fn a_reconciler_reporting_a_message_it_was_not_given_fails_its_whole_group() {
    // An id outside the batch would make Lambda fail the dispatcher's whole batch.
    let lambda = FakeLambda::default().answering(Reconciler::Machine, Answer::Fail(vec!["4"]));
    let response = dispatch(&lambda, &mixed_batch()).await;
    assert_eq!(failed_ids(&response), vec!["1", "5"]);
}

#[tokio::test]
async fn messages_that_are_not_wrapped_are_failed_and_the_rest_dispatched() {
    let mut b = mixed_batch();
    b.records
        .push(message("6", changed("Machine", "raw").to_string()));
    b.records.push(message(
        "7",
        json!({"reconciler": "no-such-reconciler", "event": {}}).to_string(),
    ));
    b.records.push(message("8", "not json".to_string()));
    let lambda = FakeLambda::default();
    let response = dispatch(&lambda, &b).await;
    assert_eq!(failed_ids(&response), vec!["6", "7", "8"]);
    assert_eq!(lambda.given(Reconciler::Machine).len(), 2);
    let g = group(&b);
    assert_eq!(g.unreadable, vec!["6", "7", "8"]);
}

#[tokio::test]
async fn the_groups_run_side_by_side() {
    let lambda = FakeLambda {
        delay: Some(Duration::from_millis(50)),
        ..FakeLambda::default()
    };
    let started = std::time::Instant::now();
    let response = dispatch(&lambda, &mixed_batch()).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(
        lambda.in_flight.borrow().1,
        4,
        "all four invocations in flight at once"
    );
    assert!(started.elapsed() < Duration::from_millis(180));
}

#[tokio::test]
async fn an_empty_batch_invokes_nothing() {
    let lambda = FakeLambda::default();
    let response = dispatch(&lambda, &SqsEvent::default()).await;
    assert!(response.batch_item_failures.is_empty());
    assert!(lambda.calls.borrow().is_empty());
}
