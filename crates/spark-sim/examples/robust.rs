//! Robustness check of B4: the ratios on random halves of a trace's apps and on synthetic
//! traces. Usage: `robust INVOCATIONS DURATIONS MEMORY [SPLITS]`.

use std::path::Path;

use spark_sim::b4::{curve, log_grid, match_baseline, run};
use spark_sim::policy::{Hybrid, HybridParams};
use spark_sim::replay::Horizon;
use spark_sim::{SimOptions, TraceSet, run_b4, synth};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let trace = TraceSet::load(
        Path::new(&a[1]),
        Some(Path::new(&a[2])),
        Some(Path::new(&a[3])),
    )?;
    let splits: u64 = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(8);
    hybrid_sensitivity(&trace);
    let mut hy = Vec::new();
    let mut fx = Vec::new();
    for salt in 0..splits {
        let mut t = trace.clone();
        t.apps
            .retain(|app| hash(&app.counts, salt).is_multiple_of(2));
        let r = run_b4(&t, &SimOptions::default());
        let (h, f) = ratios(&r);
        println!(
            "split {salt}: apps {} hybrid {h:.2} fixed {f:.2}",
            t.apps.len()
        );
        hy.push(h);
        fx.push(f);
    }
    println!(
        "real halves: median hybrid {:.2} fixed {:.2}; mean hybrid {:.2}",
        median(&mut hy),
        median(&mut fx),
        hy.iter().sum::<f64>() / hy.len() as f64
    );
    let (mut sh, mut sf) = (Vec::new(), Vec::new());
    for seed in 1..=4 {
        let r = run_b4(&synth::mixed(600, 1440, seed), &SimOptions::default());
        let (h, f) = ratios(&r);
        println!("synthetic {seed}: hybrid {h:.2} fixed {f:.2}");
        sh.push(h);
        sf.push(f);
    }
    println!(
        "synthetic: median hybrid {:.2} fixed {:.2}",
        median(&mut sh),
        median(&mut sf)
    );
    Ok(())
}

/// Spark against hybrids with other minimum sample counts, on the whole trace.
fn hybrid_sensitivity(trace: &TraceSet) {
    let opts = SimOptions::default();
    let h = Horizon::of(trace, opts.scored_from);
    let c = curve(
        trace,
        &log_grid(opts.budget_min, opts.budget_max, opts.points_per_decade),
        h,
    );
    for min_samples in [1, 3, 5, 10] {
        let hybrid = Hybrid {
            params: HybridParams {
                min_samples,
                ..HybridParams::default()
            },
        };
        let base = run(trace, &hybrid, h, "hybrid");
        let m = match_baseline(trace, &base, &c, &opts, h);
        let s = base.scores.scored;
        println!(
            "hybrid min_samples={min_samples}: p75 {:.2} waste {:.3e} colds {} | spark p75 {:.2} ratio {:.2}",
            s.p75,
            s.wasted_mb_min,
            s.cold_starts,
            m.spark.scores.scored.p75,
            m.p75_ratio.unwrap_or(f64::INFINITY)
        );
    }
}

fn ratios(r: &spark_sim::Report) -> (f64, f64) {
    let get = |n: &str| {
        r.matched_to(n)
            .and_then(|m| m.p75_ratio)
            .unwrap_or(f64::INFINITY)
    };
    (get("hybrid"), get("fixed-10min"))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn hash(counts: &[(u32, u32)], salt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &(m, c) in counts {
        for b in m.to_le_bytes().into_iter().chain(c.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h ^ (h >> 29)
}
