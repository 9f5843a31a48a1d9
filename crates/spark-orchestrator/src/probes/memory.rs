//! Memory probe: PSI, `/proc/meminfo`, and the cgroup v2 memory files when present, with one
//! derived [`MemoryReading::pressure`] for the policy.
//!
//! The decision worth knowing: the cgroup's usage counts its working set (`memory.current`
//! minus `inactive_file` from `memory.stat`), because `memory.current` includes page cache
//! the kernel reclaims at will; a healthy container sits near `memory.max` otherwise.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::health::{HealthLog, ProbeHealth};
use super::psi::{Psi, parse_psi};
use super::source::{Garbled, Reader, cgroup_dir, parse_number};

/// `some avg10` (percent of time some task stalled on memory) that counts as full pressure.
pub const PSI_SOME_SATURATION: f64 = 20.0;
/// `full avg10` (percent of time all tasks stalled on memory) that counts as full pressure.
pub const PSI_FULL_SATURATION: f64 = 5.0;
/// Fraction of memory in use below which usage adds no pressure.
pub const USED_THRESHOLD: f64 = 0.80;

const NO_PSI: &str = "kernel without PSI, or booted with psi=0";

/// What the memory probe saw in one sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryReading {
    /// Node-wide memory PSI (`/proc/pressure/memory`).
    pub psi: Option<Psi>,
    /// `MemTotal`, KiB.
    pub total_kib: Option<u64>,
    /// `MemAvailable`, KiB (before Linux 3.14: `MemFree + Buffers + Cached`).
    pub available_kib: Option<u64>,
    /// cgroup v2 `memory.current`, bytes.
    pub cgroup_current_bytes: Option<u64>,
    /// cgroup v2 `memory.max`, bytes; `None` when unlimited or absent.
    pub cgroup_max_bytes: Option<u64>,
    /// `inactive_file` from the cgroup's `memory.stat`, bytes.
    pub cgroup_inactive_file_bytes: Option<u64>,
    /// cgroup v2 `memory.pressure`.
    pub cgroup_psi: Option<Psi>,
    /// How the memory probe fared.
    pub health: ProbeHealth,
}

impl MemoryReading {
    /// Memory pressure in 0..=1, `None` when nothing is known. The largest of:
    /// - PSI (node or cgroup, whichever is worse):
    ///   `max(some.avg10 / PSI_SOME_SATURATION, full.avg10 / PSI_FULL_SATURATION)`;
    /// - node usage `u = 1 - MemAvailable / MemTotal`, ramped: `(u - USED_THRESHOLD) / (1 -
    ///   USED_THRESHOLD)`, so 0 up to 80 % used and 1 at 100 %;
    /// - cgroup usage `u = (memory.current - inactive_file) / memory.max`, ramped the same way.
    ///
    /// Each term is clamped to 0..=1. Stalls are the direct evidence; usage terms catch a node
    /// about to stall on kernels without PSI.
    pub fn pressure(&self) -> Option<f64> {
        let terms = [
            self.psi.as_ref().map(psi_term),
            self.cgroup_psi.as_ref().map(psi_term),
            self.node_used().map(ramp),
            self.cgroup_used().map(ramp),
        ];
        terms.into_iter().flatten().reduce(f64::max)
    }

    fn node_used(&self) -> Option<f64> {
        let total = self.total_kib.filter(|&t| t > 0)? as f64;
        let available = self.available_kib? as f64;
        Some(1.0 - available / total)
    }

    fn cgroup_used(&self) -> Option<f64> {
        let max = self.cgroup_max_bytes.filter(|&m| m > 0)? as f64;
        let current = self.cgroup_current_bytes?;
        let working_set = current.saturating_sub(self.cgroup_inactive_file_bytes.unwrap_or(0));
        Some(working_set as f64 / max)
    }
}

fn psi_term(psi: &Psi) -> f64 {
    let some = psi.some.avg10 / PSI_SOME_SATURATION;
    let full = psi.full.map_or(0.0, |f| f.avg10 / PSI_FULL_SATURATION);
    some.max(full).clamp(0.0, 1.0)
}

fn ramp(used: f64) -> f64 {
    ((used - USED_THRESHOLD) / (1.0 - USED_THRESHOLD)).clamp(0.0, 1.0)
}

/// Reads memory telemetry under a root directory ("/" in production).
#[derive(Debug)]
pub struct MemoryProbe {
    root: PathBuf,
    cgroup: PathBuf,
    log: HealthLog,
}

