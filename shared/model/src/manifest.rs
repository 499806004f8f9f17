//! Manifests in and out: multi-document YAML (and JSON, which is YAML) to objects, with
//! every error of every document reported at once, and objects back to YAML or JSON.
//!
//! Reading is bounded: a text over [`MAX_MANIFEST_BYTES`] or with more than
//! [`MAX_DOCUMENTS`] documents is refused before parsing, and each document is parsed
//! with a tight serde-saphyr budget (depth, nodes, aliases, anchors, scalar bytes,
//! events), so an alias bomb or a runaway nesting fails fast with a clear error.
//!
//! Input is read as YAML 1.2: only `true`/`false` are booleans (`yes`, `no`, `on` stay
//! strings), and `017` or `1_000` stay strings rather than becoming numbers.
//!
//! What the control plane owns is dropped from input, as `kubectl apply` ignores it:
//! `status`, and metadata `uid`, `generation`, `resourceVersion`,
//! `creationTimestamp`, `deletionTimestamp` and `finalizers`. So the output of
//! `capstan get -o yaml` can be applied again as it is.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use serde_saphyr::budget::BudgetBreach;

use crate::object::{Kind, Object, ObjectKey};
use crate::parse::{FieldError, decode_object, decode_object_lenient};
use crate::validate::validate_object;
use crate::with_resource;

/// Largest manifest text read, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Most documents (or list items) in one manifest text.
pub const MAX_DOCUMENTS: usize = 1_000;
/// Deepest nesting of mappings and sequences in one document. Capstan's deepest field
/// (`spec.workers[i].healthCheck.remediation.triggerIf.*`) sits at depth 6.
pub const MAX_DEPTH: usize = 32;
/// Most aliases (`*name`) and anchors (`&name`) in one document.
pub const MAX_ALIASES: usize = 100;
pub const MAX_ANCHORS: usize = 100;
/// Most nodes (scalars, mappings, sequences; an alias counts each node it expands to)
/// in one document.
pub const MAX_NODES: usize = 20_000;
/// Most bytes of scalar text in one document.
pub const MAX_SCALAR_BYTES: usize = 1024 * 1024;
/// Most parser events in one document.
pub const MAX_EVENTS: usize = 100_000;

/// Everything wrong with one document (or one item of a list document).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentError {
    /// Where the text came from, e.g. a file name.
    pub source: String,
    /// 1-based number of the document in the text; 0 for errors about the whole text.
    pub document: usize,
    /// 1-based line the document starts at; 0 for errors about the whole text.
    pub line: usize,
    /// The object's kind and name, when the document got far enough to say.
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Each with its path from the document root (`spec.workers[1].replicas`), or the
    /// line and column of a YAML syntax error (`line 16, column 3`).
    pub errors: Vec<FieldError>,
}

impl DocumentError {
    /// `examples/bad.yaml: document 2 (line 14) MachineDeployment default/web`
    pub fn location(&self) -> String {
        let mut out = self.source.clone();
        if self.document > 0 {
            out.push_str(&format!(
                ": document {} (line {})",
                self.document, self.line
            ));
        }
        if let Some(kind) = &self.kind {
            out.push(' ');
            out.push_str(kind);
            match (&self.namespace, &self.name) {
                (Some(ns), Some(name)) => out.push_str(&format!(" {ns}/{name}")),
                (None, Some(name)) => out.push_str(&format!(" {name}")),
                _ => {}
            }
        }
        out
    }
}

impl fmt::Display for DocumentError {
    /// One line per field error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let location = self.location();
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{location}: {e}")?;
        }
        Ok(())
    }
}

/// Every error of every document of a manifest text; no object is returned with them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestErrors(pub Vec<DocumentError>);

impl ManifestErrors {
    /// How many field errors in all.
    pub fn count(&self) -> usize {
        self.0.iter().map(|d| d.errors.len()).sum()
    }

