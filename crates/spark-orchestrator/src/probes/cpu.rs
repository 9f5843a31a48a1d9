//! CPU probe: node utilisation from `/proc/stat`, the cgroup v2 CPU limit and its use, and
//! CPU pressure (PSI).
//!
//! Utilisation is a delta, so the probe keeps the previous counters and the first sample has
//! none. The decision worth knowing: `/proc/stat` deltas are normalised by the kernel's own
//! tick counts (no clock needed), while the cgroup's `usage_usec` delta is divided by the
//! caller's `now_ms` delta, so tests drive both with fixtures and chosen times.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::health::{HealthLog, ProbeHealth};
use super::psi::parse_psi;
use super::source::{Garbled, Reader, cgroup_dir};

/// Period the kernel assumes when `cpu.max` names only the quota.
const DEFAULT_CFS_PERIOD_US: u64 = 100_000;
const NO_PSI: &str = "kernel without PSI, or booted with psi=0";

/// What the CPU probe saw in one sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuReading {
    /// CPUs in `/proc/stat` (its `cpuN` lines).
    pub cpus: Option<u32>,
    /// Busy fraction (0..=1) of all CPUs since the previous sample; busy excludes idle and
    /// iowait. `None` on the first sample.
    pub utilisation: Option<f64>,
    /// The cgroup v2 quota in cores (`cpu.max` quota / period); `None` when not limited.
    pub cgroup_limit_cores: Option<f64>,
    /// The cgroup's use of its effective limit (0..=1) since the previous sample.
    pub cgroup_utilisation: Option<f64>,
    /// CPU pressure: `some avg10`, percent of time some task waited for a CPU.
    pub psi_some_avg10: Option<f64>,
    /// How the CPU probe fared.
    pub health: ProbeHealth,
}

impl CpuReading {
    /// Cores the node may use: the cgroup quota capped at the CPU count, else the CPU count.
    pub fn effective_cores(&self) -> Option<f64> {
        let cpus = self.cpus.map(f64::from);
        match (self.cgroup_limit_cores, cpus) {
            (Some(limit), Some(cpus)) => Some(limit.min(cpus)),
            (limit, cpus) => limit.or(cpus),
        }
    }
}

/// Reads CPU telemetry under a root directory ("/" in production).
#[derive(Debug)]
pub struct CpuProbe {
    root: PathBuf,
    cgroup: PathBuf,
    previous: Option<StatTimes>,
    previous_usage: Option<(u64, u64)>,
    log: HealthLog,
}

/// Aggregate counters from the `cpu` line, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatTimes {
    total: u64,
    idle: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    times: StatTimes,
    cpus: u32,
}

impl CpuProbe {
    /// A probe reading under `root` ("/" in production); its first sample has no utilisation.
    pub fn new(root: &Path) -> CpuProbe {
        CpuProbe {
            root: root.to_path_buf(),
            cgroup: cgroup_dir(root),
            previous: None,
            previous_usage: None,
            log: HealthLog::new("cpu"),
        }
    }

    /// Takes one sample; `now_ms` is the caller's clock, used for the cgroup usage rate.
    pub fn sample(&mut self, now_ms: u64) -> CpuReading {
        let mut reader = Reader::default();
        let stat_path = self.root.join("proc/stat");
        let stat = reader.expected(&stat_path, "no procfs mounted?", parse_stat);
        let cpus = stat.map(|s| s.cpus);
        let utilisation = stat.and_then(|s| self.node_utilisation(s.times));
        let limit = reader
            .optional(&self.cgroup.join("cpu.max"), parse_cpu_max)
            .flatten();
        let cgroup_utilisation = match limit {
            Some(limit) => self.cgroup_utilisation(&mut reader, now_ms, cap(limit, cpus)),
            None => {
                self.previous_usage = None;
                None
            }
        };
        let psi_path = self.root.join("proc/pressure/cpu");
        let psi = reader.expected(&psi_path, NO_PSI, parse_psi);
        CpuReading {
            cpus,
            utilisation,
            cgroup_limit_cores: limit,
            cgroup_utilisation,
            psi_some_avg10: psi.map(|p| p.some.avg10),
            health: self.log.update(&reader.into_faults()),
        }
    }

    fn node_utilisation(&mut self, now: StatTimes) -> Option<f64> {
        let before = self.previous.replace(now)?;
        let total = now.total.checked_sub(before.total).filter(|&t| t > 0)?;
        let busy_now = now.total - now.idle;
        let busy_before = before.total - before.idle;
        // iowait may step backwards on some kernels; a negative busy delta counts as idle.
        let busy = busy_now.saturating_sub(busy_before);
        Some((busy as f64 / total as f64).clamp(0.0, 1.0))
    }

    fn cgroup_utilisation(&mut self, reader: &mut Reader, now_ms: u64, cores: f64) -> Option<f64> {
        let path = self.cgroup.join("cpu.stat");
        let usage = reader.expected(&path, "cpu controller not enabled?", parse_usage_usec)?;
        let (before_usage, before_ms) = self.previous_usage.replace((usage, now_ms))?;
        let used_us = usage.checked_sub(before_usage)?;
        let elapsed_us = now_ms.checked_sub(before_ms).filter(|&t| t > 0)? as f64 * 1000.0;
        Some((used_us as f64 / (elapsed_us * cores)).clamp(0.0, 1.0))
    }
}

