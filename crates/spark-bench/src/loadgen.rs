//! A closed-loop HTTP/1.1 load generator: `connections` keep-alive connections, each sending
//! the next request as soon as the previous response body has been read, for a fixed time.
//!
//! Built in (rather than shelling out to `wrk` or `oha`) so every scenario runs from one
//! binary with nothing else installed; both sides of every comparison use the same generator
//! in the same run, which is what makes the ratio meaningful on a shared, noisy machine.

use crate::dial::{Alpn, Dialer};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;

/// One load run's settings.
#[derive(Debug, Clone)]
pub struct Load {
    /// The server to load.
    pub target: SocketAddr,
    /// Path of every `GET`.
    pub path: String,
    /// Keep-alive connections, each with one request in flight.
    pub connections: usize,
    /// Load sent before measuring starts (not counted).
    pub warmup: Duration,
    /// The measurement window after the warm-up.
    pub duration: Duration,
}

/// What a load run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// Connections used.
    pub connections: usize,
    /// Requests answered with success in the window.
    pub requests: u64,
    /// Failed requests and connection attempts in the window (non-2xx, reset, refused).
    pub errors: u64,
    /// Length of the measurement window, seconds.
    pub seconds: f64,
    /// Successful requests per second.
    pub rps: f64,
    /// Median latency of successful requests, ms.
    pub p50_ms: f64,
    /// 90th percentile latency, ms.
    pub p90_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Slowest successful request, ms.
    pub max_ms: f64,
}

/// Runs the load and merges every connection's latency histogram.
pub async fn run(load: &Load) -> LoadResult {
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let workers: Vec<_> = (0..load.connections)
        .map(|_| {
            tokio::spawn(connection(
                load.target,
                load.path.clone(),
                measure_from,
                end,
            ))
        })
        .collect();
    let mut histogram = new_histogram();
    let (mut requests, mut errors) = (0, 0);
    for worker in workers {
        let (h, ok, failed) = worker.await.expect("load worker panicked");
        histogram.add(&h).expect("histograms have the same bounds");
        requests += ok;
        errors += failed;
    }
    let seconds = load.duration.as_secs_f64();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    LoadResult {
        connections: load.connections,
        requests,
        errors,
        seconds,
        rps: requests as f64 / seconds,
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p99_ms: ms(0.99),
        max_ms: histogram.max() as f64 / 1000.0,
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One connection's loop; reconnects after an error. Returns (latencies in µs, ok, errors)
/// counted inside the measurement window only.
async fn connection(
    target: SocketAddr,
    path: String,
    measure_from: Instant,
    end: Instant,
) -> (Histogram<u64>, u64, u64) {
    let mut histogram = new_histogram();
    let (mut ok, mut errors) = (0u64, 0u64);
    while Instant::now() < end {
        let Ok(mut sender) = connect(target).await else {
            errors += u64::from(Instant::now() >= measure_from);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while Instant::now() < end {
            let request = http::Request::get(path.as_str())
                .header(http::header::HOST, target.to_string())
                .body(Empty::<Bytes>::new())
                .expect("valid request");
            let sent = Instant::now();
            let outcome = match sender.send_request(request).await {
                Ok(response) => {
                    let success = response.status().is_success();
                    response.into_body().collect().await.is_ok() && success
                }
                Err(_) => false,
            };
            let counted = sent >= measure_from && Instant::now() <= end;
            if outcome {
                if counted {
                    ok += 1;
                    let micros = sent.elapsed().as_micros() as u64;
                    histogram.saturating_record(micros.max(1));
                }
            } else {
                errors += u64::from(counted);
                break;
            }
        }
    }
    (histogram, ok, errors)
}

async fn connect(
    target: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, std::io::Error> {
    let stream = tokio::net::TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Waits until `target` answers `GET path` with a success, or `timeout` passes.
pub async fn wait_ready(target: SocketAddr, path: &str, timeout: Duration) -> bool {
    wait_ready_over(&Dialer::plain(), target, path, timeout).await
}

/// As [`wait_ready`], over `dialer`'s connections (TLS, for a node that serves TLS).
pub async fn wait_ready_over(
    dialer: &Dialer,
    target: SocketAddr,
    path: &str,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let connected = async {
            let stream = dialer.dial(None, target, Alpn::Http1).await?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Ok::<_, std::io::Error>(sender)
        };
        if let Ok(mut sender) = connected.await {
            let request = http::Request::get(path)
                .header(http::header::HOST, target.to_string())
                .body(Empty::<Bytes>::new())
                .expect("valid request");
            if let Ok(response) = sender.send_request(request).await
                && response.status().is_success()
            {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
