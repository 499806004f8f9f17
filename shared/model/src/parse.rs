//! Decoding a JSON value into a typed object, reporting every unknown field and the
//! first type error with its path. The same decoder reads manifests and stored items.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

use crate::object::{API_VERSION, Kind, Object, Resource};

/// One thing wrong with one field: where, what, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path from the document root, e.g. `spec.workers[1].replicas`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl FieldError {
    pub fn new(
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if !self.hint.is_empty() {
            write!(f, " ({})", self.hint)?;
        }
        Ok(())
    }
}

/// Decodes one object. Every unknown field is an error, as is a wrong apiVersion or kind.
pub fn decode_object(value: Value) -> Result<Object, Vec<FieldError>> {
    match decode_object_lenient(value) {
        (Some(object), errors) if errors.is_empty() => Ok(object),
        (_, errors) => Err(errors),
    }
}

/// Decodes one object as far as it can: a value of the wrong type is reported and
/// left out (so its field takes its default) and decoding goes on, so one document's
/// type errors are all reported together. Returns the object if it could be built at
/// all, with every error met on the way; the object is only trustworthy without errors.
pub fn decode_object_lenient(value: Value) -> (Option<Object>, Vec<FieldError>) {
    decode_object_with(value, Unknown::Report)
}

/// What decoding does with a field the schema does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unknown {
    /// An error, with a "did you mean" hint: what people write (manifests, desired items).
    Report,
    /// Skipped in silence: what other writers put in observed items (a newer function
    /// version's status field, a node agent's `observedGeneration` on a condition).
    Ignore,
}

/// As [`decode_object_lenient`], choosing what an unknown field is.
pub fn decode_object_with(value: Value, unknown: Unknown) -> (Option<Object>, Vec<FieldError>) {
    let Value::Object(mut map) = value else {
        return (
            None,
            vec![FieldError::new(
                "(document)",
                format!(
                    "expected a mapping with apiVersion, kind, metadata and spec, found {}",
                    describe(&value)
                ),
                "write the object as a YAML mapping",
            )],
        );
    };
    let mut errors = Vec::new();
    match map.remove("apiVersion") {
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(other) => errors.push(FieldError::new(
            "apiVersion",
            format!("unsupported apiVersion {other}"),
            format!("set apiVersion: {API_VERSION}"),
        )),
        None => errors.push(FieldError::new(
            "apiVersion",
            "is required",
            format!("set apiVersion: {API_VERSION}"),
        )),
    }
    let kinds = Kind::ALL.map(Kind::as_str).join(", ");
    let kind = match map.remove("kind") {
        Some(Value::String(k)) => match Kind::parse(&k) {
            Some(kind) => Some(kind),
            None => {
                errors.push(FieldError::new(
                    "kind",
                    format!("unknown kind {k:?}"),
                    format!("use one of {kinds}"),
                ));
                None
            }
        },
        Some(other) => {
            errors.push(FieldError::new(
                "kind",
                format!("expected a string, found {}", describe(&other)),
                format!("use one of {kinds}"),
            ));
            None
        }
        None => {
            errors.push(FieldError::new(
                "kind",
                "is required",
                format!("use one of {kinds}"),
            ));
            None
        }
    };
    let Some(kind) = kind else {
        return (None, errors);
    };
    let body = Value::Object(map);
    let object = match kind {
        Kind::Cluster => typed(body, unknown, &mut errors).map(Object::Cluster),
        Kind::MachineClass => typed(body, unknown, &mut errors).map(Object::MachineClass),
        Kind::MachineDeployment => typed(body, unknown, &mut errors).map(Object::MachineDeployment),
        Kind::MachineSet => typed(body, unknown, &mut errors).map(Object::MachineSet),
        Kind::Machine => typed(body, unknown, &mut errors).map(Object::Machine),
        Kind::MachineHealthCheck => {
            typed(body, unknown, &mut errors).map(Object::MachineHealthCheck)
        }
    };
    let object = object.map(|mut object| {
        let meta = object.metadata_mut();
        if meta.namespace.is_empty() {
            meta.namespace = crate::meta::DEFAULT_NAMESPACE.to_string();
        }
        object
    });
    (object, errors)
}

/// How many wrongly typed values one document may have before decoding gives up.
const MAX_TYPE_ERRORS: usize = 32;

