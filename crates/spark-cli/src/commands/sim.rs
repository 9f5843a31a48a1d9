//! `spark sim`: replay a trace in the Azure Functions 2019 format through the real policy code
//! in simulated time (benchmark B4): fixed keep-alive, the hybrid histogram policy, Spark's
//! predictor under a memory budget, and the oracle; table on stdout, JSON and plots on disk.
//! With `--robustness`, the same on variants of the trace (app halves, halves swapped in time,
//! calls placed at random within their minutes, synthetic traces) and the spread of Spark's
//! ratios.

use std::path::PathBuf;

use anyhow::Context;
use spark_sim::report::{cdf_svg, render_table, tradeoff_svg};
use spark_sim::robust::{RobustOptions, robustness};
use spark_sim::{SimOptions, TraceSet, run_b4};

#[derive(Debug, clap::Args)]
pub(crate) struct SimArgs {
    /// Invocations per minute (`HashOwner,HashApp,HashFunction[,Trigger],<minute columns>`).
    #[arg(long)]
    invocations: PathBuf,
    /// Function durations (`...,Average,Count,...`): how long each call keeps an instance busy.
    #[arg(long)]
    durations: Option<PathBuf>,
    /// Application memory (`...,AverageAllocatedMb,...`): what an idle instance wastes.
    #[arg(long)]
    memory: Option<PathBuf>,
    /// Where scoring starts, as a fraction of the trace (default: the second half).
    #[arg(long, default_value_t = 0.5)]
    scored_from: f64,
    /// Directory for `b4.json`, `b4-cdf.svg` and `b4-tradeoff.svg` (with `--robustness`:
    /// `b4-robustness.json`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Instead of one run: B4 on random halves of the apps, on the trace's halves swapped in
    /// time, on the trace with its calls placed at random within their minutes and on
    /// synthetic traces; prints the spread of Spark's p75 ratios.
    #[arg(long)]
    robustness: bool,
    /// With `--robustness`: random halves of the apps.
    #[arg(long, default_value_t = 4, requires = "robustness")]
    halves: u64,
    /// With `--robustness`: synthetic traces.
    #[arg(long, default_value_t = 4, requires = "robustness")]
    synthetic: u64,
}

pub(super) fn run(args: SimArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..1.0).contains(&args.scored_from),
        "--scored-from must be in [0, 1), got {}",
        args.scored_from
    );
    let trace = TraceSet::load(
        &args.invocations,
        args.durations.as_deref(),
        args.memory.as_deref(),
    )?;
    let options = SimOptions {
        scored_from: args.scored_from,
        ..SimOptions::default()
    };
    let report = run_b4(&trace, &options);
    let out = args.out.unwrap_or_else(spark_bench::default_out_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if args.robustness {
        let opts = RobustOptions {
            app_halves: args.halves,
            synthetic: args.synthetic,
            ..RobustOptions::default()
        };
        let r = robustness(&trace, &options, &opts, |c| {
            eprintln!("{}: {}", c.name, c.summary);
        });
        let path = out.join("b4-robustness.json");
        let json = serde_json::to_string_pretty(&r).context("serializing the robustness report")?;
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
        print!("{}", r.render());
        eprintln!("wrote {}", path.display());
        return Ok(());
    }
    let json = serde_json::to_string_pretty(&report).context("serializing the report")?;
    for (name, contents) in [
        ("b4.json", json),
        ("b4-cdf.svg", cdf_svg(&report)),
        ("b4-tradeoff.svg", tradeoff_svg(&report)),
    ] {
        let path = out.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", render_table(&report));
    eprintln!(
        "wrote b4.json, b4-cdf.svg, b4-tradeoff.svg to {}",
        out.display()
    );
    Ok(())
}
