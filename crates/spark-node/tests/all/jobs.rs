//! Scheduled jobs run on their period, report failures, and never overlap.

use std::time::Duration;

use spark_node::JobOutcome;
use spark_testkit::TestNode;

const MANIFEST: &str = r#"
version = 1

[[module]]
id = "sync"
component = "{guest:inventory-sync}"
schedule = { every = "1s" }
priority = "background"
[module.env]
ITEMS = "1000"

[[module]]
id = "broken-sync"
component = "{guest:inventory-sync}"
schedule = { every = "1h" }
[module.env]
FAIL = "1"

[[module]]
id = "slow-sync"
component = "{guest:inventory-sync}"
schedule = { every = "1h" }
[module.env]
ITEMS = "200000000"
[module.limits]
timeout = "3s"

[[module]]
id = "http-job"
component = "{guest:hello}"
schedule = { every = "1h" }
"#;

async fn run_now(node: &TestNode, id: &str) -> JobOutcome {
    let reply = node
        .admin("POST", &format!("/v1/jobs/{id}/run"), b"")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

#[tokio::test]
async fn a_job_runs_every_period() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let runs = node
        .node
        .snapshot()
        .module("sync")
        .unwrap()
        .stats
        .snapshot()
        .invocations;
    assert!(
        (2..=4).contains(&runs),
        "expected about 3 runs in 3.5 s with every = 1s, got {runs}"
    );
    node.stop().await;
}

#[tokio::test]
async fn outcomes_are_reported() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    assert_eq!(
        run_now(&node, "http-job").await.outcome,
        "ok",
        "an HTTP component runs as a job with GET /"
    );
    let failed = run_now(&node, "broken-sync").await;
    assert_eq!(failed.outcome, "failed");
    assert!(failed.error.unwrap().contains("failure status"));

    // A run that is still going is not doubled up.
    let (url, auth) = (
        node.admin_url("/v1/jobs/slow-sync/run"),
        format!("Bearer {}", node.token()),
    );
    let slow = tokio::spawn(async move {
        spark_testkit::request_with("POST", &url, &[("authorization", auth.as_str())], b"").await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(run_now(&node, "slow-sync").await.outcome, "skipped");
    let slow: JobOutcome = serde_json::from_slice(&slow.await.unwrap().unwrap().body).unwrap();
    assert_eq!(
        slow.outcome, "timeout",
        "the 3 s limit stops a run that would take far longer"
    );

    let unknown = node.admin("POST", "/v1/jobs/nope/run", b"").await.unwrap();
    assert_eq!(unknown.status, 404);
    node.stop().await;
}
