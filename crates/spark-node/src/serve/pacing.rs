//! The CPU-share actuator: one [`ModulePacer`] per module, consulted by the runtime at every
//! epoch tick of the module's guests. Without a share it answers at once (an atomic load);
//! with one it charges the module's CPU to a [`ShareBucket`] and makes the guest sleep off any
//! debt. Changing the share takes effect at the guests' next tick: nothing restarts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spark_orchestrator::share::ShareBucket;
use spark_runtime::{ModuleStats, PaceFuture, Pacer};

/// Debt a module may run up before it waits (smooths the 5 ms ticks).
const BURST: Duration = Duration::from_millis(20);

struct Shared {
    share: f64,
    bucket: ShareBucket,
    last_cpu_ns: u64,
}

/// Enforces one module's CPU share.
pub struct ModulePacer {
    active: AtomicBool,
    state: Mutex<Option<Shared>>,
    cpus: f64,
    origin: Instant,
    waited_ns: AtomicU64,
    waits: AtomicU64,
}

impl ModulePacer {
    pub fn new(cpus: f64) -> ModulePacer {
        ModulePacer {
            active: AtomicBool::new(false),
            state: Mutex::new(None),
            cpus,
            origin: Instant::now(),
            waited_ns: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        }
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Sets (or lifts, with `None`) the module's share of the node's CPU.
    pub fn set_share(&self, share: Option<f64>, stats: &ModuleStats) {
        let mut state = self.state.lock().expect("pacer lock");
        let now = self.now_ns();
        *state = match (share, state.take()) {
            (None, _) => None,
            (Some(share), Some(mut shared)) => {
                shared.bucket.set_share(share, self.cpus, now);
                shared.share = share;
                Some(shared)
            }
            (Some(share), None) => Some(Shared {
                share,
                bucket: ShareBucket::new(share, self.cpus, BURST, now),
                last_cpu_ns: stats.cpu_time().as_nanos() as u64,
            }),
        };
        self.active.store(state.is_some(), Ordering::Release);
    }

    /// The share in force, if any.
    pub fn share(&self) -> Option<f64> {
        self.state
            .lock()
            .expect("pacer lock")
            .as_ref()
            .map(|s| s.share)
    }

    /// Total time the module's guests were made to wait.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed))
    }

    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }
}

impl Pacer for ModulePacer {
    fn on_tick(&self, stats: &ModuleStats) -> Option<PaceFuture> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let wait = {
            let mut state = self.state.lock().expect("pacer lock");
            let shared = state.as_mut()?;
            let cpu = stats.cpu_time().as_nanos() as u64;
            let used = cpu.saturating_sub(shared.last_cpu_ns);
            shared.last_cpu_ns = cpu;
            shared.bucket.charge(self.now_ns(), used)?
        };
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.waited_ns
            .fetch_add(wait.as_nanos() as u64, Ordering::Relaxed);
        Some(Box::pin(tokio::time::sleep(wait)))
    }
}
