//! Standard `wasi:http` components served unmodified, routed by the manifest.

use spark_testkit::{TestNode, get, post, request_with};

const MANIFEST: &str = r#"
version = 1

[[module]]
id = "hello"
component = "{guest:hello}"
routes = ["/", "/hello"]

[[module]]
id = "echo"
component = "{guest:echo}"
routes = ["/api/..."]
priority = "critical"
[module.env]
GREETING = "hej"
STORE = "store-42"
[module.config]
checkout_mode = "express"
"#;

#[tokio::test]
async fn serves_routes_env_and_json() {
    let node = TestNode::start(MANIFEST).await.unwrap();

    let hello = get(&node.url("/")).await.unwrap();
    assert_eq!(hello.status, 200);
    assert_eq!(hello.text(), "Hello from Spark!\n");
    assert_eq!(get(&node.url("/hello/")).await.unwrap().status, 200);

    let echoed = post(
        &node.url("/api/orders?x=1"),
        br#"{"item":"beans","tags":["a","b"]}"#,
    )
    .await
    .unwrap();
    assert_eq!(echoed.status, 200);
    let body = echoed.text();
    assert!(body.contains(r#""item":"BEANS""#), "{body}");
    assert!(body.contains(r#""method":"POST""#), "{body}");
    assert!(body.contains(r#""path":"/api/orders""#), "{body}");
    assert!(body.contains(r#""query":"x=1""#), "{body}");
    assert!(body.contains(r#""fields":5"#), "{body}");

    let bad = post(&node.url("/api/orders"), b"{not json").await.unwrap();
    assert_eq!(bad.status, 400, "the guest's own 400 passes through");

    let env = get(&node.url("/api/env")).await.unwrap();
    assert!(env.text().contains(r#""GREETING":"hej""#), "{}", env.text());
    assert!(
        env.text().contains(r#""STORE":"store-42""#),
        "{}",
        env.text()
    );
    assert!(
        !env.text().contains("PATH"),
        "the host environment is not leaked: {}",
        env.text()
    );

    let config = get(&node.url("/api/config")).await.unwrap();
    assert_eq!(config.status, 200, "{}", config.text());
    assert_eq!(config.text(), "{\"checkout_mode\":\"express\"}\n");

    let missing = get(&node.url("/nope")).await.unwrap();
    assert_eq!(missing.status, 404);
    node.stop().await;
}

#[tokio::test]
async fn guests_see_the_matched_route_and_path_info_not_forged_ones() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let forged = [
        ("spark-path-info", "/evil"),
        ("spark-matched-route", "/admin/..."),
    ];
    let reply = request_with("POST", &node.url("/api/a/b"), &forged, b"{}")
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let body = reply.text();
    assert!(body.contains(r#""path_info":"/a/b""#), "{body}");
    assert!(body.contains(r#""route":"/api/...""#), "{body}");
    node.stop().await;
}

#[tokio::test]
async fn serves_many_concurrent_requests_with_fresh_instances() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let url = node.url("/");
    let requests = (0..200).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { get(&url).await.map(|r| r.status) })
    });
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap(), 200);
    }
    let status = node.node.snapshot();
    let hello = status.module("hello").unwrap();
    // The predictor may have made instances ready ahead of calls (a revision during the burst
    // on a loaded machine): those are fresh too, and any not taken yet are still in the pool.
    // Read until an instance being made ready is not half counted.
    let ready = || hello.residency.current().map_or(0, |g| g.ready_count()) as u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let before = ready();
        let stats = hello.stats.snapshot();
        let settled = before == ready();
        assert_eq!(stats.invocations, 200);
        if settled && stats.instantiations == 200 + before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "one fresh instance per request: {} instantiations for 200 requests and {before} \
             ready instances",
            stats.instantiations
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    node.stop().await;
}
