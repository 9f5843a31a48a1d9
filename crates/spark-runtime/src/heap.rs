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
//! So the runtime counts its code churn ([`note_code_churn`]: code made, compiled or dropped)
//! and the node trims the heap ([`trim`]) once a burst of churn has settled ([`SettledChurn`],
//! pure: it is given the count and decides).
//!
//! The decision worth knowing: a trim locks each arena in turn while it hands that arena's free
//! pages back, so a request allocating in it waits (milliseconds). Trims therefore follow
//! bursts of churn, not a timer, and run on an ordinary blocking thread, never on the
//! optimizer's idle-class threads, where a trim descheduled under load would hold a lock the
//! foreground needs. Elsewhere than glibc, [`trim`] does nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Code made (compiled or loaded from the cache) and code dropped, since the process started.
static CODE_CHURN: AtomicU64 = AtomicU64::new(0);
/// Trims so far.
static TRIMS: AtomicU64 = AtomicU64::new(0);
/// Resident bytes the trims gave back (resident size before less after, each trim).
static RELEASED: AtomicU64 = AtomicU64::new(0);

/// Counts one piece of code churn: a component compiled, loaded or dropped.
pub fn note_code_churn() {
    CODE_CHURN.fetch_add(1, Ordering::Relaxed);
}

/// Code churn so far.
pub fn code_churn() -> u64 {
    CODE_CHURN.load(Ordering::Relaxed)
}

/// Decides when to trim: once the churn count has moved since the last trim and then held
/// still for one check (a burst of compiles, loads or evictions is over).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SettledChurn {
    trimmed_at: u64,
    previous: Option<u64>,
}

impl SettledChurn {
    /// Given the churn count now (checks at a steady pace), whether to trim now.
    pub fn due(&mut self, churn: u64) -> bool {
        let settled = self.previous == Some(churn) && churn != self.trimmed_at;
        self.previous = Some(churn);
        if settled {
            self.trimmed_at = churn;
        }
        settled
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

    #[test]
    fn a_burst_is_trimmed_once_it_has_held_still_for_one_check() {
        let mut rule = SettledChurn::default();
        assert!(!rule.due(0), "nothing has churned");
        assert!(!rule.due(0));
        assert!(!rule.due(40), "compiles under way");
        assert!(!rule.due(90), "still under way");
        assert!(rule.due(90), "settled: trim");
        assert!(!rule.due(90), "and only once");
        assert!(!rule.due(90));
        assert!(!rule.due(91), "one eviction");
        assert!(rule.due(91), "trimmed after it too");
    }

    #[test]
    fn churn_before_the_first_check_is_trimmed_at_the_second() {
        let mut rule = SettledChurn::default();
        assert!(
            !rule.due(3_000),
            "a first start compiled everything before the first check"
        );
        assert!(rule.due(3_000));
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
