//! Reading probe sources (files under the probe root) and turning failures into [`Fault`]s.
//!
//! The decision worth knowing: every source is either *expected* (its absence is a fault: the
//! aggregate `/proc/stat`, `/proc/meminfo`, PSI files) or *optional* (its absence is an answer:
//! no cgroup limit, no battery). A source that exists but cannot be read or parsed is always a
//! fault. Both kinds yield `None` on failure, so a probe never stops at the first bad file.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use super::health::Fault;

/// Why a source yielded nothing.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("missing")]
    Missing,
    #[error("unreadable: {0}")]
    Unreadable(std::io::Error),
    #[error("garbled: {0}")]
    Garbled(String),
}

/// Reads a whole file; a missing file (or a missing parent directory) is [`SourceError::Missing`].
pub fn read_text(path: &Path) -> Result<String, SourceError> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory => SourceError::Missing,
        ErrorKind::InvalidData => SourceError::Garbled("not UTF-8 text".into()),
        _ => SourceError::Unreadable(e),
    })
}

/// Parses a file holding one number (sysfs and cgroup style), e.g. `57\n`.
pub fn parse_number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    let word = text.trim();
    word.parse()
        .map_err(|_| format!("expected a number, found {word:?}"))
}

/// Collects the faults of one sample while the probe reads its sources.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    faults: Vec<Fault>,
}

impl Reader {
    /// Reads and parses a source whose absence is a fault; `missing` explains the absence.
    pub fn expected<T>(
        &mut self,
        path: &Path,
        missing: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match read_text(path) {
            Err(SourceError::Missing) => self.fail(path, format!("missing ({missing})")),
            other => self.parsed(path, other, parse),
        }
    }

    /// Reads and parses a source whose absence is a normal answer (`None`, no fault).
    pub fn optional<T>(
        &mut self,
        path: &Path,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match read_text(path) {
            Err(SourceError::Missing) => None,
            other => self.parsed(path, other, parse),
        }
    }

    /// Records a fault found by the probe itself (e.g. counters that went backwards).
    pub fn fail<T>(&mut self, path: &Path, reason: String) -> Option<T> {
        self.faults
            .push(Fault::new(path.display().to_string(), reason));
        None
    }

    pub fn into_faults(self) -> Vec<Fault> {
        self.faults
    }

    fn parsed<T>(
        &mut self,
        path: &Path,
        text: Result<String, SourceError>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let error = match text {
            Ok(text) => match parse(&text) {
                Ok(value) => return Some(value),
                Err(reason) => SourceError::Garbled(reason),
            },
            Err(e) => e,
        };
        self.fail(path, error.to_string())
    }
}

/// The cgroup v2 directory that governs this process: `<root>/sys/fs/cgroup` joined with the
/// unified (`0::`) entry of `<root>/proc/self/cgroup`. Falls back to the hierarchy's root
/// when that file is absent, the path escapes the namespace (`/..`) or the directory is
/// missing, which is what a container with its own cgroup namespace sees anyway.
pub fn cgroup_dir(root: &Path) -> PathBuf {
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
            parse_number::<u8>("full\n"),
            Err("expected a number, found \"full\"".into())
        );
    }
}
