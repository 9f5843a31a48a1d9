//! The B4 simulator: traces in the Azure Functions 2019 format parsed into a [`TraceSet`],
//! keep-alive policies replayed over them in simulated time, budget sweeps, and the report
//! (table, JSON, SVG plots, the `B4:` summary line). An offline tool: `spark sim`, the
//! `examples/`, the live replay benchmark (`spark bench replay`) and the fuzzer use it; the
//! node never links it.
//!
//! # Tour
//!
//! ```
//! use spark_sim::policy::{FixedKeepAlive, Spark};
//! use spark_sim::replay::{Horizon, score, simulate};
//! use spark_sim::synth::{self, Pattern};
//!
//! // Two apps for a day: an hourly timer and a one-off call.
//! let trace = synth::trace(
//!     &[Pattern::Timer { period: 60, phase: 5 }, Pattern::Once { minute: 30 }],
//!     1440,
//!     200.0,
//!     1,
//! );
//! let horizon = Horizon::of(&trace, 0.5);
//! let fixed = score(&simulate(&trace, &FixedKeepAlive::default(), horizon));
//! let spark = score(&simulate(&trace, &Spark { budget: 1e6 }, horizon));
//! assert!(spark.scored.cold_starts <= fixed.scored.cold_starts);
//! ```
//!
//! [`run_b4`] runs the whole benchmark on a trace: every policy, the hybrid family, Spark's
//! trade-off curve, Spark matched to each baseline's wasted memory (and calibrated on the part
//! before scoring, as a live node must); [`report`] renders the [`Report`];
//! [`robust::robustness`] runs it on variants of a trace (app halves, halves swapped in time,
//! synthetic traces) and reports the spread of the ratios.
//!
//! # Concepts
//!
//! - **Traces** ([`trace`]): columns by header name, every problem a [`TraceError`] naming the
//!   file and line; the application (`HashApp`) is the unit.
//! - **The replay** ([`replay`]): B4's rules, one instance per app, lazily evaluated plans so a
//!   policy never sees the next call; [`replay::sweep`] scores a whole budget grid in one
//!   replay.
//! - **Policies** ([`policy`]): fixed 10-minute keep-alive, the hybrid histogram policy of
//!   Shahrad et al. (ATC 2020) with its parameters documented in [`policy::HybridParams`], the
//!   oracle (the floor), and Spark: `spark-predict`'s demand model and decision rule, the code
//!   the node runs, behind the simulator's traits.
//! - **Synthetic traces** ([`synth`]): seeded patterns (timers, noise, Poisson, bursts,
//!   diurnal, one-off) for tests and robustness checks.
//!
//! # Invariants
//!
//! - Policies learn from calls only, never from their own decisions, and never see a call
//!   before deciding about it (only [`policy::Oracle`] is built from the trace): removing the
//!   second half's calls changes no first-half decision (`tests/all/honesty.rs`).
//! - Spark's outcome is monotone in the budget: more budget never means more cold starts or
//!   less memory (tested).
//! - No clocks and no I/O beyond [`TraceSet::load`] reading the files it is given: the same
//!   trace always gives the same report.
//! - `spark-sim` depends on `spark-predict`, never the other way: the node's crates do not
//!   link the simulator.
//!
//! See `DESIGN.md` next to this crate for the simulation model, the baselines and the measured
//! results, and `spark-predict`'s for the model and the decision rule.

pub mod b4;
pub mod error;
pub mod policy;
pub mod replay;
pub mod report;
pub mod robust;
pub mod synth;
pub mod trace;

pub use b4::{SimOptions, run_b4};
pub use error::{ParseErrorKind, TraceError};
pub use report::Report;
pub use trace::TraceSet;
