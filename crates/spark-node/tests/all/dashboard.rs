//! Dashboard login on a node running on a manual clock: a login code expires after two
//! minutes of the node's time, and a session carries only reads; the data endpoint's rates.

use std::time::Duration;

use spark_testkit::{TestNode, get, request_with};

const MANIFEST: &str = r#"
version = 1
[orchestrator]
enabled = false

[[module]]
id = "hello"
component = "{guest:hello}"
routes = ["/hello"]
"#;

async fn mint(node: &TestNode) -> String {
    let reply = node
        .admin("POST", "/v1/dashboard/login", b"")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let login: spark_node::LoginCode = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(login.expires_in_secs, 120);
    node.admin_url(&login.path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_code_expires_after_two_minutes_of_node_time() {
    let node = TestNode::start_manual(MANIFEST).await.unwrap();
    let late = mint(&node).await;
    let in_time = mint(&node).await;
    node.advance(Duration::from_secs(119)).await;
    let reply = get(&in_time).await.unwrap();
    assert_eq!(reply.status, 303, "still valid at 119 s");
    node.advance(Duration::from_secs(1)).await;
    let reply = get(&late).await.unwrap();
    assert_eq!(reply.status, 401, "expired at 120 s");
    assert!(
        reply.text().contains("older than two minutes"),
        "{}",
        reply.text()
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_nothing_is_minted_or_read() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let mint = request_with("POST", &node.admin_url("/v1/dashboard/login"), &[], b"")
        .await
        .unwrap();
    assert_eq!(mint.status, 401);
    let wrong = request_with(
        "POST",
        &node.admin_url("/v1/dashboard/login"),
        &[("authorization", "Bearer 00")],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 401);
    assert_eq!(
        get(&node.admin_url("/v1/dashboard")).await.unwrap().status,
        401
    );

    // With the token: the view, with the orchestrator off (no modes, no p99).
    let reply = node.admin("GET", "/v1/dashboard", b"").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let view: spark_node::DashboardView = serde_json::from_slice(&reply.body).unwrap();
    assert!(view.orchestrator.is_none() && view.fleet.is_none());
    assert_eq!(view.modules[0].id, "hello");
    assert_eq!(view.modules[0].p99_ms, None);
    node.stop().await;
}
