//! What each invocation did, counted at the ports and emitted as one CloudWatch
//! embedded-metric-format (EMF) line: CloudWatch turns the line into metrics without a
//! PutMetricData call, so metrics cost no API calls and no latency.
//!
//! The counting is a decorator on each port (`Metered<P>`), so the handlers stay
//! unaware of it and every runtime that builds its control_plane through
//! `Functions::new` counts the same way.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ports::{
    Bus, BusError, BusEvent, Compute, ComputeError, Expect, Instance, LaunchRequest, ScanPage,
    Store, StoreError, Write,
};
use capstan_model::item::{Item, ItemKey};
use serde_json::{Value, json};

/// CloudWatch namespace of every Capstan metric.
pub const NAMESPACE: &str = "Capstan";

/// Counters shared by the metered ports of one process.
#[derive(Debug, Default)]
pub struct Counters {
    writes: AtomicU64,
    conflicts: AtomicU64,
    launches: AtomicU64,
    terminations: AtomicU64,
    published: AtomicU64,
    requeues: AtomicU64,
}

/// A handle on the counters; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Meter(Arc<Counters>);

/// The last metric lines a runtime that logs them wrote ([`KEPT_LINES`] at most), to
/// read back where there is no CloudWatch (the embedded runtime, its tests).
#[derive(Clone, Debug, Default)]
pub struct RecentLines(Arc<Mutex<VecDeque<Value>>>);

/// One EMF line, as JSON.
pub type Line = Value;

/// How many lines [`RecentLines`] keeps.
pub const KEPT_LINES: usize = 256;

impl RecentLines {
    pub fn push(&self, line: Value) {
        if let Ok(mut lines) = self.0.lock() {
            if lines.len() >= KEPT_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }

    /// The lines kept since the last call, oldest first.
    pub fn take(&self) -> Vec<Value> {
        self.0
            .lock()
            .map(|mut lines| lines.drain(..).collect())
            .unwrap_or_default()
    }
}

/// One invocation's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    /// Messages or records handled successfully (each one a reconcile request served).
    pub reconciles: u64,
    /// Side effects: conditional writes, instances launched, instances terminated.
    pub actions: u64,
    /// Conditional writes that lost a race (re-read and decided again).
    pub conflicts: u64,
    /// Messages or records reported failed.
    pub errors: u64,
    pub launches: u64,
    pub terminations: u64,
    pub events_published: u64,
    pub requeues: u64,
    /// The drift sweep's steps that failed and were skipped (one item, call or batch).
    pub skipped: u64,
    /// Objects whose observed item cannot be read, left alone (counted by the sweep).
    pub unreadable: u64,
    /// Autoscaler passes that raised a pool's replicas / removed a node.
    pub scale_ups: u64,
    pub scale_downs: u64,
    /// Pods a scale-up waited on, from created to scheduled (once per pod).
    pub pending_to_scheduled: Vec<Duration>,
    pub latency: Duration,
}

/// At most this many values of one metric in one line (EMF's limit).
pub const MAX_VALUES: usize = 100;

