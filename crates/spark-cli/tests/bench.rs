//! B6 and B7 from the command line. `spark bench nn` (the benchmark as a node's `[nn]` would
//! run it) and `spark nn bench` (the same measurement under the probe's host options): their
//! options and output are quoted by other documents; tract only (`--no-ort`), so the run is
//! short and the same on every machine, and the failing stand-in NPU is measured too.
//! `spark bench density --quick`: 100 distinct components on a real node, its closing line.
//! `spark bench hostile --tls`, one second a phase: every attack over TLS against a real node.

use std::process::Command;

use spark_testkit::guest;

fn spark(args: &[&str]) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_spark"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args:?}: {stderr}");
    (stdout, stderr)
}

/// Checks the `B6:` line of a tract-only run: every image right, the stand-in NPU fallen
/// through.
fn check_summary(line: &str) {
    assert!(
        line.starts_with(
            "B6: backends=tract chosen=tract chosen_by_chain=tract top1_agree=true cpu_ms="
        ),
        "{line}"
    );
    assert!(line.contains(" correct=8/8 fallback_first_ms="), "{line}");
    assert!(line.ends_with(" recovered_backend=tract"), "{line}");
}

#[test]
fn bench_nn_prints_its_table_and_summary_and_writes_b6_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let classify = guest("classify").display().to_string();
    let (stdout, _) = spark(&[
        "bench",
        "nn",
        "--component",
        &classify,
        "--no-ort",
        "--quick",
        "--out",
        &out,
    ]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "BACKEND     FIRST(ms)  INFER(ms) REQUEST(ms)    VS CPU   TOP-1  DETAIL"
    );
    let tract = lines.iter().find(|l| l.starts_with("tract ")).unwrap();
    assert!(tract.contains(" 1.00x   agree  tract-onnx"), "{tract}");
    assert!(
        lines.iter().any(|l| l.starts_with("ort-npu ")
            && l.ends_with("no NPU found (/dev/accel, /sys/class/accel)")),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "chosen by measurement: gpu -> tract (by the hint's chain alone: tract), tpu -> tract, cpu -> tract; reference correct on 8/8 images"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("fallback from a failing NPU: first "),
        "{stdout}"
    );
    check_summary(lines.last().unwrap());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("b6.json")).unwrap()).unwrap();
    assert_eq!(json["reference_correct"], 8);
    assert!(json["fallback_first_ms"].is_number(), "{json}");
}

#[test]
fn nn_bench_prints_one_line_per_backend_and_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let classify = guest("classify").display().to_string();
    let (stdout, stderr) = spark(&[
        "nn", "bench", "--wasm", &classify, "--no-ort", "--rounds", "1", "--out", &out,
    ]);
    assert!(
        stderr.contains("tract       available=true  infer_p50_ms="),
        "{stderr}"
    );
    assert!(
        stderr.contains("ort-cpu     available=false infer_p50_ms=-        "),
        "{stderr}"
    );
    let result = dir.path().join("b6.json");
    assert!(
        stderr.contains(&format!("full result: {}", result.display())),
        "{stderr}"
    );
    assert!(result.is_file());
    check_summary(stdout.trim_end());
}

/// `spark bench replay --apps` takes a count or `all`, and names anything else.
#[test]
fn bench_replay_apps_is_a_count_or_all() {
    replay_refuses(
        &["--invocations", "x.csv", "--apps", "lots"],
        "expected a number of apps or `all`, got `lots`",
    );
    replay_refuses(
        &["--invocations", "/nonexistent/x.csv", "--apps", "all"],
        "/nonexistent/x.csv",
    );
}

/// `spark bench hostile --phase-secs` takes seconds between 1 and 600 (its runs are not in the
/// tests: B9 takes minutes and is measured, not asserted).
#[test]
fn bench_hostile_phase_secs_are_checked() {
    for bad in ["0", "601", "soon"] {
        refuses(
            &["hostile", "--phase-secs", bad],
            &format!("expected seconds between 1 and 600, got `{bad}`"),
        );
    }
}

/// `spark bench replay ARGS` fails, and its error says `says`.
fn replay_refuses(args: &[&str], says: &str) {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    refuses(&all, says);
}

/// `spark bench ARGS` fails, and its error says `says`.
fn refuses(args: &[&str], says: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_spark"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap();
    assert!(!output.status.success(), "{args:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(says), "{stderr}");
}

/// B7 quick: 100 distinct components on a real node, every key of the closing line.
#[test]
fn bench_density_quick_reports_every_key_and_writes_density_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let hello = guest("hello").display().to_string();
    let (stdout, _) = spark(&[
        "bench",
        "density",
        "--quick",
        "--component",
        &hello,
        "--out",
        &out,
    ]);
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("density: modules=100 "), "{stdout}");
    let keys: Vec<&str> = last
        .trim_start_matches("density: ")
        .split(' ')
        .map(|kv| kv.split_once('=').expect("key=value").0)
        .collect();
    assert_eq!(
        keys,
        [
            "modules",
            "cold_start_s",
            "restart_s",
            "rss_mb",
            "rss_per_module_kb",
            "vm_reserved_gb",
            "control_cpu_pct",
            "idle_cpu_pct",
            "p50_ms",
            "p99_ms",
            "lazy_first_ms",
            "rss_after_mb",
            "rss_settled_mb",
            "loaded_code_mb",
            "loaded_code_limit_mb",
            "code_evictions",
            "errors"
        ]
    );
    assert!(last.ends_with(" errors=0"), "{last}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("density.json")).unwrap()).unwrap();
    let result = &json["results"][0];
    assert_eq!(result["modules"], 100);
    assert_eq!(result["requests"], 300);
    assert!(result["restart_s"].as_f64().unwrap() > 0.0, "{json}");
    assert!(result["rss_mb"].as_f64().unwrap() > 0.0, "{json}");
    // The default budget (256 MiB) holds 100 hello copies: loaded code is on the ledger,
    // within its limit.
    let (code, limit) = (
        result["loaded_code_mb"].as_f64().unwrap(),
        result["loaded_code_limit_mb"].as_f64().unwrap(),
    );
    assert!(code > 0.0 && code <= limit, "{json}");
}

