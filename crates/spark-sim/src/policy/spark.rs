//! Spark's policy in the simulator: one [`AppModel`] per application, fed the trace's calls,
//! and `spark-predict`'s decision rule ([`CriticalBins`]) turned into the replay's plans.
//!
//! Decision worth knowing: nothing here decides. The rule (the value of a cold start, the
//! critical budget of each minute bin) is [`spark_predict::policy`], the code the node's
//! warmth planner runs; this file only adapts it to [`Policy`] (one budget) and
//! [`BudgetedPolicy`] (a whole grid of budgets in one replay, [`crate::replay::sweep`]), so B4
//! measures the rule the node applies rather than a copy of it.

use spark_predict::model::AppModel;
use spark_predict::policy::CriticalBins;

use crate::replay::{AppInfo, AppPolicy, BudgetedApp, BudgetedPolicy, Policy, Segment};

/// Spark's policy for the simulator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spark {
    /// MB-minutes of idle memory worth spending to avoid one cold start of an app called once
    /// a day (the memory budget's exchange rate; larger = more memory, fewer cold starts).
    pub budget: f64,
}

/// Spark's policy as a family indexed by the budget, for [`crate::replay::sweep`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SparkFamily;

/// Per-application state of [`Spark`].
#[derive(Debug, Clone)]
pub struct SparkApp {
    model: AppModel,
    memory_mb: f64,
    budget: f64,
}

impl Policy for Spark {
    type App = SparkApp;

    fn name(&self) -> String {
        format!("spark(budget={:.3e})", self.budget)
    }

    fn for_app(&self, info: &AppInfo) -> SparkApp {
        SparkApp {
            model: AppModel::default(),
            memory_mb: info.memory_mb,
            budget: self.budget,
        }
    }
}

impl BudgetedPolicy for SparkFamily {
    type App = SparkApp;

    fn for_app(&self, info: &AppInfo) -> SparkApp {
        Spark { budget: 0.0 }.for_app(info)
    }
}

impl AppPolicy for SparkApp {
    type Plan<'a> = LoadPlan<'a>;

    fn on_arrival(&mut self, t: f64) {
        self.model.observe(t);
    }

    fn plan_idle(&mut self, idle_start: f64) -> LoadPlan<'_> {
        LoadPlan {
            bins: CriticalBins::new(&self.model, idle_start, self.memory_mb),
            budget: self.budget,
        }
    }
}

impl BudgetedApp for SparkApp {
    type Bins<'a> = CriticalBins<'a>;

    fn on_arrival(&mut self, t: f64) {
        self.model.observe(t);
    }

    fn critical_plan(&mut self, idle_start: f64) -> CriticalBins<'_> {
        CriticalBins::new(&self.model, idle_start, self.memory_mb)
    }
}

/// The plan of [`Spark`] at one budget: a bin is loaded when the budget exceeds its critical
/// budget (the same comparison [`crate::replay::sweep`] makes for a whole grid of budgets).
#[derive(Debug, Clone)]
pub struct LoadPlan<'a> {
    bins: CriticalBins<'a>,
    budget: f64,
}

impl Iterator for LoadPlan<'_> {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        let c = self.bins.next()?;
        Some(Segment {
            start: c.start,
            end: c.end,
            loaded: self.budget > c.budget,
        })
    }
}
