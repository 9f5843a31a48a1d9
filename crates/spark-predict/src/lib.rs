//! Demand prediction and warmth planning for Spark: what the node runs live to decide which
//! modules to keep warm. Pure logic: no clocks, no I/O, no Wasmtime, no async. Time is an
//! argument (the model's minutes as `f64`, or Unix milliseconds in [`live`]), so every result
//! is deterministic and replayable; the B4 simulator (`spark-sim`, an offline tool the node
//! does not link) replays this same code over traces.
//!
//! # Tour
//!
//! ```
//! use spark_predict::live::{DemandModel, LevelCosts, ModuleDemand, WarmthLevel, WarmthPlanner};
//!
//! let mut demand = DemandModel::new();
//! for k in 0..24u64 {
//!     demand.observe("report-job", k * 600_000 + 30_000, 1); // every 10 minutes
//! }
//! let now = 23 * 600_000 + 90_000;
//! let forecast = demand.forecast("report-job", now).unwrap();
//! assert_eq!(forecast.period_ms, Some(600_000));
//! let costs = LevelCosts { load_bytes: 8 << 20, load_ms: 8.0, instance_bytes: 1 << 20, instantiate_ms: 1.0 };
//! // One second of cold start of a once-a-day module is worth 100 GB-minutes of memory.
//! let planner = WarmthPlanner { budget_bytes: 64 << 20, horizon_ms: 600_000, exchange: 100_000.0 };
//! let plan = planner.plan(&[ModuleDemand { module: "report-job", forecast: &forecast, costs }], 0.0);
//! assert_eq!(plan.targets[0], ("report-job".to_owned(), WarmthLevel::Ready(1)));
//! ```
//!
//! # Concepts
//!
//! - **The model** ([`model::AppModel`]): per application (module), a mixture of experts, each
//!   predicting the gap from the last call to the next as a survival function: the last gaps
//!   as precisely as they have repeated (timers, to the second when they run to the second),
//!   the last gaps loosely (bursts), a decayed log-binned idle-time
//!   histogram (the hybrid policy's view, without its 4-hour limit), a Poisson rate over the
//!   last hour, a Poisson rate with an uncertain long-run rate (a Lomax: its hazard falls as
//!   the quiet lasts), a phase expert (period detected by autocorrelation of burst starts,
//!   predicting in absolute time, so a timer mixed with other calls keeps its schedule), a
//!   time-of-day profile (after two days), and a heavy-tailed prior. Weights are the softmax of
//!   each expert's out-of-sample log-score with forgetting. Output: `P(call within x)` and
//!   quantiles of the next call, in [`live::Forecast`] for the node.
//! - **The hybrid baseline** ([`hybrid`]): the histogram policy of Shahrad et al. (ATC 2020)
//!   that B4 measures Spark against; a node may run it instead of prediction, so the baseline
//!   is replayed live with the simulator's code.
//! - **The decision rule** ([`policy`], [`live::WarmthPlanner`]): expected value. A
//!   minute after the last call is kept loaded when `value x P(call in it) > memory x expected
//!   idle time in it`; the value of a cold start is `budget / sqrt(calls per day)`. The budget
//!   is the memory budget's exchange rate (its Lagrange multiplier): the simulator sweeps it to
//!   trace the trade-off curve and to match each baseline's wasted memory; the planner applies
//!   the same rule per warmth level and then fills a byte budget by value per byte.
//!
//! # Invariants
//!
//! - The model learns from calls only, never from the decisions taken on its forecasts.
//! - The node and the simulator run the same [`model::AppModel`] and the same rule
//!   ([`policy::cold_start_weight`], [`policy::critical_budget`]); a restored
//!   [`model::HistorySnapshot`] forecasts what a replay of the same minutes would.
//! - This crate depends on no other Spark crate; `spark-sim` depends on it, never the other
//!   way, so the node links the model and the planner but not the simulator.
//!
//! See `DESIGN.md` next to this crate for the reasoning; `spark-sim`'s for the simulator and
//! the measured results.

pub mod hybrid;
pub mod live;
pub mod model;
pub mod policy;
