//! The simulator is honest: no policy sees a future call. Removing every call after the split
//! (minute 720 of a day) must change no decision any policy takes about the first half: the
//! plans of every idle period that starts before the split (cut at the split, and read at most
//! [`READ_AHEAD`] minutes ahead to keep the test fast), and the first-half outcome of every app
//! (calls, cold starts, wasted memory), which covers every plan however far it is read. A
//! policy that peeks at the trace is the negative control: the same check catches it.

use spark_sim::TraceSet;
use spark_sim::policy::{FixedKeepAlive, Hybrid, Spark, SparkFamily, hybrid_family};
use spark_sim::replay::{
    AppInfo, AppOutcome, AppPolicy, BudgetedApp, BudgetedPolicy, Critical, Horizon, Policy,
    Segment, app_info, simulate_app, sweep_app,
};
use spark_sim::synth::{self, Pattern};

const SPLIT: f64 = 720.0;
/// How far into an idle period its plan is recorded (minutes).
const READ_AHEAD: f64 = 120.0;

/// A day of mixed synthetic apps and a few shapes that straddle the split.
fn day() -> TraceSet {
    let mut t = synth::mixed(24, 1440, 23);
    let extra = synth::trace(
        &[
            Pattern::Timer {
                period: 60,
                phase: 50,
            },
            Pattern::Once { minute: 700 },
            Pattern::Once { minute: 900 },
            Pattern::Bursty {
                start_per_min: 0.01,
                length: 5,
                per_min_in_burst: 3.0,
            },
        ],
        1440,
        800.0,
        5,
    );
    t.apps.extend(extra.apps);
    t
}

/// The same trace with every call at or after the split removed.
fn first_half(trace: &TraceSet) -> TraceSet {
    let mut t = trace.clone();
    for app in &mut t.apps {
        app.counts.retain(|&(m, _)| f64::from(m) < SPLIT);
    }
    t
}

/// What a policy decided about the first half: for each idle period starting before the split,
/// its start and its loaded stretches cut at the split.
type Log = Vec<(f64, Vec<(f64, f64)>)>;

/// The same for a budgeted policy: stretches `(start, end, critical budget)`.
type BudgetLog = Vec<(f64, Vec<(f64, f64, f64)>)>;

/// Wraps a policy's per-app state and records its first-half decisions.
struct Recorder<A> {
    inner: A,
    log: Log,
}

impl<A: AppPolicy> AppPolicy for Recorder<A> {
    type Plan<'a>
        = std::iter::Chain<std::vec::IntoIter<Segment>, A::Plan<'a>>
    where
        Self: 'a;

    fn on_arrival(&mut self, t: f64) {
        self.inner.on_arrival(t);
    }

    fn plan_idle(&mut self, idle_start: f64) -> Self::Plan<'_> {
        let mut plan = self.inner.plan_idle(idle_start);
        let mut head = Vec::new();
        if idle_start < SPLIT {
            let mut loaded = Vec::new();
            for seg in plan.by_ref() {
                head.push(seg);
                if seg.loaded && seg.start < SPLIT {
                    loaded.push((seg.start, seg.end.min(SPLIT)));
                }
                if seg.end >= SPLIT.min(idle_start + READ_AHEAD) {
                    break;
                }
            }
            self.log.push((idle_start, loaded));
        }
        head.into_iter().chain(plan)
    }
}

/// The same for a budgeted policy (every budget at once): stretches with their critical budget.
struct BudgetRecorder<A> {
    inner: A,
    log: BudgetLog,
}

impl<A: BudgetedApp> BudgetedApp for BudgetRecorder<A> {
    type Bins<'a>
        = std::iter::Chain<std::vec::IntoIter<Critical>, A::Bins<'a>>
    where
        Self: 'a;

    fn on_arrival(&mut self, t: f64) {
        self.inner.on_arrival(t);
    }

    fn critical_plan(&mut self, idle_start: f64) -> Self::Bins<'_> {
        let mut plan = self.inner.critical_plan(idle_start);
        let mut head = Vec::new();
        if idle_start < SPLIT {
            let mut cut = Vec::new();
            for c in plan.by_ref() {
                head.push(c);
                if c.start < SPLIT {
                    cut.push((c.start, c.end.min(SPLIT), c.budget));
                }
                if c.end >= SPLIT.min(idle_start + READ_AHEAD) {
                    break;
                }
            }
            self.log.push((idle_start, cut));
        }
        head.into_iter().chain(plan)
    }
}

/// First-half figures of one app: calls, cold starts, wasted MB-minutes.
fn first_part(o: &AppOutcome) -> (u64, u64, f64) {
    (
        o.whole.invocations - o.scored.invocations,
        o.whole.cold - o.scored.cold,
        o.whole.wasted_mb_min - o.scored.wasted_mb_min,
    )
}

