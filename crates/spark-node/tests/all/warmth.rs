//! The predictor on a real node: idle modules are evicted to their compiled artifact, a
//! request for one is a (counted, reported) cold load, and a module called on a schedule is
//! loaded again just before its calls.
//!
//! Every node here runs on a manual clock: the test moves the node's time (and so the model's)
//! between real requests, and the warmth controller has acted when `advance` returns.

use std::time::Duration;

use spark_testkit::{TestNode, get};

fn loaded(node: &TestNode, id: &str) -> bool {
    node.node
        .snapshot()
        .module(id)
        .unwrap()
        .residency
        .current()
        .is_some()
}

#[tokio::test]
async fn an_evicted_module_is_loaded_on_demand_and_reports_the_cold_start() {
    let manifest = r#"
version = 1
[predictor]
interval = "200ms"
memory_budget = "64KiB"

[[module]]
id = "hello"
component = "{guest:hello}"
routes = ["/hello"]

[[module]]
id = "shop"
component = "{guest:hello}"
routes = ["/shop"]
priority = "critical"
"#;
    let node = TestNode::start_manual(manifest).await.unwrap();
    let tick = Duration::from_millis(200);
    assert!(
        node.advance_until(tick, Duration::from_secs(5), || !loaded(&node, "hello"))
            .await,
        "an idle module over the budget is evicted"
    );
    node.advance(Duration::from_millis(500)).await;
    assert!(loaded(&node, "shop"), "critical modules are never evicted");
    let metrics = get(&node.admin_url("/metrics")).await.unwrap().text();
    assert!(
        metrics.contains(r#"spark_module_loaded_bytes{module="hello"} 0"#),
        "an evicted module holds no code in memory: {metrics}"
    );
    assert!(
        !metrics.contains(r#"spark_module_loaded_bytes{module="shop"} 0"#),
        "{metrics}"
    );

    let cold = get(&node.url("/hello")).await.unwrap();
    assert_eq!(
        (cold.status, cold.text().as_str()),
        (200, "Hello from Spark!\n")
    );
    let header = cold
        .headers
        .get("spark-cold-start")
        .expect("cold start reported")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        header.starts_with("shared; "),
        "the same component is in memory for `shop`: shared, not loaded again or compiled: {header}"
    );
    let warm = get(&node.url("/hello")).await.unwrap();
    assert!(
        warm.headers.get("spark-cold-start").is_none(),
        "the next request is warm"
    );
    let slot = node.node.snapshot().module("hello").cloned().unwrap();
    let cold_starts = slot.residency.cold_starts();
    assert_eq!((cold_starts.loads, cold_starts.compiles), (1, 0));
    assert!(cold_starts.unloads >= 1);
    let metrics = get(&node.admin_url("/metrics")).await.unwrap().text();
    assert!(
        metrics.contains(r#"spark_cold_starts_total{module="hello",reason="shared"} 1"#),
        "{metrics}"
    );
    node.stop().await;
}

/// `predictor.keep_alive`: no prediction, each module stays loaded for the keep-alive after its
/// last call (model time: a minute per second of the node's clock here), then goes back to
/// its compiled artifact; nothing is loaded ahead and a critical module stays loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_keep_alive_unloads_a_module_that_long_after_its_last_call() {
    let manifest = r#"
version = 1
[predictor]
interval = "100ms"
time_scale = 60.0
keep_alive = "10m"
memory_budget = "64MiB"

[[module]]
id = "api"
component = "{guest:hello}"
routes = ["/api"]

[[module]]
id = "other"
component = "{guest:hello}"
routes = ["/other"]

[[module]]
id = "shop"
component = "{guest:hello}"
routes = ["/shop"]
priority = "critical"
"#;
    let node = TestNode::start_manual(manifest).await.unwrap();
    let tick = Duration::from_millis(100);
    assert!(
        node.advance_until(tick, Duration::from_secs(5), || !loaded(&node, "api")
            && !loaded(&node, "other"))
            .await,
        "modules never called are not kept loaded"
    );
    assert!(loaded(&node, "shop"), "critical modules are never evicted");
    let cold = |reply: &spark_testkit::Reply| reply.headers.contains_key("spark-cold-start");
    let first = get(&node.url("/api")).await.unwrap();
    assert!(first.status == 200 && cold(&first), "{:?}", first.headers);
    node.advance(Duration::from_secs(5)).await;
    let second = get(&node.url("/api")).await.unwrap();
    assert!(
        !cold(&second),
        "5 minutes after its last call the module is still loaded"
    );
    node.advance(Duration::from_secs(8)).await;
    assert!(
        loaded(&node, "api"),
        "8 minutes after its last call: still loaded"
    );
    assert!(!loaded(&node, "other"), "nothing is loaded ahead of a call");
    node.advance(Duration::from_secs(4)).await;
    assert!(
        !loaded(&node, "api"),
        "12 minutes after its last call: unloaded"
    );
    let state = node.node.warmth().state();
    assert_eq!(state.modules["api"].level, "compiled", "{state:?}");
    let third = get(&node.url("/api")).await.unwrap();
    assert!(cold(&third), "{:?}", third.headers);
    node.stop().await;
}

/// One module on the hybrid policy, model time a minute per 100 ms of the node's clock.
const HYBRID_TIMER: &str = r#"
version = 1
[predictor]
interval = "100ms"
time_scale = 600.0
policy = "hybrid"
memory_budget = "64MiB"

[[module]]
id = "timer"
component = "{guest:echo}"
routes = ["/timer/..."]
"#;

/// `predictor.policy = "hybrid"`: the histogram policy of Shahrad et al. on a real node, with
/// the paper's parameters (model time: a minute per 100 ms of the node's clock). A module
/// called every 30 minutes is kept alive for 4 hours until five idle times are in its
/// histogram; from then on it is unloaded after each call and loaded again just before the
/// next one (from 90% of the shortest idle time seen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hybrid_policy_unloads_between_calls_and_loads_before_the_next() {
    let manifest = HYBRID_TIMER;
    let node = TestNode::start_manual(manifest).await.unwrap();
    let mut cold = Vec::new();
    for round in 0..9 {
        let reply = get(&node.url("/timer/env")).await.unwrap();
        assert_eq!(reply.status, 200);
        cold.push(reply.headers.contains_key("spark-cold-start"));
        node.advance(Duration::from_secs(1)).await;
        let between = loaded(&node, "timer");
        match round {
            0..=4 => assert!(
                between,
                "kept alive while the histogram is untrusted ({round})"
            ),
            _ => assert!(
                !between,
                "unloaded between calls once it is trusted ({round})"
            ),
        }
        node.advance(Duration::from_secs(2)).await;
    }
    assert_eq!(
        cold,
        [true, false, false, false, false, false, false, false, false],
        "the first call is cold; then kept alive, then loaded ahead of each call"
    );
    node.stop().await;
}