impl Meter {
    /// Takes (and resets) what the ports counted since the last call.
    pub fn take(&self, reconciles: u64, errors: u64, latency: Duration) -> Invocation {
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        let writes = take(&self.0.writes);
        let launches = take(&self.0.launches);
        let terminations = take(&self.0.terminations);
        Invocation {
            reconciles,
            actions: writes + launches + terminations,
            conflicts: take(&self.0.conflicts),
            errors,
            launches,
            terminations,
            events_published: take(&self.0.published),
            requeues: take(&self.0.requeues),
            skipped: 0,
            unreadable: 0,
            scale_ups: 0,
            scale_downs: 0,
            pending_to_scheduled: Vec::new(),
            latency,
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Invocation {
    /// Nothing changed and nothing was published: a resync that found everything as it
    /// should be. Not worth a metric line — CloudWatch bills a custom metric for every
    /// hour it receives data, and the drift sweep's resyncs reach every reconciler at
    /// least hourly (docs/operations.md, "What it costs"). Lambda's own metrics still
    /// count the invocation.
    pub fn is_idle(&self) -> bool {
        self.actions == 0
            && self.conflicts == 0
            && self.errors == 0
            && self.requeues == 0
            && self.events_published == 0
            && self.skipped == 0
            && self.unreadable == 0
            && self.pending_to_scheduled.is_empty()
    }

    /// The EMF document for this invocation, with `function` as the one dimension.
    /// `PendingToScheduled` only when a pod's wait ended: a list of values, one per pod
    /// (the first [`MAX_VALUES`]), so CloudWatch's statistics count each pod.
    pub fn emf(&self, function: &str, timestamp_ms: i64) -> Value {
        let count = |name: &str| json!({ "Name": name, "Unit": "Count" });
        let mut line = json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": [
                        count("Reconciles"), count("Actions"), count("Conflicts"),
                        count("Errors"), count("Launches"), count("Terminations"),
                        count("EventsPublished"), count("Requeues"),
                        count("Skipped"), count("Unreadable"),
                        count("ScaleUps"), count("ScaleDowns"),
                        { "Name": "Latency", "Unit": "Milliseconds" },
                    ],
                }],
            },
            "Function": function,
            "Reconciles": self.reconciles,
            "Actions": self.actions,
            "Conflicts": self.conflicts,
            "Errors": self.errors,
            "Launches": self.launches,
            "Terminations": self.terminations,
            "EventsPublished": self.events_published,
            "Requeues": self.requeues,
            "Skipped": self.skipped,
            "Unreadable": self.unreadable,
            "ScaleUps": self.scale_ups,
            "ScaleDowns": self.scale_downs,
            "Latency": self.latency.as_secs_f64() * 1000.0,
        });
        if !self.pending_to_scheduled.is_empty() {
            let values: Vec<f64> = self
                .pending_to_scheduled
                .iter()
                .take(MAX_VALUES)
                .map(Duration::as_secs_f64)
                .collect();
            line["PendingToScheduled"] = json!(values);
            if let Some(Value::Array(metrics)) =
                line.pointer_mut("/_aws/CloudWatchMetrics/0/Metrics")
            {
                metrics.push(json!({ "Name": "PendingToScheduled", "Unit": "Seconds" }));
            }
        }
        line
    }
}

/// A port whose calls are counted.
#[derive(Clone, Debug)]
pub struct Metered<P> {
    pub inner: P,
    meter: Meter,
}

impl<P> Metered<P> {
    pub fn new(inner: P, meter: Meter) -> Metered<P> {
        Metered { inner, meter }
    }

    fn written(&self, result: &Result<(), StoreError>) {
        match result {
            Ok(()) => Meter::add(&self.meter.0.writes, 1),
            Err(StoreError::Conflict) => Meter::add(&self.meter.0.conflicts, 1),
            Err(_) => {}
        }
    }
}

impl<S: Store> Store for Metered<S> {
    async fn query(&self, pk: &str, sk_prefix: Option<&str>) -> Result<Vec<Item>, StoreError> {
        self.inner.query(pk, sk_prefix).await
    }

    async fn put(&self, item: Item, expect: Expect) -> Result<(), StoreError> {
        let result = self.inner.put(item, expect).await;
        self.written(&result);
        result
    }

    async fn delete(&self, key: &ItemKey, expect: Expect) -> Result<(), StoreError> {
        let result = self.inner.delete(key, expect).await;
        self.written(&result);
        result
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let n = writes
            .iter()
            .filter(|w| !matches!(w, Write::Check { .. }))
            .count() as u64;
        let result = self.inner.transact(writes).await;
        match &result {
            Ok(()) => Meter::add(&self.meter.0.writes, n),
            Err(StoreError::Conflict) => Meter::add(&self.meter.0.conflicts, 1),
            Err(_) => {}
        }
        result
    }

    async fn find_by_instance(&self, instance_id: &str) -> Result<Vec<ItemKey>, StoreError> {
        self.inner.find_by_instance(instance_id).await
    }

    async fn scan_page(
        &self,
        sk_prefix: &str,
        start: Option<ItemKey>,
    ) -> Result<ScanPage, StoreError> {
        self.inner.scan_page(sk_prefix, start).await
    }
}

impl<C: Compute> Compute for Metered<C> {
    async fn run_instances(
        &self,
        launches: Vec<LaunchRequest>,
    ) -> Vec<Result<Instance, ComputeError>> {
        let results = self.inner.run_instances(launches).await;
        Meter::add(
            &self.meter.0.launches,
            results.iter().filter(|r| r.is_ok()).count() as u64,
        );
        results
    }

