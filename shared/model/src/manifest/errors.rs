//! What a failed read reports: every field error of every document, each document
//! located by source, number, start line, kind and name.

use std::fmt;

use crate::parse::FieldError;

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
