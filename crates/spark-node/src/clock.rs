//! The node's one clock: monotonic time for the control side's loops, wall time for the
//! timestamps they write, and the tickers that pace them.
//!
//! Everything that decides when to act (the orchestrator's loop, the warmth controller, the
//! rollout driver) and every timestamp they record (decisions, events, releases, model time,
//! heartbeats) reads a [`Clock`] given to it at construction, never the system directly. In
//! production that is [`Clock::system`]; tests hold a [`ManualClock`] and move time forward
//! themselves. The data plane keeps `Instant::now` for what it measures (latency, CPU pacing,
//! deadlines): those are facts about real time, not decisions.
//!
//! The decision worth knowing: [`ManualClock::advance`] returns only when every loop it woke
//! has finished its tick and is waiting for the next one. A loop registers a [`Ticker`] before
//! its task is spawned, and a ticker is *busy* from its creation (or from the tick it returned)
//! until it waits again. So "advance 1 s" means "run exactly the ticks due within that second,
//! in order, to completion": a test asserts right after it, with nothing to poll or sleep for.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long [`ManualClock::advance`] waits for a busy loop before it calls the test stuck.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// Monotonic and wall time, and sleeping until a moment. Cheap to clone; clones share time.
#[derive(Clone)]
pub struct Clock {
    source: Source,
}

#[derive(Clone)]
enum Source {
    System { origin: Instant },
    Manual(Arc<Manual>),
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::System { .. } => f.write_str("Clock::System"),
            Source::Manual(_) => write!(f, "Clock::Manual({:?})", self.now()),
        }
    }
}

impl Clock {
    /// The machine's clocks.
    pub fn system() -> Clock {
        Clock {
            source: Source::System {
                origin: Instant::now(),
            },
        }
    }

    /// Monotonic time since this clock started.
    pub fn now(&self) -> Duration {
        match &self.source {
            Source::System { origin } => origin.elapsed(),
            Source::Manual(manual) => manual.lock().now,
        }
    }

    /// Wall time, Unix milliseconds.
    pub fn unix_ms(&self) -> u64 {
        match &self.source {
            Source::System { .. } => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            Source::Manual(manual) => {
                let state = manual.lock();
                state.unix_origin_ms + state.now.as_millis() as u64
            }
        }
    }

    /// Waits until [`Clock::now`] reaches `deadline`.
    pub async fn sleep_until(&self, deadline: Duration) {
        match &self.source {
            Source::System { origin } => {
                tokio::time::sleep_until(tokio::time::Instant::from_std(*origin + deadline)).await
            }
            Source::Manual(manual) => {
                Wait {
                    manual: manual.clone(),
                    id: manual.register(Waiter::sleep(deadline)),
                    deadline,
                }
                .await
            }
        }
    }

    /// A ticker firing at once and then every `period`; a tick that comes late delays the
    /// ones after it rather than bunching them (Tokio's `MissedTickBehavior::Delay`). `name`
    /// says which loop it paces, for a manual clock's diagnostics.
    pub fn ticker(&self, name: &'static str, period: Duration) -> Ticker {
        let kind = match &self.source {
            Source::System { .. } => {
                let mut interval = tokio::time::interval(period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                TickerKind::System(interval)
            }
            Source::Manual(manual) => TickerKind::Manual {
                manual: manual.clone(),
                id: manual.register(Waiter::ticker(name)),
                next: None,
                period,
            },
        };
        Ticker { kind }
    }
}

/// Paces a loop; see [`Clock::ticker`].
pub struct Ticker {
    kind: TickerKind,
}

enum TickerKind {
    System(tokio::time::Interval),
    Manual {
        manual: Arc<Manual>,
        id: u64,
        next: Option<Duration>,
        period: Duration,
    },
}

impl Ticker {
    /// Waits for the next tick. Cancel-safe: a dropped call leaves the tick due.
    pub async fn tick(&mut self) {
        match &mut self.kind {
            TickerKind::System(interval) => {
                interval.tick().await;
            }
            TickerKind::Manual {
                manual,
                id,
                next,
                period,
            } => {
                let deadline = *next.get_or_insert_with(|| manual.lock().now);
                Wait {
                    manual: manual.clone(),
                    id: *id,
                    deadline,
                }
                .await;
                *next = Some(deadline + *period);
            }
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if let TickerKind::Manual { manual, id, .. } = &self.kind {
            manual.unregister(*id);
        }
    }
}

/// A clock that moves only when told to, for tests. Starts at the current wall time (so
/// timestamps look like today's) and at monotonic zero.
#[derive(Clone)]
pub struct ManualClock {
    manual: Arc<Manual>,
}

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock::new()
    }
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.clock().fmt(f)
    }
}

