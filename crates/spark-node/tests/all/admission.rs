//! A module at its concurrency cap queues a bounded number of requests for a bounded time;
//! the rest get 503 with Retry-After at once.

use std::time::Duration;

use spark_testkit::{TestNode, get};

const MANIFEST: &str = r#"
version = 1

[[module]]
id = "slowpoke"
component = "{guest:faults}"
routes = ["/..."]
[module.limits]
concurrency = 1
queue = 1
queue_timeout = "300ms"
cpu_time = "1500ms"
"#;

#[tokio::test]
async fn queue_full_and_queue_timeout_get_503_with_retry_after() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let hog_url = node.url("/loop");
    let hog = tokio::spawn(async move { get(&hog_url).await });
    tokio::time::sleep(Duration::from_millis(150)).await;

    let queued_url = node.url("/ok");
    let queued = tokio::spawn(async move { get(&queued_url).await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let full = get(&node.url("/ok")).await.unwrap();
    assert_eq!(full.status, 503);
    assert_eq!(full.headers.get("retry-after").unwrap(), "1");
    assert!(full.text().contains("queue is full"), "{}", full.text());

    let timed_out = queued.await.unwrap().unwrap();
    assert_eq!(timed_out.status, 503);
    assert!(
        timed_out.text().contains("no slot freed up in time"),
        "{}",
        timed_out.text()
    );

    assert_eq!(hog.await.unwrap().unwrap().status, 504);
    assert_eq!(
        get(&node.url("/ok")).await.unwrap().status,
        200,
        "capacity is back once the hog ends"
    );
    let slot = node.node.snapshot().module("slowpoke").cloned().unwrap();
    assert_eq!(slot.admission.rejected(), 2);
    // The guest may still be returning from its handler after the client has its answer:
    // its slot is free once the guest has ended.
    assert!(
        spark_testkit::eventually(Duration::from_secs(2), || slot.admission.running() == 0).await,
        "running: {}",
        slot.admission.running()
    );
    // `spark status` counts what `/metrics` counts: refusals included.
    let status: spark_node::NodeStatus =
        serde_json::from_slice(&node.admin("GET", "/v1/status", b"").await.unwrap().body).unwrap();
    let counts = status
        .modules
        .iter()
        .find(|m| m.id == "slowpoke")
        .unwrap()
        .requests;
    assert_eq!(
        (counts.requests, counts.errors, counts.refused),
        (4, 3, 2),
        "a 504, two 503 refusals and a 200"
    );
    node.stop().await;
}
