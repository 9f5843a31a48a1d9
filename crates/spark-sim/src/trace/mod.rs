//! Traces in the Azure Functions 2019 format: parsing, and the per-application view the
//! simulator replays.
//!
//! Decision worth knowing: the unit of warmth is the application (`HashApp`), so everything is
//! grouped by it at parse time: its functions' per-minute counts are summed, its duration is the
//! `Count`-weighted mean of its functions' averages (0 when the durations file does not know the
//! app), and its memory is the sum over its rows of the memory file. An app missing from a given
//! memory file gets the median of the apps that file knows; without a memory file every app gets
//! [`DEFAULT_MEMORY_MB`]. Parsers take text and a display name, so they are testable without
//! files; [`TraceSet::load`] is the only function here that touches the file system.

mod attributes;
pub(crate) mod csv;
mod invocations;

use std::io::Read;
use std::path::Path;

pub use attributes::{Durations, Memory, parse_durations, parse_memory};
pub use invocations::{AppInvocations, Invocations, parse_invocations};

use crate::error::{ParseErrorKind, TraceError};
use crate::synth::Rng;

/// Memory of every application when no memory file is given (MB): the order of the median of
/// the Azure 2019 trace's per-application average allocated memory.
pub const DEFAULT_MEMORY_MB: f64 = 128.0;

/// A whole trace, one entry per application, ready to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSet {
    /// Trace length in minutes (the number of minute columns).
    pub minutes: usize,
    /// The applications, in order of first appearance in the invocations file.
    pub apps: Vec<AppTrace>,
}

/// One application of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct AppTrace {
    /// `HashApp`.
    pub id: String,
    /// Number of invocation rows (functions) merged into this app.
    pub functions: usize,
    /// `(minute index from 0, count)` for minutes with calls, ascending.
    pub counts: Vec<(u32, u32)>,
    /// Average execution time (ms); 0 when unknown.
    pub duration_ms: f64,
    /// Memory while loaded (MB).
    pub memory_mb: f64,
    /// Where a minute's calls fall within it.
    pub placement: Placement,
}

/// Where a minute's calls fall within the minute: the trace only counts them.
///
/// Decision worth knowing: [`Placement::Even`] is B4's rule (`BENCHMARKS.md`), and it makes
/// every gap between two minutes with one call each a whole number of minutes, so any app
/// called about once a minute or less looks like a timer to the second. A policy that learns
/// sub-minute precision profits from that rule, not from the apps; [`Placement::Scattered`]
/// is the same trace with that regularity taken away (the robustness run reports both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Placement {
    /// A minute's n calls at `m + (j + 0.5) / n`, `j = 0..n`.
    #[default]
    Even,
    /// Each call uniform within its minute, independently (a hash of the seed, the app, the
    /// minute and the call: the same calls on every replay), in time order.
    Scattered {
        /// Varies the draw.
        seed: u64,
    },
}

impl AppTrace {
    /// Total invocations.
    pub fn invocations(&self) -> u64 {
        self.counts.iter().map(|&(_, c)| u64::from(c)).sum()
    }

    /// Arrival times in minutes, in order, placed within their minutes by [`Self::placement`]
    /// (by default a minute's n calls at `m + (j + 0.5) / n`, `j = 0..n`).
    pub fn arrivals(&self) -> impl Iterator<Item = f64> + '_ {
        let salt = match self.placement {
            Placement::Even => None,
            Placement::Scattered { seed } => {
                Some(self.id.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                }))
            }
        };
        self.counts.iter().flat_map(move |&(m, n)| {
            let n_f = f64::from(n);
            // Scattered calls are drawn, then put in time order; even ones need no list.
            let scattered = salt.map(|salt| {
                let mut within: Vec<f64> = (0..n)
                    .map(|j| Rng::new(salt ^ (u64::from(m) << 32 | u64::from(j))).unit())
                    .collect();
                within.sort_by(f64::total_cmp);
                within
            });
            (0..n).map(move |j| {
                f64::from(m)
                    + scattered
                        .as_ref()
                        .map_or((f64::from(j) + 0.5) / n_f, |w| w[j as usize])
            })
        })
    }
}

impl TraceSet {
    /// The same trace with every app's calls placed at random within their minutes
    /// ([`Placement::Scattered`]).
    pub fn scattered(&self, seed: u64) -> TraceSet {
        let mut t = self.clone();
        for app in &mut t.apps {
            app.placement = Placement::Scattered { seed };
        }
        t
    }

