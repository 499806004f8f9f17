//! infra/template.yaml deploys what `capstan run --endpoint` provisions against moto:
//! the same rule patterns on the same buses, the same queue and table names, the same
//! key schema and index, the same redrive, and one function per binary with the
//! environment the binaries read. So what is proven against moto is what is deployed.
//!
//! The template writes its intrinsics in long form (`Ref:`, `Fn::Sub:`), so it reads as
//! plain YAML here.

mod support;

use std::collections::BTreeSet;

use capstan_aws::Names;
use capstan_aws::provision::{DEFAULT_BUS, MAX_RECEIVE_COUNT, rule_bus, rule_pattern};
use capstan_model::item::{INSTANCE_ID, INSTANCE_INDEX, PK, SK};
use capstan_runtime::routes::Reconciler;
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

#[test]
fn each_reconciler_has_the_rule_queue_and_dead_letter_queue_the_local_runtime_creates() {
    let t = Template::load();
    let names = Names::for_installation(&t.installation);
    let rules = t.resources("AWS::Events::Rule");
    assert_eq!(
        rules.len(),
        Reconciler::ALL.len(),
        "one rule per reconciler, no other"
    );
    for r in Reconciler::ALL {
        let name = names.queue(r.name());
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
        let target = Template::arn_of(&p["Targets"][0]["Arn"]);
        let (queue_id, queue) = t.queue_named(&name);
        assert_eq!(target, queue_id, "{id} sends to {name}");
        let redrive = &queue["Properties"]["RedrivePolicy"];
        assert_eq!(
            redrive["maxReceiveCount"],
            json!(MAX_RECEIVE_COUNT),
            "{name}"
        );
        let (dlq_id, _) = t.queue_named(&names.dead_letter_queue(r.name()));
        assert_eq!(Template::arn_of(&redrive["deadLetterTargetArn"]), dlq_id);

        // Its function drains exactly this queue, reporting partial failures, and the
        // queue hides a message at least six times the function's timeout.
        let function = t.function_for(r.name());
        let events: Vec<&Value> = function["Properties"]["Events"]
            .as_object()
            .expect("Events")
            .values()
            .filter(|e| e["Type"] == "SQS")
            .collect();
        assert_eq!(events.len(), 1, "{} has one queue", r.name());
        assert_eq!(
            Template::arn_of(&events[0]["Properties"]["Queue"]),
            queue_id
        );
        assert_eq!(
            events[0]["Properties"]["FunctionResponseTypes"],
            json!(["ReportBatchItemFailures"])
        );
        let timeout = function["Properties"]["Timeout"].as_u64().expect("Timeout");
        let visibility = queue["Properties"]["VisibilityTimeout"]
            .as_u64()
            .expect("VisibilityTimeout");
        assert!(
            visibility >= 6 * timeout,
            "{name}: visibility {visibility} s < 6 x {timeout} s"
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
    let bus = t.resources("AWS::Events::EventBus");
    assert_eq!(t.resolve(&bus[0].1["Properties"]["Name"]), names.bus);
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
