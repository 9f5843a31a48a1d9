//! Guests that try to make the host hold memory for them (headers, unsent bodies, handles,
//! logs): each is stopped at its own limit with a clear status, the node's memory stays
//! bounded, and the node keeps serving. And the node-wide bound: running invocations never
//! reserve more than `node.max_memory` allows; lower classes are refused first.

use std::time::Duration;

use spark_testkit::{TestNode, get};

use super::support::{IDLE, series, settle};

const HOGS: &str = r#"
version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"

[[module]]
id = "hog"
component = "{guest:faults}"
routes = ["/hog/..."]
[module.limits]
memory = "32MiB"
host_memory = "16MiB"
resources = 500
log = "64KiB"

[[module]]
id = "shop"
component = "{guest:hello}"
routes = ["/shop"]
priority = "critical"
"#;

/// Resident memory of this process (the node runs in it), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_exhausting_host_memory_are_stopped_at_their_limit() {
    let node = TestNode::start(HOGS).await.unwrap();
    let before = rss();
    let mut peak = before;
    for (path, expect) in [
        ("/hog/hog-fields", "host memory limit"),
        ("/hog/hog-bodies", "limit"),
        ("/hog/hog-handles", "resource handles"),
    ] {
        for _ in 0..3 {
            let reply = get(&node.url(path)).await.unwrap();
            assert_eq!(reply.status, 500, "{path}: {}", reply.text());
            assert!(reply.text().contains(expect), "{path}: {}", reply.text());
            peak = peak.max(rss());
            assert_eq!(get(&node.url("/shop")).await.unwrap().status, 200);
        }
    }
    let flood = get(&node.url("/hog/log-flood?mb=32")).await.unwrap();
    assert_eq!(
        flood.status, 200,
        "logging past the limit drops lines, it does not fail"
    );
    peak = peak.max(rss());
    assert!(
        peak < before + (160 << 20),
        "RSS grew from {} MiB to {} MiB",
        before >> 20,
        peak >> 20
    );
    assert!(
        series(
            &node,
            r#"spark_guest_host_memory_limit_exceeded_total{module="hog"}"#
        )
        .await
            >= 3.0
    );
    assert!(
        series(
            &node,
            r#"spark_guest_resource_limit_exceeded_total{module="hog"}"#
        )
        .await
            >= 3.0
    );
    assert_eq!(settle(&node, "hog", Duration::from_secs(3)).await, IDLE);
    // The hogs' stores are dropped on their tasks, a moment after their slots are given back
    // (longer on a loaded machine): the charge must come back to nothing, not stay.
    spark_testkit::wait_until(
        Duration::from_secs(5),
        "nothing is held once the hogs are gone",
        || async { series(&node, "spark_host_memory_bytes").await < (1 << 20) as f64 },
    )
    .await;
    node.stop().await;
}

const BOUNDED: &str = r#"
version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
max_memory = "400MiB"

[[module]]
id = "spin"
component = "{guest:faults}"
routes = ["/spin/..."]
[module.limits]
memory = "64MiB"
host_memory = "16MiB"
timeout = "30s"
cpu_time = "30s"
queue = 0

[[module]]
id = "shop"
component = "{guest:hello}"
routes = ["/shop"]
priority = "critical"
[module.limits]
memory = "16MiB"
host_memory = "8MiB"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_invocations_never_reserve_more_than_the_node_bound() {
    let node = TestNode::start(BOUNDED).await.unwrap();
    // 300 MiB for invocations (three quarters of 400 MiB): normal work leaves 30 MiB for
    // critical, so three 80 MiB loops fit and the fourth is refused.
    let mut loops = Vec::new();
    for _ in 0..3 {
        loops.push(super::support::raw(&node, b"GET /spin/loop HTTP/1.1\r\nHost: x\r\n\r\n").await);
    }
    let spin = node.node.snapshot().module("spin").cloned().unwrap();
    assert!(
        spark_testkit::eventually(Duration::from_secs(5), || spin.admission.running() == 3).await
    );
    let refused = get(&node.url("/spin/loop")).await.unwrap();
    assert_eq!(refused.status, 503);
    assert!(refused.text().contains("memory"), "{}", refused.text());
    assert!(refused.headers.contains_key("retry-after"));
    let reserved = series(&node, "spark_node_memory_reserved_bytes").await;
    assert_eq!(reserved, ((3 * 80) << 20) as f64);
    for _ in 0..5 {
        assert_eq!(
            get(&node.url("/shop")).await.unwrap().status,
            200,
            "critical fits in its reserve"
        );
    }
    drop(loops);
    assert_eq!(settle(&node, "spin", Duration::from_secs(5)).await, IDLE);
    node.stop().await;
}
