//! The processes a run started, written down so the next run can end them when this one was
//! killed before its guards could (SIGKILL, a crash of the machine's OOM killer...).
//!
//! Each run keeps `<tmp>/spark-bench-fleet/<its pid>.pids`: one line per process it started,
//! `pid<TAB>marker`, where the marker is a path of that run's own temporary directory that
//! appears on the process's command line (a node's manifest, a server's config). A later run
//! ends a recorded process only when the run that recorded it is gone *and* the process's
//! command line still carries the marker, so a reused pid is never killed. Processes inside
//! the run's network namespaces are also ended by `net::clean_stale`; this covers the NATS
//! servers on the host and the nodes of a loopback run. A run that ends normally removes its
//! file (and has already stopped every process).

use std::io::Write;
use std::path::{Path, PathBuf};

/// This run's record; removed on drop.
pub(crate) struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// The record of this process's run (created on the first [`PidFile::record`]).
    pub(crate) fn new() -> PidFile {
        PidFile {
            path: dir().join(format!("{}.pids", std::process::id())),
        }
    }

    /// Notes process `pid`, whose command line contains `marker`. Best effort: a record that
    /// cannot be written only weakens the clean-up of a crashed run.
    pub(crate) fn record(&self, pid: u32, marker: &Path) {
        let _ = std::fs::create_dir_all(dir());
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let _ = writeln!(file, "{pid}\t{}", marker.display());
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn dir() -> PathBuf {
    std::env::temp_dir().join("spark-bench-fleet")
}

/// Ends the recorded processes of runs that are gone; what it ended (`pid (command)`).
pub(crate) fn reap_stale() -> Vec<String> {
    let mut ended = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir()) else {
        return ended;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let owner = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u32>().ok());
        let Some(owner) = owner else { continue };
        if owner == std::process::id() || alive(owner) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (pid, marker) in text.lines().filter_map(parse_line) {
            let cmdline = command_line(pid);
            if !marker.is_empty() && cmdline.contains(marker) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
                let program = cmdline.split(' ').next().unwrap_or_default();
                ended.push(format!("{pid} ({program})"));
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    ended
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A process's command line, arguments joined by spaces (empty when it is gone).
fn command_line(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default()
}

fn parse_line(line: &str) -> Option<(u32, &str)> {
    let (pid, marker) = line.split_once('\t')?;
    Some((pid.parse().ok()?, marker))
}

#[cfg(test)]
mod tests {
    use super::{command_line, parse_line};

    #[test]
    fn lines_are_pid_tab_marker() {
        assert_eq!(
            parse_line("123\t/tmp/.tmpAb/n1"),
            Some((123, "/tmp/.tmpAb/n1"))
        );
        assert_eq!(parse_line("x\t/tmp"), None);
        assert_eq!(parse_line("123"), None);
    }

    #[test]
    fn a_command_line_is_read_from_proc() {
        let own = command_line(std::process::id());
        assert!(!own.is_empty());
        assert_eq!(command_line(0), "");
    }
}
