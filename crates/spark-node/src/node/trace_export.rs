//! Starting the span exporter: the endpoint from `node.otlp_endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_*` variables (none: tracing off), the resource attributes that name
//! this node, and the exporter task.

use std::sync::Arc;

use spark_manifest::TraceExport;
use spark_store::DataDir;
use spark_trace::{ExportSettings, Exporter, Resource};

use crate::serve::trace::Tracing;

/// `service.name` unless `OTEL_SERVICE_NAME` says otherwise.
const SERVICE_NAME: &str = "spark";

/// The node's tracing, or `None` when no endpoint is configured. Must run on the node's
/// Tokio runtime (the exporter's task is spawned on it).
pub(super) fn start(
    settings: &TraceExport,
    data_dir: &DataDir,
) -> Result<Option<(Arc<Tracing>, Exporter)>, spark_trace::export::EndpointError> {
    let endpoint = settings.endpoint.as_ref().map(|e| e.as_str());
    let Some(url) = spark_trace::traces_url(endpoint, |name| std::env::var(name).ok())? else {
        return Ok(None);
    };
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| SERVICE_NAME.to_owned());
    let mut resource = Resource {
        attributes: vec![
            ("service.name", service),
            ("service.version", env!("CARGO_PKG_VERSION").to_owned()),
        ],
    };
    // The node's persistent id (the one a fleet knows it by), so spans from one node can be
    // told apart from its peers' and across restarts.
    match data_dir.fleet_node_id() {
        Ok(id) => resource.attributes.push(("service.instance.id", id)),
        Err(error) => {
            tracing::warn!(error = %spark_error::chain(&error), "spans will carry no service.instance.id")
        }
    }
    tracing::info!(%url, timeout = ?settings.timeout, queue = settings.queue, "exporting request spans over OTLP");
    let exporter = Exporter::start(ExportSettings {
        url,
        timeout: settings.timeout,
        queue: settings.queue as usize,
        resource,
    });
    Ok(Some((Arc::new(Tracing::new(exporter.clone())), exporter)))
}
