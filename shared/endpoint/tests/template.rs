//! infra/template.yaml deploys what `capstan run --endpoint` provisions against moto:
//! the same rule patterns on the same buses, each wrapping its events for its
//! reconciler into the one work queue, the same queue and table names, the same key
//! schema and index, the same redrive to the one dead-letter queue, and one function per
//! binary with the environment the binaries read. So what is proven against moto is what
//! is deployed. Beyond that, the idle-cost shape (issue 16): one dispatcher reading the
//! work queue with least privilege, no reconciler with a queue of its own, two alarms.
//!
//! The template writes its intrinsics in long form (`Ref:`, `Fn::Sub:`), so it reads as
//! plain YAML here.

mod support;

use std::collections::BTreeSet;

use capstan_aws::Names;
use capstan_aws::provision::{DEFAULT_BUS, MAX_RECEIVE_COUNT, rule_bus, rule_pattern};
use capstan_model::item::{INSTANCE_ID, INSTANCE_INDEX, PK, Part, SK, sort_key};
use capstan_model::{Kind, ObjectKey};
use capstan_runtime::requeue::{Chain, TTL_ATTRIBUTE, marker_key};
use capstan_runtime::routes::{BATCH_SIZE, Reconciler, matches, stream_filter, unwrap};
use serde_json::{Value, json};

struct Template {
    doc: Value,
    installation: String,
}

impl Template {
    fn load() -> Template {
        let path = support::repo().join("infra/template.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let doc: Value = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not plain YAML: {e}", path.display()));
        let installation = doc["Parameters"]["InstallationName"]["Default"]
            .as_str()
            .expect("InstallationName has a default")
            .to_string();
        Template { doc, installation }
    }

    fn resources(&self, kind: &str) -> Vec<(&String, &Value)> {
        self.doc["Resources"]
            .as_object()
            .expect("Resources")
            .iter()
            .filter(|(_, r)| r["Type"] == kind)
            .collect()
    }

    fn resource(&self, id: &str) -> &Value {
        let r = &self.doc["Resources"][id];
        assert!(!r.is_null(), "no resource {id}");
        r
    }

    /// A name as CloudFormation would resolve it with the parameters' defaults.
    fn resolve(&self, v: &Value) -> String {
        if let Some(s) = v.as_str() {
            return s.to_string();
        }
        if let Some(s) = v["Fn::Sub"].as_str() {
            return s.replace("${InstallationName}", &self.installation);
        }
        match v["Ref"].as_str() {
            Some("InstallationName") => self.installation.clone(),
            Some(id) => {
                let p = &self.resource(id)["Properties"];
                let name = ["TableName", "Name", "QueueName"]
                    .iter()
                    .map(|k| &p[*k])
                    .find(|n| !n.is_null())
                    .unwrap_or_else(|| panic!("{id} has no name"));
                self.resolve(name)
            }
            None => panic!("cannot resolve {v}"),
        }
    }

    /// The logical id a `Fn::GetAtt: [Id, Arn]` points at.
    fn arn_of(v: &Value) -> &str {
        v["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{v} is not Fn::GetAtt"))
    }

    fn queue_named(&self, name: &str) -> (&String, &Value) {
        self.resources("AWS::SQS::Queue")
            .into_iter()
            .find(|(_, q)| self.resolve(&q["Properties"]["QueueName"]) == name)
            .unwrap_or_else(|| panic!("no queue named {name}"))
    }

    fn function_for(&self, binary: &str) -> &Value {
        self.resources("AWS::Serverless::Function")
            .into_iter()
            .map(|(_, f)| f)
            .find(|f| f["Metadata"]["BuildProperties"]["Binary"] == binary)
            .unwrap_or_else(|| panic!("no function builds the binary {binary}"))
    }
}

/// Every statement of a role's inline policies.
fn statements<'a>(t: &'a Template, role: &str) -> Vec<&'a Value> {
    t.resource(role)["Properties"]["Policies"]
        .as_array()
        .expect("Policies")
        .iter()
        .flat_map(|p| {
            p["PolicyDocument"]["Statement"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .collect()
}

/// One value or a list of them, as a policy statement's `Action` and `Resource` are.
fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        one => vec![one],
    }
}

/// The statements of a role's inline policies that allow `action`, with their resources
/// as logical ids (`Fn::GetAtt: [Id, Arn]`) or as written.
fn allowed(t: &Template, role: &str, action: &str) -> Vec<String> {
    statements(t, role)
        .into_iter()
        .filter(|s| {
            s["Effect"] == "Allow" && one_or_many(&s["Action"]).contains(&&Value::from(action))
        })
        .flat_map(|s| one_or_many(&s["Resource"]))
        .map(|r| match r["Fn::GetAtt"][0].as_str() {
            Some(id) => id.to_string(),
            None => r.to_string(),
        })
        .collect()
}