    /// Joins parsed files into a trace (see the module doc for the rules).
    pub fn assemble(
        inv: Invocations,
        durations: Option<&Durations>,
        memory: Option<&Memory>,
    ) -> TraceSet {
        let fallback_mb = memory
            .and_then(|m| median(m.by_app.values().copied()))
            .unwrap_or(DEFAULT_MEMORY_MB);
        let apps = inv
            .apps
            .into_iter()
            .map(|a| {
                let duration_ms = durations
                    .and_then(|d| d.by_app.get(&a.app))
                    .copied()
                    .unwrap_or(0.0);
                let memory_mb = memory
                    .and_then(|m| m.by_app.get(&a.app))
                    .copied()
                    .unwrap_or(fallback_mb);
                AppTrace {
                    placement: Default::default(),
                    functions: a.functions.len(),
                    counts: a.counts,
                    duration_ms,
                    memory_mb,
                    id: a.app,
                }
            })
            .collect();
        TraceSet {
            minutes: inv.minutes,
            apps,
        }
    }

    /// Parses the three files from text (`(display name, text)` pairs).
    pub fn parse(
        invocations: (&str, &str),
        durations: Option<(&str, &str)>,
        memory: Option<(&str, &str)>,
    ) -> Result<TraceSet, TraceError> {
        let inv = parse_invocations(invocations.1, invocations.0)?;
        let dur = durations
            .map(|(name, text)| parse_durations(text, name))
            .transpose()?;
        let mem = memory
            .map(|(name, text)| parse_memory(text, name))
            .transpose()?;
        Ok(TraceSet::assemble(inv, dur.as_ref(), mem.as_ref()))
    }

    /// Reads and parses the files at these paths.
    pub fn load(
        invocations: &Path,
        durations: Option<&Path>,
        memory: Option<&Path>,
    ) -> Result<TraceSet, TraceError> {
        let inv = read_file(invocations)?;
        let dur = durations.map(read_file).transpose()?;
        let mem = memory.map(read_file).transpose()?;
        let name = |p: &Path| p.display().to_string();
        let (inv_name, dur_name, mem_name) =
            (name(invocations), durations.map(name), memory.map(name));
        TraceSet::parse(
            (&inv_name, &inv),
            dur_name.as_deref().zip(dur.as_deref()),
            mem_name.as_deref().zip(mem.as_deref()),
        )
    }

    /// Total invocations over all apps.
    pub fn invocations(&self) -> u64 {
        self.apps.iter().map(AppTrace::invocations).sum()
    }
}

/// Reads a whole reader as UTF-8 text, naming `file` in errors.
pub fn read_text(mut reader: impl Read, file: &str) -> Result<String, TraceError> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|source| TraceError::Io {
            file: file.to_owned(),
            source,
        })?;
    String::from_utf8(bytes).map_err(|_| TraceError::whole(file, ParseErrorKind::NotUtf8))
}

fn read_file(path: &Path) -> Result<String, TraceError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| TraceError::Io {
        file: name.clone(),
        source,
    })?;
    read_text(file, &name)
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        // Halfway from the lower to the upper: `(a + b) / 2` overflows for large a and b.
        v[mid - 1] + (v[mid] - v[mid - 1]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_spread_evenly_within_a_minute() {
        let app = AppTrace {
            placement: Default::default(),
            id: "a".into(),
            functions: 1,
            counts: vec![(0, 1), (2, 4)],
            duration_ms: 0.0,
            memory_mb: 1.0,
        };
        let t: Vec<f64> = app.arrivals().collect();
        assert_eq!(t, vec![0.5, 2.125, 2.375, 2.625, 2.875]);
        assert_eq!(app.invocations(), 5);
    }

    #[test]
    fn scattered_arrivals_keep_their_minutes_and_order_and_repeat_per_seed() {
        let app = AppTrace {
            placement: Placement::Scattered { seed: 1 },
            id: "a".into(),
            functions: 1,
            counts: vec![(0, 1), (2, 4), (3, 1), (9, 1)],
            duration_ms: 0.0,
            memory_mb: 1.0,
        };
        let t: Vec<f64> = app.arrivals().collect();
        assert_eq!(t.len(), 7);
        let minutes: Vec<u32> = t.iter().map(|&x| x.floor() as u32).collect();
        assert_eq!(minutes, vec![0, 2, 2, 2, 2, 3, 9]);
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "{t:?}");
        let gaps: Vec<f64> = [t[5] - t[0], t[6] - t[5]].to_vec();
        assert!(
            gaps.iter().all(|g| g.fract() != 0.0),
            "no whole-minute gaps: {gaps:?}"
        );
        assert_eq!(app.arrivals().collect::<Vec<_>>(), t, "the same every time");
        let other = AppTrace {
            placement: Placement::Scattered { seed: 2 },
            ..app.clone()
        };
        assert_ne!(other.arrivals().collect::<Vec<_>>(), t);
        let set = TraceSet {
            minutes: 10,
            apps: vec![AppTrace {
                placement: Placement::Even,
                ..app
            }],
        };
        assert_eq!(set.scattered(1).apps[0].arrivals().collect::<Vec<_>>(), t);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
        // Found by the `trace` fuzz target: two apps of 1e308 MB gave an infinite fallback.
        assert_eq!(median([f64::MAX, f64::MAX].into_iter()), Some(f64::MAX));
        assert_eq!(median([1e308, 1.7e308].into_iter()), Some(1.35e308));
    }
}