/// Replays every app of `trace` through `policy`, recorded.
fn replay<P: Policy>(trace: &TraceSet, policy: &P) -> Vec<(Log, (u64, u64, f64))> {
    let horizon = Horizon {
        split: SPLIT,
        end: trace.minutes as f64,
    };
    trace
        .apps
        .iter()
        .enumerate()
        .map(|(i, app)| {
            let info = app_info(i, app);
            let mut rec = Recorder {
                inner: policy.for_app(&info),
                log: Vec::new(),
            };
            let out = simulate_app(app.arrivals(), &info, &mut rec, horizon);
            (rec.log, first_part(&out))
        })
        .collect()
}

/// Checks that `policy` decides the first half alike with and without the second half's calls.
fn check_policy<P: Policy>(full: &TraceSet, cut: &TraceSet, policy: &P) -> Result<(), String> {
    let (a, b) = (replay(full, policy), replay(cut, policy));
    for (i, ((log_a, out_a), (log_b, out_b))) in a.iter().zip(&b).enumerate() {
        if log_a != log_b {
            return Err(format!("{}: app {i} plans differ", policy.name()));
        }
        let same_waste = (out_a.2 - out_b.2).abs() <= 1e-9 * out_a.2.abs().max(1.0);
        if (out_a.0, out_a.1) != (out_b.0, out_b.1) || !same_waste {
            return Err(format!(
                "{}: app {i} first half {out_a:?} vs {out_b:?}",
                policy.name()
            ));
        }
    }
    Ok(())
}

#[test]
fn removing_the_second_half_changes_no_first_half_decision() {
    let full = day();
    let cut = first_half(&full);
    assert!(full.invocations() > cut.invocations() && cut.invocations() > 0);
    check_policy(&full, &cut, &FixedKeepAlive::default()).unwrap();
    check_policy(&full, &cut, &FixedKeepAlive { minutes: 60.0 }).unwrap();
    for (_, hybrid) in hybrid_family() {
        check_policy(&full, &cut, &hybrid).unwrap();
    }
    check_policy(&full, &cut, &Hybrid::default()).unwrap();
    for budget in [1e3, 1e6] {
        check_policy(&full, &cut, &Spark { budget }).unwrap();
    }
}

#[test]
fn the_budget_sweep_decides_the_first_half_alike_too() {
    let full = day();
    let cut = first_half(&full);
    let budgets = spark_sim::b4::log_grid(1e2, 1e9, 4);
    let horizon = Horizon {
        split: SPLIT,
        end: 1440.0,
    };
    for (i, (a, b)) in full.apps.iter().zip(&cut.apps).enumerate() {
        let info = app_info(i, a);
        let run = |app: &spark_sim::trace::AppTrace| {
            let mut rec = BudgetRecorder {
                inner: SparkFamily.for_app(&info),
                log: Vec::new(),
            };
            let out = sweep_app(app.arrivals(), &info, &mut rec, &budgets, horizon);
            let firsts: Vec<(u64, u64)> = out
                .iter()
                .map(|o| (first_part(o).0, first_part(o).1))
                .collect();
            (rec.log, firsts)
        };
        assert_eq!(run(a), run(b), "app {i}");
    }
}

/// A cheating policy: keeps an app loaded through the first half if it has any call in the
/// second half (it reads the trace).
struct Peeking<'a>(&'a TraceSet);

struct PeekingApp(bool);

impl Policy for Peeking<'_> {
    type App = PeekingApp;

    fn name(&self) -> String {
        "peeking".to_owned()
    }

    fn for_app(&self, info: &AppInfo) -> PeekingApp {
        PeekingApp(self.0.apps[info.index].arrivals().any(|t| t >= SPLIT))
    }
}

impl AppPolicy for PeekingApp {
    type Plan<'a> = std::iter::Once<Segment>;

    fn on_arrival(&mut self, _t: f64) {}

    fn plan_idle(&mut self, idle_start: f64) -> Self::Plan<'_> {
        let keep = if self.0 {
            SPLIT + 1.0
        } else {
            idle_start + 1.0
        };
        std::iter::once(Segment::loaded(idle_start, keep))
    }
}

#[test]
fn the_check_catches_a_policy_that_peeks() {
    let full = day();
    let cut = first_half(&full);
    // Each run peeks at the trace it replays, as a leaky simulator would let it.
    let a = replay(&full, &Peeking(&full));
    let b = replay(&cut, &Peeking(&cut));
    assert_ne!(a, b, "the peeking policy must be caught");
}
