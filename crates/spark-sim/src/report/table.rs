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
    family(&mut out, report);
    if !report.calibrated.is_empty() {
        let _ = writeln!(
            out,
            "Budget calibrated on the part before scoring (as a live node must), scored part:"
        );
        for m in &report.calibrated {
            let s = m.spark.scores.scored;
            let _ = writeln!(
                out,
                "  vs {:<12} budget {:.3e}: p75 {} vs {} (ratio {}), wasted memory ratio {}, cold starts {} vs {}",
                m.baseline,
                m.spark.budget.unwrap_or(f64::NAN),
                fmt_num(s.p75),
                fmt_num(m.baseline_scored.p75),
                opt(m.p75_ratio),
                opt(m.mem_ratio),
                s.cold_starts,
                m.baseline_scored.cold_starts,
            );
        }
    }
    let _ = writeln!(out, "{}", report.summary_line());
    out
}

fn opt(x: Option<f64>) -> String {
    x.map_or("undefined".to_owned(), fmt_num)
}

/// The hybrid family: each member's scored figures and Spark's at its memory; `*` marks the
/// member Spark does worst against.
fn family(out: &mut String, report: &Report) {
    if report.family.is_empty() {
        return;
    }
    let best = report.best_hybrid().map(|m| m.baseline.as_str());
    let _ = writeln!(
        out,
        "Hybrid family (scored part) and Spark at each member's wasted memory:"
    );
    let _ = writeln!(
        out,
        "  {:<20} {:>6} {:>6} {:>7} {:>11} | {:>6} {:>6} {:>7} {:>9} {:>9}",
        "member",
        "p75",
        "mean",
        "colds",
        "MB-min",
        "spark",
        "mean",
        "colds",
        "p75 ratio",
        "mem ratio"
    );
    for m in &report.family {
        let (b, s) = (m.baseline_scored, m.spark.scores.scored);
        let mark = if Some(m.baseline.as_str()) == best {
            "*"
        } else {
            " "
        };
        let _ = writeln!(
            out,
            "{mark} {:<20} {:>6.2} {:>6.2} {:>7} {:>11.4e} | {:>6.2} {:>6.2} {:>7} {:>9} {:>9}",
            m.baseline,
            b.p75,
            b.mean,
            b.cold_starts,
            b.wasted_mb_min,
            s.p75,
            s.mean,
            s.cold_starts,
            opt(m.p75_ratio),
            opt(m.mem_ratio),
        );
    }
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
