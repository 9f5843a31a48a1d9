//! The replay's client: every call of the slice sent at its compressed time, each answer
//! recorded as cold or warm with its latency, each failure by its status and the node's reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spark_sim::TraceSet;
use tokio::time::Instant;

/// What the calls got.
#[derive(Default)]
pub(super) struct Observed {
    /// `(app, cold, latency ms)` of each call answered with success.
    pub cold: Vec<(usize, bool, f64)>,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
}

/// Sends every call of the slice at its (compressed) time; records (app, cold, latency ms).
pub(super) async fn drive(trace: &TraceSet, addr: SocketAddr, speed: f64) -> Observed {
    let mut calls: Vec<(f64, usize)> = trace
        .apps
        .iter()
        .enumerate()
        .flat_map(|(i, app)| app.arrivals().map(move |t| (t, i)))
        .collect();
    calls.sort_by(|a, b| a.0.total_cmp(&b.0));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let observed = Arc::new(Mutex::new(Observed::default()));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(calls.len());
    for (minute, app) in calls {
        let at = start + Duration::from_secs_f64(minute * 60.0 / speed);
        tokio::time::sleep_until(at).await;
        let (client, observed) = (client.clone(), observed.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let uri: http::Uri = format!("http://{addr}/app-{app}/x")
                .parse()
                .expect("valid uri");
            let result = client.get(uri).await;
            let store = observed;
            let mut observed = store.lock().expect("observed lock");
            match result {
                Ok(response) if response.status().is_success() => {
                    let cold = response.headers().contains_key("spark-cold-start");
                    drop(response);
                    observed
                        .cold
                        .push((app, cold, sent.elapsed().as_secs_f64() * 1e3));
                }
                Ok(response) => {
                    drop(observed);
                    // The status and the node's one-line reason ("node at capacity", ...).
                    let status = response.status().as_u16();
                    let body = http_body_util::BodyExt::collect(response.into_body())
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let reason = String::from_utf8_lossy(&body[..body.len().min(80)])
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let mut observed = store.lock().expect("observed lock");
                    observed.errors += 1;
                    let kind = format!("{status} {reason}").trim_end().to_owned();
                    *observed.errors_by_kind.entry(kind).or_default() += 1;
                }
                Err(e) => {
                    observed.errors += 1;
                    let why = format!("no response: {}", spark_error::chain(&e));
                    *observed.errors_by_kind.entry(why).or_default() += 1;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    Arc::try_unwrap(observed).map_or_else(
        |_| Observed::default(),
        |m| m.into_inner().expect("observed lock"),
    )
}