fn role_of(function: &Value) -> &str {
    Template::arn_of(&function["Properties"]["Role"])
}

fn function_id_for<'t>(t: &'t Template, binary: &str) -> &'t String {
    t.resources("AWS::Serverless::Function")
        .into_iter()
        .find(|(_, f)| f["Metadata"]["BuildProperties"]["Binary"] == binary)
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("no function builds the binary {binary}"))
}

const DISPATCHER: &str = "reconcile-dispatcher";

#[test]
fn each_reconciler_has_its_rule_into_the_one_work_queue_the_endpoint_runtime_creates() {
    let t = Template::load();
    let names = Names::for_installation(&t.installation);
    let rules = t.resources("AWS::Events::Rule");
    assert_eq!(
        rules.len(),
        Reconciler::ALL.len(),
        "one rule per reconciler, no other"
    );
    let (work_id, work) = t.queue_named(&names.work_queue());
    for r in Reconciler::ALL {
        let name = names.rule(r.name());
        let (id, rule) = rules
            .iter()
            .find(|(_, rule)| t.resolve(&rule["Properties"]["Name"]) == name)
            .unwrap_or_else(|| panic!("no rule named {name}"));
        let p = &rule["Properties"];
        assert_eq!(
            p["EventPattern"],
            rule_pattern(r),
            "{id}: the pattern differs from Reconciler::{r:?}.patterns()"
        );
        let bus = rule_bus(r, &names);
        if bus == DEFAULT_BUS {
            assert_eq!(p["EventBusName"], json!(DEFAULT_BUS), "{id}");
        } else {
            assert_eq!(t.resolve(&p["EventBusName"]), bus, "{id}");
        }
        let targets = p["Targets"].as_array().expect("Targets");
        assert_eq!(targets.len(), 1, "{id}: one target");
        assert_eq!(Template::arn_of(&targets[0]["Arn"]), work_id, "{id}");
        assert_eq!(
            targets[0]["InputTransformer"],
            json!({ "InputTemplate": r.input_template() }),
            "{id}: the event wrapped for {}, as capstan_runtime::routes::wrap writes it",
            r.name()
        );
    }
    // The wrapper the rules write is the one the dispatcher reads.
    let event = json!({"source": "capstan", "detail": {"kind": "Machine"}});
    let delivered = Reconciler::Machine
        .input_template()
        .replace("<aws.events.event.json>", &event.to_string());
    let (reconciler, inner) = unwrap(&delivered).expect("the dispatcher reads it");
    assert_eq!((reconciler, inner), (Reconciler::Machine, event));

    // Two queues: the work queue and the one dead-letter queue every queue redrives to.
    let queues = t.resources("AWS::SQS::Queue");
    assert_eq!(queues.len(), 2, "the work queue and the dead-letter queue");
    let (dlq_id, dlq) = t.queue_named(&names.dead_letter_queue());
    assert_eq!(
        dlq["Properties"]["MessageRetentionPeriod"],
        json!(1_209_600)
    );
    for (id, q) in &queues {
        if *id == dlq_id {
            assert!(
                q["Properties"]["RedrivePolicy"].is_null(),
                "the DLQ redrives nowhere"
            );
            continue;
        }
        let redrive = &q["Properties"]["RedrivePolicy"];
        assert_eq!(redrive["maxReceiveCount"], json!(MAX_RECEIVE_COUNT), "{id}");
        assert_eq!(
            Template::arn_of(&redrive["deadLetterTargetArn"]),
            dlq_id,
            "{id}"
        );
    }
    let _ = work;
}