impl MemoryProbe {
    /// A probe reading under `root` ("/" in production).
    pub fn new(root: &Path) -> MemoryProbe {
        MemoryProbe {
            root: root.to_path_buf(),
            cgroup: cgroup_dir(root),
            log: HealthLog::new("memory"),
        }
    }

    /// Reads PSI, `/proc/meminfo` and the cgroup's memory files once; never fails (unreadable
    /// sources degrade `health`).
    pub fn sample(&mut self) -> MemoryReading {
        let mut reader = Reader::default();
        let psi = reader.expected(&self.root.join("proc/pressure/memory"), NO_PSI, parse_psi);
        let meminfo = reader.expected(
            &self.root.join("proc/meminfo"),
            "no procfs mounted?",
            parse_meminfo,
        );
        let current = reader.optional(&self.cgroup.join("memory.current"), parse_number::<u64>);
        let inactive_file = match current {
            Some(_) => reader.optional(&self.cgroup.join("memory.stat"), parse_inactive_file),
            None => None,
        };
        MemoryReading {
            psi,
            total_kib: meminfo.map(|m| m.0),
            available_kib: meminfo.map(|m| m.1),
            cgroup_current_bytes: current,
            cgroup_max_bytes: reader
                .optional(&self.cgroup.join("memory.max"), parse_max)
                .flatten(),
            cgroup_inactive_file_bytes: inactive_file,
            cgroup_psi: reader.optional(&self.cgroup.join("memory.pressure"), parse_psi),
            health: self.log.update(&reader.into_faults()),
        }
    }
}

/// Parses `/proc/meminfo` into (total, available) KiB.
fn parse_meminfo(text: &str) -> Result<(u64, u64), Garbled> {
    let field = |key: &str| -> Result<Option<u64>, Garbled> {
        let Some(line) = text.lines().find(|l| l.split(':').next() == Some(key)) else {
            return Ok(None);
        };
        let value = line[key.len() + 1..].trim().trim_end_matches("kB").trim();
        value
            .parse()
            .map(Some)
            .map_err(|_| Garbled::bad(key, value))
    };
    let total = field("MemTotal")?.ok_or(Garbled::Missing("no MemTotal line"))?;
    let available = match field("MemAvailable")? {
        Some(available) => available,
        None => {
            let free =
                field("MemFree")?.ok_or(Garbled::Missing("neither MemAvailable nor MemFree"))?;
            free + field("Buffers")?.unwrap_or(0) + field("Cached")?.unwrap_or(0)
        }
    };
    Ok((total, available))
}

/// Parses `memory.max`: `max` (unlimited, `None`) or bytes.
fn parse_max(text: &str) -> Result<Option<u64>, Garbled> {
    match text.trim() {
        "max" => Ok(None),
        _ => parse_number(text).map(Some),
    }
}

fn parse_inactive_file(text: &str) -> Result<u64, Garbled> {
    let line = text.lines().find_map(|l| l.strip_prefix("inactive_file "));
    parse_number(line.ok_or(Garbled::Missing("no inactive_file line"))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::psi::PsiLine;

    #[test]
    fn meminfo_prefers_mem_available_and_falls_back_on_old_kernels() {
        let new = "MemTotal:  1000 kB\nMemFree:  100 kB\nMemAvailable:  600 kB\nBuffers: 10 kB\nCached: 200 kB\n";
        assert_eq!(parse_meminfo(new), Ok((1000, 600)));
        let old = "MemTotal:  1000 kB\nMemFree:  100 kB\nBuffers: 10 kB\nCached: 200 kB\nSwapCached: 5 kB\n";
        assert_eq!(parse_meminfo(old), Ok((1000, 310)));
        assert!(parse_meminfo("MemTotal: lots kB\n").is_err());
        assert!(parse_meminfo("MemFree: 1 kB\n").is_err());
    }

    #[test]
    fn pressure_is_the_worst_term() {
        let some = |avg10| Psi {
            some: PsiLine {
                avg10,
                ..Default::default()
            },
            full: None,
        };
        let mut reading = MemoryReading {
            psi: Some(some(5.0)),
            ..Default::default()
        };
        assert_eq!(reading.pressure(), Some(0.25));
        reading.total_kib = Some(1000);
        reading.available_kib = Some(100);
        assert!((reading.pressure().unwrap() - 0.5).abs() < 1e-9);
        reading.cgroup_max_bytes = Some(1000);
        reading.cgroup_current_bytes = Some(1000);
        assert_eq!(reading.pressure(), Some(1.0));
        reading.cgroup_inactive_file_bytes = Some(500);
        assert!((reading.pressure().unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(MemoryReading::default().pressure(), None);
    }
}
