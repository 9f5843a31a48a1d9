//! The code the node holds in memory, on one ledger, within the predictor's budget between
//! its revisions too.
//!
//! Every non-critical module whose code is loaded has an entry here with what it costs in the
//! predictor's units ([`load_bytes`]). The warmth controller keeps what it plans within
//! `predictor.memory_budget` at each revision, but between revisions requests load modules on
//! their own (a module only on disk is loaded by its first request): a client asking for a
//! thousand routes in a row would load a thousand modules within one interval, and memory
//! would follow what was registered instead of what the predictor keeps. So a load made for a
//! request makes room at once when it takes the total over the limit, before the request runs:
//!
//! - first the modules the last revision kept, least likely to be called first (its eviction
//!   order): what that revision valued least, and what the next one would drop first;
//! - then the modules loaded on demand since (the plan has not judged them), least recently
//!   used first: each was called moments ago, when a module is likeliest to be called again;
//! - never a critical module (they are not on the ledger: the budget is not theirs) nor the
//!   module just loaded, so a request always gets its module, and the total stays within the
//!   limit plus that one module.
//!
//! A client walking every route of the node thus costs the plan's modules their warmth until
//! the next revision loads them again, never memory beyond the budget. A build (a first
//! start, a deploy, a rollback) makes room the same way once its module is checked, so a
//! node starting more modules than its budget holds keeps the budget's worth, not all it
//! built.
//!
//! Evicting only drops the node's reference, as the controller's evictions do: requests in
//! flight keep the code they hold.
//!
//! Decision worth knowing: code goes in and out of a [`CodeCell`] only under the ledger's lock,
//! so the total is exact whoever loads or unloads (a request, the controller, a deploy dropping
//! an old version); reading a cell, which every request does, takes no lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwapOption;
use spark_runtime::GuestModule;

/// What keeping a module's code loaded costs in the predictor's units: its loaded artifact
/// image (native code, metadata, data images), and never less than 64 KiB.
pub(crate) fn load_bytes(code_bytes: usize) -> u64 {
    (code_bytes as u64).max(64 << 10)
}

/// One module's code slot: loaded or not.
pub struct CodeCell {
    id: u64,
    module: ArcSwapOption<GuestModule>,
    /// Critical: never evicted to make room, and not charged to the budget.
    pinned: bool,
    /// The ledger's load count when a request last used it (least recently used goes first).
    used: AtomicU64,
    /// Times its code was dropped, by the controller or to make room.
    unloads: AtomicU64,
}

impl CodeCell {
    /// The module, if its code is in memory now (no lock).
    pub fn current(&self) -> Option<Arc<GuestModule>> {
        self.module.load_full()
    }

    /// Whether its code is in memory now.
    pub fn is_loaded(&self) -> bool {
        self.module.load().is_some()
    }

    /// Times its code was dropped.
    pub fn unloads(&self) -> u64 {
        self.unloads.load(Ordering::Relaxed)
    }
}

/// The ledger of loaded code (see the module's documentation).
pub struct LoadedCode {
    state: Mutex<Ledger>,
    /// Loads so far: the clock of least recently used.
    loads: AtomicU64,
    next_id: AtomicU64,
    /// Modules evicted to make room for a request's load.
    evictions: AtomicU64,
}

struct Ledger {
    /// `None`: no bound (the predictor is off, and every module stays loaded).
    limit: Option<u64>,
    total: u64,
    entries: HashMap<u64, Entry>,
}

struct Entry {
    cell: Weak<CodeCell>,
    bytes: u64,
    /// Position in the last plan's eviction order; `None`: loaded since, not judged yet.
    rank: Option<usize>,
}

/// The ledger's figures, for metrics and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct LoadedCodeFigures {
    /// Loaded code of non-critical modules, bytes (the predictor's units).
    pub bytes: u64,
    /// What it may reach before a request's load makes room; `None`: unbounded.
    pub limit: Option<u64>,
    /// Modules evicted to make room for a request's load, since the start.
    pub evictions: u64,
}

impl LoadedCode {
    /// A ledger with this limit (`None`: unbounded) until the controller sets another.
    pub fn new(limit: Option<u64>) -> Arc<LoadedCode> {
        Arc::new(LoadedCode {
            state: Mutex::new(Ledger {
                limit,
                total: 0,
                entries: HashMap::new(),
            }),
            loads: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        })
    }

