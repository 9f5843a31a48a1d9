//! Too many connections: at the cap, new connections are reset at once (never left hanging,
//! never an `accept()` failure) while the open ones keep being served; one client address
//! cannot take every place.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use spark_testkit::TestNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::support::{closed_by_node, series};

const CAPPED: &str = r#"
version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
max_connections = 20
max_connections_per_client = 12
header_read_timeout = "30s"

[[module]]
id = "shop"
component = "{guest:hello}"
routes = ["/shop"]
"#;

/// Connects from a chosen loopback address (Linux answers on all of 127.0.0.0/8).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    try_connect_from(from, to).await.expect("connect")
}

/// As [`connect_from`]; a refused connection may already be reset when `connect` returns.
async fn try_connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    socket.connect(to).await
}

/// Whether a connection from `from` is refused at once.
async fn refused(from: [u8; 4], to: SocketAddr) -> bool {
    match try_connect_from(from, to).await {
        Err(_) => true,
        Ok(mut stream) => closed_by_node(&mut stream, Duration::from_secs(1)).await,
    }
}

async fn served(stream: &mut TcpStream) -> bool {
    if stream
        .write_all(b"GET /shop HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = vec![0u8; 1024];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
        Ok(Ok(n)) if buf[..n].starts_with(b"HTTP/1.1 200")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_caps_new_connections_are_refused_fast_and_open_ones_served() {
    let node = TestNode::start(CAPPED).await.unwrap();
    let to = node.node.http_addr;
    let mut held = Vec::new();
    for _ in 0..12 {
        held.push(connect_from([127, 0, 0, 1], to).await);
    }
    // The thirteenth from the same client is over its own cap.
    let started = Instant::now();
    assert!(refused([127, 0, 0, 1], to).await);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused fast"
    );
    // Another client still gets in, up to the listener's cap.
    for _ in 0..8 {
        held.push(connect_from([127, 0, 0, 2], to).await);
    }
    assert!(refused([127, 0, 0, 3], to).await);
    assert!(series(&node, r#"spark_connections_refused_total{listener="public",reason="max_connections_per_client"}"#).await >= 1.0);
    assert!(
        series(
            &node,
            r#"spark_connections_refused_total{listener="public",reason="max_connections"}"#
        )
        .await
            >= 1.0
    );
    // Those already in are served.
    assert!(served(&mut held[0]).await);
    assert!(served(&mut held[19]).await);
    // A closed connection frees its place.
    held.truncate(10);
    let mut back = Vec::new();
    for _ in 0..50 {
        let Ok(mut stream) = try_connect_from([127, 0, 0, 3], to).await else {
            continue;
        };
        if served(&mut stream).await {
            back.push(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(back.len(), 1, "a place freed up");
    // The admin listener has its own cap: health answers throughout.
    assert_eq!(
        spark_testkit::get(&node.admin_url("/healthz"))
            .await
            .unwrap()
            .status,
        200
    );
    node.stop().await;
}

/// A connection that lingers after its answer (`serve::linger`: the node drains a refused
/// body before it closes) still holds its place under the caps, and for a bounded time: a
/// client cannot use refused uploads to hold more connections than its cap, nor hold them
/// past the linger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_connections_count_against_the_caps_until_their_linger_ends() {
    let node = TestNode::start(CAPPED).await.unwrap();
    let to = node.node.http_addr;
    let mut lingering = Vec::new();
    for _ in 0..12 {
        let mut stream = connect_from([127, 0, 0, 4], to).await;
        stream
            .write_all(b"POST /shop HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 413"));
        lingering.push(stream);
    }
    let answered = Instant::now();
    assert!(
        refused([127, 0, 0, 4], to).await,
        "answered, lingering, still counted"
    );
    assert_eq!(
        series(&node, r#"spark_connections_open{listener="public"}"#).await,
        12.0
    );
    // The client neither sends nor closes (its side is open, the node's is finished): the
    // node closes each at the end of its linger, and the places come back.
    let mut back = None;
    for _ in 0..200 {
        if let Ok(mut stream) = try_connect_from([127, 0, 0, 4], to).await
            && served(&mut stream).await
        {
            back = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back.is_some(), "the places came back");
    let held = answered.elapsed();
    assert!(
        held >= Duration::from_secs(2) && held < Duration::from_secs(8),
        "held for the linger (3 s), not less, not much more: {held:?}"
    );
    drop(lingering);
    node.stop().await;
}

/// A client that opens connections and closes them unused (what a handshake flood or a
/// connect-and-close loop does) gets its burst and then its rate: the rest are reset at
/// accept. A client opening a connection per request is never held to it (each used
/// connection gives its token back), another client has its own rate, and the first is served
/// again once its rate allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_opening_connections_in_a_loop_is_held_to_its_connection_rate() {
    let rated = CAPPED.replace(
        "header_read_timeout",
        "max_connection_rate_per_client = 4\nheader_read_timeout",
    );
    let node = TestNode::start(&rated).await.unwrap();
    let to = node.node.http_addr;
    let refused_by_rate = || {
        series(
            &node,
            r#"spark_connections_refused_total{listener="public",reason="max_connection_rate_per_client"}"#,
        )
    };
    // A connection per request, 40 in a row from one client: all served.
    for n in 0..40 {
        let mut stream = connect_from([127, 0, 0, 8], to).await;
        assert!(
            served(&mut stream).await,
            "request {n} on its own connection"
        );
    }
    assert_eq!(refused_by_rate().await, 0.0);

    // 40 opened and closed unused: the burst is the per-client cap (12), then 4 a second.
    // Each is refused by the rate, or by the per-client cap while the node has not yet seen
    // earlier ones closed (on a loaded machine it lags the client's loop).
    let refused_by_cap = || {
        series(
            &node,
            r#"spark_connections_refused_total{listener="public",reason="max_connections_per_client"}"#,
        )
    };
    let started = Instant::now();
    for _ in 0..40 {
        drop(try_connect_from([127, 0, 0, 6], to).await);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = 12 + (elapsed * 4.0).ceil() as u32 + 1;
    spark_testkit::wait_until(Duration::from_secs(10), "the node saw all 40", || async {
        let refused = refused_by_rate().await + refused_by_cap().await;
        refused >= f64::from(40 - allowed)
    })
    .await;
    let refused = refused_by_rate().await + refused_by_cap().await;
    assert!(
        refused <= 28.0,
        "{refused} refused of 40 in {elapsed:.2} s: the burst of 12 gets in"
    );
    // Once the node has caught up, a client still opening and closing is refused by its rate.
    spark_testkit::wait_until(Duration::from_secs(10), "a refusal by the rate", || async {
        drop(try_connect_from([127, 0, 0, 6], to).await);
        refused_by_rate().await >= 1.0
    })
    .await;
    // Another client has its own rate.
    assert!(served(&mut connect_from([127, 0, 0, 7], to).await).await);
    // A token comes back every 250 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(served(&mut connect_from([127, 0, 0, 6], to).await).await);
    node.stop().await;
}
