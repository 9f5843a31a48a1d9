//! Fixed keep-alive: keep the instance loaded for a fixed time after every execution.
//!
//! Decision worth knowing: this is what most platforms do (a 10-minute idle timeout in B4, the
//! 1-second one in `wasmtime serve`); it learns nothing, so it is the baseline every learned
//! policy must beat at equal memory.

use crate::replay::{AppInfo, AppPolicy, Policy, Segment};

/// B4's fixed keep-alive, in minutes.
pub const FIXED_KEEP_ALIVE_MIN: f64 = 10.0;

/// Keep loaded for `minutes` after each execution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedKeepAlive {
    /// Keep-alive after the end of an execution, minutes.
    pub minutes: f64,
}

impl Default for FixedKeepAlive {
    fn default() -> Self {
        FixedKeepAlive {
            minutes: FIXED_KEEP_ALIVE_MIN,
        }
    }
}

impl Policy for FixedKeepAlive {
    type App = FixedKeepAlive;

    fn name(&self) -> String {
        format!("fixed-{}min", self.minutes)
    }

    fn for_app(&self, _info: &AppInfo) -> FixedKeepAlive {
        *self
    }
}

impl AppPolicy for FixedKeepAlive {
    type Plan<'a> = std::iter::Once<Segment>;

    fn on_arrival(&mut self, _t: f64) {}

    fn plan_idle(&mut self, idle_start: f64) -> Self::Plan<'_> {
        std::iter::once(Segment::loaded(idle_start, idle_start + self.minutes))
    }
}