fn cap(limit: f64, cpus: Option<u32>) -> f64 {
    cpus.map_or(limit, |c| limit.min(f64::from(c)))
}

/// Parses `/proc/stat`: the aggregate `cpu` line (at least user, nice, system, idle; the
/// total counts up to steal, since guest time is already inside user and nice) and the
/// number of `cpuN` lines.
fn parse_stat(text: &str) -> Result<Stat, Garbled> {
    let mut times = None;
    let mut cpus = 0;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("cpu") => times = Some(parse_cpu_line(words).map_err(|e| e.in_line(line))?),
            Some(w)
                if w.strip_prefix("cpu")
                    .is_some_and(|n| n.parse::<u32>().is_ok()) =>
            {
                cpus += 1
            }
            _ => {}
        }
    }
    let times = times.ok_or(Garbled::Missing("no aggregate `cpu` line"))?;
    if cpus == 0 {
        return Err(Garbled::Missing("no `cpuN` lines (truncated?)"));
    }
    Ok(Stat { times, cpus })
}

fn parse_cpu_line<'a>(words: impl Iterator<Item = &'a str>) -> Result<StatTimes, Garbled> {
    let fields: Vec<u64> = words
        .take(8)
        .map(|w| {
            w.parse().map_err(|_| Garbled::NonNumericField {
                found: w.to_owned(),
            })
        })
        .collect::<Result<_, _>>()?;
    if fields.len() < 4 {
        return Err(Garbled::TooFewFields {
            found: fields.len(),
            need: 4,
        });
    }
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Ok(StatTimes {
        total: fields.iter().sum(),
        idle,
    })
}

/// Parses `cpu.max`: `max PERIOD` (no limit, `None`) or `QUOTA PERIOD` (cores).
fn parse_cpu_max(text: &str) -> Result<Option<f64>, Garbled> {
    let mut words = text.split_whitespace();
    let quota = words.next().ok_or(Garbled::Missing("empty"))?;
    let period = match words.next() {
        Some(p) => p.parse::<u64>().map_err(|_| Garbled::bad("period", p))?,
        None => DEFAULT_CFS_PERIOD_US,
    };
    if quota == "max" {
        return Ok(None);
    }
    let quota: u64 = quota.parse().map_err(|_| Garbled::bad("quota", quota))?;
    if quota == 0 || period == 0 {
        return Err(Garbled::ZeroQuota {
            text: text.trim().to_owned(),
        });
    }
    Ok(Some(quota as f64 / period as f64))
}

/// Parses `usage_usec` from a cgroup's `cpu.stat`.
fn parse_usage_usec(text: &str) -> Result<u64, Garbled> {
    let line = text.lines().find_map(|l| l.strip_prefix("usage_usec "));
    let value = line.ok_or(Garbled::Missing("no usage_usec line"))?.trim();
    value.parse().map_err(|_| Garbled::bad("usage_usec", value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_totals_exclude_guest_time() {
        let text = "cpu  10 0 10 70 10 0 0 0 99 99\ncpu0 1 1 1 1\ncpu1 1 1 1 1\nintr 1\n";
        let stat = parse_stat(text).unwrap();
        assert_eq!(
            stat.times,
            StatTimes {
                total: 100,
                idle: 80
            }
        );
        assert_eq!(stat.cpus, 2);
    }

    #[test]
    fn old_four_field_stat_parses_and_truncated_does_not() {
        assert_eq!(
            parse_stat("cpu 1 2 3 4\ncpu0 1 2 3 4\n")
                .unwrap()
                .times
                .total,
            10
        );
        assert!(parse_stat("cpu  614518 99378\n").is_err());
        assert!(parse_stat("cpu  1 2 3 4 5\n").is_err());
        assert!(parse_stat("cpu  1 2 x 4 5\ncpu0 1 2 3 4\n").is_err());
    }

    #[test]
    fn cpu_max_forms() {
        assert_eq!(parse_cpu_max("max 100000\n"), Ok(None));
        assert_eq!(parse_cpu_max("150000 100000\n"), Ok(Some(1.5)));
        assert_eq!(parse_cpu_max("50000\n"), Ok(Some(0.5)));
        assert!(parse_cpu_max("lots 100000\n").is_err());
        assert!(parse_cpu_max("0 100000\n").is_err());
    }

    #[test]
    fn effective_cores_is_the_smaller_of_quota_and_cpus() {
        let reading = CpuReading {
            cpus: Some(2),
            cgroup_limit_cores: Some(4.0),
            ..Default::default()
        };
        assert_eq!(reading.effective_cores(), Some(2.0));
        let reading = CpuReading {
            cpus: Some(8),
            cgroup_limit_cores: Some(1.5),
            ..Default::default()
        };
        assert_eq!(reading.effective_cores(), Some(1.5));
        assert_eq!(CpuReading::default().effective_cores(), None);
    }
}
