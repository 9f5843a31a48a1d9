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
//! ([`SettledChurn`], pure: it is given the time, the count and the resident size, and
//! decides), and within a long burst whenever the process has grown by [`GROWTH`] since its
//! lowest point after the last trim: the background optimizer compiling a hundred
//! JavaScript components one after another (seven seconds each, each freeing a few hundred
//! MB) is a burst that lasts minutes, during which the heap it freed would otherwise stay
//! resident (2.1 GB for 209 MB of loaded code, 2026-12-06).
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

/// Growth of the resident size within a burst of churn that is trimmed without waiting for
/// the burst to end: about what one large component's compile frees, and several hundred
/// small ones'. Growth that is not freed heap (code loaded, instances) costs one trim that
/// gives little back, after which the low point is the new size.
pub const GROWTH: u64 = 128 << 20;

/// Decides when to trim: once the churn count has moved since the last trim and then held
/// still for one check (the burst is over), at once after a [`BURST`], at most every
/// [`TRICKLE_SPACING`] after less; and while churn goes on, whenever the resident size is
/// [`GROWTH`] above its lowest since the last trim.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SettledChurn {
    trimmed_at: u64,
    trimmed_when: Option<Duration>,
    previous: Option<u64>,
    /// The lowest resident size seen since the last trim (its size after it, at first).
    low: Option<u64>,
}

impl SettledChurn {
    /// Given the time (any monotonic origin), the churn count and the resident size (bytes)
    /// now, checked at a steady pace: whether to trim now. After a trim, tell it the size
    /// the trim left ([`SettledChurn::trimmed`]).
    pub fn due(&mut self, now: Duration, churn: u64, resident: u64) -> bool {
        let churned = churn != self.trimmed_at;
        let settled = self.previous == Some(churn) && churned;
        self.previous = Some(churn);
        let low = *self
            .low
            .insert(self.low.map_or(resident, |low| low.min(resident)));
        let worth_it = churn.abs_diff(self.trimmed_at) >= BURST
            || self
                .trimmed_when
                .is_none_or(|when| now.saturating_sub(when) >= TRICKLE_SPACING);
        let grown = churned && resident >= low.saturating_add(GROWTH);
        let due = (settled && worth_it) || grown;
        if due {
            self.trimmed_at = churn;
            self.trimmed_when = Some(now);
        }
        due
    }

    /// The resident size a trim left: the low point growth is measured from.
    pub fn trimmed(&mut self, resident: u64) {
        self.low = Some(resident);
    }
}

/// What one trim did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Resident bytes before less after (0 if the process grew meanwhile).
    pub released: u64,
    /// The resident size it left, bytes.
    pub resident: u64,
    /// How long the trim took.
    pub took: Duration,
}

/// Gives the heap's free pages back to the kernel (`malloc_trim(0)` on glibc; nothing
/// elsewhere). Blocks for as long as that takes: call it on a blocking thread.
pub fn trim() -> Trimmed {
    let started = Instant::now();
    let before = resident_bytes();
    release_free_pages();
    let resident = resident_bytes();
    let released = before.saturating_sub(resident);
    TRIMS.fetch_add(1, Ordering::Relaxed);
    RELEASED.fetch_add(released, Ordering::Relaxed);
    Trimmed {
        released,
        resident,
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
pub fn resident_bytes() -> u64 {
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

    const MB: u64 = 1 << 20;

    /// The rule's answers to `counts`, one check every [`CHECK`] from `start`, the process
    /// at a steady 100 MB.
    fn answers(rule: &mut SettledChurn, start: Duration, counts: &[u64]) -> Vec<bool> {
        (0u32..)
            .zip(counts)
            .map(|(i, &churn)| rule.due(start + CHECK * i, churn, 100 * MB))
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
    fn a_long_burst_is_trimmed_each_time_it_has_grown_by_the_growth() {
        let mut rule = SettledChurn::default();
        // (churn, resident MB, MB a trim there would leave) every check: compiles one after
        // another, each freeing heap; from the sixth on, the growth is code kept loaded.
        let checks = [
            (0, 100, 100),
            (2, 150, 100),
            (4, 227, 105),
            (6, 229, 110),
            (8, 120, 110),
            (10, 250, 240),
            (12, 260, 250),
            (14, 300, 290),
        ];
        let mut due = Vec::new();
        for (i, (churn, mb, left)) in (0u32..).zip(checks) {
            let trim = rule.due(CHECK * i, churn, mb * MB);
            if trim {
                rule.trimmed(left * MB);
            }
            due.push(trim);
        }
        assert_eq!(
            due,
            [false, false, false, true, false, true, false, false],
            "128 MB above the low point (100, then 110 after the trim), then not again for \
             growth a trim could not give back"
        );
        let mut quiet = SettledChurn::default();
        assert!(
            !quiet.due(Duration::ZERO, 0, 100 * MB) && !quiet.due(CHECK, 0, 900 * MB),
            "growth without code churn (instances, requests) is not the heap's to trim"
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
