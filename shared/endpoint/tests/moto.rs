//! The whole loop over the wire, against a moto_server each test starts for itself:
//! the table and its stream, the bus and its rules, the queues and EC2 are all moto's;
//! the handlers are the Lambda functions' own, driven by the local runtime.

mod support;

/// Issue 12, item 7: SimEc2 and EC2 over moto, call by call.
#[path = "moto/parity.rs"]
mod parity;
/// Issue 12 over the wire.
#[path = "moto/safety.rs"]
mod safety;

#[path = "moto/workload.rs"]
mod workload;

/// Issue 17: DescribeInstanceTypes, the autoscale pass's capacity read.
#[path = "moto/instance_types.rs"]
mod instance_types;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_ec2::types::InstanceStateName;
use capstan_aws::Ec2Compute;
use capstan_aws::convert::item_to_sdk;
use capstan_endpoint::EndpointRuntime;
use capstan_model::item::{ItemKey, Part, encode_desired};
use capstan_model::labels::{
    TAG_CLUSTER, TAG_INSTALLATION, TAG_MACHINE, TAG_MACHINE_UID, TAG_NAMESPACE,
};
use capstan_model::meta::condition;
use capstan_model::{AttrValue, Kind, MachinePhase, Object, ObjectKey};
use capstan_runtime::apply;
use capstan_runtime::ports::{Compute, ComputeError, Instance, LaunchRequest, Store};
use support::*;

fn cluster_key() -> ObjectKey {
    ObjectKey::new("default", "demo", Kind::Cluster, "demo")
}

fn with_workers(objects: &[Object], replicas: i32) -> Vec<Object> {
    objects
        .iter()
        .cloned()
        .map(|mut o| {
            if let Object::Cluster(c) = &mut o {
                c.spec.workers[0].replicas = Some(replicas);
            }
            o
        })
        .collect()
}

