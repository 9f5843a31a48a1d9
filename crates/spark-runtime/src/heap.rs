//! The heap that compiling and unloading code frees, given back to the kernel.
//!
//! Compiling a component (Winch or Cranelift) or loading one from the AOT cache allocates tens
//! of megabytes for a moment on the thread that does it, and unloading a module frees its
//! metadata. glibc keeps freed memory in the arena of the thread that allocated it and returns
//! an arena's pages only from the top of its heap, which fragmentation seldom frees: a node
//! that had just compiled 3,000 components with one of them loaded was 599 MB resident, and
//! 176 MB after `malloc_trim` (2026-12-06). Memory that follows what the predictor keeps
//! loaded, not what the node once compiled, needs that freed memory handed back.
//!
//! So the runtime counts its code churn ([`crate::Runtime::code_churn`]: code made, compiled or
//! dropped) and the node trims the heap ([`trim`]) once a burst of churn has settled
//! ([`SettledChurn`], pure: it is given the time and the count and decides).
//!
//! The decision worth knowing: a trim locks each arena in turn while it hands that arena's free
//! pages back, so a request allocating in it waits (milliseconds). Trims therefore follow
//! bursts of churn, not a timer, and run on an ordinary blocking thread, never on the
//! optimizer's idle-class threads, where a trim descheduled under load would hold a lock the
//! foreground needs. Elsewhere than glibc, [`trim`] does nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Trims so far.
static TRIMS: AtomicU64 = AtomicU64::new(0);
/// Resident bytes the trims gave back (resident size before less after, each trim).
static RELEASED: AtomicU64 = AtomicU64::new(0);

/// Churn that is a burst (a deploy, a start, a walk over many modules): trimmed as soon as it
/// settles.
pub const BURST: u64 = 32;
/// Smaller churn (an eviction now and then) is trimmed at most this often: a trim after one
/// eviction gives back a few MB and still locks every arena once.
pub const TRICKLE_SPACING: Duration = Duration::from_secs(60);

/// Decides when to trim: once the churn count has moved since the last trim and then held
/// still for one check (the burst is over), at once after a [`BURST`], at most every
/// [`TRICKLE_SPACING`] after less.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SettledChurn {
    trimmed_at: u64,
    trimmed_when: Option<Duration>,
    previous: Option<u64>,
}

impl SettledChurn {
    /// Given the time (any monotonic origin) and the churn count now, checked at a steady
    /// pace: whether to trim now.
    pub fn due(&mut self, now: Duration, churn: u64) -> bool {
        let settled = self.previous == Some(churn) && churn != self.trimmed_at;
        self.previous = Some(churn);
        let worth_it = churn.abs_diff(self.trimmed_at) >= BURST
            || self
                .trimmed_when
                .is_none_or(|when| now.saturating_sub(when) >= TRICKLE_SPACING);
        let due = settled && worth_it;
        if due {
            self.trimmed_at = churn;
            self.trimmed_when = Some(now);
        }
        due
    }
}

/// What one trim did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Resident bytes before less after (0 if the process grew meanwhile).
    pub released: u64,
    /// How long the trim took.
    pub took: Duration,
}

/// Gives the heap's free pages back to the kernel (`malloc_trim(0)` on glibc; nothing
/// elsewhere). Blocks for as long as that takes: call it on a blocking thread.
pub fn trim() -> Trimmed {
    let started = Instant::now();
    let before = resident_bytes();
    release_free_pages();
    let released = before.saturating_sub(resident_bytes());
    TRIMS.fetch_add(1, Ordering::Relaxed);
    RELEASED.fetch_add(released, Ordering::Relaxed);
    Trimmed {
        released,
        took: started.elapsed(),
    }
}

/// Trims so far and the resident bytes they gave back, for metrics.
pub fn trims() -> (u64, u64) {
    (
        TRIMS.load(Ordering::Relaxed),
        RELEASED.load(Ordering::Relaxed),
    )
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_pages() {
    // SAFETY: `malloc_trim` only walks the allocator's own arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_pages() {}

/// The process's resident size, from `/proc/self/statm` (0 where there is none).
fn resident_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0);
    pages * page_size()
}

#[cfg(unix)]
fn page_size() -> u64 {
    // SAFETY: `sysconf` reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

#[cfg(not(unix))]
fn page_size() -> u64 {
    4096
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECK: Duration = Duration::from_secs(2);

    /// The rule's answers to `counts`, one check every [`CHECK`] from `start`.
    fn answers(rule: &mut SettledChurn, start: Duration, counts: &[u64]) -> Vec<bool> {
        (0u32..)
            .zip(counts)
            .map(|(i, &churn)| rule.due(start + CHECK * i, churn))
            .collect()
    }

    #[test]
    fn a_burst_is_trimmed_once_it_has_held_still_for_one_check() {
        let mut rule = SettledChurn::default();
        assert_eq!(
            answers(&mut rule, Duration::ZERO, &[0, 0, 40, 90, 90, 90, 90]),
            [false, false, false, false, true, false, false],
            "nothing churned; compiles under way; settled: trim, once"
        );
        assert_eq!(
            answers(&mut rule, CHECK * 7, &[130, 130]),
            [false, true],
            "another burst soon after: trimmed too"
        );
    }

    #[test]
    fn trickling_churn_is_trimmed_at_most_once_a_spacing() {
        let mut rule = SettledChurn::default();
        assert_eq!(answers(&mut rule, Duration::ZERO, &[1, 1]), [false, true]);
        let soon = answers(&mut rule, CHECK * 2, &[2, 2, 3, 3, 3]);
        assert_eq!(soon, [false; 5], "an eviction now and then waits");
        let later = TRICKLE_SPACING + CHECK;
        assert_eq!(
            answers(&mut rule, later, &[3, 3]),
            [true, false],
            "a spacing after the last trim, what trickled in is trimmed"
        );
    }

    #[test]
    fn churn_before_the_first_check_is_trimmed_at_the_second() {
        let mut rule = SettledChurn::default();
        assert_eq!(
            answers(&mut rule, Duration::from_secs(40), &[3_000, 3_000]),
            [false, true],
            "a first start compiled everything before the first check"
        );
    }

    #[test]
    fn a_trim_counts_itself_and_what_it_gave_back() {
        // How much a trim gives back depends on what every thread of the process freed, so
        // this checks the bookkeeping; the node's tests and B7 see the effect.
        drop(vec![vec![1u8; 4096]; 4096]);
        let (trims_before, released_before) = trims();
        let trimmed = trim();
        let (trims_after, released_after) = trims();
        assert!(trims_after > trims_before);
        assert!(released_after >= released_before + trimmed.released);
        assert!(resident_bytes() > 0, "the process has a resident size");
    }
}
