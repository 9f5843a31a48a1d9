//! Probe health: what each probe reports about itself, and the log-once bookkeeping.
//!
//! A probe collects the [`Fault`]s of one sample (a source that is missing, unreadable or
//! garbled) and hands them to its [`HealthLog`]. The decision worth knowing: transitions are
//! tracked per source, not per sample, so a source that stays broken is logged once (warn) when
//! it first fails and once (info) when it works again, however often the loop samples.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// How a probe fared in its latest sample.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeHealth {
    /// No sample taken yet: nothing is known.
    #[default]
    NotSampled,
    /// Every source the probe needs was read and understood.
    Ok,
    /// Some source was missing, unreadable or garbled; the fields it feeds are `None`.
    /// The reason names each failing source.
    Degraded(String),
}

impl ProbeHealth {
    /// Whether every source was read and understood.
    pub fn is_ok(&self) -> bool {
        matches!(self, ProbeHealth::Ok)
    }

    /// Whether some source failed (not sampled yet is neither ok nor degraded).
    pub fn is_degraded(&self) -> bool {
        matches!(self, ProbeHealth::Degraded(_))
    }
}

/// One source that failed in one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    /// A file path or an upstream name.
    pub source: String,
    pub reason: String,
}

impl Fault {
    pub(super) fn new(source: impl Into<String>, reason: impl Into<String>) -> Fault {
        Fault {
            source: source.into(),
            reason: reason.into(),
        }
    }
}

/// Remembers which sources of one probe are failing, to log transitions only.
#[derive(Debug)]
pub(crate) struct HealthLog {
    probe: &'static str,
    failing: BTreeSet<String>,
    last: ProbeHealth,
}

impl HealthLog {
    pub(super) fn new(probe: &'static str) -> HealthLog {
        HealthLog {
            probe,
            failing: BTreeSet::new(),
            last: ProbeHealth::NotSampled,
        }
    }

    /// Records this sample's faults, logs what changed, and returns the probe's health.
    pub(super) fn update(&mut self, faults: &[Fault]) -> ProbeHealth {
        let now: BTreeSet<String> = faults.iter().map(|f| f.source.clone()).collect();
        for fault in faults.iter().filter(|f| !self.failing.contains(&f.source)) {
            tracing::warn!(
                probe = self.probe,
                source = %fault.source,
                reason = %fault.reason,
                "{} probe degraded: {}: {}",
                self.probe,
                fault.source,
                fault.reason
            );
        }
        for source in self.failing.difference(&now) {
            tracing::info!(probe = self.probe, source = %source, "{} probe recovered: {}", self.probe, source);
        }
        self.failing = now;
        self.last = health_of(faults);
        self.last.clone()
    }

    /// The health reported by the last update.
    pub(super) fn current(&self) -> ProbeHealth {
        self.last.clone()
    }
}

fn health_of(faults: &[Fault]) -> ProbeHealth {
    if faults.is_empty() {
        return ProbeHealth::Ok;
    }
    let reasons: Vec<String> = faults
        .iter()
        .map(|f| format!("{}: {}", f.source, f.reason))
        .collect();
    ProbeHealth::Degraded(reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_names_every_failing_source() {
        let mut log = HealthLog::new("memory");
        let health = log.update(&[Fault::new("/a", "missing"), Fault::new("/b", "garbled")]);
        assert_eq!(
            health,
            ProbeHealth::Degraded("/a: missing; /b: garbled".into())
        );
        assert_eq!(log.update(&[]), ProbeHealth::Ok);
        assert!(log.failing.is_empty());
    }
}
