//! Where the cold starts are: the scored apps of a trace split into classes (first seen in the
//! scored part; else by their calls in it), with each class's mean cold-start %, wasted memory
//! and cold starts for a hybrid family member, Spark at a budget, and the oracle. A diagnostic
//! for the gap between Spark and the baselines (issue 13: "the mean cold-start share is where
//! the oracle gap is").
//!
//! Usage: `breakdown INVOCATIONS DURATIONS MEMORY BUDGET [MEMBER] [--line PERCENT]` (MEMBER: a
//! name from `spark sim`'s hybrid family table, default `hybrid-min10-ka240`; BUDGET: e.g. the
//! `budget` of `spark@MEMBER` in `b4.json`; `--line`: also count, per class, the apps whose
//! cold-start % is above PERCENT and those one cold start above it, e.g. half the member's
//! p75, to see which apps a p75 target needs).

use std::path::Path;

use spark_sim::TraceSet;
use spark_sim::policy::{Oracle, Spark, hybrid_family};
use spark_sim::replay::{AppOutcome, Horizon, simulate};

const CLASSES: [&str; 7] = [
    "new-in-scored",
    "1",
    "2-5",
    "6-20",
    "21-100",
    "101-1000",
    ">1000",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut a: Vec<String> = std::env::args().collect();
    let line = match a.iter().position(|x| x == "--line") {
        Some(i) => {
            let value = a.get(i + 1).ok_or("--line PERCENT")?.parse::<f64>()?;
            a.drain(i..i + 2);
            Some(value)
        }
        None => None,
    };
    if a.len() < 5 {
        return Err(
            "usage: breakdown INVOCATIONS DURATIONS MEMORY BUDGET [MEMBER] [--line PERCENT]".into(),
        );
    }
    let t = TraceSet::load(
        Path::new(&a[1]),
        Some(Path::new(&a[2])),
        Some(Path::new(&a[3])),
    )?;
    let budget: f64 = a[4].parse()?;
    let member = a.get(5).map_or("hybrid-min10-ka240", String::as_str);
    let (_, hybrid) = hybrid_family()
        .into_iter()
        .find(|(n, _)| n == member)
        .ok_or_else(|| format!("no hybrid member {member}"))?;
    let h = Horizon::of(&t, 0.5);
    let runs = [
        simulate(&t, &hybrid, h),
        simulate(&t, &Spark { budget }, h),
        simulate(&t, &Oracle::new(&t), h),
    ];
    // Per class: apps, then per run (mean cold %, MB-min, cold starts).
    let mut acc = vec![(0usize, [(0.0f64, 0.0f64, 0u64); 3]); CLASSES.len()];
    // Per class, for the member and Spark: apps above the line, and of them those one cold
    // start above it.
    let mut above = vec![[(0u32, 0u32); 2]; CLASSES.len()];
    for (i, app) in t.apps.iter().enumerate() {
        let n = runs[0][i].scored.invocations;
        if n == 0 {
            continue;
        }
        let new = app
            .counts
            .first()
            .is_some_and(|&(m, _)| f64::from(m) >= h.split);
        let class = if new {
            0
        } else {
            match n {
                1 => 1,
                2..=5 => 2,
                6..=20 => 3,
                21..=100 => 4,
                101..=1000 => 5,
                _ => 6,
            }
        };
        acc[class].0 += 1;
        if let Some(line) = line {
            let share = |cold: u64| 100.0 * cold as f64 / n as f64;
            for (k, run) in runs[..2].iter().enumerate() {
                let cold = run[i].scored.cold;
                if share(cold) > line {
                    above[class][k].0 += 1;
                    if share(cold - 1) <= line {
                        above[class][k].1 += 1;
                    }
                }
            }
        }
        for (k, run) in runs.iter().enumerate() {
            let o: &AppOutcome = &run[i];
            let e = &mut acc[class].1[k];
            e.0 += 100.0 * o.scored.cold as f64 / n as f64;
            e.1 += o.scored.wasted_mb_min;
            e.2 += o.scored.cold;
        }
    }
    println!(
        "{member} | spark(budget={budget:.3e}) | oracle; per class: mean cold %, wasted MB-min, cold starts"
    );
    println!(
        "{:<14} {:>5} | {:>6} {:>9} {:>5} | {:>6} {:>9} {:>5} | {:>6} {:>5}",
        "class", "apps", "hyb %", "MB-min", "colds", "spark%", "MB-min", "colds", "orac%", "colds"
    );
    for (class, (apps, r)) in CLASSES.iter().zip(&acc) {
        let n = (*apps).max(1) as f64;
        println!(
            "{class:<14} {apps:>5} | {:>6.2} {:>9.2e} {:>5} | {:>6.2} {:>9.2e} {:>5} | {:>6.2} {:>5}",
            r[0].0 / n,
            r[0].1,
            r[0].2,
            r[1].0 / n,
            r[1].1,
            r[1].2,
            r[2].0 / n,
            r[2].2
        );
    }
    if let Some(line) = line {
        println!("apps above {line} % (of them, one cold start above it): member | spark");
        let mut total = [0, 0];
        for (class, a) in CLASSES.iter().zip(&above) {
            println!(
                "{class:<14} {:>5} ({:>4}) | {:>5} ({:>4})",
                a[0].0, a[0].1, a[1].0, a[1].1
            );
            total[0] += a[0].0;
            total[1] += a[1].0;
        }
        println!("{:<14} {:>5}        | {:>5}", "all", total[0], total[1]);
    }
    Ok(())
}
