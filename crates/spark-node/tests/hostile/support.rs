//! What the hostile tests share: raw sockets, an HTTP/2 client, and the node's gauges.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use spark_testkit::{TestNode, get, metric};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The node's gauges that must all read zero once nothing is going on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Gauges {
    pub running: u32,
    pub queued: u32,
    pub guests: u64,
    pub node_slots: f64,
    pub node_memory: f64,
}

pub(crate) async fn gauges(node: &TestNode, module: &str) -> Gauges {
    let slot = node
        .node
        .snapshot()
        .module(module)
        .cloned()
        .expect("module");
    let page = get(&node.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text();
    Gauges {
        running: slot.admission.running(),
        queued: slot.admission.queued(),
        guests: slot.stats.snapshot().in_flight,
        node_slots: metric(&page, "spark_node_slots_in_use").expect("slots gauge"),
        node_memory: metric(&page, "spark_node_memory_reserved_bytes").expect("memory gauge"),
    }
}

pub(crate) const IDLE: Gauges = Gauges {
    running: 0,
    queued: 0,
    guests: 0,
    node_slots: 0.0,
    node_memory: 0.0,
};

/// Waits until the module's gauges are all back to zero; the last reading if they are not.
pub(crate) async fn settle(node: &TestNode, module: &str, within: Duration) -> Gauges {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = gauges(node, module).await;
        if now == IDLE || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One series from the admin listener's metrics. The scrape comes from the attackers' address
/// and the admin listener has the same per-client caps, so a scrape reset at accept (the node
/// doing its job) is tried again for a few seconds.
pub(crate) async fn series(node: &TestNode, name: &str) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let page = loop {
        match get(&node.admin_url("/metrics")).await {
            Ok(reply) => break reply.text(),
            Err(e) if tokio::time::Instant::now() >= deadline => panic!("metrics: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    metric(&page, name).unwrap_or_else(|| panic!("no series {name}"))
}

/// The series `name` once it reads `want`, waiting up to `within` (a client sees its socket
/// close before the node's task that closed it has counted the close); the last value read
/// otherwise.
pub(crate) async fn series_settles(
    node: &TestNode,
    name: &str,
    want: f64,
    within: Duration,
) -> f64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let value = series(node, name).await;
        if value == want || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends raw bytes on a new connection to the node's public port.
pub(crate) async fn raw(node: &TestNode, bytes: &[u8]) -> TcpStream {
    raw_from(node, [127, 0, 0, 1], bytes).await
}

/// As [`raw`], from a chosen loopback source address (127.0.0.0/8 all answers locally).
pub(crate) async fn raw_from(node: &TestNode, from: [u8; 4], bytes: &[u8]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    let mut stream = socket.connect(node.node.http_addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream
}

/// Whether the node has closed `stream` (EOF or reset), waiting up to `within`.
pub(crate) async fn closed_by_node(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// An HTTP/2 connection (prior knowledge, no TLS) to the node's public port.
pub(crate) async fn h2(node: &TestNode) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(node.node.http_addr)
        .await
        .expect("connect");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    sender
}

/// A GET for the node's public port.
pub(crate) fn request(node: &TestNode, path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(node.url(path))
        .body(Empty::new())
        .expect("request")
}