    /// Every field error with its document.
    pub fn iter(&self) -> impl Iterator<Item = (&DocumentError, &FieldError)> {
        self.0
            .iter()
            .flat_map(|d| d.errors.iter().map(move |e| (d, e)))
    }
}

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Reads every object of a manifest text, or every error in it.
///
/// The text holds YAML documents separated by `---` (JSON is YAML too); a document may
/// also be a sequence of objects or a `kind: List` with `items`, each item then read as
/// an object of its own. Each object is decoded (unknown fields are errors), stripped of
/// what the control plane owns (see the module doc), validated, and the set is checked
/// as a whole: no duplicates, and every MachineClass and Cluster it names is in it.
/// `source` names the text in errors (a file name, or `-` for standard input).
pub fn read_manifests(source: &str, text: &str) -> Result<Vec<Object>, ManifestErrors> {
    read_sources(&[(source, text)])
}

/// Reads several texts (`(source, text)` pairs, e.g. every file of a directory) as
/// one set: as [`read_manifests`] does each, with duplicates and references checked
/// across all of them, so a Cluster in one file may name a MachineClass in another.
pub fn read_sources<S: AsRef<str>, T: AsRef<str>>(
    sources: &[(S, T)],
) -> Result<Vec<Object>, ManifestErrors> {
    let mut entries = Vec::new();
    for (index, (_, text)) in sources.iter().enumerate() {
        read_text(index, text.as_ref(), &mut entries);
    }

    // Cross-object checks over everything that decoded, valid or not, so one error
    // does not cascade into "not found" elsewhere. If some document did not decode at
    // all, what it defined is unknown: skip "not found" rather than guess.
    let complete = entries.iter().all(|e| e.object.is_some());
    let source_name = |i: usize| sources.get(i).map_or("", |(s, _)| s.as_ref());
    let decoded: Vec<(usize, Object)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.object.clone().map(|o| (i, o)))
        .collect();
    let mut set_errors = duplicates(&decoded, &|later, earlier| match (
        entries.get(later),
        entries.get(earlier),
    ) {
        (Some(l), Some(e)) if l.source == e.source => format!("document {}", e.document),
        (_, Some(e)) => format!("{} document {}", source_name(e.source), e.document),
        _ => "another document".to_string(),
    });
    let objects: Vec<Object> = decoded.iter().map(|(_, o)| o.clone()).collect();
    set_errors.extend(references(&objects, &|_| None, complete));
    for (index, error) in set_errors {
        if let Some((position, _)) = decoded.get(index)
            && let Some(entry) = entries.get_mut(*position)
        {
            entry.errors.push(error);
        }
    }

    let errors: Vec<DocumentError> = entries
        .iter()
        .filter(|e| !e.errors.is_empty())
        .map(|e| e.to_error(source_name(e.source)))
        .collect();
    if errors.is_empty() {
        Ok(entries.into_iter().filter_map(|e| e.object).collect())
    } else {
        Err(ManifestErrors(errors))
    }
}

/// Reads one text's objects into `entries`, or refuses the whole text if it is over
/// the limits.
fn read_text(source: usize, text: &str, entries: &mut Vec<Entry>) {
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

/// One document's text and where it starts.
struct Chunk<'a> {
    /// 1-based line of the chunk's first line in the whole text.
    line: usize,
    text: &'a str,
}

/// Splits a YAML stream into documents, keeping each one's start line. A line starting
/// with `---` (alone or followed by whitespace) starts a document, a line `...` ends
/// one: YAML forbids both at column 0 inside content, so this split is exact. Documents
/// holding only comments, blank lines and directives are dropped.
///
/// Each document is parsed on its own so one syntax error cannot hide the errors of
/// the others; line numbers in errors are shifted by the start line (rather than
/// padding each document with newlines, which would cost quadratic time).
fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut bounds = Vec::new(); // (from byte, to byte, first line)
    let (mut start, mut start_line) = (0, 1);
    let (mut offset, mut line_no) = (0, 1);
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if is_marker(bare, "---") && offset > start {
            bounds.push((start, offset, start_line));
            (start, start_line) = (offset, line_no);
        }
        offset += line.len();
        line_no += 1;
        if is_marker(bare, "...") {
            bounds.push((start, offset, start_line));
            (start, start_line) = (offset, line_no);
        }
    }
    if offset > start {
        bounds.push((start, offset, start_line));
    }
    bounds
        .into_iter()
        .filter_map(|(from, to, line)| {
            let chunk = text.get(from..to)?;
            (!is_blank_document(chunk)).then_some(Chunk { line, text: chunk })
        })
        .collect()
}

