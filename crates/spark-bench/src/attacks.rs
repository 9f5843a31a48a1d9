//! Hostile clients for the benchmarks (B9, and B3's storm run): each attack runs as tokio tasks
//! until its stop flag is set, from its own loopback source addresses (Linux answers on all of
//! 127.0.0.0/8), so a per-client connection cap meets it the way it would meet many clients.
//!
//! - [`disconnect_storm`]: HTTP/1 requests to a looping route, abandoned after ~100 ms, plus
//!   HTTP/2 streams reset after ~20 ms;
//! - [`slowloris`]: connections that send half a request head and a header line now and then;
//! - [`zero_window`]: connections that ask for a large response and never read it;
//! - [`repeat`]: the same GET in a loop (host-memory hogs, log floods).
//!
//! Every attack reconnects when the node closes it, so the pressure holds for the phase.

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

async fn connect(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// `clients` HTTP/1 clients abandoning `GET path` after ~100 ms, and `h2` HTTP/2
/// connections resetting streams to it after ~20 ms.
pub fn disconnect_storm(to: SocketAddr, path: &str, clients: usize, h2: usize) -> Attack {
    let mut attack = Attack::new();
    for n in 0..clients {
        let (stop, attempts) = attack.running();
        let head = format!("GET {path} HTTP/1.1\r\nHost: spark\r\n\r\n");
        attack.tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut stream) = connect(source(10, n), to).await {
                    let _ = stream.write_all(head.as_bytes()).await;
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
        let uri = format!("http://{to}{path}");
        attack.tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(stream) = connect(source(11, n), to).await else {
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
/// second, never finishing it.
pub fn slowloris(to: SocketAddr, path: &str, connections: usize) -> Attack {
    let mut attack = Attack::new();
    // A few tasks each hold many sockets: thousands of tasks would measure the benchmark.
    let per_task = 100;
    for task in 0..connections.div_ceil(per_task) {
        let (stop, attempts) = attack.running();
        let count = per_task.min(connections - task * per_task);
        let head = format!("GET {path} HTTP/1.1\r\nHost: spark\r\n");
        attack.tasks.spawn(async move {
            let mut held: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
            while !stop.load(Ordering::Relaxed) {
                for (i, slot) in held.iter_mut().enumerate() {
                    let alive = match slot {
                        Some(stream) => stream.write_all(b"X-Drip: 1\r\n").await.is_ok(),
                        None => false,
                    };
                    if !alive {
                        *slot = None;
                        if let Ok(mut stream) = connect(source(20 + (task % 10) as u8, i), to).await
                            && stream.write_all(head.as_bytes()).await.is_ok()
                        {
                            attempts.fetch_add(1, Ordering::Relaxed);
                            *slot = Some(stream);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    attack
}

/// `connections` clients that ask for `path` (a large response) and never read it, each
/// holding its connection for `hold` before opening the next.
pub fn zero_window(to: SocketAddr, path: &str, connections: usize, hold: Duration) -> Attack {
    let mut attack = Attack::new();
    for n in 0..connections {
        let (stop, attempts) = attack.running();
        let head = format!("GET {path} HTTP/1.1\r\nHost: spark\r\n\r\n");
        attack.tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(socket) = TcpSocket::new_v4() else {
                    return;
                };
                let _ = socket.set_recv_buffer_size(4096);
                let _ = socket.bind(SocketAddr::new(source(30, n), 0));
                let Ok(mut stream) = socket.connect(to).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if stream.write_all(head.as_bytes()).await.is_ok() {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(hold).await;
                }
            }
        });
    }
    attack
}

/// `clients` loops of `GET path` (fresh connection each) until stopped.
pub fn repeat(to: SocketAddr, path: &str, clients: usize, group: u8) -> Attack {
    let mut attack = Attack::new();
    for n in 0..clients {
        let (stop, attempts) = attack.running();
        let head = format!("GET {path} HTTP/1.1\r\nHost: spark\r\nConnection: close\r\n\r\n");
        attack.tasks.spawn(async move {
            let mut sink = vec![0u8; 64 << 10];
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut stream) = connect(source(group, n), to).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                if stream.write_all(head.as_bytes()).await.is_err() {
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
