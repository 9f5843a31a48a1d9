//! Bounded per-module call history at minute granularity, and its serializable snapshot.
//!
//! Decision worth knowing: we persist the raw minute counts, not the model's internal state.
//! The model is rebuilt by replaying them (deterministically, spreading each minute's calls as
//! the simulator does), so a snapshot written by one version of the model restores under the
//! next one, and what is stored is small and easy to inspect: at most [`HISTORY_MAX_MINUTES`]
//! non-empty minutes from the last [`HISTORY_SPAN_MIN`] minutes.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How far back the history reaches (minutes): one week, enough for time-of-day profiles.
pub(super) const HISTORY_SPAN_MIN: u64 = 7 * 1440;
/// At most this many non-empty minutes are kept (the oldest go first).
pub(super) const HISTORY_MAX_MINUTES: usize = 4096;
/// Version of the snapshot format.
pub(super) const SNAPSHOT_VERSION: u32 = 1;

/// What a node persists per module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySnapshot {
    /// Format version (`SNAPSHOT_VERSION`).
    pub version: u32,
    /// `(minute since the Unix epoch, calls)`, ascending, non-empty minutes only.
    pub minutes: Vec<(u64, u32)>,
}

/// Minute counts of one module, bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteHistory {
    minutes: VecDeque<(u64, u32)>,
}

impl MinuteHistory {
    /// Adds `count` calls in `minute`; a minute older than the newest one kept is merged into
    /// the newest (calls are reported in time order; late reports are not reordered).
    pub fn record(&mut self, minute: u64, count: u32) {
        if count == 0 {
            return;
        }
        match self.minutes.back_mut() {
            Some(last) if last.0 >= minute => last.1 = last.1.saturating_add(count),
            _ => self.minutes.push_back((minute, count)),
        }
        let oldest_kept = minute.saturating_sub(HISTORY_SPAN_MIN);
        while self.minutes.front().is_some_and(|&(m, _)| m < oldest_kept)
            || self.minutes.len() > HISTORY_MAX_MINUTES
        {
            self.minutes.pop_front();
        }
    }

    /// The kept minutes, oldest first.
    pub fn minutes(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.minutes.iter().copied()
    }

    /// The kept minutes from `first` on, newest first: reads only those (a forecast that
    /// looks at the last hour does not walk a week of history).
    pub fn since(&self, first: u64) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.minutes
            .iter()
            .rev()
            .take_while(move |&&(m, _)| m >= first)
            .copied()
    }

    /// A snapshot to persist.
    pub fn snapshot(&self) -> HistorySnapshot {
        HistorySnapshot {
            version: SNAPSHOT_VERSION,
            minutes: self.minutes.iter().copied().collect(),
        }
    }

    /// Rebuilds from a snapshot, re-applying the bounds; `None` for an unknown version.
    pub fn restore(snapshot: &HistorySnapshot) -> Option<MinuteHistory> {
        if snapshot.version != SNAPSHOT_VERSION {
            return None;
        }
        let mut h = MinuteHistory::default();
        for &(m, c) in &snapshot.minutes {
            h.record(m, c);
        }
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_in_span_and_entries() {
        let mut h = MinuteHistory::default();
        for m in 0..(HISTORY_SPAN_MIN + 100) {
            h.record(m * 2, 1);
        }
        assert!(h.minutes().count() <= HISTORY_MAX_MINUTES);
        let newest = h.minutes().last().unwrap().0;
        assert!(h.minutes().all(|(m, _)| newest - m <= HISTORY_SPAN_MIN));
    }

    #[test]
    fn since_reads_the_recent_minutes_only() {
        let mut h = MinuteHistory::default();
        for m in [3, 5, 8, 13] {
            h.record(m, 1);
        }
        assert_eq!(
            h.since(5).collect::<Vec<_>>(),
            vec![(13, 1), (8, 1), (5, 1)]
        );
        assert_eq!(h.since(14).count(), 0);
        assert_eq!(h.since(0).count(), 4);
    }

    #[test]
    fn same_minute_merges_and_snapshot_round_trips() {
        let mut h = MinuteHistory::default();
        h.record(10, 2);
        h.record(10, 3);
        h.record(12, 0);
        h.record(13, 1);
        let snap = h.snapshot();
        assert_eq!(snap.minutes, vec![(10, 5), (13, 1)]);
        let json = serde_json::to_string(&snap).unwrap();
        let back: HistorySnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(MinuteHistory::restore(&back), Some(h));
        assert_eq!(
            MinuteHistory::restore(&HistorySnapshot {
                version: 99,
                minutes: vec![]
            }),
            None
        );
    }
}
