//! Splitting a YAML stream into its documents, each with the line it starts at, so
//! each is parsed on its own and its errors name lines in the whole text.

/// One document's text and where it starts.
pub(super) struct Chunk<'a> {
    /// 1-based line of the chunk's first line in the whole text.
    pub(super) line: usize,
    pub(super) text: &'a str,
}

/// Splits a YAML stream into documents, keeping each one's start line. A line starting
/// with `---` (alone or followed by whitespace) starts a document, a line `...` ends
/// one: YAML forbids both at column 0 inside content, so this split is exact. Documents
/// holding only comments, blank lines and directives are dropped.
///
/// Each document is parsed on its own so one syntax error cannot hide the errors of
/// the others; line numbers in errors are shifted by the start line (rather than
/// padding each document with newlines, which would cost quadratic time).
pub(super) fn split_documents(text: &str) -> Vec<Chunk<'_>> {
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
