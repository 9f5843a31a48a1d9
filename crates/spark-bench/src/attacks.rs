//! Hostile clients for the benchmarks (B9, and B3's storm run): each attack runs as tokio tasks
//! until its stop flag is set, from its own loopback source addresses (Linux answers on all of
//! 127.0.0.0/8), so a per-client connection cap meets it the way it would meet many clients.
//!
//! - [`disconnect_storm`]: HTTP/1 requests to a looping route, abandoned after ~100 ms, plus
//!   HTTP/2 streams reset after ~20 ms;
//! - [`slowloris`]: connections that send half a request head and a header line now and then;
//! - [`zero_window`]: connections that ask for a large response and never read it;
//! - [`repeat`]: the same GET in a loop (host-memory hogs, log floods);
//! - [`handshake_flood`] (TLS only): full handshakes, each connection closed once it is done.
//!
//! Each runs over the [`Dialer`] it is given: plain TCP, or TLS (handshake included, and a
//! TLS slowloris also holds connections in the middle of their handshake). Every attack
//! reconnects when the node closes it, so the pressure holds for the phase.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::dial::{Alpn, Dialer, Stream};

/// A running attack: stop it and wait with [`Attack::stop`].
pub struct Attack {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
    /// Requests or connections the attack made.
    pub attempts: Arc<AtomicU64>,
}

impl Attack {
    fn new() -> Attack {
        Attack {
            stop: Arc::new(AtomicBool::new(false)),
            tasks: JoinSet::new(),
            attempts: Arc::new(AtomicU64::new(0)),
        }
    }

    fn running(&self) -> (Arc<AtomicBool>, Arc<AtomicU64>) {
        (self.stop.clone(), self.attempts.clone())
    }

    /// Stops the attack and drops every connection it holds.
    pub async fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.attempts.load(Ordering::Relaxed)
    }
}

/// A loopback source address for attacker `group`, client `n`.
fn source(group: u8, n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        group,
        (n / 250) as u8,
        (n % 250) as u8 + 2,
    ))
}

/// `clients` HTTP/1 clients abandoning `GET path` after ~100 ms, and `h2` HTTP/2
/// connections resetting streams to it after ~20 ms.
pub fn disconnect_storm(
    dialer: &Dialer,
    to: SocketAddr,
    path: &str,
    clients: usize,
    h2: usize,
) -> Attack {
    let mut attack = Attack::new();
    for n in 0..clients {
        let (stop, attempts) = attack.running();
        let head = format!("GET {path} HTTP/1.1\r\nHost: spark\r\n\r\n");
        let dialer = dialer.clone();
        attack.tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut stream) = dialer.dial(Some(source(10, n)), to, Alpn::Http1).await {
                    let _ = sent(&mut stream, head.as_bytes()).await;
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let wait = 50 + (n as u64 * 37) % 100;
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
    for n in 0..h2 {
        let (stop, attempts) = attack.running();
        let uri = format!("{}://{to}{path}", dialer.scheme());
        let dialer = dialer.clone();
        attack.tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(stream) = dialer.dial(Some(source(11, n)), to, Alpn::Http2).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let Ok((mut sender, connection)) =
                    hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
                        TokioExecutor::new(),
                        TokioIo::new(stream),
                    )
                    .await
                else {
                    continue;
                };
                let driver = tokio::spawn(connection);
                while !stop.load(Ordering::Relaxed) && sender.ready().await.is_ok() {
                    let request = http::Request::get(&uri).body(Empty::new());
                    let Ok(request) = request else { break };
                    let response = sender.send_request(request);
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let _ = tokio::time::timeout(Duration::from_millis(20), response).await;
                }
                driver.abort();
            }
        });
    }
    attack
}

