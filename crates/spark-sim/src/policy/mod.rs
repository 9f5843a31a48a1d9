//! The keep-alive / pre-warm policies compared in B4, all behind [`crate::replay::Policy`]: the
//! baselines (fixed keep-alive, the hybrid histogram policy, the oracle) and Spark's, which is
//! `spark-predict`'s rule (re-exported here) replayed. The hybrid's histogram is
//! `spark-predict`'s too (a node may run it, `predictor.policy = "hybrid"`); the oracle reads
//! the trace and exists only here.
//!
//! Decision worth knowing: every policy sees the same online events (arrivals, and the start of
//! each idle period) and answers with load windows; only the [`Oracle`] is built from the trace.

mod fixed;
mod hybrid;
mod oracle;
mod spark;

pub use fixed::{FIXED_KEEP_ALIVE_MIN, FixedKeepAlive};
pub use hybrid::{FAMILY_KEEP_ALIVE_MIN, FAMILY_MIN_SAMPLES, Hybrid, HybridApp, hybrid_family};
pub use oracle::{Oracle, OracleApp};
pub use spark::{LoadPlan, Spark, SparkApp, SparkFamily};
pub use spark_predict::hybrid::HybridParams;
pub use spark_predict::policy::{CriticalBins, MAX_PLAN_MIN, cold_start_weight, critical_budget};
