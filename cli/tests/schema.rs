//! The JSON Schema: what `capstan schema` prints is what `schema/capstan.json` ships
//! (a stale file fails here, in CI), every example names it and passes it, and bad
//! manifests of the kinds the model's tests hold back fail it.

mod support;

use serde_json::Value;
use support::{Workdir, quickstart, repo, stdout};

const SHIPPED: &str = "schema/capstan.json";

fn generated() -> String {
    let w = Workdir::new("schema");
    w.ok(&["schema"])
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join(SHIPPED)).expect("schema/capstan.json");
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::draft202012::new(&schema).expect("a valid 2020-12 schema")
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .expect("YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

#[test]
fn the_shipped_schema_is_the_one_the_types_generate() {
    let shipped = std::fs::read_to_string(repo().join(SHIPPED)).unwrap_or_default();
    assert!(
        shipped == generated(),
        "{SHIPPED} is stale: regenerate it with `cargo run -p capstan -- schema > {SHIPPED}`"
    );
}

#[test]
fn one_kinds_schema_is_a_2020_12_document_of_its_own() {
    let w = Workdir::new("schema-kind");
    let out: Value = serde_json::from_str(&w.ok(&["schema", "mc"])).expect("JSON");
    assert_eq!(
        out["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(out["properties"]["kind"]["const"], "MachineClass");
    assert!(jsonschema::draft202012::new(&out).is_ok());
    let unknown = w.run(&["schema", "pods"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", stdout(&unknown));
}

#[test]
fn every_example_names_the_schema_and_passes_it() {
    let validator = validator();
    let mut checked = 0;
    // examples/*.yaml and examples/*/*.yaml; a file of Kubernetes workload objects
    // only (for `capstan up`'s simulated cluster) is not Capstan's to check.
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(repo().join("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            for inner in std::fs::read_dir(&path).expect("an example directory") {
                paths.push(inner.expect("entry").path());
            }
        } else {
            paths.push(path);
        }
    }
    for path in paths {
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("example");
        if !text.contains("apiVersion: capstan.dev/") {
            continue;
        }
        let first = text.lines().next().unwrap_or_default();
        let reference = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{}: first line should name the schema", path.display()));
        // The path is relative to the example, as the YAML language server reads it.
        let dir = path.parent().expect("a parent");
        assert!(
            dir.join(reference).canonicalize().ok() == repo().join(SHIPPED).canonicalize().ok(),
            "{}: {reference} is not {SHIPPED}",
            path.display()
        );
        for doc in documents(&text) {
            let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "no example documents checked");
}

/// Spoils the quickstart's documents in one way.
type Breaker = Box<dyn Fn(&mut Vec<Value>)>;

/// The refusals `shared/model/tests/manifests.rs` holds back that a schema can express.
#[test]
fn bad_manifests_are_refused() {
    let validator = validator();
    let good = documents(&quickstart());
    let cases: Vec<(&str, Breaker)> = vec![
        (
            "wrong apiVersion",
            Box::new(|d| d[0]["apiVersion"] = "cluster.x-k8s.io/v1beta1".into()),
        ),
        (
            "unknown kind",
            Box::new(|d| d[0]["kind"] = "WorkerPool".into()),
        ),
        (
            "missing kind",
            Box::new(|d| {
                if let Some(m) = d[0].as_object_mut() {
                    m.remove("kind");
                }
            }),
        ),
        (
            "a typo of a field",
            Box::new(|d| {
                if let Some(spec) = d[1]["spec"].as_object_mut()
                    && let Some(types) = spec.remove("instanceTypes")
                {
                    spec.insert("instanceTypez".into(), types);
                }
            }),
        ),
        (
            "an unknown nested field",
            Box::new(|d| d[1]["spec"]["rootVolume"]["sizeGb"] = 50.into()),
        ),
        (
            "replicas as a word",
            Box::new(|d| d[0]["spec"]["workers"][0]["replicas"] = "three".into()),
        ),
        (
            "negative replicas",
            Box::new(|d| d[0]["spec"]["controlPlane"]["replicas"] = (-1).into()),
        ),
        (
            "a percentage over a hundred of nothing",
            Box::new(|d| {
                d[0]["spec"]["workers"][0]["rollout"] =
                    serde_json::json!({"strategy": {"rollingUpdate": {"maxSurge": "many"}}})
            }),
        ),
    ];
    for (what, break_it) in cases {
        let mut docs = good.clone();
        break_it(&mut docs);
        assert!(
            docs.iter().any(|d| !validator.is_valid(d)),
            "{what}: the schema accepted it"
        );
    }
}
