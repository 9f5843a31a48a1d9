//! Reading a node's `/v1/status` from a benchmark.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spark_node::NodeStatus;

use crate::BenchError;

/// The parts of a module's status the benchmarks compare.
#[derive(Debug, Clone)]
pub struct ModuleCounters {
    /// Module id from the manifest.
    pub id: String,
    /// Digest of the loaded component.
    pub digest: String,
    /// Compile + link time of the loaded code, ms; a changed value means the module was loaded
    /// again.
    pub load_ms: f64,
    /// Guest CPU time used so far, seconds (a counter).
    pub cpu_seconds: f64,
    /// Calls so far, requests or job runs (a counter).
    pub invocations: u64,
}

/// A node's status, reduced.
#[derive(Debug, Clone)]
pub struct StatusSummary {
    /// Every module in the status.
    pub modules: Vec<ModuleCounters>,
    /// CPU time the orchestrator has used so far, seconds; 0 when it is off.
    pub orchestrator_cpu: f64,
    /// Decisions the status lists (the node's most recent ones, capped; not a lifetime count);
    /// 0 when the orchestrator is off.
    pub decisions: usize,
    /// The most recent decisions, as text.
    pub decision_log: Vec<String>,
}

impl StatusSummary {
    /// The counters of module `id`; panics if the status has no such module.
    pub fn module(&self, id: &str) -> &ModuleCounters {
        self.modules
            .iter()
            .find(|m| m.id == id)
            .expect("module in status")
    }
}

/// A node's admin token, from the data directory `spark up` gives it (`.spark` beside the
/// manifest).
pub fn token(manifest_dir: &std::path::Path) -> Result<String, BenchError> {
    let path = spark_store::DataDir::new(manifest_dir.join(".spark")).admin_token_path();
    Ok(std::fs::read_to_string(&path)?.trim().to_owned())
}

/// `GET path` on the admin listener (with the token, if given); the whole body.
async fn admin_get(
    admin: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<Bytes, BenchError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = http::Request::get(format!("http://{admin}{path}"));
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Empty::new()).map_err(BenchError::runtime)?;
    let response = client.request(request).await.map_err(BenchError::runtime)?;
    Ok(response
        .into_body()
        .collect()
        .await
        .map_err(BenchError::runtime)?
        .to_bytes())
}

/// Reads `/v1/status` (authenticated with `token`) and reduces it.
pub async fn status(admin: SocketAddr, token: &str) -> Result<StatusSummary, BenchError> {
    let body = admin_get(admin, "/v1/status", Some(token)).await?;
    let status: NodeStatus = serde_json::from_slice(&body).map_err(BenchError::runtime)?;
    Ok(StatusSummary {
        modules: status
            .modules
            .iter()
            .map(|m| ModuleCounters {
                id: m.id.clone(),
                digest: m.digest.clone(),
                load_ms: m.load_ms,
                cpu_seconds: m.stats.cpu_nanos as f64 / 1e9,
                invocations: m.stats.invocations,
            })
            .collect(),
        orchestrator_cpu: status.orchestrator.as_ref().map_or(0.0, |o| o.cpu_seconds),
        decisions: status
            .orchestrator
            .as_ref()
            .map_or(0, |o| o.decisions.len()),
        decision_log: status
            .orchestrator
            .iter()
            .flat_map(|o| &o.decisions)
            .map(|d| format!("{} {}: {} ({})", d.at_ms, d.scope, d.change, d.reason))
            .collect(),
    })
}

/// The node's Prometheus page (`/metrics` is open, no token).
pub async fn metrics(admin: SocketAddr) -> Result<String, BenchError> {
    let body = admin_get(admin, "/metrics", None).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The value of one series (`name{labels}` as exposed) in a Prometheus page.
pub fn series(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
