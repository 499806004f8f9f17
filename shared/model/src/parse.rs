//! Decoding a JSON value into a typed object, reporting every unknown field and the
//! first type error with its path. The same decoder reads manifests and stored items.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

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
    let Value::Object(mut map) = value else {
        return Err(vec![FieldError::new(
            "(document)",
            format!(
                "expected a mapping with apiVersion, kind, metadata and spec, found {}",
                describe(&value)
            ),
            "write the object as a YAML mapping",
        )]);
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
        return Err(errors);
    };
    let body = Value::Object(map);
    let object = match kind {
        Kind::Cluster => typed(body, &mut errors).map(Object::Cluster),
        Kind::MachineClass => typed(body, &mut errors).map(Object::MachineClass),
        Kind::MachineDeployment => typed(body, &mut errors).map(Object::MachineDeployment),
        Kind::MachineSet => typed(body, &mut errors).map(Object::MachineSet),
        Kind::Machine => typed(body, &mut errors).map(Object::Machine),
        Kind::MachineHealthCheck => typed(body, &mut errors).map(Object::MachineHealthCheck),
    };
    match object {
        Some(mut object) if errors.is_empty() => {
            let meta = object.metadata_mut();
            if meta.namespace.is_empty() {
                meta.namespace = crate::meta::DEFAULT_NAMESPACE.to_string();
            }
            Ok(object)
        }
        _ => Err(errors),
    }
}

fn typed<S, T>(body: Value, errors: &mut Vec<FieldError>) -> Option<Resource<S, T>>
where
    Resource<S, T>: DeserializeOwned,
{
    let mut unknown = Vec::new();
    let result: Result<Resource<S, T>, _> = serde_path_to_error::deserialize(
        serde_ignored::Deserializer::new(body, &mut |path: serde_ignored::Path| {
            unknown.push(path.to_string())
        }),
    );
    for path in unknown {
        let field = path.rsplit('.').next().unwrap_or(&path).to_string();
        errors.push(FieldError::new(
            path.clone(),
            format!("unknown field {field:?}"),
            "remove it, or check its spelling and indentation against the schema",
        ));
    }
    match result {
        Ok(resource) => Some(resource),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." {
                "(document)".to_string()
            } else {
                path
            };
            errors.push(FieldError::new(
                path,
                e.into_inner().to_string(),
                "fix the value's type or range",
            ));
            None
        }
    }
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