/// `connections` sockets that send half a request head to `path` and a header line every
/// second, never finishing it. Over TLS, every other one instead stops in the middle of its
/// handshake: a TLS record header and nothing more.
pub fn slowloris(dialer: &Dialer, to: SocketAddr, path: &str, connections: usize) -> Attack {
    let mut attack = Attack::new();
    // A few tasks each hold many sockets: thousands of tasks would measure the benchmark.
    let per_task = 100;
    for task in 0..connections.div_ceil(per_task) {
        let (stop, attempts) = attack.running();
        let count = per_task.min(connections - task * per_task);
        let head = format!("GET {path} HTTP/1.1\r\nHost: spark\r\n");
        let dialer = dialer.clone();
        attack.tasks.spawn(async move {
            let mut held: Vec<Option<Stream>> = (0..count).map(|_| None).collect();
            while !stop.load(Ordering::Relaxed) {
                for (i, slot) in held.iter_mut().enumerate() {
                    let stalls_handshake = dialer.is_tls() && i % 2 == 1;
                    let alive = match slot {
                        Some(tokio_util::either::Either::Left(tcp)) if stalls_handshake => {
                            still_open(tcp)
                        }
                        Some(stream) => sent(stream, b"X-Drip: 1\r\n").await,
                        None => false,
                    };
                    if alive {
                        continue;
                    }
                    *slot = None;
                    let from = source(20 + (task % 10) as u8, i);
                    let opened = if stalls_handshake {
                        stalled_handshake(from, to).await
                    } else {
                        match dialer.dial(Some(from), to, Alpn::Http1).await {
                            Ok(mut stream) => {
                                sent(&mut stream, head.as_bytes()).await.then_some(stream)
                            }
                            Err(_) => None,
                        }
                    };
                    if opened.is_some() {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        *slot = opened;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    attack
}

/// Writes `bytes` and flushes them (through TLS too); false if the node closed the connection.
async fn sent(stream: &mut Stream, bytes: &[u8]) -> bool {
    stream.write_all(bytes).await.is_ok() && stream.flush().await.is_ok()
}

/// A TCP connection that has sent the start of a TLS handshake record and nothing else.
async fn stalled_handshake(from: IpAddr, to: SocketAddr) -> Option<Stream> {
    let mut tcp = Dialer::plain()
        .dial(Some(from), to, Alpn::Http1)
        .await
        .ok()?;
    // Content type handshake, TLS 1.0 record version, a length never sent in full.
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .ok()?;
    Some(tcp)
}

/// Whether the node has not closed `tcp` (nothing is ever read from it).
fn still_open(tcp: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match tcp.try_read(&mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

/// `connections` clients that ask for `path` (a large response) and never read it, each
/// holding its connection for `hold` before opening the next.
pub fn zero_window(
    dialer: &Dialer,
    to: SocketAddr,
    path: &str,
    connections: usize,
    hold: Duration,
) -> Attack {
    let mut attack = Attack::new();
    for n in 0..connections {
        let (stop, attempts) = attack.running();
        let head = format!("GET {path} HTTP/1.1\r\nHost: spark\r\n\r\n");
        let dialer = dialer.clone();
        attack.tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(socket) = TcpSocket::new_v4() else {
                    return;
                };
                let _ = socket.set_recv_buffer_size(4096);
                let _ = socket.bind(SocketAddr::new(source(30, n), 0));
                let Ok(mut stream) = dialer.dial_socket(socket, to, Alpn::Http1).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if sent(&mut stream, head.as_bytes()).await {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(hold).await;
                }
            }
        });
    }
    attack
}

/// `clients` loops of `GET path` (fresh connection each) until stopped.
pub fn repeat(dialer: &Dialer, to: SocketAddr, path: &str, clients: usize, group: u8) -> Attack {
    let mut attack = Attack::new();
    for n in 0..clients {
        let (stop, attempts) = attack.running();
        let head = format!("GET {path} HTTP/1.1\r\nHost: spark\r\nConnection: close\r\n\r\n");
        let dialer = dialer.clone();
        attack.tasks.spawn(async move {
            let mut sink = vec![0u8; 64 << 10];
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut stream) = dialer.dial(Some(source(group, n)), to, Alpn::Http1).await
                else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                if !sent(&mut stream, head.as_bytes()).await {
                    continue;
                }
                attempts.fetch_add(1, Ordering::Relaxed);
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(30), stream.read(&mut sink)).await
                {
                    if n == 0 {
                        break;
                    }
                }
            }
        });
    }
    attack
}

/// `clients` loops of full TLS handshakes, each connection closed as soon as its handshake is
/// done (the node's cost of a handshake, repeated as fast as the clients can: what an attacker
/// with a TLS library and no requests to send costs a node).
pub fn handshake_flood(dialer: &Dialer, to: SocketAddr, clients: usize) -> Attack {
    let mut attack = Attack::new();
    for n in 0..clients {
        let (stop, attempts) = attack.running();
        let dialer = dialer.clone();
        attack.tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match dialer.dial(Some(source(50, n)), to, Alpn::Http1).await {
                    Ok(stream) => {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
    }
    attack
}