    /// An empty cell for one module (`pinned`: a critical one).
    pub fn cell(&self, pinned: bool) -> Arc<CodeCell> {
        Arc::new(CodeCell {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            module: ArcSwapOption::empty(),
            pinned,
            used: AtomicU64::new(0),
            unloads: AtomicU64::new(0),
        })
    }

    /// Puts `module` (whose loaded image is `code_bytes`) into `cell`.
    pub fn put(&self, cell: &Arc<CodeCell>, module: GuestModule, code_bytes: usize) {
        let stamp = self.loads.fetch_add(1, Ordering::Relaxed) + 1;
        cell.used.store(stamp, Ordering::Relaxed);
        let mut ledger = self.state.lock().expect("loaded code ledger");
        let old = cell.module.swap(Some(Arc::new(module)));
        if !cell.pinned {
            let bytes = load_bytes(code_bytes);
            let entry = ledger.entries.entry(cell.id).or_insert(Entry {
                cell: Arc::downgrade(cell),
                bytes: 0,
                rank: None,
            });
            let before = std::mem::replace(&mut entry.bytes, bytes);
            entry.rank = None;
            ledger.total = ledger.total - before + bytes;
        }
        drop(ledger);
        drop(old);
    }

    /// Drops the code in `cell`, if any (counted as an unload when `count`); true if it held
    /// some.
    pub fn take(&self, cell: &CodeCell, count: bool) -> bool {
        let mut ledger = self.state.lock().expect("loaded code ledger");
        let old = cell.module.swap(None);
        if let Some(entry) = ledger.entries.remove(&cell.id) {
            ledger.total -= entry.bytes;
        }
        drop(ledger);
        let was = old.is_some();
        if was && count {
            cell.unloads.fetch_add(1, Ordering::Relaxed);
        }
        was
    }

    /// Marks `cell` used by a request now. Every request to a loaded module does this, so it
    /// writes only when a load happened since the cell's last stamp: a busy module's requests
    /// on several cores read the stamp and leave its cache line shared.
    pub fn touch(&self, cell: &CodeCell) {
        let now = self.loads.load(Ordering::Relaxed);
        if cell.used.load(Ordering::Relaxed) != now {
            cell.used.store(now, Ordering::Relaxed);
        }
    }

    /// After a request's load into `keep`: evicts others until the total is within the limit
    /// (or nothing else may go). Returns how many were evicted.
    pub fn make_room(&self, keep: &CodeCell) -> usize {
        let mut dropped = Vec::new();
        {
            let mut ledger = self.state.lock().expect("loaded code ledger");
            let Some(limit) = ledger.limit else { return 0 };
            while ledger.total > limit {
                let Some((id, cell)) = ledger.victim(keep.id) else {
                    break;
                };
                if let Some(entry) = ledger.entries.remove(&id) {
                    ledger.total -= entry.bytes;
                }
                if let Some(cell) = cell
                    && let Some(old) = cell.module.swap(None)
                {
                    cell.unloads.fetch_add(1, Ordering::Relaxed);
                    dropped.push(old);
                }
            }
        }
        self.evictions
            .fetch_add(dropped.len() as u64, Ordering::Relaxed);
        // The code is unmapped (if no request holds it) outside the lock.
        dropped.len()
    }

