//! Outbound HTTP goes only to the hosts a module's manifest allows.

use std::time::Duration;

use spark_testkit::{TestNode, get};

use crate::upstream;

#[tokio::test]
async fn only_allowed_hosts_are_reachable() {
    let upstream = upstream::start("upstream says hi", Duration::ZERO).await;
    let manifest = format!(
        r#"
version = 1

[[module]]
id = "allowed"
component = "{{guest:echo}}"
routes = ["/allowed/..."]
allowed_outbound_hosts = ["http://127.0.0.1:{port}"]

[[module]]
id = "other-port"
component = "{{guest:echo}}"
routes = ["/other-port/..."]
allowed_outbound_hosts = ["http://127.0.0.1:1"]

[[module]]
id = "default"
component = "{{guest:echo}}"
routes = ["/default/..."]
"#,
        port = upstream.port()
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let target = format!("http://{upstream}/data");

    let ok = get(&node.url(&format!("/allowed/fetch?url={target}")))
        .await
        .unwrap();
    assert_eq!(
        (ok.status, ok.text().as_str()),
        (200, "upstream 200: upstream says hi")
    );

    for module in ["other-port", "default"] {
        let denied = get(&node.url(&format!("/{module}/fetch?url={target}")))
            .await
            .unwrap();
        assert_eq!(denied.status, 502, "{module}: {}", denied.text());
        assert!(
            denied.text().contains("HttpRequestDenied"),
            "{module}: {}",
            denied.text()
        );
        let stats = node
            .node
            .snapshot()
            .module(module)
            .unwrap()
            .stats
            .snapshot();
        assert_eq!((stats.outbound_requests, stats.outbound_denied), (1, 1));
    }
    let stats = node
        .node
        .snapshot()
        .module("allowed")
        .unwrap()
        .stats
        .snapshot();
    assert_eq!((stats.outbound_requests, stats.outbound_denied), (1, 0));
    node.stop().await;
}
