//! Parsing one YAML document as YAML 1.2 within a tight budget, and turning the
//! parser's errors into field errors that name the line and column in the whole text.

use serde_json::Value;
use serde_saphyr::budget::BudgetBreach;

use super::documents::Chunk;
use super::limits::{MAX_ALIASES, MAX_ANCHORS, MAX_DEPTH, MAX_EVENTS, MAX_NODES, MAX_SCALAR_BYTES};
use crate::parse::{FieldError, decode_object};

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
pub(super) fn parse_yaml(chunk: &Chunk<'_>) -> Result<Value, (FieldError, Option<Value>)> {
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
