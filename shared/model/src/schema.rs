//! JSON Schema (draft 2020-12) of Capstan's manifests, derived from the types with
//! `schemars` (feature `schema`): what `capstan schema` prints and `schema/capstan.json`
//! holds, so that editors check a manifest as it is typed.
//!
//! Derived rather than written by hand so it cannot drift from what `serde` reads: the
//! same field names, defaults (a field with a default is not required) and doc
//! comments (as descriptions). Two things are added on top, to match what
//! `read_manifests` accepts: `apiVersion` and `kind` at the root, and
//! `additionalProperties: false` on every object with named fields (an unknown field
//! is an error there too; maps such as labels and tags stay open). What the schema
//! cannot say — cross-object references, limits between fields, the secret scanner —
//! stays with `capstan validate`.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::object::{API_VERSION, Kind};
use crate::{Cluster, Machine, MachineClass, MachineDeployment, MachineHealthCheck, MachineSet};

/// Where the shipped schema says it lives (its `$id`).
pub const SCHEMA_ID: &str = "https://capstan.dev/schema/capstan.json";

/// The schema of one kind's manifest: its own `$defs`, `kind` fixed.
pub fn for_kind(kind: Kind) -> Value {
    let (root, mut defs) = kind_schema(kind);
    let mut doc = Map::new();
    doc.insert(
        "$schema".into(),
        "https://json-schema.org/draft/2020-12/schema".into(),
    );
    doc.insert("title".into(), format!("Capstan {kind}").into());
    if let Value::Object(fields) = root {
        doc.extend(fields);
    }
    sort(&mut defs);
    doc.insert("$defs".into(), Value::Object(defs));
    Value::Object(doc)
}

/// The schema of any manifest: `kind` picks the branch, so an editor reports the
/// errors of that kind only.
pub fn all() -> Value {
    let mut defs = Map::new();
    let mut branches = Vec::new();
    for kind in Kind::ALL {
        let (root, kind_defs) = kind_schema(kind);
        defs.extend(kind_defs);
        defs.insert(kind.as_str().into(), root);
        branches.push(json!({
            "if": {"properties": {"kind": {"const": kind.as_str()}}, "required": ["kind"]},
            "then": {"$ref": format!("#/$defs/{kind}")}
        }));
    }
    sort(&mut defs);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Capstan manifest",
        "description": format!("One object of {API_VERSION}: set kind to one of the six kinds."),
        "type": "object",
        "required": ["apiVersion", "kind", "metadata"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"enum": Kind::ALL.map(Kind::as_str)},
        },
        "allOf": branches,
        "$defs": defs,
    })
}

/// A kind's root schema (with apiVersion and kind) and the definitions it refers to.
fn kind_schema(kind: Kind) -> (Value, Map<String, Value>) {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema = match kind {
        Kind::Cluster => generator.into_root_schema_for::<Cluster>(),
        Kind::MachineClass => generator.into_root_schema_for::<MachineClass>(),
        Kind::MachineDeployment => generator.into_root_schema_for::<MachineDeployment>(),
        Kind::MachineSet => generator.into_root_schema_for::<MachineSet>(),
        Kind::Machine => generator.into_root_schema_for::<Machine>(),
        Kind::MachineHealthCheck => generator.into_root_schema_for::<MachineHealthCheck>(),
    };
    let mut root = schema.to_value();
    close_objects(&mut root);
    let mut defs = match root.as_object_mut().and_then(|m| m.remove("$defs")) {
        Some(Value::Object(defs)) => defs,
        _ => Map::new(),
    };
    if let Some(map) = root.as_object_mut() {
        map.remove("$schema");
        map.remove("title");
        map.insert(
            "description".into(),
            format!("A {kind} ({API_VERSION}).").into(),
        );
        if let Some(Value::Object(props)) = map.get_mut("properties") {
            props.insert("apiVersion".into(), json!({"const": API_VERSION}));
            props.insert("kind".into(), json!({"const": kind.as_str()}));
        }
        map.insert("required".into(), json!(["apiVersion", "kind", "metadata"]));
    }
    // Definitions are shared between kinds under the same names; a generic
    // Resource's name is never referred to (the root is inlined), so nothing clashes.
    for def in defs.values_mut() {
        close_objects(def);
    }
    (root, std::mem::take(&mut defs))
}

/// `additionalProperties: false` on every object schema with named properties.
fn close_objects(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for v in map.values_mut() {
                close_objects(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

fn sort(defs: &mut Map<String, Value>) {
    let mut sorted: Vec<(String, Value)> = std::mem::take(defs).into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    defs.extend(sorted);
}