/// `---` or `...` at column 0, alone or followed by whitespace (and then content).
fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// Only blank lines, comments, directives and document markers.
fn is_blank_document(chunk: &str) -> bool {
    chunk.lines().all(|line| {
        let rest = ["---", "..."]
            .iter()
            .find_map(|marker| {
                line.strip_prefix(marker)
                    .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
            })
            .unwrap_or(line)
            .trim();
        rest.is_empty() || rest.starts_with('#') || line.starts_with('%')
    })
}

/// One object read from a document (or a list item), with its errors.
struct Entry {
    /// Index of the text it came from.
    source: usize,
    document: usize,
    line: usize,
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    object: Option<Object>,
    errors: Vec<FieldError>,
}

impl Entry {
    fn new(source: usize, document: usize, line: usize) -> Self {
        Entry {
            source,
            document,
            line,
            kind: None,
            namespace: None,
            name: None,
            object: None,
            errors: Vec::new(),
        }
    }

    /// Takes kind, namespace and name from a document that may not decode.
    fn label(&mut self, value: &Value) {
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

    fn to_error(&self, source: &str) -> DocumentError {
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

/// Text index, document number and start line of a document.
type Origin = (usize, usize, usize);

fn read_object(at: Origin, prefix: &str, value: Value, entries: &mut Vec<Entry>) {
    let (source, document, line) = at;
    let mut entry = Entry::new(source, document, line);
    entry.label(&value);
    match decode_object_lenient(value) {
        (Some(mut object), errors) => {
            object.metadata_mut().clear_system_fields();
            with_resource!(&mut object, r => r.status = Default::default());
            entry.namespace = Some(object.metadata().namespace.clone());
            if errors.is_empty() {
                entry.errors = validate_object(&object);
                entry.object = Some(object);
            } else {
                // The object was read with its wrongly typed values left out: check the
                // rest too, but say nothing more about the fields already reported, and
                // keep it out of the checks across objects.
                let reported: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
                let more = validate_object(&object).into_iter().filter(|e| {
                    !reported.iter().any(|p| {
                        e.path == *p
                            || e.path.starts_with(&format!("{p}."))
                            || e.path.starts_with(&format!("{p}["))
                    })
                });
                entry.errors = errors;
                entry.errors.extend(more);
            }
        }
        (None, errors) => entry.errors = errors,
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

// ---- YAML parsing ----------------------------------------------------------------

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_aliases = MAX_ALIASES;
    budget.max_anchors = MAX_ANCHORS;
    budget.max_nodes = MAX_NODES;
    budget.max_total_scalar_bytes = MAX_SCALAR_BYTES;
    budget.max_total_comment_bytes = MAX_SCALAR_BYTES;
    budget.max_events = MAX_EVENTS;
    budget.max_documents = 1;
    budget.max_merge_keys = MAX_ALIASES;
    budget.max_recorded_anchor_events = MAX_NODES;
    budget.max_recorded_anchor_bytes = MAX_SCALAR_BYTES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_NODES;
    options.with_snippet = false;
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::Reject;
    options
}

/// Parses one document; on error, also the document as far as it can be read, to
/// name its kind and name.
fn parse_yaml(chunk: &Chunk<'_>) -> Result<Value, (FieldError, Option<Value>)> {
    match serde_saphyr::from_str_with_options::<Value>(chunk.text, options()) {
        Ok(value) => Ok(value),
        Err(error) => {
            if let serde_saphyr::Error::NonFiniteFloat { value, .. } = original(&error)
                && let Some((better, document)) = non_finite_at_path(chunk, value)
            {
                return Err((better, Some(document)));
            }
            Err((yaml_error(&error, chunk.line), None))
        }
    }
}

/// A number too large for a float (`1e400`) or `.inf`/`.nan` was rejected while
/// parsing, which knows the line but not the field. Parse again with such values as
/// strings, decode, and if the decoder then names the field, say so in its terms.
fn non_finite_at_path(chunk: &Chunk<'_>, spelling: &str) -> Option<(FieldError, Value)> {
    let mut options = options();
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::AsString;
    let value = serde_saphyr::from_str_with_options::<Value>(chunk.text, options).ok()?;
    let errors = decode_object(value.clone()).err()?;
    let sentinel = |e: &&FieldError| {
        [".inf", "-.inf", ".nan"]
            .iter()
            .any(|s| e.message.contains(&format!("the string \"{s}\"")))
    };
    let error = errors.iter().find(sentinel)?;
    let wanted = crate::validate::expected_number(&error.path)
        .unwrap_or_else(|| "a whole number".to_string());
    let size = if spelling.starts_with('-') {
        "too small"
    } else {
        "too large"
    };
    let message = if spelling.to_ascii_lowercase().contains("nan") {
        format!("{spelling} is not a number: expected {wanted}")
    } else {
        format!("{spelling} is {size}: expected {wanted}")
    };
    Some((
        FieldError::new(error.path.clone(), message, format!("set {wanted}")),
        value,
    ))
}

/// Unwraps the alias and snippet wrappers serde-saphyr puts around an error.
fn original(mut error: &serde_saphyr::Error) -> &serde_saphyr::Error {
    while let serde_saphyr::Error::AliasError { error: inner, .. }
    | serde_saphyr::Error::WithSnippet { error: inner, .. } = error
    {
        error = inner;
    }
    error
}

/// A YAML error as a field error whose path is the line and column in the whole text.
fn yaml_error(error: &serde_saphyr::Error, first_line: usize) -> FieldError {
    use serde_saphyr::MessageFormatter;
    let path = match error.location() {
        Some(at) if at.line() > 0 => format!(
            "line {}, column {}",
            at.line() as usize + first_line - 1,
            at.column()
        ),
        _ => format!("line {first_line}"),
    };
    if let serde_saphyr::Error::Budget { breach, .. } = original(error) {
        let (message, hint) = budget_message(breach);
        return FieldError::new(path, message, hint);
    }
    let text: String = serde_saphyr::UserMessageFormatter
        .format_message(original(error))
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let lower = text.to_ascii_lowercase();
    let (message, hint) = if lower.contains("tab") {
        (
            text,
            "indent with spaces: YAML does not allow tabs in indentation".to_string(),
        )
    } else if lower.contains("duplicate") {
        (text, "remove one of the two entries".to_string())
    } else if lower.contains("recursion limit") {
        (
            format!("is nested more than {MAX_DEPTH} levels deep"),
            "Capstan objects are never this deep; look for unclosed or runaway brackets"
                .to_string(),
        )
    } else if lower.contains("alias") {
        (
            format!("{text} (aliases may expand to at most {MAX_NODES} values)"),
            "write the values out instead of repeating aliases".to_string(),
        )
    } else if lower.contains("':'") {
        (
            text,
            "check for an unclosed [ or { on an earlier line, or quote a value that contains \": \"".to_string(),
        )
    } else if let serde_saphyr::Error::NonFiniteFloat { value, .. } = original(error) {
        (
            format!("{value} is not a finite number"),
            "write a whole number, or quote it if you meant text".to_string(),
        )
    } else {
        (
            text,
            "fix the YAML syntax there; check indentation, colons and quotes".to_string(),
        )
    };
    FieldError::new(path, message, hint)
}

fn budget_message(breach: &BudgetBreach) -> (String, String) {
    let aliases_hint = format!(
        "write the values out: a document may use {MAX_ALIASES} aliases and {MAX_ANCHORS} anchors, expanding to at most {MAX_NODES} values; this refuses alias bombs"
    );
    let split_hint = "split the text into smaller documents".to_string();
    match breach {
        BudgetBreach::Depth { .. } => (
            format!("is nested more than {MAX_DEPTH} levels deep"),
            "Capstan objects are never this deep; look for unclosed or runaway brackets"
                .to_string(),
        ),
        BudgetBreach::Nodes { .. } => (
            format!("expands to more than {MAX_NODES} values"),
            aliases_hint,
        ),
        BudgetBreach::Aliases { .. }
        | BudgetBreach::Anchors { .. }
        | BudgetBreach::AliasAnchorRatio { .. }
        | BudgetBreach::MergeKeys { .. }
        | BudgetBreach::RecordedAnchorEvents { .. }
        | BudgetBreach::RecordedAnchorBytes { .. } => (
            "uses too many YAML anchors or aliases".to_string(),
            aliases_hint,
        ),
        BudgetBreach::ScalarBytes { .. } => (
            format!("holds more than {MAX_SCALAR_BYTES} bytes of text"),
            split_hint,
        ),
        BudgetBreach::Events { .. } => (
            format!("has more than {MAX_EVENTS} YAML events"),
            split_hint,
        ),
        other => (
            format!("exceeds the parser's limits ({other:?})"),
            split_hint,
        ),
    }
}

// ---- checks across objects ---------------------------------------------------------

/// Checks a set of objects together: no two with the same kind, namespace and name
/// (the later one is reported, naming the earlier one's document), and every
/// reference resolves (see [`check_references`]). `objects` pairs each object with its
/// 1-based document number; `stored` looks up objects already in the table (for an
/// apply; `&|_| None` for a file alone). Returns errors by index into `objects`.
pub fn validate_set(
    objects: &[(usize, Object)],
    stored: &dyn Fn(&ObjectKey) -> Option<Object>,
) -> Vec<(usize, FieldError)> {
    let mut errors = duplicates(objects, &|_, document| format!("document {document}"));
    let plain: Vec<Object> = objects.iter().map(|(_, o)| o.clone()).collect();
    errors.extend(references(&plain, stored, true));
    errors
}

/// Checks that every name an object uses resolves, in `objects` or else in `stored`:
/// a Cluster's `spec.controlPlane.machineClass` and `spec.workers[i].machineClass`,
/// and a MachineDeployment's or MachineSet's `spec.template.spec.machineClass`, name a
/// MachineClass in the same namespace whose `spec.clusterName` is that cluster (and a
/// template's `failureDomain` is one of its subnets); every other kind's
/// `spec.clusterName` names a Cluster. Returns errors by index into `objects`.
pub fn check_references(
    objects: &[Object],
    stored: &dyn Fn(&ObjectKey) -> Option<Object>,
) -> Vec<(usize, FieldError)> {
    references(objects, stored, true)
}

/// Reports the later of two objects with the same kind, namespace and name; `earlier`
/// says where the first one is, given the indices of both in `objects`.
fn duplicates(
    objects: &[(usize, Object)],
    earlier: &dyn Fn(usize, usize) -> String,
) -> Vec<(usize, FieldError)> {
    let mut first: BTreeMap<(Kind, &str, &str), usize> = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, (later, object)) in objects.iter().enumerate() {
        let meta = object.metadata();
        let key = (object.kind(), meta.namespace.as_str(), meta.name.as_str());
        match first.get(&key) {
            Some(&j) => {
                let place = objects
                    .get(j)
                    .map_or_else(String::new, |(e, _)| earlier(*later, *e));
                errors.push((
                    i,
                    FieldError::new(
                        "metadata.name",
                        format!(
                            "duplicate {} {}/{}: {place} defines it too",
                            object.kind(),
                            meta.namespace,
                            meta.name
                        ),
                        "rename one of them, or remove the copy",
                    ),
                ));
            }
            None => {
                first.insert(key, i);
            }
        }
    }
    errors
}

/// Finds objects by kind, namespace and name: in the set first, then in the store.
struct Resolver<'a> {
    objects: &'a [Object],
    stored: &'a dyn Fn(&ObjectKey) -> Option<Object>,
}

impl Resolver<'_> {
    fn find(&self, kind: Kind, namespace: &str, cluster: &str, name: &str) -> Option<Object> {
        self.objects
            .iter()
            .find(|o| o.kind() == kind && o.metadata().namespace == namespace && o.name() == name)
            .cloned()
            .or_else(|| (self.stored)(&ObjectKey::new(namespace, cluster, kind, name)))
    }

    /// Names of the MachineClasses of `cluster` in the set, for hints.
    fn classes_of(&self, namespace: &str, cluster: &str) -> Vec<&str> {
        self.objects
            .iter()
            .filter_map(|o| match o {
                Object::MachineClass(c)
                    if c.metadata.namespace == namespace && c.spec.cluster_name == cluster =>
                {
                    Some(c.metadata.name.as_str())
                }
                _ => None,
            })
            .collect()
    }
}

fn references(
    objects: &[Object],
    stored: &dyn Fn(&ObjectKey) -> Option<Object>,
    report_missing: bool,
) -> Vec<(usize, FieldError)> {
    let resolver = Resolver { objects, stored };
    let mut errors = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        let mut push = |e: FieldError| errors.push((i, e));
        let namespace = object.metadata().namespace.as_str();
        match object {
            Object::Cluster(c) => {
                let cluster = c.metadata.name.as_str();
                let pools = c.spec.workers.iter().enumerate().map(|(j, pool)| {
                    (
                        format!("spec.workers[{j}].machineClass"),
                        pool.machine_class.as_str(),
                    )
                });
                let control_plane = std::iter::once((
                    "spec.controlPlane.machineClass".to_string(),
                    c.spec.control_plane.machine_class.as_str(),
                ));
                for (path, class) in control_plane.chain(pools) {
                    if let Some(e) = class_ref(
                        &resolver,
                        namespace,
                        cluster,
                        &path,
                        class,
                        None,
                        report_missing,
                    ) {
                        push(e);
                    }
                }
            }
            Object::MachineDeployment(d) => {
                let spec = &d.spec.template.spec;
                if let Some(e) = class_ref(
                    &resolver,
                    namespace,
                    &d.spec.cluster_name,
                    "spec.template.spec.machineClass",
                    &spec.machine_class,
                    spec.failure_domain.as_deref(),
                    report_missing,
                ) {
                    push(e);
                }
            }
            Object::MachineSet(s) => {
                let spec = &s.spec.template.spec;
                if let Some(e) = class_ref(
                    &resolver,
                    namespace,
                    &s.spec.cluster_name,
                    "spec.template.spec.machineClass",
                    &spec.machine_class,
                    spec.failure_domain.as_deref(),
                    report_missing,
                ) {
                    push(e);
                }
            }
            _ => {}
        }
        if object.kind() != Kind::Cluster && report_missing {
            let cluster = object.cluster_name();
            if !cluster.is_empty()
                && resolver
                    .find(Kind::Cluster, namespace, cluster, cluster)
                    .is_none()
            {
                push(FieldError::new(
                    "spec.clusterName",
                    format!("Cluster {cluster:?} not found in namespace {namespace:?}"),
                    format!("define Cluster {cluster} in this file, or apply it first"),
                ));
            }
        }
    }
    errors
}