#[test]
fn one_dispatcher_reads_the_work_queue_and_no_reconciler_has_a_queue_of_its_own() {
    let t = Template::load();
    let names = Names::for_installation(&t.installation);
    let (work_id, work) = t.queue_named(&names.work_queue());
    let sqs_events = |f: &Value| -> Vec<Value> {
        f["Properties"]["Events"]
            .as_object()
            .map(|e| e.values().filter(|e| e["Type"] == "SQS").cloned().collect())
            .unwrap_or_default()
    };
    let mut slowest = 0;
    for r in Reconciler::ALL {
        let f = t.function_for(r.name());
        assert!(
            sqs_events(f).is_empty(),
            "{} has no SQS event source",
            r.name()
        );
        slowest = slowest.max(f["Properties"]["Timeout"].as_u64().expect("Timeout"));
        // It reads no queue; the reconcilers that look again later re-queue on the
        // work queue (Bus::requeue), instance-events never does.
        let role = role_of(f);
        assert!(allowed(&t, role, "sqs:ReceiveMessage").is_empty(), "{role}");
        assert!(allowed(&t, role, "sqs:DeleteMessage").is_empty(), "{role}");
        let sends = allowed(&t, role, "sqs:SendMessage");
        if r == Reconciler::InstanceEvents {
            assert!(sends.is_empty(), "{role}: {sends:?}");
        } else {
            assert_eq!(sends, vec![work_id.clone()], "{role}");
        }
    }

    let dispatcher = t.function_for(DISPATCHER);
    let events = sqs_events(dispatcher);
    assert_eq!(events.len(), 1, "the dispatcher has one queue");
    let p = &events[0]["Properties"];
    assert_eq!(Template::arn_of(&p["Queue"]), work_id);
    assert_eq!(
        p["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(
        p["BatchSize"],
        json!(BATCH_SIZE),
        "the batch size the embedded runtime and the benchmarks use"
    );
    assert_eq!(
        p["MaximumBatchingWindowInSeconds"],
        json!(1),
        "coalescing kept"
    );
    assert_eq!(p["ScalingConfig"]["MaximumConcurrency"], json!(5));
    let timeout = dispatcher["Properties"]["Timeout"]
        .as_u64()
        .expect("Timeout");
    assert!(
        timeout > slowest,
        "the dispatcher ({timeout} s) outlives the slowest reconciler ({slowest} s)"
    );
    let attempts = capstan_aws::invoke::CALL_TIMEOUT.as_secs();
    assert!(
        attempts < timeout && capstan_aws::invoke::ATTEMPT_TIMEOUT.as_secs() > slowest,
        "the Invoke timeouts sit between the reconcilers' and the dispatcher's"
    );
    let visibility = work["Properties"]["VisibilityTimeout"]
        .as_u64()
        .expect("VisibilityTimeout");
    assert!(
        visibility >= 6 * timeout,
        "visibility {visibility} s < 6 x the dispatcher's {timeout} s"
    );

    // Least privilege: the dispatcher invokes exactly the reconcilers and reads exactly
    // the work queue; nothing else but its own logs.
    let role = role_of(dispatcher);
    let mut invoked = allowed(&t, role, "lambda:InvokeFunction");
    invoked.sort();
    let mut reconcilers: Vec<String> = Reconciler::ALL
        .iter()
        .map(|r| function_id_for(&t, r.name()).clone())
        .collect();
    reconcilers.sort();
    assert_eq!(
        invoked, reconcilers,
        "{role} invokes exactly the reconcilers"
    );
    for action in [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    ] {
        assert_eq!(
            allowed(&t, role, action),
            vec![work_id.clone()],
            "{role}: {action}"
        );
    }
    let actions: BTreeSet<String> = statements(&t, role)
        .into_iter()
        .flat_map(|s| one_or_many(&s["Action"]))
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    let expected: BTreeSet<String> = [
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "lambda:InvokeFunction",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(
        actions, expected,
        "{role}: nothing beyond the queue and the invokes"
    );
    // No other function may invoke another.
    for (id, f) in t.resources("AWS::Serverless::Function") {
        if f["Metadata"]["BuildProperties"]["Binary"] != DISPATCHER {
            assert!(
                allowed(&t, role_of(f), "lambda:InvokeFunction").is_empty(),
                "{id}"
            );
        }
    }
}

#[test]
fn two_alarms_one_on_the_shared_dead_letter_queue_where_every_failure_lands() {
    let t = Template::load();
    let names = Names::for_installation(&t.installation);
    let (dlq_id, _) = t.queue_named(&names.dead_letter_queue());
    let alarms = t.resources("AWS::CloudWatch::Alarm");
    assert_eq!(alarms.len(), 2, "the DLQ's and the stream's iterator age");
    let on_dlq: Vec<_> = alarms
        .iter()
        .filter(|(_, a)| {
            a["Properties"]["Namespace"] == "AWS/SQS"
                && Template::arn_of(&a["Properties"]["Dimensions"][0]["Value"]) == dlq_id
        })
        .collect();
    assert_eq!(on_dlq.len(), 1, "one alarm on the dead-letter queue");
    assert_eq!(
        on_dlq[0].1["Properties"]["MetricName"],
        "ApproximateNumberOfMessagesVisible"
    );
    assert!(
        alarms
            .iter()
            .any(|(_, a)| a["Properties"]["MetricName"] == "IteratorAge"),
        "the stream router's iterator-age alarm stays"
    );

    // The stream router's skipped batches and the sweep's failed runs land there too,
    // written with their own roles.
    let router = t.function_for("stream-router");
    let stream = router["Properties"]["Events"]
        .as_object()
        .expect("Events")
        .values()
        .find(|e| e["Type"] == "DynamoDB")
        .expect("the stream's mapping");
    assert_eq!(
        Template::arn_of(&stream["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]),
        dlq_id
    );
    let sweep = t.function_for("drift-sweep");
    let on_failure = &sweep["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
    assert_eq!(on_failure["Type"], "SQS");
    assert_eq!(Template::arn_of(&on_failure["Destination"]), dlq_id);
    for f in [router, sweep] {
        assert_eq!(
            allowed(&t, role_of(f), "sqs:SendMessage"),
            vec![dlq_id.clone()],
            "{}",
            role_of(f)
        );
    }
}

#[test]
fn the_table_has_the_keys_stream_and_index_the_code_uses() {
    let t = Template::load();
    let names = Names::for_installation(&t.installation);
    let tables = t.resources("AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1);
    let p = &tables[0].1["Properties"];
    assert_eq!(t.resolve(&p["TableName"]), names.table);
    assert_eq!(
        p["KeySchema"],
        json!([
            {"AttributeName": PK, "KeyType": "HASH"},
            {"AttributeName": SK, "KeyType": "RANGE"}
        ])
    );
    assert_eq!(
        p["StreamSpecification"]["StreamViewType"],
        "NEW_AND_OLD_IMAGES"
    );
    assert_eq!(
        p["GlobalSecondaryIndexes"],
        json!([{
            "IndexName": INSTANCE_INDEX,
            "KeySchema": [{"AttributeName": INSTANCE_ID, "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"}
        }])
    );
    assert_eq!(
        p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(p["DeletionProtectionEnabled"], true);
    assert_eq!(
        p["TimeToLiveSpecification"],
        json!({"AttributeName": TTL_ATTRIBUTE, "Enabled": true})
    );
    let bus = t.resources("AWS::Events::EventBus");
    assert_eq!(t.resolve(&bus[0].1["Properties"]["Name"]), names.bus);
}

#[test]
fn the_stream_invokes_the_router_for_every_objects_records_and_no_requeue_markers() {
    let t = Template::load();
    let router = t.function_for("stream-router");
    let mapping = &router["Properties"]["Events"]["TableStream"]["Properties"];
    let filters = mapping["FilterCriteria"]["Filters"]
        .as_array()
        .expect("the stream mapping has filters");
    assert_eq!(filters.len(), 1);
    let pattern: Value = serde_json::from_str(
        filters[0]["Pattern"]
            .as_str()
            .expect("a filter's pattern is a string"),
    )
    .expect("the pattern is JSON");
    assert_eq!(
        pattern,
        stream_filter(),
        "the template and the simulator filter alike"
    );
    let record = |sk: &str| json!({"eventName": "MODIFY", "dynamodb": {"Keys": {"pk": {"S": "team-a#prod"}, "sk": {"S": sk}}}});
    for kind in Kind::ALL {
        for part in [Part::Desired, Part::Observed] {
            let sk = sort_key(kind, "web-1", part);
            assert!(
                matches(&pattern, &record(&sk)),
                "{sk} must reach the router"
            );
        }
    }
    let marker = marker_key(
        &ObjectKey::new("team-a", "prod", Kind::Machine, "web-1"),
        Chain::Reconcile,
    );
    assert!(!matches(&pattern, &record(&marker.sk)));
}

#[test]
fn one_arm64_function_per_binary_reading_the_names_the_template_gives() {
    let t = Template::load();
    let names = Names::for_installation(&t.installation);
    let binaries: BTreeSet<String> = std::fs::read_dir(support::repo().join("functions"))
        .expect("functions/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let deployed: BTreeSet<String> = t
        .resources("AWS::Serverless::Function")
        .iter()
        .map(|(_, f)| {
            f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .expect("Binary")
                .to_string()
        })
        .collect();
    assert_eq!(deployed, binaries);
    for binary in &binaries {
        let f = t.function_for(binary);
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{binary}");
        let p = &f["Properties"];
        assert_eq!(p["Runtime"], "provided.al2023", "{binary}");
        assert_eq!(p["Architectures"], json!(["arm64"]), "{binary}");
        let env = &p["Environment"]["Variables"];
        for (var, want) in [
            ("CAPSTAN_INSTALLATION", &names.installation),
            ("CAPSTAN_TABLE", &names.table),
            ("CAPSTAN_BUS", &names.bus),
            ("CAPSTAN_QUEUE_PREFIX", &names.queue_prefix),
        ] {
            assert_eq!(&t.resolve(&env[var]), want, "{binary}: {var}");
        }
    }
}
