//! Tiered compilation end to end: a new component is served from Winch's code at once and
//! moves to Cranelift's code with no failed request; a component Winch rejects is served by
//! Cranelift with the reason in status and metrics; a restart starts on the persisted optimized
//! code; a tampered artifact of either tier is recompiled, never loaded; tiering off is the
//! node as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spark_runtime::{CodeSource, PoolingMode, TierState};
use spark_testkit::{TestNode, get};

const MANIFEST: &str = r#"
version = 1

[predictor]
enabled = false

[[module]]
id = "hello"
component = "{guest:hello}"
routes = ["/hello/..."]

[[module]]
id = "echo"
component = "{guest:echo}"
routes = ["/echo/..."]
"#;

/// Long enough to see the baseline tier, short enough for a quick test.
const HOLD_BASELINE: Duration = Duration::from_millis(1500);

fn tier(node: &TestNode, module: &str) -> TierState {
    node.node.snapshot().module(module).unwrap().tier().state
}

fn source(node: &TestNode, module: &str) -> CodeSource {
    node.node
        .snapshot()
        .module(module)
        .unwrap()
        .info()
        .report
        .source
}

/// Waits (real time: the optimizer is a real compile) until `module` runs optimized code.
async fn until_optimized(node: &TestNode, module: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while tier(node, module) != TierState::Optimized {
        assert!(
            Instant::now() < deadline,
            "{module} never reached optimized code: {}",
            tier(node, module)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn artifacts(node_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(node_dir.join("data/aot"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    files.sort();
    files
}

fn is_baseline(path: &std::path::Path) -> bool {
    path.file_name()
        .unwrap()
        .to_string_lossy()
        .contains("-baseline-")
}

fn flip_a_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(path, &bytes).unwrap();
}

#[tokio::test]
async fn a_new_component_is_served_on_baseline_code_then_switches_with_no_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_in_tiered(MANIFEST, dir, HOLD_BASELINE)
        .await
        .unwrap();
    assert_eq!(tier(&node, "hello"), TierState::Baseline);
    assert_eq!(tier(&node, "echo"), TierState::Baseline);
    let status = node.node.snapshot().module("hello").unwrap().tier();
    assert!(status.to_baseline_ms.is_some() && status.to_optimized_ms.is_none());

    // Requests run back to back on four connections across the swap.
    let stop = Arc::new(AtomicBool::new(false));
    let (on_baseline, on_optimized) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut drivers = Vec::new();
    for _ in 0..4 {
        let url = node.url("/hello/");
        let (stop, snapshot) = (stop.clone(), node.node.snapshot());
        let (on_baseline, on_optimized) = (on_baseline.clone(), on_optimized.clone());
        drivers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let before = snapshot.module("hello").unwrap().tier().state;
                match get(&url).await {
                    Ok(reply) if reply.status == 200 => {}
                    Ok(reply) => failures.push(format!("{}: {}", reply.status, reply.text())),
                    Err(e) => failures.push(e.to_string()),
                }
                let after = snapshot.module("hello").unwrap().tier().state;
                match (before, after) {
                    (TierState::Baseline, TierState::Baseline) => &on_baseline,
                    (TierState::Optimized, _) => &on_optimized,
                    _ => continue,
                }
                .fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    until_optimized(&node, "hello").await;
    let swapped = on_optimized.load(Ordering::Relaxed);
    while on_optimized.load(Ordering::Relaxed) < swapped + 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for driver in drivers {
        let failures = driver.await.unwrap();
        assert!(
            failures.is_empty(),
            "requests failed across the swap: {failures:?}"
        );
    }
    assert!(
        on_baseline.load(Ordering::Relaxed) > 0,
        "none served on baseline code"
    );
    assert!(
        on_optimized.load(Ordering::Relaxed) > 0,
        "none served on optimized code"
    );
    let status = node.node.snapshot().module("hello").unwrap().tier();
    assert!(status.to_optimized_ms.unwrap() >= status.to_baseline_ms.unwrap());

    // The untouched module's ready instance is rebuilt on the optimized code.
    until_optimized(&node, "echo").await;
    let echo = node
        .node
        .snapshot()
        .module("echo")
        .unwrap()
        .residency
        .current()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while echo.ready_on_current_code() == 0 || echo.ready_count() != echo.ready_on_current_code() {
        assert!(
            Instant::now() < deadline,
            "ready instances were not rebuilt"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let metrics = get(&node.admin_url("/metrics")).await.unwrap().text();
    assert!(
        metrics.contains(r#"spark_module_tier{module="hello",tier="optimized",reason=""} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"spark_module_time_to_optimized_seconds{module="hello"}"#));
    assert!(metrics.contains(r#"spark_module_time_to_baseline_seconds{module="hello"}"#));
    node.stop().await;
}

/// `hello` with a core module appended that uses a tail call (`return_call`), which
/// Wasmtime 48's Winch does not support. The module is never instantiated: the component
/// serves exactly as `hello` does, but Winch refuses to compile it.
fn hello_with_a_tail_call() -> Vec<u8> {
    let core = wat::parse_str(
        r#"(module
             (func $one (result i32) i32.const 1)
             (func (export "tail") (result i32) return_call $one))"#,
    )
    .unwrap();
    let mut component = std::fs::read(spark_testkit::guest("hello")).unwrap();
    component.push(1); // a core module section
    leb128(&mut component, core.len());
    component.extend_from_slice(&core);
    component
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[tokio::test]
async fn a_component_winch_rejects_is_served_by_cranelift_with_the_reason_visible() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("tail-call.wasm");
    std::fs::write(&wasm, hello_with_a_tail_call()).unwrap();
    let manifest = format!(
        "version = 1\n\n[[module]]\nid = \"tail\"\ncomponent = \"{}\"\nroutes = [\"/...\"]\n",
        wasm.display()
    );
    let node = TestNode::start_in(&manifest, dir, PoolingMode::Auto)
        .await
        .unwrap();
    let TierState::CraneliftOnly(reason) = tier(&node, "tail") else {
        panic!("expected cranelift-only, got {}", tier(&node, "tail"));
    };
    assert!(reason.starts_with("Winch: "), "{reason}");
    assert!(reason.contains("tail call"), "{reason}");
    assert_eq!(get(&node.url("/")).await.unwrap().status, 200);

    let status = node.admin("GET", "/v1/status", b"").await.unwrap();
    let status: spark_node::NodeStatus = serde_json::from_slice(&status.body).unwrap();
    let module = &status.modules[0];
    let shown = module.tier.as_ref().unwrap();
    assert_eq!(shown.state, TierState::CraneliftOnly(reason.clone()));
    assert!(shown.to_optimized_ms.is_some() && shown.to_baseline_ms.is_none());
    assert!(status.tiering.starts_with("on"), "{}", status.tiering);

    let metrics = get(&node.admin_url("/metrics")).await.unwrap().text();
    assert!(
        metrics
            .contains(r#"spark_module_tier{module="tail",tier="cranelift-only",reason="Winch: "#),
        "{metrics}"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_restart_uses_the_persisted_optimized_code_and_tampered_artifacts_are_recompiled() {
    const ONE: &str = "version = 1\n\n[[module]]\nid = \"hello\"\ncomponent = \"{guest:hello}\"\nroutes = [\"/...\"]\n";
    let hold = Duration::from_millis(800);
    let first = TestNode::start_in_tiered(ONE, tempfile::tempdir().unwrap(), hold)
        .await
        .unwrap();
    assert_eq!(tier(&first, "hello"), TierState::Baseline);
    assert_eq!(source(&first, "hello"), CodeSource::Compiled);
    until_optimized(&first, "hello").await;
    let dir = first.stop().await;
    let files = artifacts(dir.path());
    assert_eq!(files.len(), 2, "one artifact per tier: {files:?}");

    // A restart starts on the optimized code, loaded from the AOT cache (by the first request:
    // a module whose code is cached is registered without loading).
    let second = TestNode::start_in(ONE, dir, PoolingMode::Auto)
        .await
        .unwrap();
    assert_eq!(get(&second.url("/")).await.unwrap().status, 200);
    assert_eq!(tier(&second, "hello"), TierState::Optimized);
    assert_eq!(source(&second, "hello"), CodeSource::AotCache);
    let dir = second.stop().await;

    // The optimized artifact tampered with: never loaded; the baseline one serves at once
    // and the optimized code is compiled again.
    let optimized = files.iter().find(|p| !is_baseline(p)).unwrap().clone();
    let baseline = files.iter().find(|p| is_baseline(p)).unwrap().clone();
    flip_a_byte(&optimized);
    let third = TestNode::start_in_tiered(ONE, dir, hold).await.unwrap();
    assert_eq!(get(&third.url("/")).await.unwrap().status, 200);
    assert_eq!(tier(&third, "hello"), TierState::Baseline);
    assert_eq!(source(&third, "hello"), CodeSource::AotCache);
    until_optimized(&third, "hello").await;
    let dir = third.stop().await;

    // Both tampered with: both recompiled.
    flip_a_byte(&optimized);
    flip_a_byte(&baseline);
    let fourth = TestNode::start_in_tiered(ONE, dir, hold).await.unwrap();
    assert_eq!(get(&fourth.url("/")).await.unwrap().status, 200);
    assert_eq!(tier(&fourth, "hello"), TierState::Baseline);
    assert_eq!(source(&fourth, "hello"), CodeSource::Compiled);
    until_optimized(&fourth, "hello").await;
    let dir = fourth.stop().await;

    // An artifact of one tier renamed as the other's is refused too.
    std::fs::copy(&baseline, &optimized).unwrap();
    let fifth = TestNode::start_in_tiered(ONE, dir, hold).await.unwrap();
    assert_eq!(get(&fifth.url("/")).await.unwrap().status, 200);
    assert_eq!(tier(&fifth, "hello"), TierState::Baseline);
    assert_eq!(source(&fifth, "hello"), CodeSource::AotCache);
    fifth.stop().await;
}

#[tokio::test]
async fn tiering_off_per_node_or_per_module_waits_for_cranelift_as_before() {
    let node_off = "version = 1\n[node]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\ntiering = false\n\n[[module]]\nid = \"hello\"\ncomponent = \"{guest:hello}\"\nroutes = [\"/...\"]\n";
    let node = TestNode::start(node_off).await.unwrap();
    assert_eq!(
        tier(&node, "hello"),
        TierState::CraneliftOnly("tiering off".into())
    );
    assert_eq!(source(&node, "hello"), CodeSource::Compiled);
    assert!(node.node.runtime.baseline().is_err());
    assert_eq!(get(&node.url("/")).await.unwrap().status, 200);
    let files = artifacts(node.dir.path());
    assert_eq!(files.len(), 1, "no baseline artifact: {files:?}");
    node.stop().await;

    let module_off = "version = 1\n\n[[module]]\nid = \"hello\"\ncomponent = \"{guest:hello}\"\nroutes = [\"/...\"]\ntiering = false\n";
    let node = TestNode::start(module_off).await.unwrap();
    assert_eq!(
        tier(&node, "hello"),
        TierState::CraneliftOnly("tiering off".into())
    );
    assert!(node.node.runtime.baseline().is_ok());
    assert_eq!(artifacts(node.dir.path()).len(), 1);
    node.stop().await;
}

/// The orchestrator's view (plan and decisions), as JSON text.
async fn orchestrator(node: &TestNode) -> String {
    let reply = node.admin("GET", "/v1/orchestrator", b"").await.unwrap();
    reply.text()
}

#[tokio::test]
async fn power_save_postpones_background_optimization_until_the_charger_returns() {
    let root = tempfile::tempdir().unwrap();
    let battery = root.path().join("sys/class/power_supply/BAT0");
    std::fs::create_dir_all(&battery).unwrap();
    std::fs::write(battery.join("type"), "Battery\n").unwrap();
    std::fs::write(battery.join("capacity"), "12\n").unwrap();
    std::fs::write(battery.join("status"), "Discharging\n").unwrap();
    let manifest = format!(
        "{MANIFEST}\n[orchestrator]\ninterval = \"100ms\"\nprobe_root = {:?}\nbattery_low = 20\n",
        root.path().display().to_string()
    );
    // The optimizer waits 1.5 s before asking the gate: by then power save is on (two ticks).
    let node = TestNode::start_in_tiered(&manifest, tempfile::tempdir().unwrap(), HOLD_BASELINE)
        .await
        .unwrap();
    let reply = get(&node.url("/hello/")).await.unwrap();
    assert_eq!(reply.status, 200);
    tokio::time::sleep(HOLD_BASELINE + Duration::from_secs(2)).await;
    assert_eq!(tier(&node, "hello"), TierState::Baseline, "postponed");
    let status = node.admin("GET", "/v1/status", b"").await.unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(status["optimizer"]["postponed"], "power save", "{status:#}");
    assert!(
        status["optimizer"]["queued"].as_u64().unwrap() >= 1,
        "{status:#}"
    );
    let metrics = node.admin("GET", "/metrics", b"").await.unwrap().text();
    assert!(metrics.contains("spark_optimizer_postponed 1"), "{metrics}");
    let decisions = orchestrator(&node).await;
    assert!(
        decisions.contains("background optimization postponed (power save)"),
        "{decisions}"
    );
    // Baseline code keeps serving meanwhile.
    let reply = get(&node.url("/hello/")).await.unwrap();
    assert_eq!(reply.status, 200);

    std::fs::write(battery.join("status"), "Charging\n").unwrap();
    until_optimized(&node, "hello").await;
    until_optimized(&node, "echo").await;
    let decisions = orchestrator(&node).await;
    assert!(
        decisions.contains("background optimization resumed"),
        "{decisions}"
    );
    node.stop().await;
}
