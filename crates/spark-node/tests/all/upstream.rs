//! A real HTTP server standing in for an upstream API that guests call.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

/// Serves `body` after `delay` to every request on 127.0.0.1, until the test ends.
pub(crate) async fn start(body: &'static str, delay: Duration) -> SocketAddr {
    start_on("127.0.0.1:0", body, delay).await.addr
}

/// A running upstream and the TCP connections it has accepted so far.
pub(crate) struct Upstream {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Upstream {
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// As [`start`], listening on `bind` (keep-alive on, connections counted).
pub(crate) async fn start_on(bind: &str, body: &'static str, delay: Duration) -> Upstream {
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        body.as_bytes(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream { addr, connections }
}