    async fn run_batch(
        &self,
        launch: LaunchRequest,
        count: u32,
    ) -> Result<Vec<Instance>, ComputeError> {
        let result = self.inner.run_batch(launch, count).await;
        if let Ok(instances) = &result {
            Meter::add(&self.meter.0.launches, instances.len() as u64);
        }
        result
    }

    async fn terminate_instances(
        &self,
        instance_ids: Vec<String>,
        tag_guard: (String, String),
    ) -> Result<Vec<(String, capstan_model::InstanceState)>, ComputeError> {
        let result = self
            .inner
            .terminate_instances(instance_ids, tag_guard)
            .await;
        if let Ok(states) = &result {
            Meter::add(&self.meter.0.terminations, states.len() as u64);
        }
        result
    }

    async fn create_tags(
        &self,
        instance_ids: Vec<String>,
        tags: std::collections::BTreeMap<String, String>,
        tag_guard: (String, String),
    ) -> Result<(), ComputeError> {
        self.inner.create_tags(instance_ids, tags, tag_guard).await
    }

    async fn describe_instances(
        &self,
        tags: Vec<(String, String)>,
    ) -> Result<Vec<Instance>, ComputeError> {
        self.inner.describe_instances(tags).await
    }

    async fn describe_instance_types(
        &self,
        instance_types: Vec<String>,
    ) -> Result<Vec<(String, crate::ports::InstanceCapacity)>, ComputeError> {
        self.inner.describe_instance_types(instance_types).await
    }
}

impl<B: Bus> Bus for Metered<B> {
    async fn put_events(&self, events: Vec<BusEvent>) -> Result<(), BusError> {
        let n = events.len() as u64;
        let result = self.inner.put_events(events).await;
        if result.is_ok() {
            Meter::add(&self.meter.0.published, n);
        }
        result
    }

    async fn requeue(&self, queue: &str, event: BusEvent, delay: Duration) -> Result<(), BusError> {
        let result = self.inner.requeue(queue, event, delay).await;
        if result.is_ok() {
            Meter::add(&self.meter.0.requeues, 1);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_every_metric_it_carries() {
        let line = Invocation {
            reconciles: 3,
            actions: 2,
            latency: Duration::from_millis(12),
            ..Invocation::default()
        }
        .emf("machine-reconciler", 1_700_000_000_000);
        let declared = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        for metric in declared {
            let name = metric["Name"].as_str().unwrap();
            assert!(line.get(name).is_some(), "{name} declared but absent");
        }
        assert_eq!(line["Function"], "machine-reconciler");
        assert_eq!(line["Reconciles"], 3);
        assert_eq!(line["Latency"], 12.0);
    }

    #[test]
    fn pending_to_scheduled_is_one_value_per_pod_in_seconds_and_only_when_there_are_some() {
        let none = Invocation::default().emf("cluster-reconciler", 0);
        assert!(none.get("PendingToScheduled").is_none());
        let declared = |line: &Value| {
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .map(|m| m.iter().any(|m| m["Name"] == "PendingToScheduled"))
        };
        assert_eq!(declared(&none), Some(false));
        let waits = Invocation {
            pending_to_scheduled: (1..=150).map(Duration::from_secs).collect(),
            ..Invocation::default()
        };
        assert!(!waits.is_idle(), "a pod's wait ended: worth a line");
        let line = waits.emf("cluster-reconciler", 0);
        assert_eq!(declared(&line), Some(true));
        let values = line["PendingToScheduled"].as_array().unwrap();
        assert_eq!(values.len(), MAX_VALUES, "EMF takes 100 values at most");
        assert_eq!(values[0], 1.0);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["Name"] == "PendingToScheduled")
                .map(|m| m["Unit"].clone()),
            Some(json!("Seconds"))
        );
    }

    #[test]
    fn only_an_invocation_that_changed_or_published_something_is_worth_a_line() {
        let idle = Invocation {
            reconciles: 5,
            latency: Duration::from_millis(3),
            ..Invocation::default()
        };
        assert!(idle.is_idle());
        for busy in [
            Invocation {
                actions: 1,
                ..idle.clone()
            },
            Invocation {
                conflicts: 1,
                ..idle.clone()
            },
            Invocation {
                errors: 1,
                ..idle.clone()
            },
            Invocation {
                requeues: 1,
                ..idle.clone()
            },
            Invocation {
                events_published: 1,
                ..idle.clone()
            },
        ] {
            assert!(!busy.is_idle(), "{busy:?}");
        }
    }
}
