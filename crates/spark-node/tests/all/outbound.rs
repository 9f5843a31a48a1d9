//! Outbound HTTP goes only to the hosts a module's manifest allows, never back to the node
//! or its loopback unless an entry names that address by IP literal, over pooled connections.
//! (The in-flight limit with two concurrent requests is tested in `spark-runtime`: the `echo`
//! guest sends one request at a time.)

use std::net::IpAddr;
use std::time::Duration;

use spark_testkit::{Reply, TestNode, get};

use crate::upstream;

async fn fetch(node: &TestNode, module: &str, url: &str) -> Reply {
    get(&node.url(&format!("/{module}/fetch?url={url}")))
        .await
        .unwrap()
}

fn outbound_counts(node: &TestNode, module: &str) -> (u64, u64) {
    let stats = node
        .node
        .snapshot()
        .module(module)
        .unwrap()
        .stats
        .snapshot();
    (stats.outbound_requests, stats.outbound_denied)
}

fn assert_prohibited(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 502, "{what}: {}", reply.text());
    assert!(
        reply.text().contains("DestinationIpProhibited"),
        "{what}: {}",
        reply.text()
    );
}

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

#[tokio::test]
async fn names_and_wildcards_never_reach_loopback_an_ip_literal_does() {
    let upstream = upstream::start_on("127.0.0.1:0", "upstream says hi", Duration::ZERO).await;
    let port = upstream.addr.port();
    let manifest = format!(
        r#"
version = 1

[[module]]
id = "by-name"
component = "{{guest:echo}}"
routes = ["/by-name/..."]
allowed_outbound_hosts = ["http://localhost:{port}"]

[[module]]
id = "wildcard"
component = "{{guest:echo}}"
routes = ["/wildcard/..."]
allowed_outbound_hosts = ["http://*:*"]

[[module]]
id = "literal"
component = "{{guest:echo}}"
routes = ["/literal/..."]
allowed_outbound_hosts = ["http://127.0.0.1:{port}"]
"#
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let by_name = format!("http://localhost:{port}/data");
    let by_ip = format!("http://127.0.0.1:{port}/data");

    assert_prohibited(&fetch(&node, "by-name", &by_name).await, "by name");
    assert_eq!(outbound_counts(&node, "by-name"), (1, 1));
    assert_prohibited(&fetch(&node, "wildcard", &by_ip).await, "wildcard, IP");
    assert_prohibited(&fetch(&node, "wildcard", &by_name).await, "wildcard, name");
    assert_eq!(outbound_counts(&node, "wildcard"), (2, 2));
    assert_eq!(upstream.connections(), 0, "nothing was dialled");

    let ok = fetch(&node, "literal", &by_ip).await;
    assert_eq!(
        (ok.status, ok.text().as_str()),
        (200, "upstream 200: upstream says hi")
    );
    assert_eq!(outbound_counts(&node, "literal"), (1, 0));
    node.stop().await;
}

/// The address this machine sends from towards a public address (no packet is sent).
fn non_loopback_local_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("198.51.100.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn a_guest_allowed_everywhere_cannot_reach_the_node_itself() {
    let manifest = r#"
version = 1
[node]
listen = "0.0.0.0:0"
admin = "0.0.0.0:0"
shutdown_grace = "5s"

[[module]]
id = "any"
component = "{guest:echo}"
routes = ["/any/..."]
allowed_outbound_hosts = ["http://*:*"]
"#;
    let node = TestNode::start(manifest).await.unwrap();
    let (public, admin) = (node.node.http_addr.port(), node.node.admin_addr.port());
    let on = |host: &str, port: u16, path: &str| format!("http://{host}:{port}{path}");
    let nested = |host: &str| on(host, public, "/any/env");
    let mut targets = vec![
        on("127.0.0.1", admin, "/metrics"),
        on("localhost", admin, "/metrics"),
        on("127.0.0.1", public, "/any/env"),
        nested("localhost"),
        on("0.0.0.0", admin, "/metrics"),
        on("169.254.169.254", 80, "/latest/meta-data/"),
    ];
    let local = non_loopback_local_ip()
        .expect("this test needs a non-loopback local address (a route to 198.51.100.1)");
    let local = local.to_string();
    targets.push(on(&local, admin, "/metrics"));
    targets.push(nested(&local));
    let direct = get(&format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .unwrap();
    assert_eq!(direct.status, 200, "the admin port answers from outside");
    for target in &targets {
        let reply = get(&format!("http://127.0.0.1:{public}/any/fetch?url={target}"))
            .await
            .unwrap();
        assert_prohibited(&reply, target);
    }
    let n = targets.len() as u64;
    assert_eq!(outbound_counts(&node, "any"), (n, n));

    // The same local address on a port that is not the node's is an ordinary destination.
    let elsewhere = upstream::start_on("0.0.0.0:0", "not the node", Duration::ZERO).await;
    let target = on(&local, elsewhere.addr.port(), "/");
    let reply = get(&format!("http://127.0.0.1:{public}/any/fetch?url={target}"))
        .await
        .unwrap();
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "upstream 200: not the node")
    );
    node.stop().await;
}

#[tokio::test]
async fn connections_to_an_allowed_host_are_reused() {
    let upstream = upstream::start_on("127.0.0.1:0", "pooled", Duration::ZERO).await;
    let manifest = format!(
        r#"
version = 1

[[module]]
id = "api"
component = "{{guest:echo}}"
routes = ["/api/..."]
allowed_outbound_hosts = ["http://{addr}"]
"#,
        addr = upstream.addr
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let target = format!("http://{}/data", upstream.addr);
    const REQUESTS: u64 = 20;
    for _ in 0..REQUESTS {
        let reply = fetch(&node, "api", &target).await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "upstream 200: pooled")
        );
    }
    assert_eq!(outbound_counts(&node, "api"), (REQUESTS, 0));
    assert_eq!(
        upstream.connections(),
        1,
        "{REQUESTS} sequential requests from {REQUESTS} invocations share one connection"
    );
    node.stop().await;
}

#[tokio::test]
async fn the_manifests_in_flight_limit_reaches_the_guest() {
    let upstream = upstream::start_on("127.0.0.1:0", "one at a time", Duration::ZERO).await;
    let manifest = format!(
        r#"
version = 1

[[module]]
id = "one"
component = "{{guest:echo}}"
routes = ["/one/..."]
allowed_outbound_hosts = ["http://{addr}"]
[module.limits]
outbound_requests = 1

[[module]]
id = "none"
component = "{{guest:echo}}"
routes = ["/none/..."]
allowed_outbound_hosts = ["http://{addr}"]
[module.limits]
outbound_requests = 0
"#,
        addr = upstream.addr
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let target = format!("http://{}/", upstream.addr);
    for _ in 0..2 {
        let reply = fetch(&node, "one", &target).await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "upstream 200: one at a time"),
            "one request at a time, each freeing its place"
        );
    }
    let refused = fetch(&node, "none", &target).await;
    assert_eq!(refused.status, 502, "{}", refused.text());
    assert!(
        refused.text().contains("ConnectionLimitReached"),
        "{}",
        refused.text()
    );
    assert_eq!(outbound_counts(&node, "none"), (1, 1));
    node.stop().await;
}