/// B9 over TLS, one second a phase: every client (the critical one, each attack, the
/// handshake flood) speaks TLS to a real node presenting the run's certificate; the critical
/// module answers every request, no guest runs past its limit, nothing restarts.
#[test]
fn bench_hostile_over_tls_runs_every_attack_and_keeps_the_critical_module_answering() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let (stdout, _) = spark(&[
        "bench",
        "hostile",
        "--tls",
        "--phase-secs",
        "1",
        "--component",
        &guest("hello").display().to_string(),
        "--out",
        &out,
    ]);
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("hostile: transport=tls crit_success_pct=100.00 "),
        "{stdout}"
    );
    assert!(last.contains(" guests_over_limit=0 restarts=0"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("hostile.json")).unwrap()).unwrap();
    assert_eq!(json["tls"], true);
    let phases = json["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "calm",
            "disconnect storm",
            "slowloris",
            "zero-window readers",
            "host-memory hogs",
            "log flood",
            "handshake flood",
            "all together"
        ]
    );
    for phase in &phases[1..] {
        assert!(phase["attack_requests"].as_u64().unwrap() > 0, "{phase}");
        assert!(phase["refused_at_accept"].as_u64().is_some(), "{phase}");
        assert_eq!(phase["crit_errors"], 0, "{phase}");
    }
}

/// B4 live, quick: a small trace (four apps: every minute, every five, twice, a burst)
/// replayed on one node per live policy, Spark, a fixed 10-minute keep-alive and the hybrid
/// histogram policy; every call is answered, and each policy reports its cold starts and the memory it kept loaded next to
/// the simulator's.
#[test]
fn bench_replay_quick_replays_spark_and_the_baselines_on_live_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let minutes = 30;
    let mut csv = String::from("HashOwner,HashApp,HashFunction");
    for m in 1..=minutes {
        csv.push_str(&format!(",{m}"));
    }
    csv.push('\n');
    /// Calls of an app in a minute.
    type PerMinute = fn(u32) -> u32;
    let calls: [(&str, PerMinute); 4] = [
        ("every-minute", |_| 1),
        ("every-five", |m| u32::from(m % 5 == 0)),
        ("twice", |m| u32::from(m == 2 || m == 15)),
        ("burst", |m| if (3..6).contains(&m) { 3 } else { 0 }),
    ];
    let mut in_slice = 0;
    for (app, count) in calls {
        csv.push_str(&format!("o,{app},f"));
        for m in 0..minutes {
            csv.push_str(&format!(",{}", count(m)));
            in_slice += if m < 20 { count(m) } else { 0 };
        }
        csv.push('\n');
    }
    let invocations = dir.path().join("inv.csv");
    std::fs::write(&invocations, csv).unwrap();
    let out = dir.path().join("out");
    let (stdout, _) = spark(&[
        "bench",
        "replay",
        "--invocations",
        &invocations.display().to_string(),
        "--start",
        "0",
        "--quick",
        "--guests",
        "hello,echo",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(stdout.contains("  live spark "), "{stdout}");
    assert!(stdout.contains("  live fixed-10min "), "{stdout}");
    assert!(stdout.contains("  live hybrid "), "{stdout}");
    assert!(stdout.contains("  simulated fixed-10min "), "{stdout}");
    let last = stdout.lines().last().unwrap();
    let value = |key: &str| -> f64 {
        let kv = last
            .split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {last}"));
        kv.parse().unwrap_or_else(|_| panic!("{key}={kv}"))
    };
    assert!(last.starts_with("replay: spark_requests="), "{last}");
    assert!(last.contains(" spark_vs_sim_memory="), "{last}");
    assert!(last.contains(" spark_vs_twin_cold="), "{last}");
    assert!(
        stdout.contains("    like for like: simulated with each app priced"),
        "{stdout}"
    );
    for policy in ["spark", "fixed_10min", "hybrid"] {
        assert_eq!(
            value(&format!("{policy}_requests")) + value(&format!("{policy}_errors")),
            f64::from(in_slice),
            "every call is sent: {last}"
        );
        assert_eq!(value(&format!("{policy}_errors")), 0.0, "{last}");
        assert!(
            value(&format!("{policy}_loaded_mb_min")) > 0.0,
            "the apps called every minute stay loaded: {last}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("replay.json")).unwrap()).unwrap();
    assert_eq!(json["apps"], 4, "{json}");
    assert_eq!(json["live"].as_array().unwrap().len(), 3, "{json}");
    assert_eq!(
        json["live"][1]["predictor"],
        "keep_alive = \"10m\", memory_budget = \"64GiB\""
    );
    let plot = std::fs::read_to_string(out.join("replay-cdf.svg")).unwrap();
    assert!(
        plot.starts_with("<svg ") && plot.contains(">live fixed-10min</text>"),
        "{plot}"
    );
}

/// `--live` names the policies it knows, `--guests` the guests it cannot find.
#[test]
fn bench_replay_live_names_what_it_cannot_replay() {
    replay_refuses(
        &["--invocations", "x.csv", "--live", "spark,lru"],
        "expected `spark`, `hybrid` or `fixed-<minutes>min`, got `lru`",
    );
    replay_refuses(
        &[
            "--invocations",
            "x.csv",
            "--guests",
            "echo,/nowhere/app.wasm",
        ],
        "guest /nowhere/app.wasm not found",
    );
}