impl ManualClock {
    /// A manual clock whose wall time starts at the system's current time.
    pub fn new() -> ManualClock {
        ManualClock::starting_at(Clock::system().unix_ms())
    }

    /// A manual clock whose wall time starts at `unix_ms`.
    pub fn starting_at(unix_ms: u64) -> ManualClock {
        ManualClock {
            manual: Arc::new(Manual {
                state: Mutex::new(State {
                    now: Duration::ZERO,
                    unix_origin_ms: unix_ms,
                    next_id: 0,
                    waiters: BTreeMap::new(),
                }),
                changed: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The clock to give the code under test.
    pub fn clock(&self) -> Clock {
        Clock {
            source: Source::Manual(self.manual.clone()),
        }
    }

    /// Moves time forward by `by`, one due deadline at a time: at each, the ticks and sleeps
    /// due are woken and run to completion (every ticker waiting again) before time moves on.
    /// Returns when time is `now + by` and every ticker is waiting.
    ///
    /// # Panics
    /// If a ticking loop stays busy for two minutes of real time (a hung test).
    pub async fn advance(&self, by: Duration) {
        let target = self.manual.lock().now + by;
        loop {
            self.settle().await;
            let mut state = self.manual.lock();
            let now = state.now;
            // Every waiter registered while its deadline was still to come, so the next
            // moment to stop at is the earliest deadline after now.
            let due = state
                .waiters
                .values()
                .filter_map(|w| w.deadline)
                .filter(|&d| d > now && d <= target)
                .min();
            state.now = due.unwrap_or(target);
            let now = state.now;
            let wake: Vec<Waker> = state
                .waiters
                .values_mut()
                .filter(|w| w.deadline.is_some_and(|d| d <= now))
                .filter_map(|w| w.waker.take())
                .collect();
            drop(state);
            wake.into_iter().for_each(Waker::wake);
            if due.is_none() {
                break;
            }
        }
        self.settle().await;
    }

    /// Waits until every ticker is waiting for a moment still to come (its loop has finished
    /// the ticks due so far).
    ///
    /// # Panics
    /// If that takes more than two minutes of real time.
    pub async fn settle(&self) {
        loop {
            let changed = self.manual.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let busy = self.manual.busy();
            if busy.is_empty() {
                return;
            }
            if tokio::time::timeout(SETTLE_LIMIT, changed).await.is_err() {
                panic!("the manual clock's loops never settled; still busy: {busy:?}");
            }
        }
    }
}

struct Manual {
    state: Mutex<State>,
    /// Signalled whenever a ticker starts waiting or goes away.
    changed: tokio::sync::Notify,
}

struct State {
    now: Duration,
    unix_origin_ms: u64,
    next_id: u64,
    waiters: BTreeMap<u64, Waiter>,
}

/// A ticker (tracked: busy until it waits again) or a one-off sleep.
struct Waiter {
    ticker: Option<&'static str>,
    /// `Some` while waiting.
    deadline: Option<Duration>,
    waker: Option<Waker>,
}

impl Waiter {
    fn ticker(name: &'static str) -> Waiter {
        Waiter {
            ticker: Some(name),
            deadline: None,
            waker: None,
        }
    }

    fn sleep(deadline: Duration) -> Waiter {
        Waiter {
            ticker: None,
            deadline: Some(deadline),
            waker: None,
        }
    }
}

impl Manual {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("manual clock lock")
    }

    fn register(&self, waiter: Waiter) -> u64 {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.waiters.insert(id, waiter);
        id
    }

    fn unregister(&self, id: u64) {
        self.lock().waiters.remove(&id);
        self.changed.notify_waiters();
    }

    /// Tickers running a tick (or due and about to).
    fn busy(&self) -> Vec<&'static str> {
        let state = self.lock();
        state
            .waiters
            .values()
            .filter_map(|w| {
                let name = w.ticker?;
                let waiting = w.deadline.is_some_and(|d| d > state.now);
                (!waiting).then_some(name)
            })
            .collect()
    }
}

/// Waits on a manual clock until `deadline`; a ticker's wait marks it busy when it completes.
struct Wait {
    manual: Arc<Manual>,
    id: u64,
    deadline: Duration,
}

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.manual.lock();
        let now = state.now;
        let Some(waiter) = state.waiters.get_mut(&self.id) else {
            return Poll::Ready(());
        };
        if now >= self.deadline {
            waiter.deadline = None;
            waiter.waker = None;
            if waiter.ticker.is_none() {
                state.waiters.remove(&self.id);
            }
            return Poll::Ready(());
        }
        let newly_waiting = waiter.deadline.is_none();
        waiter.deadline = Some(self.deadline);
        waiter.waker = Some(cx.waker().clone());
        drop(state);
        if newly_waiting {
            self.manual.changed.notify_waiters();
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        let mut state = self.manual.lock();
        let sleep = state
            .waiters
            .get(&self.id)
            .is_some_and(|w| w.ticker.is_none());
        if sleep {
            state.waiters.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn advancing_runs_each_due_tick_to_completion_in_order() {
        let manual = ManualClock::starting_at(1_000);
        let clock = manual.clock();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut ticker = clock.ticker("test", Duration::from_millis(200));
        let (c, s) = (clock.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                ticker.tick().await;
                // Work that takes real time: the clock waits for it.
                tokio::task::yield_now().await;
                s.lock().unwrap().push((c.now().as_millis(), c.unix_ms()));
            }
        });
        manual.settle().await;
        assert_eq!(
            *seen.lock().unwrap(),
            [(0, 1_000)],
            "the first tick is at once"
        );
        manual.advance(Duration::from_millis(500)).await;
        assert_eq!(
            *seen.lock().unwrap(),
            [(0, 1_000), (200, 1_200), (400, 1_400)]
        );
        assert_eq!(clock.now(), Duration::from_millis(500));
        manual.advance(Duration::from_millis(100)).await;
        assert_eq!(seen.lock().unwrap().len(), 4, "the tick at 600 ms ran");
        task.abort();
        let _ = task.await;
        manual.advance(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_sleep_wakes_when_time_passes_its_deadline() {
        let manual = ManualClock::new();
        let clock = manual.clock();
        let woke = Arc::new(AtomicU32::new(0));
        let (c, w) = (clock.clone(), woke.clone());
        let task = tokio::spawn(async move {
            c.sleep_until(Duration::from_secs(3)).await;
            w.fetch_add(1, Ordering::SeqCst);
        });
        tokio::task::yield_now().await;
        manual.advance(Duration::from_secs(2)).await;
        assert_eq!(woke.load(Ordering::SeqCst), 0);
        manual.advance(Duration::from_secs(2)).await;
        task.await.unwrap();
        assert_eq!(woke.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_dropped_ticker_no_longer_holds_time_back() {
        let manual = ManualClock::new();
        let ticker = manual
            .clock()
            .ticker("never polled", Duration::from_secs(1));
        drop(ticker);
        manual.advance(Duration::from_secs(5)).await;
        assert_eq!(manual.clock().now(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_system_clock_ticks_at_once_then_every_period() {
        let clock = Clock::system();
        let mut ticker = clock.ticker("test", Duration::from_millis(20));
        let start = clock.now();
        ticker.tick().await;
        ticker.tick().await;
        assert!(clock.now() - start >= Duration::from_millis(15));
        assert!(clock.unix_ms() > 1_600_000_000_000);
    }
}
