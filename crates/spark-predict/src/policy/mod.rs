//! The keep-alive / pre-warm policies compared in B4, all behind [`crate::sim::Policy`].
//!
//! Decision worth knowing: every policy sees the same online events (arrivals, and the start of
//! each idle period) and answers with load windows; only the [`Oracle`] is built from the trace.

mod fixed;
mod hybrid;
mod oracle;
mod spark;

pub use fixed::{FIXED_KEEP_ALIVE_MIN, FixedKeepAlive};
pub use hybrid::{Hybrid, HybridApp, HybridParams};
pub use oracle::{Oracle, OracleApp};
pub use spark::{
    CriticalBins, LoadPlan, MAX_PLAN_MIN, Spark, SparkApp, SparkFamily, cold_start_weight,
    critical_budget,
};
