//! Reading one manifest text into entries: refused whole if over the limits, else split
//! into documents, lists unrolled, and each object decoded, stripped and validated.

use serde_json::Value;

use super::documents::{Chunk, split_documents};
use super::entry::{Entry, Origin};
use super::limits::{MAX_DOCUMENTS, MAX_MANIFEST_BYTES};
use super::yaml::parse_yaml;
use crate::parse::FieldError;
use crate::validate::validate_document;

/// Reads one text's objects into `entries`, or refuses the whole text if it is over
/// the limits.
pub(super) fn read_text(source: usize, text: &str, entries: &mut Vec<Entry>) {
    let refuse = |entries: &mut Vec<Entry>, message: String| {
        let mut entry = Entry::new(source, 0, 0);
        entry.errors.push(FieldError::new(
            "(file)",
            message,
            "split it into several files",
        ));
        entries.push(entry);
    };
    if text.len() > MAX_MANIFEST_BYTES {
        return refuse(
            entries,
            format!(
                "is {} bytes, more than the limit of {MAX_MANIFEST_BYTES} bytes, 4 MiB",
                text.len()
            ),
        );
    }
    let chunks = split_documents(text);
    if chunks.len() > MAX_DOCUMENTS {
        return refuse(
            entries,
            format!(
                "has {} documents, more than the limit of {MAX_DOCUMENTS}",
                chunks.len()
            ),
        );
    }
    let mut read = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        read_document(source, i + 1, chunk, &mut read);
    }
    if read.len() > MAX_DOCUMENTS {
        return refuse(
            entries,
            format!(
                "has {} objects, more than the limit of {MAX_DOCUMENTS}",
                read.len()
            ),
        );
    }
    entries.extend(read);
}

fn read_document(source: usize, document: usize, chunk: &Chunk<'_>, entries: &mut Vec<Entry>) {
    let value = match parse_yaml(chunk) {
        Ok(value) => value,
        Err((error, value)) => {
            let mut entry = Entry::new(source, document, chunk.line);
            if let Some(value) = value {
                entry.label(&value);
            }
            entry.errors.push(error);
            entries.push(entry);
            return;
        }
    };
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                read_object(
                    (source, document, chunk.line),
                    &format!("[{i}]"),
                    item,
                    entries,
                );
            }
        }
        Value::Object(map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
            read_list((source, document, chunk.line), map, entries);
        }
        other => read_object((source, document, chunk.line), "", other, entries),
    }
}

/// A `kind: List` (as `kubectl get -o yaml` writes): each item is an object.
fn read_list(at: Origin, mut map: serde_json::Map<String, Value>, entries: &mut Vec<Entry>) {
    match map.remove("items") {
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                read_object(at, &format!("items[{i}]"), item, entries);
            }
        }
        Some(Value::Null) | None => {}
        Some(other) => {
            let (source, document, line) = at;
            let mut entry = Entry::new(source, document, line);
            entry.kind = Some("List".to_string());
            entry.errors.push(FieldError::new(
                "items",
                format!(
                    "expected a sequence of objects, found {}",
                    crate::parse::describe(&other)
                ),
                "list the objects under items:, each starting with '- '",
            ));
            entries.push(entry);
        }
    }
}

fn read_object(at: Origin, prefix: &str, value: Value, entries: &mut Vec<Entry>) {
    let (source, document, line) = at;
    let mut entry = Entry::new(source, document, line);
    entry.label(&value);
    if super::workload_kind(&value).is_some() {
        entry.workload = Some(value);
        return entries.push(entry);
    }
    let checked = validate_document(value);
    entry.errors = checked.errors;
    if let Some(object) = checked.object {
        entry.namespace = Some(object.metadata().namespace.clone());
        // An object read with wrongly typed values left out stays out of the checks
        // across objects.
        if checked.decoded {
            entry.object = Some(object);
        }
    }
    if !prefix.is_empty() {
        for e in &mut entry.errors {
            e.path = if e.path == "(document)" {
                prefix.to_string()
            } else if e.path.starts_with('[') {
                format!("{prefix}{}", e.path)
            } else {
                format!("{prefix}.{}", e.path)
            };
        }
    }
    entries.push(entry);
}
