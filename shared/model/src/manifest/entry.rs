//! One object read from a document or a list item: where it came from (text, document,
//! start line), what it says it is, the object if it decoded, and its errors.

use serde_json::Value;

use super::errors::DocumentError;
use crate::object::Object;
use crate::parse::FieldError;

/// One object read from a document (or a list item), with its errors.
pub(super) struct Entry {
    /// Index of the text it came from.
    pub(super) source: usize,
    pub(super) document: usize,
    pub(super) line: usize,
    pub(super) kind: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) object: Option<Object>,
    /// A Kubernetes workload object (see [`super::workload_kind`]), kept as read.
    pub(super) workload: Option<Value>,
    pub(super) errors: Vec<FieldError>,
}

impl Entry {
    pub(super) fn new(source: usize, document: usize, line: usize) -> Self {
        Entry {
            source,
            document,
            line,
            kind: None,
            namespace: None,
            name: None,
            object: None,
            workload: None,
            errors: Vec::new(),
        }
    }

    /// Takes kind, namespace and name from a document that may not decode.
    pub(super) fn label(&mut self, value: &Value) {
        let text = |v: &Value, field: &str| {
            v.get(field)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        self.kind = text(value, "kind");
        if let Some(meta) = value.get("metadata") {
            self.name = text(meta, "name");
            self.namespace = text(meta, "namespace")
                .or_else(|| Some(crate::meta::DEFAULT_NAMESPACE.to_string()));
        }
    }

    pub(super) fn to_error(&self, source: &str) -> DocumentError {
        DocumentError {
            source: source.to_string(),
            document: self.document,
            line: self.line,
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            errors: self.errors.clone(),
        }
    }
}

/// Text index, document number and start line of a document.
pub(super) type Origin = (usize, usize, usize);