    /// What the controller decided at a revision: the limit (`None`: unbounded) and the
    /// plan's eviction order over the loaded cells, least likely to be called first.
    pub fn plan<'a>(&self, limit: Option<u64>, order: impl IntoIterator<Item = &'a CodeCell>) {
        let mut ledger = self.state.lock().expect("loaded code ledger");
        ledger.limit = limit;
        for entry in ledger.entries.values_mut() {
            entry.rank = None;
        }
        for (rank, cell) in order.into_iter().enumerate() {
            if let Some(entry) = ledger.entries.get_mut(&cell.id) {
                entry.rank = Some(rank);
            }
        }
    }

    pub fn figures(&self) -> LoadedCodeFigures {
        let ledger = self.state.lock().expect("loaded code ledger");
        LoadedCodeFigures {
            bytes: ledger.total,
            limit: ledger.limit,
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

/// Which goes first: judged by the plan before loaded since (`false` first), then the plan's
/// rank, then the least recently used.
type EvictionKey = (bool, usize, u64);

impl Ledger {
    /// The next module to evict, other than `keep`: the plan's least likely first, then those
    /// loaded since, least recently used first. A cell that no longer exists (its version was
    /// dropped) comes first, with `None`.
    fn victim(&self, keep: u64) -> Option<(u64, Option<Arc<CodeCell>>)> {
        let mut best: Option<(EvictionKey, u64, Arc<CodeCell>)> = None;
        for (&id, entry) in &self.entries {
            if id == keep {
                continue;
            }
            let Some(cell) = entry.cell.upgrade() else {
                return Some((id, None));
            };
            let key = match entry.rank {
                Some(rank) => (false, rank, 0),
                None => (true, 0, cell.used.load(Ordering::Relaxed)),
            };
            if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
                best = Some((key, id, cell));
            }
        }
        best.map(|(_, id, cell)| (id, Some(cell)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The ledger's choices without modules: entries whose cells hold nothing behave the same
    // for bookkeeping (a `GuestModule` needs a runtime; the node's tests load real ones).
    fn entry(ledger: &LoadedCode, cell: &Arc<CodeCell>, bytes: u64, used: u64) {
        cell.used.store(used, Ordering::Relaxed);
        let mut state = ledger.state.lock().unwrap();
        state.entries.insert(
            cell.id,
            Entry {
                cell: Arc::downgrade(cell),
                bytes,
                rank: None,
            },
        );
        state.total += bytes;
    }

    #[test]
    fn room_is_made_from_the_plans_least_likely_first_then_the_least_recently_used() {
        let ledger = LoadedCode::new(Some(300));
        let cells: Vec<Arc<CodeCell>> = (0..6).map(|_| ledger.cell(false)).collect();
        for (i, cell) in cells.iter().enumerate().take(3) {
            entry(&ledger, cell, 100, i as u64 + 1);
        }
        // The plan judged 0, 1 and 2: 2 is the least likely, then 0, then 1.
        ledger.plan(Some(300), [&*cells[2], &*cells[0], &*cells[1]]);
        // Loads on demand since: 3 (used at 10), 4 (used at 7) and 5 (used at 5, just loaded).
        entry(&ledger, &cells[3], 100, 10);
        entry(&ledger, &cells[4], 100, 7);
        entry(&ledger, &cells[5], 100, 5);
        assert_eq!(ledger.figures().bytes, 600);
        let victim =
            |ledger: &LoadedCode| ledger.state.lock().unwrap().victim(cells[5].id).unwrap().0;
        assert_eq!(victim(&ledger), cells[2].id);
        ledger.make_room(&cells[5]);
        let left = |ledger: &LoadedCode| {
            let mut ids: Vec<u64> = ledger
                .state
                .lock()
                .unwrap()
                .entries
                .keys()
                .copied()
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(left(&ledger), [cells[3].id, cells[4].id, cells[5].id]);
        assert_eq!(ledger.figures().bytes, 300);
        // With the plan's modules gone, the least recently used of the others goes.
        entry(&ledger, &cells[0], 100, 11);
        ledger.make_room(&cells[0]);
        assert_eq!(left(&ledger), [cells[0].id, cells[3].id, cells[4].id]);
    }

    #[test]
    fn the_module_just_loaded_stays_even_alone_over_the_limit_and_unbounded_evicts_nothing() {
        let ledger = LoadedCode::new(Some(50));
        let cell = ledger.cell(false);
        entry(&ledger, &cell, 100, 1);
        assert_eq!(ledger.make_room(&cell), 0);
        assert_eq!(ledger.figures().bytes, 100);
        let unbounded = LoadedCode::new(None);
        let (a, b) = (unbounded.cell(false), unbounded.cell(false));
        entry(&unbounded, &a, 1 << 40, 1);
        entry(&unbounded, &b, 1 << 40, 2);
        assert_eq!(unbounded.make_room(&b), 0);
    }

    #[test]
    fn a_dropped_version_leaves_the_ledger_at_the_next_room_making() {
        let ledger = LoadedCode::new(Some(100));
        let (gone, kept) = (ledger.cell(false), ledger.cell(false));
        entry(&ledger, &gone, 100, 1);
        entry(&ledger, &kept, 100, 2);
        drop(gone);
        ledger.make_room(&kept);
        assert_eq!(ledger.figures().bytes, 100);
    }
}
