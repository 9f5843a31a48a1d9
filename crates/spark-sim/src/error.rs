//! The crate's error types: one enum for trace input, with the file and line of every problem.
//!
//! Decision worth knowing: the line number is part of the error value (not only of its message),
//! so tests assert the exact line and a CLI can print `file:line: what` without re-parsing.

use std::fmt;

/// What went wrong on one line (or with one file) of a trace.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The file has no header line at all.
    #[error("empty file: no header line")]
    NoHeader,
    /// The header lacks a column this file must have.
    #[error("missing required column `{0}`")]
    MissingColumn(&'static str),
    /// A column name appears twice.
    #[error("duplicate column `{0}`")]
    DuplicateColumn(String),
    /// A column that is neither a known name nor a minute column.
    #[error("unknown column `{0}` (expected a minute column such as `17` or `minute_17`)")]
    UnknownColumn(String),
    /// The invocations header has no minute columns.
    #[error("no minute columns in the header")]
    NoMinuteColumns,
    /// Minute columns must be consecutive (`480,481,...`); a gap or a reordering is an error.
    #[error(
        "minute column `{found}` follows minute {previous}: minute columns must be consecutive"
    )]
    NonConsecutiveMinutes {
        /// The previous minute number.
        previous: u64,
        /// The offending column name.
        found: String,
    },
    /// A data row with a different number of fields than the header.
    #[error("expected {expected} fields, found {found}")]
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields on this line.
        found: usize,
    },
    /// A value that should be a non-negative number and is not.
    #[error("column `{column}`: `{value}` is not a valid non-negative {what}")]
    BadNumber {
        /// The column's header name.
        column: String,
        /// The text found.
        value: String,
        /// "integer count" or "number".
        what: &'static str,
    },
    /// An application's sum over its rows grew past the largest finite number (each value
    /// alone was finite: the file is adding up absurd values).
    #[error("app `{app}`: the sum of `{column}` over its rows is too large")]
    SumTooLarge {
        /// The application (`HashApp`).
        app: String,
        /// The column summed.
        column: &'static str,
    },
    /// An empty application id.
    #[error("empty `{0}`")]
    EmptyId(&'static str),
    /// A quoted field that never closes on its line.
    #[error("unterminated quoted field")]
    UnterminatedQuote,
    /// A header but no data rows.
    #[error("no data rows: the trace is empty")]
    NoRows,
    /// Data rows, but not one invocation in them.
    #[error("no invocations in any minute: the trace is empty")]
    NoInvocations,
    /// The bytes are not UTF-8 text.
    #[error("not UTF-8 text")]
    NotUtf8,
}

/// An error reading a trace file, naming the file (as the caller displayed it) and the line.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A problem at a line (1-based, counting the header as line 1), or with the whole file
    /// (`line` is `None`).
    #[error("{}", ParseLocation { file, line: *line, kind })]
    Parse {
        /// The display name given by the caller (usually the path).
        file: String,
        /// 1-based line number, if the problem is on one line.
        line: Option<usize>,
        /// What was wrong.
        kind: ParseErrorKind,
    },
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The display name given by the caller.
        file: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl TraceError {
    /// Builds a [`TraceError::Parse`] at a line.
    pub fn at(file: &str, line: usize, kind: ParseErrorKind) -> Self {
        TraceError::Parse {
            file: file.to_owned(),
            line: Some(line),
            kind,
        }
    }

    /// Builds a [`TraceError::Parse`] about the whole file.
    pub fn whole(file: &str, kind: ParseErrorKind) -> Self {
        TraceError::Parse {
            file: file.to_owned(),
            line: None,
            kind,
        }
    }

    /// The line the error is on, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            TraceError::Parse { line, .. } => *line,
            TraceError::Io { .. } => None,
        }
    }

    /// The parse error kind, if this is a parse error.
    pub fn kind(&self) -> Option<&ParseErrorKind> {
        match self {
            TraceError::Parse { kind, .. } => Some(kind),
            TraceError::Io { .. } => None,
        }
    }
}

struct ParseLocation<'a> {
    file: &'a str,
    line: Option<usize>,
    kind: &'a ParseErrorKind,
}

impl fmt::Display for ParseLocation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.kind),
            None => write!(f, "{}: {}", self.file, self.kind),
        }
    }
}
