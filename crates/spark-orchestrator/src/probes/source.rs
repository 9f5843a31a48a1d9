//! Reading probe sources (files under the probe root) and turning failures into [`Fault`]s.
//!
//! The decision worth knowing: every source is either *expected* (its absence is a fault: the
//! aggregate `/proc/stat`, `/proc/meminfo`, PSI files) or *optional* (its absence is an answer:
//! no cgroup limit, no battery). A source that exists but cannot be read or parsed is always a
//! fault. Both kinds yield `None` on failure, so a probe never stops at the first bad file.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use super::health::Fault;

/// Why a source yielded nothing. A fault's reason is its whole chain ("unreadable: Permission
/// denied (os error 13)", "garbled: no `some` line").
#[derive(Debug, thiserror::Error)]
pub(super) enum SourceError {
    #[error("missing")]
    Missing,
    #[error("unreadable")]
    Unreadable(#[source] std::io::Error),
    #[error("garbled")]
    Garbled(#[source] Garbled),
}

/// What is wrong with a source's text, in words a person can check against the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Garbled {
    #[error("not UTF-8 text")]
    NotText,
    /// A line or field the format requires is absent (the message names it).
    #[error("{0}")]
    Missing(&'static str),
    #[error("expected a number, found {found:?}")]
    NotANumber { found: String },
    #[error("bad {what} {value:?}")]
    BadValue { what: String, value: String },
    #[error("bad value for {key}: {value:?}")]
    BadField { key: String, value: String },
    #[error("non-numeric field {found:?}")]
    NonNumericField { found: String },
    #[error("{found} fields, need at least {need}")]
    TooFewFields { found: usize, need: usize },
    #[error("zero quota or period in {text:?}")]
    ZeroQuota { text: String },
    #[error("capacity {value} is over 100")]
    OverHundred { value: u8 },
    /// A problem in one line of a file with many.
    #[error("{problem} in {line:?}")]
    InLine { problem: Box<Garbled>, line: String },
}

impl Garbled {
    /// This problem, found in `line`.
    pub(super) fn in_line(self, line: &str) -> Garbled {
        Garbled::InLine {
            problem: Box::new(self),
            line: line.to_owned(),
        }
    }

    pub(crate) fn bad(what: &str, value: &str) -> Garbled {
        Garbled::BadValue {
            what: what.to_owned(),
            value: value.to_owned(),
        }
    }
}

/// Reads a whole file; a missing file (or a missing parent directory) is [`SourceError::Missing`].
pub(super) fn read_text(path: &Path) -> Result<String, SourceError> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory => SourceError::Missing,
        ErrorKind::InvalidData => SourceError::Garbled(Garbled::NotText),
        _ => SourceError::Unreadable(e),
    })
}

/// Parses a file holding one number (sysfs and cgroup style), e.g. `57\n`.
pub(super) fn parse_number<T: std::str::FromStr>(text: &str) -> Result<T, Garbled> {
    let word = text.trim();
    word.parse().map_err(|_| Garbled::NotANumber {
        found: word.to_owned(),
    })
}

/// Collects the faults of one sample while the probe reads its sources.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    faults: Vec<Fault>,
}

impl Reader {
    /// Reads and parses a source whose absence is a fault; `missing` explains the absence.
    pub(super) fn expected<T>(
        &mut self,
        path: &Path,
        missing: &str,
        parse: impl FnOnce(&str) -> Result<T, Garbled>,
    ) -> Option<T> {
        match read_text(path) {
            Err(SourceError::Missing) => self.fail(path, format!("missing ({missing})")),
            other => self.parsed(path, other, parse),
        }
    }

    /// Reads and parses a source whose absence is a normal answer (`None`, no fault).
    pub(super) fn optional<T>(
        &mut self,
        path: &Path,
        parse: impl FnOnce(&str) -> Result<T, Garbled>,
    ) -> Option<T> {
        match read_text(path) {
            Err(SourceError::Missing) => None,
            other => self.parsed(path, other, parse),
        }
    }

    /// Records a fault found by the probe itself (e.g. counters that went backwards).
    pub(super) fn fail<T>(&mut self, path: &Path, reason: String) -> Option<T> {
        self.faults
            .push(Fault::new(path.display().to_string(), reason));
        None
    }

    pub(super) fn into_faults(self) -> Vec<Fault> {
        self.faults
    }

    fn parsed<T>(
        &mut self,
        path: &Path,
        text: Result<String, SourceError>,
        parse: impl FnOnce(&str) -> Result<T, Garbled>,
    ) -> Option<T> {
        let error = match text {
            Ok(text) => match parse(&text) {
                Ok(value) => return Some(value),
                Err(reason) => SourceError::Garbled(reason),
            },
            Err(e) => e,
        };
        self.fail(path, spark_error::chain(&error).to_string())
    }
}

/// The cgroup v2 directory that governs this process: `<root>/sys/fs/cgroup` joined with the
/// unified (`0::`) entry of `<root>/proc/self/cgroup`. Falls back to the hierarchy's root
/// when that file is absent, the path escapes the namespace (`/..`) or the directory is
/// missing, which is what a container with its own cgroup namespace sees anyway.
pub(super) fn cgroup_dir(root: &Path) -> PathBuf {
    let base = root.join("sys/fs/cgroup");
    let own = read_text(&root.join("proc/self/cgroup"))
        .ok()
        .and_then(|text| unified_path(&text));
    match own {
        Some(rel) if base.join(&rel).is_dir() => base.join(rel),
        _ => base,
    }
}

/// The relative path of the `0::/path` line, if it is a plain descendant path.
fn unified_path(text: &str) -> Option<PathBuf> {
    let line = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let rel = Path::new(line.trim().trim_start_matches('/'));
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    plain.then(|| rel.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_path_takes_the_v2_line_and_refuses_escapes() {
        let text = "12:cpu,cpuacct:/x\n0::/system.slice/spark.service\n";
        assert_eq!(
            unified_path(text),
            Some(PathBuf::from("system.slice/spark.service"))
        );
        assert_eq!(unified_path("0::/\n"), Some(PathBuf::new()));
        assert_eq!(unified_path("0::/../../other\n"), None);
        assert_eq!(unified_path("1:name=systemd:/\n"), None);
    }

    #[test]
    fn parse_number_trims_and_names_the_bad_word() {
        assert_eq!(parse_number::<u8>("57\n"), Ok(57));
        assert_eq!(
            parse_number::<u8>("full\n").unwrap_err().to_string(),
            "expected a number, found \"full\""
        );
    }

    #[test]
    fn a_fault_reason_is_the_whole_chain() {
        let mut reader = Reader::default();
        let dir = std::env::temp_dir().join(format!("spark-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pressure");
        std::fs::write(&path, "some avg10=x\n").unwrap();
        let parsed: Option<u8> =
            reader.expected(&path, "no PSI", |_| Err(Garbled::Missing("no `some` line")));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(parsed, None);
        let faults = reader.into_faults();
        assert_eq!(faults[0].reason, "garbled: no `some` line");
    }
}
