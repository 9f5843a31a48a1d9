//! `spark sim` as users run it (B4 in simulated time): a trace file in, the table on stdout,
//! the JSON and the plots on disk, and every refusal naming its cause. The simulator is
//! `spark-sim`; this checks the command's options and output, which other documents quote.

use std::path::Path;
use std::process::{Command, Output};

use spark_sim::synth;

fn spark_sim(args: &[&str], dir: &Path) -> (Output, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_spark"))
        .arg("sim")
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// A synthetic trace in the original Azure header style, written to `dir/inv.csv`.
fn trace_file(dir: &Path) -> String {
    let path = dir.join("inv.csv");
    std::fs::write(
        &path,
        synth::invocations_csv(&synth::mixed(30, 600, 7), false),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn sim_prints_the_table_and_writes_json_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let inv = trace_file(dir.path());
    let out = dir.path().join("b4");
    let out_arg = out.display().to_string();
    let (output, stdout, stderr) =
        spark_sim(&["--invocations", &inv, "--out", &out_arg], dir.path());
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("B4 trace: 30 apps, 600 minutes, "),
        "{stdout}"
    );
    assert!(stdout.contains("scored from minute 300"), "{stdout}");
    for policy in ["fixed-10min", "hybrid", "oracle"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(policy)),
            "{policy}: {stdout}"
        );
    }
    assert!(
        stdout.contains("Spark at each baseline's wasted memory (scored part):"),
        "{stdout}"
    );
    let summary = stdout.lines().last().unwrap();
    assert!(summary.starts_with("B4: p75_ratio_vs_hybrid="), "{summary}");
    assert!(
        stderr.contains(&format!(
            "wrote b4.json, b4-cdf.svg, b4-tradeoff.svg to {out_arg}"
        )),
        "{stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("b4.json")).unwrap()).unwrap();
    assert_eq!(json["trace"]["apps"], 30);
    for svg in ["b4-cdf.svg", "b4-tradeoff.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(text.starts_with("<svg"), "{svg}: {text}");
    }
}

#[test]
fn sim_names_the_file_and_line_of_a_bad_trace_and_checks_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("bad.csv");
    std::fs::write(&inv, "HashOwner,HashApp,HashFunction,1,2\no,a,f,1,x\n").unwrap();
    let inv = inv.display().to_string();
    let (output, _, stderr) = spark_sim(&["--invocations", &inv], dir.path());
    assert!(!output.status.success());
    assert!(stderr.contains(&format!("{inv}:2: ")), "{stderr}");

    let good = trace_file(dir.path());
    let (output, _, stderr) = spark_sim(
        &["--invocations", &good, "--scored-from", "1.5"],
        dir.path(),
    );
    assert!(!output.status.success());
    assert!(
        stderr.contains("--scored-from must be in [0, 1), got 1.5"),
        "{stderr}"
    );
}

#[test]
fn sim_robustness_prints_the_spread_and_refuses_its_options_alone() {
    let dir = tempfile::tempdir().unwrap();
    let inv = trace_file(dir.path());
    let out = dir.path().join("rob");
    let out_arg = out.display().to_string();
    let (output, stdout, stderr) = spark_sim(
        &[
            "--invocations",
            &inv,
            "--robustness",
            "--halves",
            "1",
            "--synthetic",
            "0",
            "--out",
            &out_arg,
        ],
        dir.path(),
    );
    assert!(output.status.success(), "{stderr}");
    for case in [
        "real: learn hours 0-12, score 12-24",
        "real: learn hours 12-24, score 0-12 (rotated)",
        "real: calls at random within their minute",
        "real: apps half 0 (salted hash)",
    ] {
        assert!(stdout.contains(case), "{case}: {stdout}");
    }
    let summary = stdout.lines().last().unwrap();
    assert!(
        summary.starts_with("B4-robustness: cases=4 vs_hybrid_min="),
        "{summary}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("b4-robustness.json")).unwrap()).unwrap();
    assert_eq!(json["cases"].as_array().unwrap().len(), 4);

    let (output, _, stderr) = spark_sim(&["--invocations", &inv, "--halves", "2"], dir.path());
    assert!(!output.status.success());
    assert!(stderr.contains("--robustness"), "{stderr}");
}