/// The hybrid's histogram is rebuilt from the saved history at start: a module whose idle
/// times the node had learned before a restart is unloaded between calls from its first call
/// after it, not kept alive for the 4-hour keep-alive of a module it has never seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hybrid_policy_keeps_what_it_learned_across_a_restart() {
    let manifest = HYBRID_TIMER;
    let node = TestNode::start_manual(manifest).await.unwrap();
    let mut unloaded_between = false;
    for _ in 0..8 {
        assert_eq!(get(&node.url("/timer/env")).await.unwrap().status, 200);
        node.advance(Duration::from_secs(1)).await;
        unloaded_between = !loaded(&node, "timer");
        node.advance(Duration::from_secs(2)).await;
    }
    assert!(unloaded_between, "trusted before the restart");
    let dir = node.stop().await;

    // The model clock starts again from the wall clock: 24 s (four model hours) brings it
    // to 30 model minutes after the last call before the restart (at 21 s).
    let restarted = TestNode::start_in_manual(manifest, dir).await.unwrap();
    restarted.advance(Duration::from_secs(24)).await;
    assert_eq!(get(&restarted.url("/timer/env")).await.unwrap().status, 200);
    restarted.advance(Duration::from_secs(1)).await;
    assert!(
        !loaded(&restarted, "timer"),
        "unloaded after its first call since the restart: {:?}",
        restarted.node.warmth().state()
    );
    restarted.stop().await;
}

