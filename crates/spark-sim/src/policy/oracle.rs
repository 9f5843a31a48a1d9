//! The oracle: knows every application's next call, so it is the floor of any policy.
//!
//! Decision worth knowing: it loads the instance exactly at the next arrival (a zero-length
//! window), so it wastes no memory and is cold only on an app's first-ever call, which no
//! policy can know. It is the only policy built from the trace itself rather than from
//! [`AppInfo`].

use crate::replay::{AppInfo, AppPolicy, Policy, Segment};
use crate::trace::TraceSet;

/// Knows the future of every app of one trace.
#[derive(Debug, Clone, Copy)]
pub struct Oracle<'a> {
    trace: &'a TraceSet,
}

impl<'a> Oracle<'a> {
    /// An oracle for `trace` (apps are matched by [`AppInfo::index`]).
    pub fn new(trace: &'a TraceSet) -> Self {
        Oracle { trace }
    }
}

/// Per-app oracle state: the app's arrivals and how far the replay is.
#[derive(Debug, Clone)]
pub struct OracleApp {
    arrivals: Vec<f64>,
    next: usize,
}

impl Policy for Oracle<'_> {
    type App = OracleApp;

    fn name(&self) -> String {
        "oracle".to_owned()
    }

    fn for_app(&self, info: &AppInfo) -> OracleApp {
        OracleApp {
            arrivals: self.trace.apps[info.index].arrivals().collect(),
            next: 0,
        }
    }
}

impl AppPolicy for OracleApp {
    type Plan<'a> = std::iter::Take<std::array::IntoIter<Segment, 2>>;

    fn on_arrival(&mut self, t: f64) {
        while self.next < self.arrivals.len() && self.arrivals[self.next] <= t {
            self.next += 1;
        }
    }

    fn plan_idle(&mut self, idle_start: f64) -> Self::Plan<'_> {
        let next = self.arrivals.get(self.next).copied();
        let t = next.unwrap_or(idle_start);
        let plan = [Segment::unloaded(idle_start, t), Segment::loaded(t, t)];
        plan.into_iter().take(if next.is_some() { 2 } else { 0 })
    }
}
