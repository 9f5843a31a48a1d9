//! Manifest errors: every problem carries the file, line and column it points at.
//!
//! As everywhere in Spark, an error's `Display` says what failed and its `source()` is the
//! cause, never both: print the chain (`{:#}` in the CLI) to see the cause.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file could not be read.
    #[error("cannot read manifest {}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },
    /// The manifest was read but is malformed or refused by validation.
    #[error("{}", render(file, diagnostics))]
    Invalid {
        /// The manifest the diagnostics point into.
        file: PathBuf,
        /// Every problem found, not only the first; never empty.
        diagnostics: Vec<Diagnostic>,
    },
}

impl ManifestError {
    /// The individual problems (empty for read errors).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ManifestError::Read { .. } => &[],
            ManifestError::Invalid { diagnostics, .. } => diagnostics,
        }
    }
}

fn render(file: &std::path::Path, diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics
        .iter()
        .map(|d| format!("{}:{d}", file.display()))
        .collect();
    lines.join("\n")
}

/// One problem at one place in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong, for the person editing the file.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at the start of `span` (a byte range) in `text`.
    pub fn at(text: &str, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, column) = line_column(text, span.start);
        Diagnostic {
            line,
            column,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}