fn typed<S, T>(
    mut body: Value,
    unknown_fields: Unknown,
    errors: &mut Vec<FieldError>,
) -> Option<Resource<S, T>>
where
    Resource<S, T>: DeserializeOwned,
{
    let mut unknown_seen = std::collections::BTreeSet::new();
    let mut failed_at: Vec<String> = Vec::new();
    for _ in 0..MAX_TYPE_ERRORS {
        let mut unknown = Vec::new();
        // Deserialize from a borrow so the value stays at hand to explain a type error.
        let result: Result<Resource<S, T>, _> = serde_path_to_error::deserialize(
            serde_ignored::Deserializer::new(&body, &mut |path: serde_ignored::Path| {
                unknown.push(ignored_path(&path))
            }),
        );
        for (path, field) in unknown {
            if unknown_fields == Unknown::Ignore || !unknown_seen.insert(path.clone()) {
                continue;
            }
            let hint = match did_you_mean(&field) {
                Some(known) => format!("did you mean {known:?}? Otherwise remove it"),
                None => "remove it, or check its spelling and indentation against the schema"
                    .to_string(),
            };
            errors.push(FieldError::new(
                path,
                format!("unknown field {field:?}"),
                hint,
            ));
        }
        match result {
            Ok(resource) => return Some(resource),
            Err(e) => {
                let segments: Vec<Segment> = e.path().iter().cloned().collect();
                let at = format_path(&segments);
                let repeated = failed_at.contains(&at);
                if !repeated {
                    let found = value_at(&body, &segments);
                    errors.push(explain(&segments, found, &e.into_inner().to_string()));
                }
                // Leave the value out and go on, to find the document's other errors. A
                // value that still fails once emptied goes altogether.
                let removed = if repeated {
                    remove_at(&mut body, &segments)
                } else {
                    empty_at(&mut body, &segments)
                };
                if segments.is_empty() || !removed {
                    return None;
                }
                failed_at.push(at);
            }
        }
    }
    None
}

/// Empties the value at `segments`: a mapping's field is removed (its default applies),
/// a sequence element becomes an empty mapping (so later indices keep their meaning).
fn empty_at(root: &mut Value, segments: &[Segment]) -> bool {
    match segments.split_last() {
        Some((Segment::Map { .. }, _)) => remove_at(root, segments),
        Some((Segment::Seq { index }, parent)) => match value_at_mut(root, parent) {
            Some(Value::Array(items)) if *index < items.len() => {
                items[*index] = Value::Object(serde_json::Map::new());
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Removes the value at `segments` from its parent.
fn remove_at(root: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parent)) = segments.split_last() else {
        return false;
    };
    match (last, value_at_mut(root, parent)) {
        (Segment::Map { key }, Some(Value::Object(map))) => map.remove(key).is_some(),
        (Segment::Seq { index }, Some(Value::Array(items))) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}

fn value_at_mut<'v>(root: &'v mut Value, segments: &[Segment]) -> Option<&'v mut Value> {
    let mut at = root;
    for segment in segments {
        at = match (segment, at) {
            (Segment::Seq { index }, Value::Array(items)) => items.get_mut(*index)?,
            (Segment::Map { key }, Value::Object(map)) => map.get_mut(key)?,
            _ => return None,
        };
    }
    Some(at)
}

/// Formats a path as `spec.workers[1].replicas`.
pub(crate) fn format_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    let mut previous: Option<&Segment> = None;
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            // A key of a string map (labels, tags) is data, not a field: quote it.
            Segment::Map { key } if in_string_map(&previous) => {
                out.push_str(&format!("[{key:?}]"));
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
        previous = Some(segment);
    }
    if out.is_empty() {
        "(document)".to_string()
    } else {
        out
    }
}

/// Whether the segment names a map from strings to strings, whose keys are data.
fn in_string_map(segment: &Option<&Segment>) -> bool {
    matches!(
        segment,
        Some(Segment::Map { key })
            if matches!(key.as_str(), "labels" | "annotations" | "matchLabels" | "tags")
    )
}

/// The path serde_ignored reports, as `spec.workers[1].replica`, and the field's name.
fn ignored_path(path: &serde_ignored::Path) -> (String, String) {
    let mut segments = Vec::new();
    let mut at = path;
    loop {
        match at {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                segments.push(Segment::Seq { index: *index });
                at = parent;
            }
            serde_ignored::Path::Map { parent, key } => {
                segments.push(Segment::Map { key: key.clone() });
                at = parent;
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => at = parent,
        }
    }
    segments.reverse();
    let field = match segments.last() {
        Some(Segment::Map { key }) => key.clone(),
        _ => String::new(),
    };
    (format_path(&segments), field)
}

/// The value a path points at, if the document has it.
fn value_at<'v>(root: &'v Value, segments: &[Segment]) -> Option<&'v Value> {
    let mut at = root;
    for segment in segments {
        at = match (segment, at) {
            (Segment::Seq { index }, Value::Array(items)) => items.get(*index)?,
            (Segment::Map { key }, Value::Object(map)) => map.get(key)?,
            _ => return None,
        };
    }
    Some(at)
}

