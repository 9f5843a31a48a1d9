//! Canary rollouts as pure logic: which version a request goes to ([`split`]), whether the
//! canary is worse than the stable version ([`analysis`]), and the rollout state machine that
//! turns verdicts into steps, promotion or rollback ([`machine`]).
//!
//! No clock, no I/O: time and counters are passed in, so every path (advance, wait, roll back,
//! promote, manual override, resume after restart) is tested deterministically. The node owns
//! the counters and applies the decisions; this crate owns what they mean.

pub mod analysis;
pub mod machine;
pub mod split;
pub mod stats;

pub use analysis::{AnalysisConfig, Verdict, analyze};
pub use machine::{ModuleRollout, Rollout, RolloutAction, RolloutState, StepRules};
pub use split::{Pick, baseline_share, choose_canary, choose_version};
pub use stats::VersionWindow;
