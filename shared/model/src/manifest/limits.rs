//! How much one manifest text may hold, and the serde-saphyr budget each YAML document
//! is parsed with, so an alias bomb or runaway nesting fails fast.

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
