//! TLS on the public listener: two certificates chosen by SNI, HTTP/1.1 and HTTP/2 by ALPN,
//! a handshake that never finishes cut off at the header timeout, and a certificate replaced
//! on disk picked up without a restart while open connections carry on; a connection whose
//! first request is for a critical module served apart, TLS session and all, within its cap,
//! giving everything back when its client leaves mid-request.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use spark_testkit::TestNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::support::{closed_by_node, series};

struct Issued {
    der: CertificateDer<'static>,
}

/// A self-signed certificate for `name`, written as `<stem>.pem` and `<stem>.key`.
fn issue(dir: &Path, stem: &str, name: &str) -> Issued {
    let issued = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    // Write under another name and rename: a renewal is atomic, as certbot's is.
    std::fs::write(dir.join("tmp.pem"), issued.cert.pem()).unwrap();
    std::fs::write(dir.join("tmp.key"), issued.signing_key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("tmp.key"), key).unwrap();
    std::fs::rename(dir.join("tmp.pem"), cert).unwrap();
    Issued {
        der: issued.cert.der().clone(),
    }
}

/// A node serving TLS with certificate `a` (in `certs`), `[node]` settings `node`, and the
/// module `shop` (`hello` at `/shop`) followed by `more` (the rest of `shop`'s table, then
/// other modules).
fn with_certificate_a(certs: &Path, node: &str, more: &str) -> String {
    let dir = certs.display();
    format!(
        r#"
version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
{node}
[[node.tls]]
cert = "{dir}/a.pem"
key = "{dir}/a.key"

[[module]]
id = "shop"
component = "{{guest:hello}}"
routes = ["/shop"]
{more}"#
    )
}