/// Turns serde's error at `segments` into a message that says what was found and
/// what was expected, in the schema's terms rather than Rust's.
fn explain(segments: &[Segment], found: Option<&Value>, serde_message: &str) -> FieldError {
    let path = format_path(segments);
    if let Some(field) = serde_message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        let mut full = segments.to_vec();
        full.push(Segment::Map {
            key: field.to_string(),
        });
        return FieldError::new(format_path(&full), "is required", format!("add {field}"));
    }
    if let Some(rest) = serde_message.strip_prefix("unknown variant `") {
        let (given, expected) = rest.split_once("`, expected ").unwrap_or((rest, ""));
        let expected = expected.replace('`', "");
        return FieldError::new(
            path,
            format!("unknown value {given:?}: expected {expected}"),
            format!("use {expected}"),
        );
    }
    // serde's "invalid type: X, expected Y" and "invalid value: X, expected Y".
    let expected = serde_message
        .strip_prefix("invalid type: ")
        .or_else(|| serde_message.strip_prefix("invalid value: "))
        .and_then(|rest| rest.rsplit_once(", expected "))
        .map(|(_, expected)| expected);
    let (Some(expected), Some(found)) = (expected, found) else {
        if TIME_FIELDS.iter().any(|f| path.ends_with(f)) {
            let found = found.map_or_else(|| "a value".to_string(), found_text);
            return FieldError::new(
                path,
                format!("found {found}, which is not a time: {serde_message}"),
                "write a UTC time in RFC 3339 form, e.g. 2025-01-31T12:00:00Z",
            );
        }
        return FieldError::new(path, serde_message, "fix the value's type or range");
    };
    if is_integer_type(expected) {
        let wanted =
            crate::validate::expected_number(&path).unwrap_or_else(|| "a whole number".to_string());
        return number_error(path, found, &wanted);
    }
    let expected = match expected {
        "a map" => "a mapping",
        "a boolean" => "true or false",
        other if other.starts_with("struct ") => "a mapping",
        other => other,
    };
    let hint = match found {
        Value::Null => format!("give it a value ({expected}), or remove the field"),
        Value::Bool(_) | Value::Number(_) if expected == "a string" => {
            format!("quote it (\"{found}\"): YAML reads unquoted numbers and booleans as such")
        }
        _ => format!("write {expected} here"),
    };
    FieldError::new(
        path,
        format!("expected {expected}, found {}", found_text(found)),
        hint,
    )
}

/// Fields that hold a timestamp.
const TIME_FIELDS: &[&str] = &["after", "Timestamp", "Time", "At", "Since"];

fn is_integer_type(expected: &str) -> bool {
    matches!(
        expected,
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize"
    )
}

/// A number field given something else, or a number it cannot hold.
fn number_error(path: String, found: &Value, wanted: &str) -> FieldError {
    let hint = format!("set {wanted}");
    let message = match found {
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            let negative = n.as_i64().is_some_and(|i| i < 0);
            let size = if negative { "too small" } else { "too large" };
            format!("{n} is {size}: expected {wanted}")
        }
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() >= 2f64.powi(31) => {
                let size = if f < 0.0 { "too small" } else { "too large" };
                format!("{n} is {size}: expected {wanted}")
            }
            _ => format!("{n} is not a whole number: expected {wanted}"),
        },
        Value::String(s) => {
            return FieldError::new(
                path,
                format!("expected {wanted}, found the string {:?}", truncate(s)),
                "write it in plain digits, without quotes, leading zeros or underscores",
            );
        }
        other => format!("expected {wanted}, found {}", found_text(other)),
    };
    FieldError::new(path, message, hint)
}

fn found_text(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string {:?}", truncate(s)),
        Value::Number(n) => format!("the number {n}"),
        Value::Bool(b) => format!("the boolean {b}"),
        other => describe(other).to_string(),
    }
}

fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}

/// Field names of the schema, for "did you mean" hints on unknown fields.
const FIELD_NAMES: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "status",
    "name",
    "namespace",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "clusterName",
    "version",
    "paused",
    "controlPlane",
    "workers",
    "machineClass",
    "replicas",
    "autoscaling",
    "min",
    "max",
    "rollout",
    "healthCheck",
    "imageId",
    "instanceTypes",
    "subnets",
    "securityGroups",
    "instanceProfile",
    "rootVolume",
    "sizeGiB",
    "type",
    "encrypted",
    "kmsKeyId",
    "iops",
    "market",
    "spotMaxPrice",
    "metadataOptions",
    "httpTokens",
    "httpPutResponseHopLimit",
    "instanceMetadataTags",
    "tags",
    "userData",
    "bootstrap",
    "eks",
    "access",
    "kubeconfig",
    "secretArn",
    "region",
    "template",
    "role",
    "failureDomain",
    "strategy",
    "rollingUpdate",
    "maxSurge",
    "maxUnavailable",
    "after",
    "minReadySeconds",
    "deletion",
    "order",
    "launch",
    "selector",
    "matchLabels",
    "checks",
    "nodeStartupTimeoutSeconds",
    "unhealthyInstanceStates",
    "unhealthyMachineConditions",
    "timeoutSeconds",
    "remediation",
    "triggerIf",
    "unhealthyLessThanOrEqualTo",
    "unhealthyInRange",
    "maxInFlight",
];

/// The schema field closest to `field`, if it is a likely typo of one.
pub fn did_you_mean(field: &str) -> Option<&'static str> {
    if field.len() > 64 {
        return None; // not a typo, and edit distance is quadratic
    }
    let lower = field.to_ascii_lowercase();
    FIELD_NAMES
        .iter()
        .map(|known| (edit_distance(&lower, &known.to_ascii_lowercase()), *known))
        .filter(|(d, known)| *d > 0 || *known != field)
        .filter(|(d, known)| *d <= (known.len() / 4).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

/// Levenshtein distance, for "did you mean" hints.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// A short name for a value's type, for error messages.
pub fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}
