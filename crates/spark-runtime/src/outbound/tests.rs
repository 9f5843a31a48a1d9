//! The hooks and the client against real servers on 127.0.0.1: pooling (plain and TLS), the
//! address check, the in-flight limit, timeouts. (The `echo` guest sends one request at a
//! time, so the in-flight limit is tested here, through the hooks Wasmtime calls.)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use spark_manifest::{AllowedHost, OutboundPolicy};
use tokio::net::TcpListener;

use super::*;

#[test]
fn pacing_spaces_reservations_by_the_gap() {
    let pacing = OutboundPacing::default();
    assert_eq!(pacing.reserve(), Duration::ZERO, "no gap, no wait");
    pacing.set_gap(Duration::from_millis(200));
    assert_eq!(
        pacing.reserve(),
        Duration::ZERO,
        "the first request goes at once"
    );
    let second = pacing.reserve();
    let third = pacing.reserve();
    assert!(
        second > Duration::from_millis(150) && second <= Duration::from_millis(200),
        "{second:?}"
    );
    assert!(
        third > Duration::from_millis(350) && third <= Duration::from_millis(400),
        "{third:?}"
    );
}

/// A real HTTP/1.1 server (keep-alive on) that counts the connections it accepted.
struct Upstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start(delay: Duration, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        Upstream::serving(Bytes::from_static(b"upstream says hi"), delay, tls).await
    }

    async fn serving(
        body: Bytes,
        delay: Duration,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let (tls, body) = (tls.clone(), body.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let body = body.clone();
                        async move {
                            tokio::time::sleep(delay).await;
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(body)))
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            http.serve_connection(TokioIo::new(stream), service).await
                        }
                        None => http.serve_connection(TokioIo::new(stream), service).await,
                    };
                });
            }
        });
        Upstream { addr, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn policy(entries: &[String]) -> Arc<OutboundPolicy> {
    Arc::new(OutboundPolicy::new(
        entries
            .iter()
            .map(|e| AllowedHost::parse(e).unwrap())
            .collect(),
    ))
}

fn module_hooks(entries: &[String], limit: u32, node: NodeOutbound) -> OutboundHooks {
    let module: Arc<str> = Arc::from("test");
    OutboundHooks {
        client: OutboundClient::new(module.clone(), policy(entries), Arc::new(node)),
        stats: Arc::default(),
        module,
        pacing: Arc::default(),
        latency: None,
        in_flight: InFlight::new(limit),
        tracer: None,
    }
}

fn get(url: &str) -> http::Request<WasiBody> {
    let uri: http::Uri = url.parse().unwrap();
    http::Request::get(uri.clone())
        .header(http::header::HOST, uri.authority().unwrap().as_str())
        .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
        .unwrap()
}

type Sent = Result<http::Response<WasiBody>, HttpError>;

async fn send(hooks: &mut OutboundHooks, request: http::Request<WasiBody>) -> Sent {
    send_with(hooks, request, None).await
}

async fn send_with(
    hooks: &mut OutboundHooks,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Sent {
    let sending = hooks.send_request(request, options, Box::new(async { Ok(()) }));
    Box::into_pin(sending).await.map(|(response, _io)| response)
}

async fn text(response: http::Response<WasiBody>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn code(sent: Sent) -> String {
    match sent {
        Ok(response) => format!("status {}", response.status()),
        Err(e) => format!("{e:?}"),
    }
}

#[tokio::test]
async fn sequential_requests_share_one_pooled_connection() {
    let upstream = Upstream::start(Duration::ZERO, None).await;
    let url = format!("http://{}/data", upstream.addr);
    let mut hooks = module_hooks(
        &[format!("http://{}", upstream.addr)],
        16,
        NodeOutbound::default(),
    );
    for _ in 0..20 {
        let response = send(&mut hooks, get(&url)).await.unwrap();
        assert_eq!(text(response).await, "upstream says hi");
    }
    assert_eq!(upstream.connections(), 1, "one connection, reused 19 times");
    assert_eq!(hooks.client.idle(), 1);
    let stats = hooks.stats.snapshot();
    assert_eq!((stats.outbound_requests, stats.outbound_denied), (20, 0));
}

#[tokio::test]
async fn a_body_dropped_unread_closes_its_connection_instead_of_pooling_it() {
    let big = Bytes::from(vec![b'x'; 4 << 20]);
    let upstream = Upstream::serving(big, Duration::ZERO, None).await;
    let url = format!("http://{}/data", upstream.addr);
    let mut hooks = module_hooks(
        &[format!("http://{}", upstream.addr)],
        16,
        NodeOutbound::default(),
    );
    for _ in 0..3 {
        drop(send(&mut hooks, get(&url)).await.unwrap());
    }
    assert_eq!(upstream.connections(), 3);
    assert_eq!(hooks.client.idle(), 0);
    let response = send(&mut hooks, get(&url)).await.unwrap();
    assert_eq!(text(response).await.len(), 4 << 20);
    assert_eq!(hooks.client.idle(), 1, "read to the end, it is pooled");
}

#[tokio::test]
async fn names_and_wildcards_do_not_reach_loopback_but_an_ip_literal_does() {
    let upstream = Upstream::start(Duration::ZERO, None).await;
    let port = upstream.addr.port();
    for (entry, url) in [
        (
            format!("http://localhost:{port}"),
            format!("http://localhost:{port}/"),
        ),
        ("http://*:*".to_owned(), format!("http://localhost:{port}/")),
        ("http://*:*".to_owned(), format!("http://127.0.0.1:{port}/")),
        (
            format!("http://*:{port}"),
            format!("http://127.0.0.1:{port}/"),
        ),
        (
            "http://127.0.0.1:*".to_owned(),
            format!("http://127.0.0.1:{port}/"),
        ),
        // 2130706433 is 127.0.0.1 to the system resolver.
        (
            "http://*:*".to_owned(),
            format!("http://2130706433:{port}/"),
        ),
    ] {
        let mut hooks = module_hooks(std::slice::from_ref(&entry), 16, NodeOutbound::default());
        assert_eq!(
            code(send(&mut hooks, get(&url)).await),
            "DestinationIpProhibited",
            "{url} under {entry}"
        );
        let stats = hooks.stats.snapshot();
        assert_eq!((stats.outbound_requests, stats.outbound_denied), (1, 1));
    }
    assert_eq!(upstream.connections(), 0, "nothing was dialled");

    let mut hooks = module_hooks(
        &[format!("http://127.0.0.1:{port}")],
        16,
        NodeOutbound::default(),
    );
    let response = send(&mut hooks, get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap();
    assert_eq!(text(response).await, "upstream says hi");
}

#[tokio::test]
async fn the_nodes_own_listeners_are_refused_unless_named_by_ip_literal() {
    // A listener on 0.0.0.0, reached by the machine's own non-loopback address.
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let Some(ip) = non_loopback_local_ip() else {
        panic!("this test needs a non-loopback local address (a route to 198.51.100.1)");
    };
    let node = Arc::new(NodeOutbound::default());
    node.set_listeners(&[listener.local_addr().unwrap()]);
    let client = OutboundClient::new(
        Arc::from("test"),
        policy(&["http://*:*".into()]),
        node.clone(),
    );
    let to = SocketAddr::new(ip, port);
    let target = Target::of(&format!("http://{to}/").parse().unwrap()).unwrap();
    let place = Arc::new(tokio::sync::Semaphore::new(1))
        .try_acquire_owned()
        .unwrap();
    let sent = client
        .send(&target, get(&format!("http://{to}/")), None.into(), place)
        .await;
    match sent {
        Err(SendError::Refused { refused }) => {
            assert_eq!(refused, [(to, address::Refusal::NodeListener)]);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Named by IP literal and port, the operator meant it (here: an upstream standing in for
    // a listener on 127.0.0.1).
    let upstream = Upstream::start(Duration::ZERO, None).await;
    node.set_listeners(&[upstream.addr]);
    let entry = format!("http://{}", upstream.addr);
    let client = OutboundClient::new(Arc::from("test"), policy(&[entry]), node);
    let mut hooks = module_hooks(&[], 16, NodeOutbound::default());
    hooks.client = client;
    let response = send(&mut hooks, get(&format!("http://{}/", upstream.addr)))
        .await
        .unwrap();
    assert_eq!(text(response).await, "upstream says hi");
}

/// The address this machine would send from to a public address (no packet is sent).
fn non_loopback_local_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("198.51.100.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_refused_until_a_body_ends() {
    let upstream = Upstream::start(Duration::from_millis(300), None).await;
    let url = format!("http://{}/slow", upstream.addr);
    let mut hooks = module_hooks(
        &[format!("http://{}", upstream.addr)],
        1,
        NodeOutbound::default(),
    );

    let first = hooks.send_request(get(&url), None, Box::new(async { Ok(()) }));
    let second = hooks.send_request(get(&url), None, Box::new(async { Ok(()) }));
    let refused = tokio::time::timeout(Duration::from_millis(50), Box::into_pin(second))
        .await
        .expect("the second request is refused at once, not queued");
    assert_eq!(code(refused.map(|(r, _)| r)), "ConnectionLimitReached");

    let (response, _io) = Box::into_pin(first).await.unwrap();
    let while_unread = send(&mut hooks, get(&url)).await;
    assert_eq!(
        code(while_unread),
        "ConnectionLimitReached",
        "the place is held until the body ends"
    );
    assert_eq!(text(response).await, "upstream says hi");
    let after = send(&mut hooks, get(&url)).await.unwrap();
    drop(after);
    let after_drop = send(&mut hooks, get(&url)).await.unwrap();
    assert_eq!(
        text(after_drop).await,
        "upstream says hi",
        "a dropped body frees its place"
    );
    let stats = hooks.stats.snapshot();
    assert_eq!((stats.outbound_requests, stats.outbound_denied), (5, 2));
}

#[tokio::test]
async fn a_limit_of_zero_refuses_every_request() {
    let upstream = Upstream::start(Duration::ZERO, None).await;
    let mut hooks = module_hooks(
        &[format!("http://{}", upstream.addr)],
        0,
        NodeOutbound::default(),
    );
    let sent = send(&mut hooks, get(&format!("http://{}/", upstream.addr))).await;
    assert_eq!(code(sent), "ConnectionLimitReached");
}

#[tokio::test]
async fn the_guests_first_byte_timeout_is_honoured() {
    let upstream = Upstream::start(Duration::from_millis(500), None).await;
    let mut hooks = module_hooks(
        &[format!("http://{}", upstream.addr)],
        16,
        NodeOutbound::default(),
    );
    let options = RequestOptions {
        first_byte_timeout: Some(Duration::from_millis(50)),
        ..RequestOptions::default()
    };
    let sent = send_with(
        &mut hooks,
        get(&format!("http://{}/", upstream.addr)),
        Some(options),
    );
    assert_eq!(code(sent.await), "ConnectionReadTimeout");
    assert_eq!(
        hooks.client.idle(),
        0,
        "a timed-out connection is not pooled"
    );
}

#[tokio::test]
async fn https_connections_are_verified_and_pooled() {
    let (acceptor, roots) = certificate_authority();
    let upstream = Upstream::start(Duration::ZERO, Some(acceptor)).await;
    let port = upstream.addr.port();
    let url = format!("https://127.0.0.1:{port}/secure");
    let mut hooks = module_hooks(
        &[format!("https://127.0.0.1:{port}")],
        16,
        NodeOutbound::trusting(roots),
    );
    for _ in 0..5 {
        let response = send(&mut hooks, get(&url)).await.unwrap();
        assert_eq!(text(response).await, "upstream says hi");
    }
    assert_eq!(upstream.connections(), 1);

    // The node's own roots (the public web's) do not trust this server.
    let mut untrusting = module_hooks(
        &[format!("https://127.0.0.1:{port}")],
        16,
        NodeOutbound::default(),
    );
    let sent = code(send(&mut untrusting, get(&url)).await);
    assert!(sent.starts_with("Tls("), "a certificate error: {sent}");
}

/// A certificate authority and a server certificate for 127.0.0.1 signed by it.
fn certificate_authority() -> (tokio_rustls::TlsAcceptor, rustls::RootCertStore) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), roots)
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_replaced_transparently() {
    // Answers one request per connection, then closes it without saying so (no
    // `Connection: close`), as a server whose keep-alive timer fired would.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi")
                .await;
        }
    });
    let mut hooks = module_hooks(&[format!("http://{addr}")], 16, NodeOutbound::default());
    for _ in 0..5 {
        let response = send(&mut hooks, get(&format!("http://{addr}/")))
            .await
            .unwrap();
        assert_eq!(text(response).await, "hi");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 5);
}
