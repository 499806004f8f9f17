//! Objects back out as a YAML stream or as JSON, in the form `read_manifests` takes
//! again.

use serde_json::Value;

use crate::object::Object;

/// Objects as a YAML stream, one document each, separated by `---`.
pub fn to_yaml(objects: &[Object]) -> String {
    let mut out = String::new();
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        match serde_saphyr::to_string(&object.to_json()) {
            Ok(yaml) => out.push_str(&yaml),
            // A JSON value always serializes; keep the object rather than lose it.
            Err(_) => out.push_str(&object.to_json().to_string()),
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Objects as pretty JSON: the object itself when there is one, else an array.
pub fn to_json(objects: &[Object]) -> String {
    let value = match objects {
        [one] => one.to_json(),
        many => Value::Array(many.iter().map(Object::to_json).collect()),
    };
    serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
}
