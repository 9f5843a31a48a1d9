//! Runs benchmark B4 on a trace in the Azure Functions 2019 format and prints the table.
//!
//! Usage: `b4 INVOCATIONS [DURATIONS [MEMORY]] [--out DIR] [--apps even|odd]`
//! (`--apps` keeps one half of the applications, by a hash of their id, for hold-out checks).

use std::path::{Path, PathBuf};
use std::time::Instant;

use spark_sim::report::{cdf_svg, render_table, tradeoff_svg};
use spark_sim::{SimOptions, TraceSet, run_b4};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    let mut out: Option<PathBuf> = None;
    let mut half: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next().map(PathBuf::from),
            "--apps" => half = args.next().map(|h| u64::from(h == "odd")),
            _ => files.push(PathBuf::from(a)),
        }
    }
    let Some(inv) = files.first() else {
        return Err(
            "usage: b4 INVOCATIONS [DURATIONS [MEMORY]] [--out DIR] [--apps even|odd]".into(),
        );
    };
    let start = Instant::now();
    let mut trace = TraceSet::load(
        inv,
        files.get(1).map(Path::new),
        files.get(2).map(Path::new),
    )?;
    let loaded = start.elapsed();
    if let Some(h) = half {
        trace.apps.retain(|a| fnv(&a.counts) % 2 == h);
    }
    let report = run_b4(&trace, &SimOptions::default());
    let total = start.elapsed();
    print!("{}", render_table(&report));
    eprintln!("loaded in {loaded:.2?}, total {total:.2?}");
    if let Some(dir) = out {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("b4.json"), serde_json::to_string_pretty(&report)?)?;
        std::fs::write(dir.join("b4-cdf.svg"), cdf_svg(&report))?;
        std::fs::write(dir.join("b4-tradeoff.svg"), tradeoff_svg(&report))?;
    }
    Ok(())
}

/// FNV-1a over an app's counts: identical copies of an app land in the same half.
fn fnv(counts: &[(u32, u32)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &(m, c) in counts {
        for b in m.to_le_bytes().into_iter().chain(c.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}
