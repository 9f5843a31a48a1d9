//! Which modules had work since a watcher last looked, so that the control loop and the
//! warmth controller read the counters of the modules that did something, not of every module
//! registered: with thousands of modules on a node and a few busy, a tick's cost follows the
//! busy ones.
//!
//! The request path marks a module when a request reaches it, when it is admitted and when
//! the request ends (served, refused or abandoned: `ModuleSlot::finished` and `refused`, which
//! a client's disconnect reaches through the request's record guard); the warmth controller
//! marks a module it loads. A mark holds nothing, so a request dropped at any await leaves
//! nothing behind. Each watcher
//! drains its own list once per tick. A mark costs a relaxed load when the module is already
//! listed (the common case under load) and a short lock the first time in a tick.
//!
//! Nothing is lost between a drain and a mark: a drain clears a module's flag (an acquire
//! swap) before the watcher reads its counters, and a mark is made after the counters it
//! stands for have moved, so either the watcher's read sees them or the mark lists the module
//! again for the next tick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Who reads the lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watcher {
    /// The orchestrator's control loop.
    Control = 0,
    /// The predictor's warmth controller.
    Warmth = 1,
}

const WATCHERS: usize = 2;

/// The node's lists of modules marked since each watcher's last drain. A watcher that does
/// not run (the orchestrator switched off) has no list, so nothing piles up for it.
#[derive(Debug)]
pub struct ActivityLog {
    lists: [Option<Mutex<Vec<Weak<Activity>>>>; WATCHERS],
}

impl ActivityLog {
    /// Lists for the watchers that run on this node.
    pub(crate) fn new(control: bool) -> Arc<ActivityLog> {
        Arc::new(ActivityLog {
            lists: [control.then(Mutex::default), Some(Mutex::default())],
        })
    }

    /// A module's handle on the log.
    pub(crate) fn activity(self: &Arc<Self>, module: &str) -> Arc<Activity> {
        Arc::new(Activity {
            module: module.to_owned(),
            log: Arc::downgrade(self),
            listed: [AtomicBool::new(false), AtomicBool::new(false)],
        })
    }

    /// The modules marked for `watcher` since its last drain, each once, their flags cleared
    /// (so their next mark lists them again). Read their counters after this call.
    pub(crate) fn drain(&self, watcher: Watcher) -> Vec<Arc<Activity>> {
        let Some(list) = &self.lists[watcher as usize] else {
            return Vec::new();
        };
        let marked = std::mem::take(&mut *list.lock().expect("activity list"));
        marked
            .into_iter()
            .filter_map(|weak| weak.upgrade())
            .inspect(|activity| {
                activity.listed[watcher as usize].swap(false, Ordering::AcqRel);
            })
            .collect()
    }
}

/// One module version's marks: whether it is on each watcher's list.
#[derive(Debug)]
pub struct Activity {
    module: String,
    log: Weak<ActivityLog>,
    listed: [AtomicBool; WATCHERS],
}

impl Activity {
    /// The module (its id; a canary's marks name the module it rolls out).
    pub(crate) fn module(&self) -> &str {
        &self.module
    }

    /// Something happened to the module: lists it for every watcher it is not listed for yet.
    pub fn mark(self: &Arc<Self>) {
        for (watcher, listed) in self.listed.iter().enumerate() {
            if listed.load(Ordering::Relaxed) || listed.swap(true, Ordering::AcqRel) {
                continue;
            }
            let Some(log) = self.log.upgrade() else {
                return;
            };
            if let Some(list) = &log.lists[watcher] {
                list.lock()
                    .expect("activity list")
                    .push(Arc::downgrade(self));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_is_listed_once_per_drain_and_again_after_it() {
        let log = ActivityLog::new(true);
        let (a, b) = (log.activity("a"), log.activity("b"));
        a.mark();
        a.mark();
        b.mark();
        let names = |drained: Vec<Arc<Activity>>| -> Vec<String> {
            drained.iter().map(|a| a.module().to_owned()).collect()
        };
        assert_eq!(names(log.drain(Watcher::Control)), ["a", "b"]);
        assert!(log.drain(Watcher::Control).is_empty(), "nothing new");
        assert_eq!(
            names(log.drain(Watcher::Warmth)),
            ["a", "b"],
            "each watcher has its own list"
        );
        a.mark();
        assert_eq!(names(log.drain(Watcher::Control)), ["a"]);
        assert_eq!(names(log.drain(Watcher::Warmth)), ["a"]);
    }

    #[test]
    fn nothing_piles_up_for_a_watcher_that_does_not_run_or_a_module_gone() {
        let log = ActivityLog::new(false);
        let a = log.activity("a");
        a.mark();
        assert!(log.drain(Watcher::Control).is_empty());
        assert!(log.lists[Watcher::Control as usize].is_none());
        let gone = log.activity("gone");
        gone.mark();
        drop(gone);
        let drained = log.drain(Watcher::Warmth);
        assert_eq!(drained.len(), 1, "a dropped module's mark is skipped");
        assert_eq!(drained[0].module(), "a");
    }
}