/// What a person writes with a raw PutItem: key, kind and spec, nothing the CLI adds.
fn raw_item(object: &Object) -> capstan_model::Item {
    let full = encode_desired(object, 1);
    ["pk", "sk", "kind", "spec"]
        .into_iter()
        .filter_map(|k| full.get(k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

async fn raw_put(rt: &EndpointRuntime<impl Compute>, item: capstan_model::Item) {
    rt.clients()
        .dynamodb
        .put_item()
        .table_name(&rt.config.names.table)
        .set_item(Some(item_to_sdk(&item)))
        .send()
        .await
        .expect("raw PutItem");
}

/// Every instance moto has, tagged or not, with its state.
async fn all_instances(rt: &EndpointRuntime<impl Compute>) -> Vec<(String, String, bool)> {
    let out = rt
        .clients()
        .ec2
        .describe_instances()
        .send()
        .await
        .expect("DescribeInstances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_string(),
                i.state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default(),
                i.tags().iter().any(|t| t.key() == Some(TAG_INSTALLATION)),
            )
        })
        .collect()
}

/// The messages on the dead-letter queue: (the reconciler the wrapper names, body).
async fn dead_letters(rt: &EndpointRuntime<impl Compute>) -> Vec<(String, String)> {
    let out = rt
        .clients()
        .sqs
        .receive_message()
        .queue_url(&rt.provisioned().dead_letter.url)
        .max_number_of_messages(10)
        // Peek: they stay visible for the next look.
        .visibility_timeout(0)
        .send()
        .await
        .expect("ReceiveMessage from the dead-letter queue");
    out.messages()
        .iter()
        .map(|m| {
            let body = m.body().unwrap_or_default().to_string();
            let reconciler = capstan_runtime::routes::unwrap(&body)
                .map(|(r, _)| r.name().to_string())
                .unwrap_or_default();
            (reconciler, body)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_converges_over_the_wire_then_scales_and_is_deleted() {
    let Stack {
        mut rt,
        env,
        moto: _moto,
    } = Stack::quickstart("moto-quickstart", false).await;
    let objects = env.quickstart(false);
    let store = rt.driver.functions.control_plane.store.inner.clone();

    let o = converge(&mut rt, "quickstart", 6).await;
    let ms = machines(&o);
    assert_eq!(ms.len(), 6);
    for m in &ms {
        assert_eq!(m.status.phase, MachinePhase::Running, "{}", m.metadata.name);
        let id = m
            .status
            .instance_id
            .as_deref()
            .expect("instance id recorded");
        let instance = o
            .instances
            .iter()
            .find(|i| i.instance_id == id)
            .expect("the recorded instance exists in EC2");
        let tag = |k: &str| instance.tags.get(k).map(String::as_str);
        assert_eq!(tag(TAG_INSTALLATION), Some("moto-quickstart"));
        assert_eq!(tag(TAG_NAMESPACE), Some("default"));
        assert_eq!(tag(TAG_CLUSTER), Some("demo"));
        assert_eq!(tag(TAG_MACHINE), Some(m.metadata.name.as_str()));
        assert_eq!(tag(TAG_MACHINE_UID), m.metadata.uid.as_deref());
        assert!(env.subnets.contains(&instance.subnet_id));
    }
    assert!(rt.stats().relayed >= 6, "{:?}", rt.stats());

    apply::apply(&store, &with_workers(&objects, 5))
        .await
        .expect("scale up");
    converge(&mut rt, "scale up to 5 workers", 8).await;
    apply::apply(&store, &with_workers(&objects, 1))
        .await
        .expect("scale down");
    let o = converge(&mut rt, "scale down to 1 worker", 4).await;
    assert_eq!(machines(&o).len(), 4);

    apply::delete(&store, &cluster_key()).await.expect("delete");
    for class in ["demo-control-plane", "demo-workers"] {
        let key = ObjectKey::new("default", "demo", Kind::MachineClass, class);
        apply::delete(&store, &key).await.expect("delete class");
    }
    let o = run_until(&mut rt, "cluster deletion", |o| {
        let items = item_count(o);
        let live = o.live_instances().len();
        (items > 0 || live > 0)
            .then(|| vec![format!("{items} objects and {live} live instances left")])
    })
    .await;
    assert!(o.instances.iter().all(|i| !i.state.is_live()));
    let dead = dead_letters(&rt).await;
    assert!(
        dead.is_empty(),
        "nothing reached a dead-letter queue: {dead:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_put_items_converge_and_an_invalid_raw_spec_only_sets_a_condition() {
    let Stack {
        mut rt,
        env,
        moto: _moto,
    } = Stack::start("moto-raw").await;
    let objects = env.quickstart(false);
    for object in &objects {
        raw_put(&rt, raw_item(object)).await;
    }
    let o = converge(&mut rt, "raw PutItem quickstart", 6).await;
    let cluster = o
        .trees
        .iter()
        .find_map(|t| t.get(Kind::Cluster, "demo"))
        .expect("the cluster");
    assert!(
        cluster.object.metadata().uid.is_some(),
        "the controller filled in the uid"
    );

    // Someone breaks the Cluster's spec with a raw PutItem.
    let cluster_object = objects
        .iter()
        .find(|o| o.kind() == Kind::Cluster)
        .expect("cluster");
    let mut broken = raw_item(cluster_object);
    if let Some(AttrValue::M(spec)) = broken.get_mut("spec") {
        spec.insert("workers".into(), AttrValue::S("three please".into()));
    }
    raw_put(&rt, broken).await;
    let o = run_until(&mut rt, "invalid raw spec", |o| {
        let cluster = o.trees.iter().find_map(|t| t.get(Kind::Cluster, "demo"));
        let condition =
            cluster.and_then(|c| c.object.conditions().get(condition::SPEC_VALID).cloned());
        match condition {
            Some(c) if c.message.contains("spec.workers") && o.queued == 0 => None,
            other => Some(vec![format!("SpecValid: {other:?}; {} queued", o.queued)]),
        }
    })
    .await;
    assert_eq!(machines(&o).len(), 6, "nothing torn down or launched");
    assert_eq!(o.live_instances().len(), 6);
    assert_eq!(
        all_instances(&rt).await.len(),
        6,
        "no instance launched since"
    );
    let dead = dead_letters(&rt).await;
    assert!(dead.is_empty(), "no dead-letter storm: {dead:#?}");
    // The desired item is the person's: the controller did not rewrite it.
    let key = ItemKey::of(&cluster_key(), Part::Desired);
    let stored = rt
        .clients()
        .dynamodb
        .get_item()
        .table_name(&rt.config.names.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(key.pk))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(key.sk))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem");
    let item = stored.item.expect("desired item");
    assert!(!item.contains_key("status") && !item.contains_key("rv"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_terminated_behind_our_back_is_noticed_and_replaced_and_an_untagged_one_is_never_touched()
 {
    let Stack {
        mut rt,
        env,
        moto: _moto,
    } = Stack::quickstart("moto-drift", true).await;
    // Someone else's instance in the same account: no Capstan tags.
    let theirs = rt
        .clients()
        .ec2
        .run_instances()
        .image_id(&env.image_id)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(&env.subnets[0])
        .send()
        .await
        .expect("an untagged instance");
    let theirs = theirs.instances()[0].instance_id().expect("id").to_string();
    let o = converge(&mut rt, "quickstart with health checks", 6).await;
    let victim = machines(&o)
        .into_iter()
        .find(|m| m.metadata.name.starts_with("demo-workers"))
        .expect("a worker");
    let victim_id = victim.status.instance_id.clone().expect("instance id");

    rt.clients()
        .ec2
        .terminate_instances()
        .instance_ids(&victim_id)
        .send()
        .await
        .expect("TerminateInstances behind Capstan's back");

    // Noticed: the relay sees the state change, instance-events records it, the Machine
    // fails with the reason (or is already remediated and gone).
    run_until(&mut rt, "noticing the terminated instance", |o| {
        let m = machines(o)
            .into_iter()
            .find(|m| m.metadata.name == victim.metadata.name);
        match m {
            Some(m)
                if m.status.phase == MachinePhase::Failed
                    && m.status.failure_reason.as_deref() == Some("InstanceTerminated") =>
            {
                None
            }
            None => None,
            Some(m) => Some(vec![format!("victim is {:?}", m.status.phase)]),
        }
    })
    .await;
    // Replaced: the health check remediates the Machine, its MachineSet launches anew.
    let o = converge(&mut rt, "replacing the failed worker", 6).await;
    assert!(
        o.live_instances()
            .iter()
            .all(|i| i.instance_id != victim_id)
    );
    assert!(
        machines(&o)
            .iter()
            .all(|m| m.metadata.name != victim.metadata.name)
    );

    // The sweep runs too, and still nothing of theirs is touched.
    rt.sweep().await;
    converge(&mut rt, "after the sweep", 6).await;
    let all = all_instances(&rt).await;
    let (_, state, tagged) = all
        .iter()
        .find(|(id, _, _)| *id == theirs)
        .expect("their instance");
    assert_eq!(state, InstanceStateName::Running.as_str(), "never touched");
    assert!(!tagged);

    // Tagging in place (a MachineClass's additionalTags changed): ours only, never the
    // installation tag itself.
    let ec2 = Ec2Compute::new(rt.clients().ec2.clone());
    let guard = (TAG_INSTALLATION.to_string(), "moto-drift".to_string());
    let ours = o.live_instances()[0].instance_id.clone();
    let team = std::collections::BTreeMap::from([("team".to_string(), "infra".to_string())]);
    ec2.create_tags(vec![ours.clone()], team.clone(), guard.clone())
        .await
        .expect("tags ours");
    let refused = ec2
        .create_tags(vec![theirs.clone()], team.clone(), guard.clone())
        .await
        .expect_err("theirs is refused");
    assert!(
        matches!(refused, ComputeError::Invalid { ref code, .. } if code == "UnauthorizedOperation"),
        "{refused:?}"
    );
    let hijack =
        std::collections::BTreeMap::from([(TAG_INSTALLATION.to_string(), "other".to_string())]);
    assert!(
        ec2.create_tags(vec![ours.clone()], hijack, guard.clone())
            .await
            .is_err()
    );
    let described = ec2
        .describe_instances(vec![guard.clone()])
        .await
        .expect("describe");
    let tagged = described
        .iter()
        .find(|i| i.instance_id == ours)
        .expect("ours");
    assert_eq!(tagged.tags.get("team").map(String::as_str), Some("infra"));
    assert_eq!(tagged.tags.get(TAG_INSTALLATION), Some(&guard.1));
}

/// EC2 in front of which the first launch "crashes": RunInstances goes through, then
/// the invocation hangs until the runtime abandons it, as a Lambda timeout would —
/// the instance id is never recorded.
#[derive(Clone)]
struct CrashAfterFirstLaunch {
    inner: Ec2Compute,
    crashed: Arc<AtomicBool>,
}

impl Compute for CrashAfterFirstLaunch {
    async fn run_instances(
        &self,
        launches: Vec<LaunchRequest>,
    ) -> Vec<Result<Instance, ComputeError>> {
        let results = self.inner.run_instances(launches).await;
        if !self.crashed.swap(true, Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        results
    }

    async fn run_batch(
        &self,
        launch: LaunchRequest,
        count: u32,
    ) -> Result<Vec<Instance>, ComputeError> {
        let result = self.inner.run_batch(launch, count).await;
        if !self.crashed.swap(true, Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        result
    }

    async fn terminate_instances(
        &self,
        instance_ids: Vec<String>,
        tag_guard: (String, String),
    ) -> Result<Vec<(String, capstan_model::InstanceState)>, ComputeError> {
        self.inner
            .terminate_instances(instance_ids, tag_guard)
            .await
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
    ) -> Result<Vec<(String, capstan_runtime::InstanceCapacity)>, ComputeError> {
        self.inner.describe_instance_types(instance_types).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_run_instances_and_recording_the_id_leaves_exactly_one_instance() {
    let crashed = Arc::new(AtomicBool::default());
    let mut config = test_config("moto-crash");
    config.function_timeout = std::time::Duration::from_secs(3);
    let stack = Stack::start_with(config, |clients| CrashAfterFirstLaunch {
        inner: Ec2Compute::new(clients.ec2.clone()),
        crashed: crashed.clone(),
    })
    .await;
    stack.apply(&stack.env.quickstart(false)).await;
    let Stack {
        mut rt,
        moto: _moto,
        ..
    } = stack;
    let o = converge(&mut rt, "quickstart through a crash", 6).await;
    assert!(crashed.load(Ordering::SeqCst), "the crash happened");
    assert!(rt.stats().timed_out_invocations >= 1, "{:?}", rt.stats());
    // moto ignores ClientToken, so only recovery by the machine-uid tag prevents a
    // second instance: every instance ever launched is one Machine's, once.
    let all = all_instances(&rt).await;
    assert_eq!(all.len(), 6, "exactly one launch per Machine: {all:?}");
    let mut uids: Vec<_> = o
        .instances
        .iter()
        .filter_map(|i| i.tags.get(TAG_MACHINE_UID).cloned())
        .collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 6);
}

/// DynamoDB over the wire, arranged so that two invocations decide from the same read:
/// the first two transactions wait until both have arrived (each invocation has read
/// and decided), then go to the table one at a time. One at a time because moto, unlike
/// DynamoDB, does not isolate concurrent TransactWriteItems (it snapshots and restores
/// whole tables around each), so overlapping transactions would test moto, not Capstan.
#[derive(Clone)]
struct SameSnapshot {
    inner: capstan_aws::DynamoStore,
    arrivals: Arc<std::sync::atomic::AtomicUsize>,
    barrier: Arc<tokio::sync::Barrier>,
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

impl capstan_runtime::ports::Store for SameSnapshot {
    async fn query(
        &self,
        pk: &str,
        sk_prefix: Option<&str>,
    ) -> Result<Vec<capstan_model::Item>, capstan_runtime::StoreError> {
        self.inner.query(pk, sk_prefix).await
    }

    async fn put(
        &self,
        item: capstan_model::Item,
        expect: capstan_model::Expect,
    ) -> Result<(), capstan_runtime::StoreError> {
        let _turn = self.one_at_a_time.lock().await;
        self.inner.put(item, expect).await
    }

    async fn delete(
        &self,
        key: &ItemKey,
        expect: capstan_model::Expect,
    ) -> Result<(), capstan_runtime::StoreError> {
        let _turn = self.one_at_a_time.lock().await;
        self.inner.delete(key, expect).await
    }

    async fn find_by_instance(
        &self,
        instance_id: &str,
    ) -> Result<Vec<ItemKey>, capstan_runtime::StoreError> {
        self.inner.find_by_instance(instance_id).await
    }

    async fn transact(
        &self,
        writes: Vec<capstan_runtime::Write>,
    ) -> Result<(), capstan_runtime::StoreError> {
        if self.arrivals.fetch_add(1, Ordering::SeqCst) < 2 {
            // Bounded: if the other invocation decided nothing, go on alone.
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(20), self.barrier.wait()).await;
        }
        let _turn = self.one_at_a_time.lock().await;
        self.inner.transact(writes).await
    }

    async fn scan_page(
        &self,
        sk_prefix: &str,
        start: Option<ItemKey>,
    ) -> Result<capstan_runtime::ScanPage, capstan_runtime::StoreError> {
        self.inner.scan_page(sk_prefix, start).await
    }
}

/// The SQS event Lambda would hand one invocation: one message naming `key`.
fn one_message(key: &ObjectKey, id: &str) -> aws_lambda_events::event::sqs::SqsEvent {
    let event = capstan_runtime::events::resync_event(key, jiff::Timestamp::now());
    let mut message = aws_lambda_events::event::sqs::SqsMessage::default();
    message.message_id = Some(id.to_string());
    message.body = Some(serde_json::to_string(&event).expect("event JSON"));
    message.event_source = Some("aws:sqs".to_string());
    let mut sqs = aws_lambda_events::event::sqs::SqsEvent::default();
    sqs.records = vec![message];
    sqs
}

/// Lambda runs invocations side by side: two invocations of the machineset
/// reconciler's handler, each holding a message about the same MachineSet, decide from
/// the same read (3 Machines, 6 wanted; `SameSnapshot` makes sure of it). The plan's fence (the MachineSet's observed
/// item and the new Machines in one TransactWriteItems, conditional on the version
/// read) lets one act; the other's transaction is cancelled, it reads again and finds
/// nothing to do. One MachineSet's worth of Machines, not 9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_invocations_at_once_on_one_machine_set_create_one_sets_worth_of_machines() {
    let Stack {
        mut rt,
        moto: _moto,
        ..
    } = Stack::quickstart("moto-concurrent", false).await;
    let store = rt.driver.functions.control_plane.store.inner.clone();
    let o = converge(&mut rt, "quickstart", 6).await;

    // The workers' MachineSet is raised to 6 by hand; nothing runs in between.
    let tree = o
        .trees
        .iter()
        .find(|t| t.of_kind(Kind::MachineSet).next().is_some())
        .expect("a tree with MachineSets");
    let set = tree
        .of_kind(Kind::MachineSet)
        .filter_map(|s| s.object.as_machine_set())
        .find(|s| s.metadata.name.starts_with("demo-workers"))
        .expect("the workers' MachineSet")
        .clone();
    let owned = |o: &capstan_endpoint::Observation| {
        machines(o)
            .into_iter()
            .filter(|m| {
                m.metadata
                    .owner_references
                    .iter()
                    .any(|r| r.name == set.metadata.name)
            })
            .count()
    };
    assert_eq!(owned(&o), 3);
    let mut raised = set.clone();
    raised.spec.replicas = 6;
    let stored = tree
        .get(Kind::MachineSet, &set.metadata.name)
        .expect("stored set");
    let rv = stored.desired_rv.expect("desired item");
    rt.driver
        .functions
        .control_plane
        .store
        .put(
            encode_desired(&Object::MachineSet(raised.clone()), rv + 1),
            capstan_model::Expect::Version(rv),
        )
        .await
        .expect("raise the set");

    let key = ObjectKey::new("default", "demo", Kind::MachineSet, &set.metadata.name);
    let reconciler = capstan_runtime::routes::Reconciler::MachineSet;
    let functions = capstan_runtime::functions::Functions::new(
        SameSnapshot {
            inner: store.clone(),
            arrivals: Arc::default(),
            barrier: Arc::new(tokio::sync::Barrier::new(2)),
            one_at_a_time: Arc::default(),
        },
        Ec2Compute::new(rt.clients().ec2.clone()),
        capstan_aws::EventBridgeBus::new(
            rt.clients().eventbridge.clone(),
            rt.clients().sqs.clone(),
            rt.config.names.clone(),
        ),
        Arc::new(capstan_runtime::system::SystemClock),
        Arc::new(capstan_runtime::system::OsEntropy),
        &rt.config.names.installation,
        capstan_runtime::functions::MetricsSink::Log,
    );
    let (first, second) = (one_message(&key, "m-1"), one_message(&key, "m-2"));
    let (a, b) = tokio::join!(
        functions.queue(reconciler, &first),
        functions.queue(reconciler, &second),
    );
    assert!(a.batch_item_failures.is_empty(), "{a:?}");
    assert!(b.batch_item_failures.is_empty(), "{b:?}");
    let o = rt.observe().await.expect("observe");
    assert_eq!(
        owned(&o),
        6,
        "two invocations at once made one MachineSet's worth of Machines"
    );
}

/// Issue 16: the one work queue over the wire. A reconciler's delayed re-queue (the AWS
/// bus's SendMessage) lands on moto's work queue wrapped exactly as a rule's input
/// transformer wraps an event, and the runtime hands it to that reconciler; a message
/// that names no reconciler is received MAX_RECEIVE_COUNT times and redriven by moto
/// into the one dead-letter queue, untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeue_travels_wrapped_through_the_work_queue_and_an_unwrapped_message_reaches_the_dead_letter_queue()
 {
    use capstan_aws::EventBridgeBus;
    use capstan_runtime::events::resync_event;
    use capstan_runtime::ports::Bus;
    use capstan_runtime::routes::{Reconciler, unwrap};

    let Stack {
        mut rt,
        moto: _moto,
        ..
    } = Stack::start("moto-work-queue").await;
    let clients = rt.clients().clone();
    let work = rt.provisioned().work.url.clone();
    let key = ObjectKey::new("default", "demo", Kind::Machine, "nobody");

    let bus = EventBridgeBus::new(
        clients.eventbridge.clone(),
        clients.sqs.clone(),
        rt.config.names.clone(),
    );
    let event = resync_event(&key, capstan_model::Timestamp::now());
    bus.requeue(
        Reconciler::Machine.name(),
        event.clone(),
        std::time::Duration::ZERO,
    )
    .await
    .expect("requeue onto the work queue");
    // Peek (visibility 0: it stays for the runtime) at the body on the wire.
    let peeked = clients
        .sqs
        .receive_message()
        .queue_url(&work)
        .visibility_timeout(0)
        .send()
        .await
        .expect("ReceiveMessage");
    let body = peeked
        .messages()
        .first()
        .and_then(|m| m.body())
        .expect("the re-queued message")
        .to_string();
    let (reconciler, inner) = unwrap(&body).expect("wrapped");
    assert_eq!(reconciler, Reconciler::Machine);
    assert_eq!(inner["detail-type"], "Resync");
    assert_eq!(inner["detail"]["name"], "nobody");

    let poison = r#"{"detail-type":"Resync","detail":{"kind":"Machine"}}"#;
    clients
        .sqs
        .send_message()
        .queue_url(&work)
        .message_body(poison)
        .send()
        .await
        .expect("SendMessage");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        rt.step().await.expect("a step");
        let dead = dead_letters(&rt).await;
        let handled = rt.stats().messages >= 1;
        if handled && dead.iter().any(|(_, b)| b == poison) {
            assert_eq!(dead.len(), 1, "only the poison message: {dead:#?}");
            assert_eq!(dead[0].0, "", "it names no reconciler");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "handled: {handled}, dead letters: {dead:#?}, stats: {:?}",
            rt.stats()
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    // The re-queue was handed to the machine reconciler, and only it, once.
    assert_eq!(rt.stats().messages, 1, "{:?}", rt.stats());
    assert_eq!(rt.stats().failed_messages, 0, "{:?}", rt.stats());
}
