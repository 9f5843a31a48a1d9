//! The admin listener: health, Prometheus metrics and status reflect what happened.

use spark_node::NodeStatus;
use spark_testkit::{TestNode, get};

const MANIFEST: &str = r#"
version = 1

[[module]]
id = "hello"
component = "{guest:hello}"
routes = ["/hello"]
priority = "critical"

[[module]]
id = "faults"
component = "{guest:faults}"
routes = ["/faults/..."]
priority = "background"

[[module]]
id = "idle"
component = "{guest:hello}"
routes = ["/idle"]
"#;

#[tokio::test]
async fn metrics_and_status_reflect_traffic() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    for _ in 0..3 {
        assert_eq!(get(&node.url("/hello")).await.unwrap().status, 200);
    }
    assert_eq!(get(&node.url("/faults/trap")).await.unwrap().status, 500);
    assert_eq!(get(&node.url("/missing")).await.unwrap().status, 404);

    let health = get(&node.admin_url("/healthz")).await.unwrap();
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));

    let metrics = get(&node.admin_url("/metrics")).await.unwrap().text();
    for expected in [
        r#"spark_http_requests_total{module="hello",code="200"} 3"#,
        r#"spark_http_requests_total{module="faults",code="500"} 1"#,
        r#"spark_http_request_duration_seconds_count{module="hello"} 3"#,
        r#"spark_instantiation_duration_seconds_count{module="hello"} 3"#,
        r#"spark_guest_traps_total{module="faults"} 1"#,
        r#"spark_guest_traps_total{module="hello"} 0"#,
        "spark_unrouted_requests_total 1",
        r#"spark_module_info{module="hello",priority="critical",world="wasi:http/proxy""#,
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in:\n{metrics}"
        );
    }
    assert!(metrics.contains(r#"spark_guest_cpu_seconds_total{module="hello"}"#));
    // One instance per request, and the warmth controller may have made one more ready ahead
    // of the next request between them (the predictor runs beside the test).
    let instantiations = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"spark_instantiations_total{module="hello"} "#))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(
        matches!(instantiations, Some(n) if (3.0..=4.0).contains(&n)),
        "{instantiations:?} in:\n{metrics}"
    );
    // A module that served nothing has its info and counters, but no histogram series
    // (thousands of registered, idle modules would otherwise fill every scrape); its first
    // request creates them.
    let histograms = |metrics: &str| {
        ["http_request_duration", "instantiation_duration"]
            .iter()
            .filter(|name| {
                metrics.contains(&format!(r#"spark_{name}_seconds_count{{module="idle"}}"#))
            })
            .count()
    };
    assert!(metrics.contains(r#"spark_module_info{module="idle""#));
    assert!(metrics.contains(r#"spark_guest_traps_total{module="idle"} 0"#));
    assert_eq!(histograms(&metrics), 0, "{metrics}");
    assert!(!metrics.contains(r#"spark_orchestrator_decisions_total{module="idle"}"#));
    assert_eq!(get(&node.url("/idle")).await.unwrap().status, 200);
    let metrics = get(&node.admin_url("/metrics")).await.unwrap().text();
    assert_eq!(histograms(&metrics), 2, "{metrics}");
    assert!(metrics.contains(r#"spark_http_request_duration_seconds_count{module="idle"} 1"#));

    let status: NodeStatus =
        serde_json::from_slice(&node.admin("GET", "/v1/status", b"").await.unwrap().body).unwrap();
    let hello = status.modules.iter().find(|m| m.id == "hello").unwrap();
    assert_eq!(hello.priority, "critical");
    assert_eq!(hello.stats.invocations, 3);
    assert_eq!(hello.digest.len(), 64);
    assert!(status.allocation == "pooling" || status.allocation.starts_with("on-demand"));
    node.stop().await;
}
