//! The exporter: a bounded queue of finished spans, and one task that posts them in batches
//! to an OTLP/HTTP collector (`POST /v1/traces`, `application/x-protobuf`).
//!
//! The decision worth knowing: the request path only ever does a `try_send`. A full queue
//! drops the span (counted), a collector that is down fails its batch (counted), one that
//! stalls is given up on after the timeout (counted): nothing the collector does can make a
//! request wait or the node hold more than the queue and one batch in flight. Failed batches
//! are not retried; a trace missing spans is better than a node falling behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

use crate::span::{Resource, SpanRecord, encode};

/// Spans per export request at most (the OpenTelemetry SDKs' default batch size).
pub const MAX_BATCH: usize = 512;
/// How long a span may wait for others to share its export request.
pub const BATCH_DELAY: Duration = Duration::from_millis(500);
/// The path below the base endpoint that takes spans.
pub const TRACES_PATH: &str = "/v1/traces";

/// Where and how spans are exported.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// The full URL spans are posted to (`http://host:port/v1/traces`).
    pub url: http::Uri,
    /// How long one export request may take, connecting included.
    pub timeout: Duration,
    /// Spans waiting at most; beyond, new ones are dropped.
    pub queue: usize,
    /// Who produced the spans.
    pub resource: Resource,
}

/// Why a configured endpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Not a URL.
    #[error("OTLP endpoint {endpoint:?} is not a valid URL")]
    Invalid {
        /// The endpoint as given.
        endpoint: String,
        /// What `http` said.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// Not `http://` with a host (the exporter speaks plain HTTP to a nearby collector).
    #[error(
        "OTLP endpoint {0:?} must be http://HOST[:PORT][/PATH] (https is not supported: use a collector on the same host)"
    )]
    NotHttp(String),
}

/// Where to send spans, from the manifest's `node.otlp_endpoint` or else the standard
/// environment variables: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL, used as
/// given) or `OTEL_EXPORTER_OTLP_ENDPOINT` (a base, `/v1/traces` appended). The manifest's
/// value is a base too. `None`: tracing is off. `env` reads a variable (the process
/// environment in the node, a table in tests).
pub fn traces_url(
    manifest: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<http::Uri>, EndpointError> {
    let nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let (endpoint, full) = match manifest {
        Some(base) => (base.to_owned(), false),
        None => match nonempty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(url) => (url, true),
            None => match nonempty("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(base) => (base, false),
                None => return Ok(None),
            },
        },
    };
    let endpoint = endpoint.trim().to_owned();
    let url = if full {
        endpoint.clone()
    } else {
        format!("{}{TRACES_PATH}", endpoint.trim_end_matches('/'))
    };
    let uri = url
        .parse::<http::Uri>()
        .map_err(|source| EndpointError::Invalid {
            endpoint: endpoint.clone(),
            source,
        })?;
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) || uri.host().is_none_or(str::is_empty) {
        return Err(EndpointError::NotHttp(endpoint));
    }
    Ok(Some(uri))
}

/// What the exporter has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Spans in export requests that failed (collector down, timed out, or answered non-2xx).
    pub failed: AtomicU64,
    /// Export requests that failed.
    pub failed_requests: AtomicU64,
}

/// The request path's handle on the exporter: cheap to clone, never waits.
#[derive(Clone)]
pub struct Exporter {
    queue: mpsc::Sender<SpanRecord>,
    stats: Arc<ExportStats>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("stats", &self.stats)
            .finish()
    }
}

impl Exporter {
    /// Starts the export task on the current Tokio runtime. It ends when every handle is
    /// dropped, after one last attempt to send what is queued.
    pub fn start(settings: ExportSettings) -> Exporter {
        let (queue, receiver) = mpsc::channel(settings.queue.max(1));
        let stats = Arc::new(ExportStats::default());
        tokio::spawn(run(settings, receiver, stats.clone()));
        Exporter { queue, stats }
    }

    /// Queues a finished span; drops it (counted) if the queue is full.
    pub fn record(&self, span: SpanRecord) {
        if self.queue.try_send(span).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The exporter's counters.
    pub fn stats(&self) -> &Arc<ExportStats> {
        &self.stats
    }
}

async fn run(
    settings: ExportSettings,
    mut receiver: mpsc::Receiver<SpanRecord>,
    stats: Arc<ExportStats>,
) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(settings.timeout));
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // Wait for a first span, then give others until the delay is over to join it.
        match receiver.recv().await {
            Some(span) => batch.push(span),
            None => return,
        }
        if receiver.len() + 1 < MAX_BATCH {
            tokio::time::sleep(BATCH_DELAY).await;
        }
        let closed = loop {
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            }
            let full = batch.len() == MAX_BATCH;
            post(&client, &settings, &batch, &stats).await;
            batch.clear();
            if !full {
                break receiver.is_closed() && receiver.is_empty();
            }
        };
        if closed {
            return;
        }
    }
}

/// Posts one batch; counts the outcome.
async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    settings: &ExportSettings,
    batch: &[SpanRecord],
    stats: &ExportStats,
) {
    let body = Bytes::from(encode(&settings.resource, batch));
    let request = http::Request::post(settings.url.clone())
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(body))
        .expect("a request from a valid URI and static headers");
    let sent = tokio::time::timeout(settings.timeout, async {
        let response = client.request(request).await?;
        let status = response.status();
        // Read the (small) answer so the connection can be kept alive.
        let _ = response.into_body().collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    })
    .await;
    let n = batch.len() as u64;
    match sent {
        Ok(Ok(status)) if status.is_success() => {
            stats.exported.fetch_add(n, Ordering::Relaxed);
            return;
        }
        Ok(Ok(status)) => {
            tracing::debug!(url = %settings.url, %status, spans = n, "OTLP export refused")
        }
        Ok(Err(error)) => {
            tracing::debug!(url = %settings.url, error = %error, spans = n, "OTLP export failed")
        }
        Err(_) => {
            tracing::debug!(url = %settings.url, timeout = ?settings.timeout, spans = n, "OTLP export timed out")
        }
    }
    // One warning per failed request would flood the log while a collector is down; the
    // counters say how much is lost.
    if stats.failed_requests.fetch_add(1, Ordering::Relaxed) == 0 {
        tracing::warn!(url = %settings.url, "OTLP export failed; spans are being lost (see spark_trace_spans_failed_total)");
    }
    stats.failed.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_endpoint_comes_from_the_manifest_then_the_standard_variables() {
        let url = |m: Option<&str>, vars| traces_url(m, env(vars)).unwrap().map(|u| u.to_string());
        assert_eq!(url(None, &[]), None);
        assert_eq!(
            url(
                Some("http://127.0.0.1:4318"),
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x:1")]
            ),
            Some("http://127.0.0.1:4318/v1/traces".to_owned())
        );
        assert_eq!(
            url(
                None,
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]
            ),
            Some("http://collector:4318/v1/traces".to_owned())
        );
        assert_eq!(
            url(
                None,
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                    (
                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                        "http://jaeger:4318/custom"
                    )
                ]
            ),
            Some("http://jaeger:4318/custom".to_owned())
        );
        assert_eq!(url(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), None);
        assert!(traces_url(None, env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a b")])).is_err());
        assert!(matches!(
            traces_url(
                None,
                env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")])
            ),
            Err(EndpointError::NotHttp(_))
        ));
    }
}