/// Model time runs 600x faster than the node's clock (a minute every 100 ms): a module called
/// every 20 minutes is called every 2 s of it, and evicted in between by the other modules,
/// each called once halfway between two of its first calls (the budget holds one module).
/// Modules never called are not pre-warmed: the competition has to be real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_called_on_a_schedule_is_prewarmed_before_its_calls() {
    let mut manifest = String::from(
        "version = 1\n[predictor]\ninterval = \"100ms\"\ntime_scale = 600.0\nmemory_budget = \"1MiB\"\n",
    );
    for id in ["report", "idle-a", "idle-b", "idle-c", "idle-d"] {
        manifest.push_str(&format!("\n[[module]]\nid = \"{id}\"\ncomponent = \"{{guest:echo}}\"\nroutes = [\"/{id}/...\"]\n"));
    }
    let node = TestNode::start_manual(&manifest).await.unwrap();
    let mut cold = Vec::new();
    for round in 0..8 {
        let reply = get(&node.url("/report/env")).await.unwrap();
        assert_eq!(reply.status, 200);
        cold.push(reply.headers.contains_key("spark-cold-start"));
        node.advance(Duration::from_secs(1)).await;
        // The others compete while the period is being learned (each called once).
        if let Some(other) = ["idle-a", "idle-b", "idle-c", "idle-d"].get(round) {
            let reply = get(&node.url(&format!("/{other}/env"))).await.unwrap();
            assert_eq!(reply.status, 200);
        }
        node.advance(Duration::from_secs(1)).await;
    }
    let report = node.node.snapshot().module("report").cloned().unwrap();
    let state = node.node.warmth().state();
    assert!(
        report.residency.cold_starts().unloads >= 2,
        "evicted between calls: {state:?}"
    );
    assert_eq!(
        &cold[5..],
        &[false, false, false],
        "once the period is learned every call is warm: {cold:?} {state:?}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart_and_a_damaged_store_starts_empty() {
    let manifest = "version = 1\n[predictor]\ninterval = \"100ms\"\ntime_scale = 600.0\n\n[[module]]\nid = \"report\"\ncomponent = \"{guest:hello}\"\nroutes = [\"/report\"]\n";
    let node = TestNode::start_manual(manifest).await.unwrap();
    for _ in 0..4 {
        assert_eq!(get(&node.url("/report")).await.unwrap().status, 200);
        node.advance(Duration::from_millis(600)).await;
    }
    let dir = node.stop().await;

    let restarted = TestNode::start_in_manual(manifest, dir).await.unwrap();
    let known = || {
        restarted
            .node
            .warmth()
            .state()
            .modules
            .get("report")
            .is_some_and(|m| m.calls_per_day.is_some())
    };
    assert!(
        restarted
            .advance_until(Duration::from_millis(100), Duration::from_secs(3), known)
            .await,
        "history restored: {:?}",
        restarted.node.warmth().state()
    );
    assert!(restarted.node.warmth().state().history_note.is_none());
    let dir = restarted.stop().await;

    std::fs::write(
        dir.path().join("data/store").join(spark_store::DB_FILE),
        b"this is not a database",
    )
    .unwrap();
    let damaged = TestNode::start_in(manifest, dir, spark_runtime::PoolingMode::Auto)
        .await
        .unwrap();
    assert_eq!(
        get(&damaged.url("/report")).await.unwrap().status,
        200,
        "a damaged store never stops the node"
    );
    let state = damaged.node.warmth().state();
    let note = state.history_note.clone().unwrap_or_default();
    assert!(
        note.contains("demand history starts empty"),
        "the node says so: {state:?}"
    );
    damaged.stop().await;
}
