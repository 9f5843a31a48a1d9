//! Robustness check of B4 (the same as `spark sim --robustness`, without the CLI): Spark's p75
//! ratios on random halves of a trace's apps, on its halves swapped in time, and on synthetic
//! traces, with their spread. Usage: `robust INVOCATIONS [DURATIONS [MEMORY]] [--halves N]
//! [--synthetic N]`.

use std::path::{Path, PathBuf};

use spark_sim::robust::{RobustOptions, robustness};
use spark_sim::{SimOptions, TraceSet};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut opts = RobustOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--halves" => opts.app_halves = args.next().ok_or("--halves N")?.parse()?,
            "--synthetic" => opts.synthetic = args.next().ok_or("--synthetic N")?.parse()?,
            _ => files.push(PathBuf::from(a)),
        }
    }
    let Some(inv) = files.first() else {
        return Err(
            "usage: robust INVOCATIONS [DURATIONS [MEMORY]] [--halves N] [--synthetic N]".into(),
        );
    };
    let trace = TraceSet::load(
        inv,
        files.get(1).map(Path::new),
        files.get(2).map(Path::new),
    )?;
    let r = robustness(&trace, &SimOptions::default(), &opts, |c| {
        eprintln!("{}: {}", c.name, c.summary);
    });
    print!("{}", r.render());
    Ok(())
}
