//! Clients that leave: an HTTP/1 close or an HTTP/2 reset cancels the guest they started and
//! gives back every slot, queue place and reservation (on a connection served apart too, and a
//! cancelled critical guest no longer counts as critical work); a lower class's abandoned work
//! never makes a critical module refuse.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use spark_testkit::{TestNode, get};

use super::support::{IDLE, gauges, h2, raw, request, series, settle};

const STORM: &str = r#"
version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
max_instances = 20

[[module]]
id = "spin"
component = "{guest:faults}"
routes = ["/spin/..."]
[module.limits]
concurrency = 1
queue = 64
queue_timeout = "10s"
timeout = "30s"
cpu_time = "30s"

[[module]]
id = "wide"
component = "{guest:faults}"
routes = ["/wide/..."]
[module.limits]
concurrency = 64
timeout = "30s"
cpu_time = "30s"

[[module]]
id = "shop"
component = "{guest:hello}"
routes = ["/shop"]
priority = "critical"
"#;

/// Samples the most guests `module` ever had running at once until `stop`.
fn watch_guests(
    node: &TestNode,
    module: &str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    let slot = node.node.snapshot().module(module).cloned().unwrap();
    tokio::spawn(async move {
        let mut most = 0;
        while !stop.load(Ordering::Relaxed) {
            most = most.max(slot.stats.snapshot().in_flight);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        most
    })
}

/// Critical requests until `stop`: (answered 200, refused or failed).
fn shoppers(node: &TestNode, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, u64)> {
    let url = node.url("/shop");
    tokio::spawn(async move {
        let (mut ok, mut bad) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            match get(&url).await {
                Ok(reply) if reply.status == 200 => ok += 1,
                _ => bad += 1,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (ok, bad)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_disconnect_storm_leaves_at_most_one_guest_and_every_gauge_at_zero() {
    let node = TestNode::start(STORM).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let most = watch_guests(&node, "spin", stop.clone());
    let shop = shoppers(&node, stop.clone());
    let storm: Vec<_> = (0..50)
        .map(|_| {
            let addr = node.node.http_addr;
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                tokio::io::AsyncWriteExt::write_all(
                    &mut stream,
                    b"GET /spin/loop HTTP/1.1\r\nHost: spark\r\n\r\n",
                )
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            })
        })
        .collect();
    for client in storm {
        client.await.unwrap();
    }
    let after = settle(&node, "spin", Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let (most, (ok, bad)) = (most.await.unwrap(), shop.await.unwrap());
    assert!(most <= 1, "{most} guests ran at once with concurrency = 1");
    assert_eq!(after, IDLE, "every gauge back at zero");
    let stats = node
        .node
        .snapshot()
        .module("spin")
        .cloned()
        .unwrap()
        .stats
        .snapshot();
    assert!(stats.cancelled >= 1, "the guests were cancelled: {stats:?}");
    assert!(ok > 0 && bad == 0, "critical: {ok} ok, {bad} refused");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_resets_cancel_their_guests_and_the_connection_stays_usable() {
    let node = TestNode::start(STORM).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let most = watch_guests(&node, "spin", stop.clone());
    let mut sender = h2(&node).await;
    for _ in 0..48 {
        sender.ready().await.unwrap();
        let response = sender.send_request(request(&node, "/spin/loop"));
        // Start the request, then give up on it: hyper resets the stream.
        let _ = tokio::time::timeout(Duration::from_millis(20), response).await;
    }
    let after = settle(&node, "spin", Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    assert!(
        most.await.unwrap() <= 1,
        "resets never run guests past the cap"
    );
    assert_eq!(after, IDLE);
    sender.ready().await.unwrap();
    let reply = sender.send_request(request(&node, "/shop")).await.unwrap();
    assert_eq!(
        reply.status(),
        200,
        "the connection is within its reset budget"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_whose_client_left_frees_its_queue_place() {
    let manifest = STORM.replace("queue = 64", "queue = 1");
    let node = TestNode::start(&manifest).await.unwrap();
    let running = raw(&node, b"GET /spin/loop HTTP/1.1\r\nHost: spark\r\n\r\n").await;
    let spin = node.node.snapshot().module("spin").cloned().unwrap();
    assert!(
        spark_testkit::eventually(Duration::from_secs(5), || spin.admission.running() == 1).await
    );
    let queued = raw(&node, b"GET /spin/loop HTTP/1.1\r\nHost: spark\r\n\r\n").await;
    assert!(
        spark_testkit::eventually(Duration::from_secs(5), || spin.admission.queued() == 1).await
    );
    drop(queued);
    assert!(
        spark_testkit::eventually(Duration::from_secs(5), || spin.admission.queued() == 0).await,
        "the place of a client that left is given back"
    );
    let again = raw(&node, b"GET /spin/loop HTTP/1.1\r\nHost: spark\r\n\r\n").await;
    assert!(
        spark_testkit::eventually(Duration::from_secs(5), || spin.admission.queued() == 1).await,
        "and taken by the next request instead of a 503 queue-full"
    );
    drop((running, again));
    assert_eq!(settle(&node, "spin", Duration::from_secs(5)).await, IDLE);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_lower_class_work_never_makes_a_critical_module_refuse() {
    let node = TestNode::start(STORM).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let shop = shoppers(&node, stop.clone());
    let abandoned = Arc::new(AtomicU64::new(0));
    let storm: Vec<_> = (0..25)
        .map(|_| {
            let (addr, stop, abandoned) = (node.node.http_addr, stop.clone(), abandoned.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let _ = tokio::io::AsyncWriteExt::write_all(
                        &mut stream,
                        b"GET /wide/loop HTTP/1.1\r\nHost: spark\r\n\r\n",
                    )
                    .await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    abandoned.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for client in storm {
        client.await.unwrap();
    }
    let (ok, bad) = shop.await.unwrap();
    assert!(abandoned.load(Ordering::Relaxed) >= 100);
    // 25 clients keep up to 18 loops running (the node's 20 slots less critical's reserve):
    // critical shares the CPU with them (same executor), but it is never refused.
    assert!(ok > 0, "critical answered {ok} times");
    assert_eq!(
        bad, 0,
        "critical was refused {bad} times while 25 clients abandoned work"
    );
    assert_eq!(settle(&node, "wide", Duration::from_secs(5)).await, IDLE);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_resets_past_its_budget_is_closed() {
    let manifest = STORM.replace(
        "max_instances = 20",
        "max_instances = 20\nh2_reset_budget = 5",
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let mut sender = h2(&node).await;
    let mut refused = false;
    for _ in 0..30 {
        if sender.ready().await.is_err() {
            refused = true;
            break;
        }
        let response = sender.send_request(request(&node, "/spin/loop"));
        let _ = tokio::time::timeout(Duration::from_millis(20), response).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the node closed the connection");
    assert!(
        series(
            &node,
            r#"spark_connections_closed_total{listener="public",reason="reset_budget"}"#
        )
        .await
            >= 1.0
    );
    assert_eq!(gauges(&node, "spin").await.queued, 0);
    node.stop().await;
}

/// A client that reconnects each time its connection is closed for resetting too many
/// streams is held to its connection rate: a connection cut for misbehaviour does not give
/// its token back, though it carried requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_past_the_reset_budget_spends_the_connection_rate() {
    let manifest = STORM.replace(
        "max_instances = 20",
        "max_instances = 20\nh2_reset_budget = 5\nmax_connections_per_client = 2\nmax_connection_rate_per_client = 1",
    );
    let node = TestNode::start(&manifest).await.unwrap();
    // Resets streams on a new HTTP/2 connection until the node closes it (or refuses it at
    // once); true if any request was answered or abandoned on it before.
    let reset_until_closed = || async {
        let Ok(stream) = tokio::net::TcpStream::connect(node.node.http_addr).await else {
            return false;
        };
        let Ok((mut sender, connection)) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await
        else {
            return false;
        };
        tokio::spawn(connection);
        let mut sent = false;
        for _ in 0..30 {
            if sender.ready().await.is_err() {
                break;
            }
            let response = sender.send_request(request(&node, "/spin/loop"));
            sent = true;
            let _ = tokio::time::timeout(Duration::from_millis(20), response).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sent
    };
    // The burst is two connections; each is cut, and neither gives its token back.
    assert!(reset_until_closed().await);
    assert!(reset_until_closed().await);
    let refused = r#"spark_connections_refused_total{listener="public",reason="max_connection_rate_per_client"}"#;
    let mut attempts = 0;
    while series(&node, refused).await < 1.0 {
        reset_until_closed().await;
        attempts += 1;
        assert!(
            attempts < 5,
            "the reconnecting client was never held to its rate"
        );
    }
    assert!(
        series(
            &node,
            r#"spark_connections_closed_total{listener="public",reason="reset_budget"}"#
        )
        .await
            >= 2.0
    );
    node.stop().await;
}

/// Critical guests that loop until their clients leave, on connections served apart (each
/// opens with a complete critical request, so it moves to the critical executor).
const CRITICAL_LOOPS: &str = r#"
version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"

[[module]]
id = "vip"
component = "{guest:faults}"
routes = ["/vip/..."]
priority = "critical"
[module.limits]
concurrency = 2
queue = 64
queue_timeout = "10s"
timeout = "30s"
cpu_time = "30s"

[[module]]
id = "spin"
component = "{guest:faults}"
routes = ["/spin/..."]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_leave_connections_served_apart_give_back_everything_and_end_critical_work() {
    let node = TestNode::start(CRITICAL_LOOPS).await.unwrap();
    let vip = node.node.snapshot().module("vip").cloned().unwrap();
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(raw(&node, b"GET /vip/loop HTTP/1.1\r\nHost: spark\r\n\r\n").await);
    }
    assert!(
        spark_testkit::eventually(Duration::from_secs(5), || {
            vip.admission.running() == 2 && vip.admission.queued() == 8
        })
        .await,
        "two loops running, eight queued"
    );
    let apart = r#"spark_connections_served_apart_total{listener="public"}"#;
    assert_eq!(series(&node, apart).await, 10.0, "every one moved");
    // While they loop, critical work is live: a normal guest yields (loading the modules may
    // have counted one already).
    let yielded = r#"spark_guests_yielded_total{module="spin"}"#;
    let before = series(&node, yielded).await;
    assert_eq!(get(&node.url("/spin/ok")).await.unwrap().status, 200);
    assert_eq!(series(&node, yielded).await, before + 1.0);

    drop(clients);
    assert_eq!(settle(&node, "vip", Duration::from_secs(5)).await, IDLE);
    assert_eq!(
        super::support::series_settles(
            &node,
            r#"spark_connections_open{listener="public"}"#,
            0.0,
            Duration::from_secs(5),
        )
        .await,
        0.0,
        "the moved connections are closed and counted out"
    );
    assert_eq!(
        series(&node, r#"spark_connections_apart{listener="public"}"#).await,
        0.0,
        "and their places apart given back"
    );
    // The cancelled critical guests ended their part of critical work: a second later normal
    // guests run at normal priority again.
    tokio::time::sleep(spark_runtime::critical_first::LIVE_FOR + Duration::from_millis(200)).await;
    assert_eq!(get(&node.url("/spin/ok")).await.unwrap().status, 200);
    assert_eq!(
        series(&node, yielded).await,
        before + 1.0,
        "no longer yielding"
    );
    node.stop().await;
}
