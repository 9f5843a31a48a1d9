//! The plain-text B4 table.
//!
//! Decision worth knowing: one row per policy with the scored (second-half) figures first, since
//! those are the headline, then the whole-trace ones; Spark's matched rows show their budget.

use std::fmt::Write;

use super::{Report, fmt_num};
use crate::replay::PeriodScore;

/// Renders the report as a table followed by the matched comparisons and the summary line.
pub fn render_table(report: &Report) -> String {
    let t = &report.trace;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "B4 trace: {} apps, {} minutes, {} calls; every policy learns from minute 0, scored from minute {}",
        t.apps, t.minutes, t.invocations, t.scored_from_min
    );
    let _ = writeln!(
        out,
        "{:<20} {:>9} | {} | {}",
        "policy",
        "budget",
        header("scored part"),
        header("whole trace")
    );
    for p in &report.policies {
        let budget = p.budget.map_or("-".to_owned(), |b| format!("{b:.3e}"));
        let _ = writeln!(
            out,
            "{:<20} {:>9} | {} | {}",
            p.name,
            budget,
            row(&p.scores.scored),
            row(&p.scores.whole)
        );
    }
    let _ = writeln!(out, "Spark at each baseline's wasted memory (scored part):");
    for m in &report.matched {
        let s = m.spark.scores.scored;
        let r = |x: Option<f64>| x.map_or("undefined".to_owned(), fmt_num);
        let _ = writeln!(
            out,
            "  vs {:<12} p75 {} vs {} (ratio {}), wasted memory ratio {}, cold starts {} vs {} (ratio {})",
            m.baseline,
            fmt_num(s.p75),
            fmt_num(m.baseline_scored.p75),
            r(m.p75_ratio),
            r(m.mem_ratio),
            s.cold_starts,
            m.baseline_scored.cold_starts,
            r(m.cold_ratio),
        );
    }
    let _ = writeln!(out, "{}", report.summary_line());
    out
}

fn header(title: &str) -> String {
    format!(
        "{title:<11} {:>6} {:>6} {:>6} {:>6} {:>7} {:>11}",
        "p50", "p75", "p90", "mean", "colds", "MB-min"
    )
}

fn row(s: &PeriodScore) -> String {
    format!(
        "{:<11} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>7} {:>11.4e}",
        format!("{} apps", s.apps_scored),
        s.p50,
        s.p75,
        s.p90,
        s.mean,
        s.cold_starts,
        s.wasted_mb_min
    )
}