fn connector(trusted: &[&Issued], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn handshake(node: &TestNode, connector: &TlsConnector, name: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(node.node.http_addr).await.unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    connector.connect(name, tcp).await.expect("TLS handshake")
}

fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

async fn h1_get(
    stream: TlsStream<TcpStream>,
    path: &str,
) -> (u16, hyper::client::conn::http1::SendRequest<Empty<Bytes>>) {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header("host", "a.test")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    (status, sender)
}

/// An HTTP/2 connection over TLS (ALPN `h2`) and one `GET path` on it: its status, and the
/// sender that keeps the connection open.
async fn h2_get(
    node: &TestNode,
    connector: &TlsConnector,
    path: &str,
) -> (u16, hyper::client::conn::http2::SendRequest<Empty<Bytes>>) {
    let stream = handshake(node, connector, "a.test").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!("https://a.test{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let status = sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16();
    (status, sender)
}

/// Uploads a 2 MiB body to `path` whole before reading, as a plain script does, and returns
/// the answer read to the end of the stream (the node lingers rather than resetting).
async fn refused_upload(node: &TestNode, connector: &TlsConnector, path: &str) -> String {
    let mut upload = handshake(node, connector, "a.test").await;
    let head = format!("POST {path} HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2097152\r\n\r\n");
    upload.write_all(head.as_bytes()).await.unwrap();
    upload
        .write_all(&vec![b'x'; 2 << 20])
        .await
        .expect("the refused body is taken, not reset");
    upload.flush().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), upload.read_to_end(&mut answer))
        .await
        .expect("the node closed the connection")
        .expect("an answer and a clean TLS close, not a reset");
    String::from_utf8_lossy(&answer).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_certificates_by_sni_both_protocols_and_a_swap_without_restart() {
    let certs = tempfile::tempdir().unwrap();
    let a = issue(certs.path(), "a", "a.test");
    let b = issue(certs.path(), "b", "b.test");
    let dir = certs.path().display();
    let manifest = format!(
        r#"
version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
header_read_timeout = "1s"
[[node.tls]]
cert = "{dir}/a.pem"
key = "{dir}/a.key"
[[node.tls]]
cert = "{dir}/b.pem"
key = "{dir}/b.key"

[[module]]
id = "shop"
component = "{{guest:hello}}"
routes = ["/shop"]

[[module]]
id = "echo"
component = "{{guest:echo}}"
routes = ["/echo/..."]
[module.limits]
request_body = "64KiB"
"#
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let both = connector(&[&a, &b], &[b"http/1.1"]);
    let to_a = handshake(&node, &both, "a.test").await;
    assert_eq!(presented(&to_a), a.der, "SNI a.test gets a's certificate");
    let to_b = handshake(&node, &both, "b.test").await;
    assert_eq!(presented(&to_b), b.der, "SNI b.test gets b's certificate");
    let (status, mut kept) = h1_get(to_a, "/shop").await;
    assert_eq!(status, 200, "HTTP/1.1 over TLS");

    let h2 = connector(&[&a], &[b"h2"]);
    assert_eq!(h2_get(&node, &h2, "/shop").await.0, 200, "HTTP/2 over TLS");

    // A client that uploads a refused body whole before reading still reads the 413 over TLS
    // (the node lingers, `serve::linger`, rather than resetting the connection).
    let answer = refused_upload(&node, &both, "/echo/body").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A handshake that never finishes is cut off like a head that never finishes.
    let mut stalled = TcpStream::connect(node.node.http_addr).await.unwrap();
    assert!(closed_by_node(&mut stalled, Duration::from_secs(3)).await);
    assert!(
        series(
            &node,
            r#"spark_connections_closed_total{listener="public",reason="tls_handshake"}"#
        )
        .await
            >= 1.0
    );

    // Renew a's certificate on disk: new handshakes get the new one, without a restart.
    let renewed = issue(certs.path(), "a", "a.test");
    let trusting_both = connector(&[&a, &renewed], &[b"http/1.1"]);
    let mut swapped = false;
    for _ in 0..100 {
        let stream = handshake(&node, &trusting_both, "a.test").await;
        if presented(&stream) == renewed.der {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(swapped, "the renewed certificate is served");
    // The connection opened before the swap carries on.
    kept.ready().await.unwrap();
    let request = http::Request::get("/shop")
        .header("host", "a.test")
        .body(Empty::new())
        .unwrap();
    assert_eq!(kept.send_request(request).await.unwrap().status(), 200);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_that_opens_with_a_critical_request_is_served_apart() {
    let certs = tempfile::tempdir().unwrap();
    let a = issue(certs.path(), "a", "a.test");
    let manifest = with_certificate_a(
        certs.path(),
        "header_read_timeout = \"1s\"\nmax_connections_apart = 1",
        r#"priority = "critical"
[module.limits]
request_body = "64KiB"

[[module]]
id = "vip"
component = "{guest:faults}"
routes = ["/vip/..."]
priority = "critical"
[module.limits]
timeout = "30s"
cpu_time = "30s"

[[module]]
id = "echo"
component = "{guest:echo}"
routes = ["/echo/..."]
"#,
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let apart = r#"spark_connections_served_apart_total{listener="public"}"#;
    let apart_now = r#"spark_connections_apart{listener="public"}"#;
    let full = r#"spark_connections_apart_full_total{listener="public"}"#;
    let h1 = connector(&[&a], &[b"http/1.1"]);

    // The first decrypted bytes are a critical head: the connection moves with its TLS session,
    // and goes on serving whatever comes next.
    let (status, mut moved) = h1_get(handshake(&node, &h1, "a.test").await, "/shop").await;
    assert_eq!(status, 200);
    let request = http::Request::get("/echo/x")
        .header("host", "a.test")
        .body(Empty::new())
        .unwrap();
    moved
        .ready()
        .await
        .expect("the moved connection stays open");
    let response = moved.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    // Read whole, so the client keeps the connection.
    response.into_body().collect().await.unwrap();
    assert_eq!(
        (series(&node, apart).await, series(&node, apart_now).await),
        (1.0, 1.0)
    );

    // Its one place apart is taken: the next critical connection is served like any other.
    let (status, _other) = h1_get(handshake(&node, &h1, "a.test").await, "/shop").await;
    assert_eq!(status, 200);
    assert_eq!(
        (series(&node, apart).await, series(&node, full).await),
        (1.0, 1.0)
    );
    drop(moved);
    assert_eq!(
        super::support::series_settles(&node, apart_now, 0.0, Duration::from_secs(5)).await,
        0.0,
        "a closed connection gives its place back"
    );

    // A client that leaves a moved connection while its critical guest runs gives back the
    // guest's slot and its place apart.
    let mut leaving = handshake(&node, &h1, "a.test").await;
    leaving
        .write_all(b"GET /vip/loop HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    leaving.flush().await.unwrap();
    let vip = node.node.snapshot().module("vip").cloned().unwrap();
    assert!(
        spark_testkit::eventually(Duration::from_secs(5), || vip.admission.running() == 1).await,
        "the loop runs"
    );
    assert_eq!(series(&node, apart_now).await, 1.0);
    drop(leaving);
    assert_eq!(
        super::support::settle(&node, "vip", Duration::from_secs(5)).await,
        super::support::IDLE
    );
    assert_eq!(
        super::support::series_settles(&node, apart_now, 0.0, Duration::from_secs(5)).await,
        0.0
    );
    assert_eq!(series(&node, apart).await, 2.0);

    // A refused upload on a moved connection: the 413 is read whole, the socket lingers after
    // coming back from the critical runtime.
    let answer = refused_upload(&node, &h1, "/shop").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(series(&node, apart).await, 3.0);

    // HTTP/2 chosen by ALPN stays where it is.
    let (status, sender) = h2_get(&node, &connector(&[&a], &[b"h2"]), "/shop").await;
    assert_eq!(status, 200);
    assert_eq!(series(&node, apart).await, 3.0);

    // A client that completes its handshake and then says nothing is closed at the header
    // timeout, counted from accept.
    let started = std::time::Instant::now();
    let mut silent = handshake(&node, &h1, "a.test").await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "closed by the node: {read:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert!(
        series(
            &node,
            r#"spark_connections_closed_total{listener="public",reason="header_timeout"}"#
        )
        .await
            >= 1.0
    );
    drop((_other, sender));
    for gauge in [r#"spark_connections_open{listener="public"}"#, apart_now] {
        assert_eq!(
            super::support::series_settles(&node, gauge, 0.0, Duration::from_secs(5)).await,
            0.0,
            "{gauge}"
        );
    }
    node.stop().await;
}

/// A client flooding the node with TLS handshakes it never uses is held to its connection
/// rate: once its burst is spent its connections are reset at accept, before the node does
/// any handshake work for them, while another client's handshake and request go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_is_reset_before_its_handshakes_once_its_rate_is_spent() {
    let certs = tempfile::tempdir().unwrap();
    let a = issue(certs.path(), "a", "a.test");
    let manifest = with_certificate_a(
        certs.path(),
        "max_connections_per_client = 8\nmax_connection_rate_per_client = 2",
        "",
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let tls = connector(&[&a], &[b"http/1.1"]);
    let started = std::time::Instant::now();
    let mut completed = 0u32;
    for _ in 0..30 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 9], 0)))
            .unwrap();
        let Ok(tcp) = socket.connect(node.node.http_addr).await else {
            continue;
        };
        let name = ServerName::try_from("a.test").unwrap();
        if tls.connect(name, tcp).await.is_ok() {
            completed += 1;
        }
    }
    let allowed = 8 + (started.elapsed().as_secs_f64() * 2.0).ceil() as u32 + 1;
    assert!(
        (8..=allowed).contains(&completed),
        "{completed} handshakes completed of 30 (at most {allowed})"
    );
    let refused = series(
        &node,
        r#"spark_connections_refused_total{listener="public",reason="max_connection_rate_per_client"}"#,
    )
    .await;
    assert_eq!(
        refused,
        f64::from(30 - completed),
        "every other one reset at accept"
    );
    assert_eq!(
        series(
            &node,
            r#"spark_connections_closed_total{listener="public",reason="tls_handshake"}"#
        )
        .await,
        0.0,
        "no handshake was started for them"
    );
    let (status, _) = h1_get(handshake(&node, &tls, "a.test").await, "/shop").await;
    assert_eq!(status, 200, "another client is served");
    node.stop().await;
}