/// Checks that `class` names a MachineClass of `cluster` (and has `failure_domain`
/// among its subnets).
fn class_ref(
    resolver: &Resolver<'_>,
    namespace: &str,
    cluster: &str,
    path: &str,
    class: &str,
    failure_domain: Option<&str>,
    report_missing: bool,
) -> Option<FieldError> {
    if class.is_empty() || cluster.is_empty() {
        return None; // validate_object reports a missing name
    }
    match resolver.find(Kind::MachineClass, namespace, cluster, class) {
        Some(Object::MachineClass(found)) => {
            // A class without a cluster has its own error; do not repeat it here.
            if !found.spec.cluster_name.is_empty() && found.spec.cluster_name != cluster {
                return Some(FieldError::new(
                    path,
                    format!(
                        "MachineClass {class:?} belongs to cluster {:?}, not {cluster:?}",
                        found.spec.cluster_name
                    ),
                    format!("name a MachineClass whose spec.clusterName is {cluster}"),
                ));
            }
            let subnets = &found.spec.subnets;
            match failure_domain {
                Some(subnet) if !subnets.iter().any(|s| s == subnet) => Some(FieldError::new(
                    path.replace("machineClass", "failureDomain"),
                    format!("{subnet:?} is not one of MachineClass {class:?}'s subnets"),
                    format!("use one of {}", subnets.join(", ")),
                )),
                _ => None,
            }
        }
        Some(_) => None,
        None if report_missing => {
            let known = resolver.classes_of(namespace, cluster);
            let closest = known
                .iter()
                .filter(|k| class.len() <= 63 && k.len() <= 63)
                .map(|k| (crate::parse::edit_distance(class, k), *k))
                .filter(|(d, _)| *d <= 3)
                .min_by_key(|(d, _)| *d);
            let hint = match closest {
                Some((_, k)) => format!(
                    "did you mean {k:?}? MachineClasses of cluster {cluster} here: {}",
                    known.join(", ")
                ),
                None if known.is_empty() => format!(
                    "define MachineClass {class} with spec.clusterName: {cluster} in this file, or apply it first"
                ),
                None => format!(
                    "MachineClasses of cluster {cluster} here: {}; or define {class}",
                    known.join(", ")
                ),
            };
            Some(FieldError::new(
                path,
                format!("MachineClass {class:?} not found in namespace {namespace:?}"),
                hint,
            ))
        }
        None => None,
    }
}

// ---- output ------------------------------------------------------------------------

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
