//! Clients that stall: a request head never finished (slowloris), a socket that never speaks,
//! an idle keep-alive connection, a reader that stops reading (HTTP/1 zero window, HTTP/2
//! window held at zero), a request body that stops arriving. Each is cut off at its timeout
//! with everything it held released, while the node keeps answering everyone else.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use spark_testkit::{TestNode, get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::{IDLE, closed_by_node, raw, series, series_settles, settle};

const SLOW: &str = r#"
version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
header_read_timeout = "1s"
idle_timeout = "2s"
send_timeout = "1s"
request_body_timeout = "1s"
max_connections_per_client = 1000

[[module]]
id = "stream"
component = "{guest:faults}"
routes = ["/stream/..."]
[module.limits]
timeout = "60s"
cpu_time = "60s"

[[module]]
id = "echo"
component = "{guest:echo}"
routes = ["/echo/..."]
[module.limits]
request_body = "64KiB"

[[module]]
id = "shop"
component = "{guest:hello}"
routes = ["/shop"]
priority = "critical"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_silent_sockets_are_closed_at_the_header_timeout_while_the_node_answers() {
    let node = TestNode::start(SLOW).await.unwrap();
    let mut sockets = Vec::new();
    for i in 0..300 {
        let partial: &[u8] = if i % 3 == 0 {
            b""
        } else {
            b"GET /shop HTTP/1.1\r\nHost: x\r\n"
        };
        sockets.push(raw(&node, partial).await);
    }
    let started = Instant::now();
    // A byte now and then does not keep a head alive.
    for socket in sockets.iter_mut().skip(1).step_by(3).take(50) {
        let _ = socket.write_all(b"X-Drip: 1\r\n").await;
    }
    assert_eq!(get(&node.admin_url("/healthz")).await.unwrap().status, 200);
    assert_eq!(get(&node.url("/shop")).await.unwrap().status, 200);
    for socket in &mut sockets {
        assert!(
            closed_by_node(socket, Duration::from_secs(3)).await,
            "a stalled socket is still open after {:?}",
            started.elapsed()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    let closed = series(
        &node,
        r#"spark_connections_closed_total{listener="public",reason="header_timeout"}"#,
    )
    .await;
    assert!(closed >= 300.0, "{closed}");
    assert_eq!(
        series(&node, r#"spark_connections_open{listener="public"}"#).await,
        0.0
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keepalive_connection_is_closed_at_the_idle_timeout() {
    let node = TestNode::start(SLOW).await.unwrap();
    let mut socket = raw(&node, b"GET /shop HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = vec![0u8; 4096];
    let n = socket.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle_from = Instant::now();
    assert!(closed_by_node(&mut socket, Duration::from_secs(4)).await);
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(1800),
        "kept for the idle timeout, not the header timeout: {idle:?}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_loses_its_slot_and_connection_at_the_send_timeout() {
    let node = TestNode::start(SLOW).await.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(node.node.http_addr).await.unwrap();
    stream
        .write_all(b"GET /stream/huge?mb=256 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let stream_slot = node.node.snapshot().module("stream").cloned().unwrap();
    assert!(
        spark_testkit::eventually(Duration::from_secs(5), || stream_slot.admission.running()
            == 1)
        .await
    );
    // Never read: the node's writes block, and it gives up after `send_timeout`.
    let after = settle(&node, "stream", Duration::from_secs(4)).await;
    assert_eq!(after, IDLE, "the stalled reader holds nothing");
    assert!(
        series(
            &node,
            r#"spark_connections_closed_total{listener="public",reason="send_stall"}"#
        )
        .await
            >= 1.0
    );
    let mut sink = vec![0u8; 1 << 16];
    let mut total = 0usize;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(
        ended,
        "the connection ends after what was buffered ({total} bytes)"
    );
    assert!(total < 64 << 20, "the body was cut short: {total} bytes");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_window_held_at_zero_loses_its_slot_at_the_send_timeout() {
    let node = TestNode::start(SLOW).await.unwrap();
    let stream = TcpStream::connect(node.node.http_addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(0)
        .initial_connection_window_size(65_535)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let request = http::Request::get(node.url("/stream/huge?mb=64"))
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    // Hold the response without reading: the stream's window stays at zero.
    let after = settle(&node, "stream", Duration::from_secs(4)).await;
    assert_eq!(after, IDLE);
    assert!(
        series(
            &node,
            r#"spark_connections_closed_total{listener="public",reason="send_stall"}"#
        )
        .await
            >= 1.0
    );
    let read = tokio::time::timeout(Duration::from_secs(2), response.into_body().collect()).await;
    assert!(
        matches!(read, Ok(Err(_))),
        "the stream was cut, not completed"
    );
    driver.abort();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_arriving_fails_at_its_timeout_and_an_oversized_one_is_refused() {
    let node = TestNode::start(SLOW).await.unwrap();
    let mut socket = raw(
        &node,
        b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly a little",
    )
    .await;
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
        .await
        .expect("an answer, not a hang")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        head.starts_with("HTTP/1.1 4") || head.starts_with("HTTP/1.1 5"),
        "{head}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(settle(&node, "echo", Duration::from_secs(3)).await, IDLE);

    let mut socket = raw(
        &node,
        b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n",
    )
    .await;
    let n = socket.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let echo = node.node.snapshot().module("echo").cloned().unwrap();
    assert_eq!(
        echo.stats.snapshot().invocations,
        1,
        "the 413 never reached a guest"
    );
    node.stop().await;
}

/// A plain client uploads the whole body before it reads the answer. The node refuses the
/// body on its head; if it then closed the socket with the body still arriving, the kernel
/// would reset the connection and the client would see a broken pipe or a reset instead of the
/// 413. The node lingers: it stops writing, drains what the client still sends, for a bounded
/// time, and only then closes. A client that never stops sending is cut off at that bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_uploads_a_refused_body_whole_still_reads_its_413() {
    let node = TestNode::start(SLOW).await.unwrap();
    let body = vec![b'x'; 4 << 20];
    for _ in 0..3 {
        let mut socket = raw(
            &node,
            b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n",
        )
        .await;
        socket
            .write_all(&body)
            .await
            .expect("the node took the refused body instead of resetting the connection");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer))
            .await
            .expect("the node closed the connection")
            .expect("an answer, not a reset");
        let answer = String::from_utf8_lossy(&answer).to_string();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }

    let mut socket = raw(
        &node,
        b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n",
    )
    .await;
    let cut_after = upload_until_cut(&mut socket, Duration::from_secs(10))
        .await
        .expect("a client that never stops sending is cut off");
    assert!(cut_after < Duration::from_secs(6), "{cut_after:?}");
    let cut = r#"spark_connections_closed_total{listener="public",reason="linger_cut"}"#;
    assert_eq!(
        series_settles(&node, cut, 1.0, Duration::from_secs(2)).await,
        1.0
    );
    let open = r#"spark_connections_open{listener="public"}"#;
    assert_eq!(
        series_settles(&node, open, 0.0, Duration::from_secs(2)).await,
        0.0
    );
    let echo = node.node.snapshot().module("echo").cloned().unwrap();
    assert_eq!(
        echo.stats.snapshot().invocations,
        0,
        "no guest saw a refused body"
    );
    node.stop().await;
}

/// The linger's bounds are the operator's (`node.linger_time`, `node.linger_bytes`): a client
/// that holds its side open after the 413 is closed at the linger's time, one that keeps
/// uploading once the linger has read its bytes; with `linger_time = "0s"` the node closes at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_linger_keeps_the_bounds_the_manifest_sets() {
    let with = |settings: &str| {
        SLOW.replace(
            "max_connections_per_client = 1000\n",
            &format!("max_connections_per_client = 1000\n{settings}\n"),
        )
    };
    let refused = b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n";
    let cut = r#"spark_connections_closed_total{listener="public",reason="linger_cut"}"#;

    // Holds its side open and sends nothing: closed at the linger's time, not the default 3 s.
    let node = TestNode::start(&with("linger_time = \"300ms\""))
        .await
        .unwrap();
    // (The node stops writing at once; it closes when the linger ends: the cut is counted.)
    let (_quiet, asked) = refused_and_answered(&node, refused).await;
    assert_eq!(
        series_settles(&node, cut, 1.0, Duration::from_secs(2)).await,
        1.0
    );
    let held = asked.elapsed();
    assert!(held < Duration::from_secs(2), "closed after {held:?}");
    node.stop().await;

    // Keeps uploading, with a long linger time: cut once the linger has read its bytes.
    let node = TestNode::start(&with("linger_time = \"30s\"\nlinger_bytes = \"256KiB\""))
        .await
        .unwrap();
    let mut endless = raw(&node, refused).await;
    let cut_after = upload_until_cut(&mut endless, Duration::from_secs(20))
        .await
        .expect("cut off");
    assert!(cut_after < Duration::from_secs(10), "{cut_after:?}");
    assert_eq!(
        series_settles(&node, cut, 1.0, Duration::from_secs(2)).await,
        1.0
    );
    node.stop().await;

    // No linger: closed at once, nothing counted as cut.
    let node = TestNode::start(&with("linger_time = \"0s\""))
        .await
        .unwrap();
    let (_quiet, _) = refused_and_answered(&node, refused).await;
    let open = r#"spark_connections_open{listener="public"}"#;
    assert_eq!(
        series_settles(&node, open, 0.0, Duration::from_secs(1)).await,
        0.0,
        "closed at once"
    );
    assert_eq!(series(&node, cut).await, 0.0, "no linger, nothing cut");
    node.stop().await;
}

/// Sends `request` (refused on its head) and reads the 413 to the node's end of writing; the
/// socket is returned open (the client neither sends nor closes), with when it was sent.
async fn refused_and_answered(node: &TestNode, request: &[u8]) -> (TcpStream, Instant) {
    let mut quiet = raw(node, request).await;
    let asked = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), quiet.read_to_end(&mut answer))
        .await
        .expect("the node stopped writing")
        .expect("an answer, not a reset");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 413"));
    (quiet, asked)
}

/// Writes to `socket` without end; how long until the node cut it off (a write failed), or
/// `None` if it had not within `within`.
async fn upload_until_cut(socket: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let chunk = vec![b'x'; 64 << 10];
    let endless = async {
        loop {
            if socket.write_all(&chunk).await.is_err() {
                return started.elapsed();
            }
        }
    };
    tokio::time::timeout(within, endless).await.ok()
}

/// Reads one HTTP/1 response from `stream` (its head and a `content-length` body); its status.
async fn status_of_response(stream: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("a response within 5 s")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("a length"));
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    head[9..12].parse().expect("a status code")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_opens_with_a_critical_request_is_served_apart_under_the_same_limits() {
    let manifest = SLOW.replace(
        "max_connections_per_client = 1000\n",
        "max_connections_per_client = 1000\nmax_connections_apart = 2\n",
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let apart = r#"spark_connections_served_apart_total{listener="public"}"#;
    let full = r#"spark_connections_apart_full_total{listener="public"}"#;
    let open = r#"spark_connections_open{listener="public"}"#;
    let apart_now = r#"spark_connections_apart{listener="public"}"#;
    // Complete in its first bytes and for the critical module: served apart, and the
    // connection keeps serving whatever comes next on it.
    let mut critical = raw(&node, b"GET /shop HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status_of_response(&mut critical).await, 200);
    critical
        .write_all(b"GET /echo/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of_response(&mut critical).await, 200);
    assert_eq!(series(&node, apart).await, 1.0);

    // A head for the critical module that arrives in pieces, a request for another module, and
    // HTTP/2 stay on the listener's runtime, and are answered there.
    let mut dripped = raw(&node, b"GET /shop HTTP/1.1\r\n").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    dripped.write_all(b"Host: x\r\n\r\n").await.unwrap();
    assert_eq!(status_of_response(&mut dripped).await, 200);
    let mut other = raw(&node, b"GET /echo/ HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status_of_response(&mut other).await, 200);
    let mut sender = super::support::h2(&node).await;
    let reply = sender
        .send_request(super::support::request(&node, "/shop"))
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(series(&node, apart).await, 1.0, "only the first moved");

    // Two places apart: the third critical connection is served like any other, and a place
    // comes back when its connection closes.
    let head = b"GET /shop HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut second = raw(&node, head).await;
    assert_eq!(status_of_response(&mut second).await, 200);
    let mut third = raw(&node, head).await;
    assert_eq!(status_of_response(&mut third).await, 200);
    assert_eq!(series(&node, apart).await, 2.0);
    assert_eq!(series(&node, apart_now).await, 2.0);
    assert_eq!(series(&node, full).await, 1.0);
    drop(second);
    assert_eq!(
        series_settles(&node, apart_now, 1.0, Duration::from_secs(5)).await,
        1.0
    );
    let mut fourth = raw(&node, head).await;
    assert_eq!(status_of_response(&mut fourth).await, 200);
    assert_eq!(series(&node, apart).await, 3.0, "the place came back");
    assert_eq!(series(&node, full).await, 1.0);
    drop((third, fourth));

    // The same limits hold apart: the idle connection is closed at the idle timeout (2 s), and
    // a socket that never speaks at the header timeout (1 s) from accept.
    let started = Instant::now();
    let mut silent = raw(&node, b"").await;
    assert!(closed_by_node(&mut silent, Duration::from_secs(3)).await);
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert!(closed_by_node(&mut critical, Duration::from_secs(4)).await);
    drop((dripped, other, sender));
    for gauge in [open, apart_now] {
        assert_eq!(
            series_settles(&node, gauge, 0.0, Duration::from_secs(5)).await,
            0.0,
            "{gauge}"
        );
    }
    node.stop().await;
}
