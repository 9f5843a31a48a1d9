//! An open-loop HTTP generator: requests leave on a fixed schedule (per phase rate), whatever
//! the server's latency, over a pool of keep-alive connections; each latency is measured from
//! the request's *scheduled* time, so a stalled server shows up as latency instead of as a
//! quietly lower request rate (no coordinated omission).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::dial::{BenchTls, TlsConnect};

/// A stretch of constant request rate.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// How long the phase lasts.
    pub duration: Duration,
    /// Requests sent per second.
    pub rate: f64,
}

/// What an open-loop run measured.
#[derive(Debug, Clone)]
pub struct OpenLoopResult {
    /// Requests answered with success over the measured phases.
    pub requests: u64,
    /// Failed requests over the measured phases (non-2xx, no response, 30 s timeout).
    pub errors: u64,
    /// Median latency from the scheduled send time over the measured phases, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, the same way, ms.
    pub p99_ms: f64,
    /// p99 within each phase.
    pub phase_p99_ms: Vec<f64>,
    /// Requests answered with success, within each phase.
    pub phase_ok: Vec<u64>,
    /// Requests that failed, within each phase.
    pub phase_errors: Vec<u64>,
    /// Why they failed, within each phase: each reason (its error chain) and how often.
    pub phase_error_kinds: Vec<BTreeMap<String, u64>>,
}

/// A request that has not answered by then counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type PooledClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> PooledClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(512)
        .build_http()
}

/// The open loop's pool of keep-alive connections: plain, or TLS to the run's certificate.
#[derive(Clone)]
enum Pool {
    Plain(PooledClient),
    Tls(Client<TlsConnect, Empty<Bytes>>),
}

impl Pool {
    fn new(tls: Option<Arc<BenchTls>>) -> Pool {
        match tls {
            None => Pool::Plain(client()),
            Some(tls) => Pool::Tls(
                Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(512)
                    .build(TlsConnect(tls)),
            ),
        }
    }

    async fn send(&self, addr: SocketAddr, path: &str) -> Result<(), RequestFailed> {
        match self {
            Pool::Plain(client) => send(client, "http", addr, path).await,
            Pool::Tls(client) => send(client, "https", addr, path).await,
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}

/// Why one load-generator request did not count as a success.
#[derive(Debug, thiserror::Error)]
pub enum RequestFailed {
    /// `addr` and `path` do not make a valid URI.
    #[error("bad URI")]
    Uri(#[source] http::uri::InvalidUri),
    /// No response: the connection failed, closed or was reset.
    #[error("no response")]
    Send(#[source] hyper_util::client::legacy::Error),
    /// The response body broke off.
    #[error("body")]
    Body(#[source] hyper::Error),
    /// The server answered with a non-2xx status.
    #[error("status {0}")]
    Status(http::StatusCode),
    /// No complete answer within 30 s.
    #[error("timed out")]
    Timeout,
}

/// One GET on a fresh pooled client (for closed-loop workers).
pub async fn get(addr: SocketAddr, path: &str) -> Result<(), RequestFailed> {
    thread_local! { static CLIENT: PooledClient = client(); }
    let client = CLIENT.with(Clone::clone);
    send(&client, "http", addr, path).await
}

async fn send<C>(
    client: &Client<C, Empty<Bytes>>,
    scheme: &str,
    addr: SocketAddr,
    path: &str,
) -> Result<(), RequestFailed>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let uri: http::Uri = format!("{scheme}://{addr}{path}")
        .parse()
        .map_err(RequestFailed::Uri)?;
    let response = client.get(uri).await.map_err(RequestFailed::Send)?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(RequestFailed::Body)?;
    if status.is_success() {
        Ok(())
    } else {
        Err(RequestFailed::Status(status))
    }
}

/// Sends `GET path` at each phase's rate, phase after phase, over TLS with `tls`. The first
/// `warmup` phases load the server but are left out of the results.
pub async fn run(
    addr: SocketAddr,
    path: String,
    phases: Vec<Phase>,
    warmup: usize,
    tls: Option<Arc<BenchTls>>,
) -> OpenLoopResult {
    let client = Pool::new(tls);
    let per_phase: Arc<Vec<Mutex<Histogram<u64>>>> =
        Arc::new(phases.iter().map(|_| Mutex::new(histogram())).collect());
    let errors: Arc<Vec<Mutex<BTreeMap<String, u64>>>> =
        Arc::new(phases.iter().map(|_| Mutex::default()).collect());
    let mut tasks = Vec::new();
    let mut at = Instant::now();
    for (index, phase) in phases.iter().enumerate() {
        let count = (phase.rate * phase.duration.as_secs_f64()).round() as u64;
        let gap = Duration::from_secs_f64(1.0 / phase.rate.max(f64::EPSILON));
        for _ in 0..count {
            let scheduled = at;
            at += gap;
            let (client, path, per_phase, errors) = (
                client.clone(),
                path.clone(),
                per_phase.clone(),
                errors.clone(),
            );
            tokio::time::sleep_until(scheduled).await;
            tasks.push(tokio::spawn(async move {
                let sent = tokio::time::timeout(REQUEST_TIMEOUT, client.send(addr, &path)).await;
                match sent.unwrap_or(Err(RequestFailed::Timeout)) {
                    Ok(()) => {
                        let micros = scheduled.elapsed().as_micros() as u64;
                        per_phase[index]
                            .lock()
                            .expect("histogram lock")
                            .saturating_record(micros.max(1));
                    }
                    Err(failed) => {
                        let why = spark_error::chain(&failed).to_string();
                        *errors[index]
                            .lock()
                            .expect("errors lock")
                            .entry(why)
                            .or_default() += 1;
                    }
                }
            }));
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut all = histogram();
    let (mut phase_p99_ms, mut phase_ok, mut phase_errors) = (Vec::new(), Vec::new(), Vec::new());
    let mut phase_error_kinds = Vec::new();
    for (h, failed) in per_phase.iter().zip(errors.iter()).skip(warmup) {
        let h = h.lock().expect("histogram lock");
        phase_p99_ms.push(h.value_at_quantile(0.99) as f64 / 1e3);
        phase_ok.push(h.len());
        let kinds = std::mem::take(&mut *failed.lock().expect("errors lock"));
        phase_errors.push(kinds.values().sum());
        phase_error_kinds.push(kinds);
        all.add(&*h).expect("same bounds");
    }
    OpenLoopResult {
        requests: all.len(),
        errors: phase_errors.iter().sum(),
        p50_ms: all.value_at_quantile(0.50) as f64 / 1e3,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1e3,
        phase_p99_ms,
        phase_ok,
        phase_errors,
        phase_error_kinds,
    }
}

/// [`run`] on a thread and runtime of its own, so that other clients the benchmark drives in
/// this process (an attack's thousands of connections, a surge's burst) do not delay its
/// requests in this process's task queues: the latency measured is the node's, not the
/// benchmark's scheduler's. The two still share the machine's cores.
pub fn run_apart(
    addr: SocketAddr,
    path: String,
    phases: Vec<Phase>,
    warmup: usize,
    tls: Option<Arc<BenchTls>>,
) -> tokio::sync::oneshot::Receiver<OpenLoopResult> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("open-loop".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime builds");
            let _ = done.send(runtime.block_on(run(addr, path, phases, warmup, tls)));
        })
        .expect("the open-loop thread starts");
    result
}
