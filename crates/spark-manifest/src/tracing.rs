//! Request tracing settings of the `[node]` table: where spans go (OTLP over HTTP) and how
//! much the node may hold for a slow collector.
//!
//! The decision worth knowing: only `http://` endpoints. The node speaks OTLP/HTTP
//! (protobuf) to a collector it can reach cheaply, normally an OpenTelemetry Collector or
//! Jaeger on the same machine or network segment, which forwards over TLS if it must; a TLS
//! client for the exporter would be a second TLS stack to keep for the data plane's sake.

use std::time::Duration;

/// Default `node.otlp_timeout`: the OpenTelemetry SDKs' default export timeout.
pub const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `node.otlp_queue`: the OpenTelemetry SDKs' default batch queue size.
pub const DEFAULT_OTLP_QUEUE: u32 = 2048;

/// How spans are exported (`node.otlp_*`). With no endpoint here the node may still take one
/// from the standard `OTEL_EXPORTER_OTLP_*` environment variables; with none at all,
/// tracing is off.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    /// The collector's base URL (`http://host:port`, spans go to `/v1/traces` below it), as
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` has it.
    pub endpoint: Option<OtlpEndpoint>,
    /// How long one export request may take before its spans are counted as failed.
    pub timeout: Duration,
    /// Spans waiting for export at most; beyond, new spans are dropped (and counted).
    pub queue: u32,
}

impl Default for TraceExport {
    fn default() -> Self {
        TraceExport {
            endpoint: None,
            timeout: DEFAULT_OTLP_TIMEOUT,
            queue: DEFAULT_OTLP_QUEUE,
        }
    }
}

/// A checked OTLP/HTTP endpoint: `http://` and a host, maybe a port and a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint(String);

/// Why a text is not an OTLP endpoint the node can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtlpEndpointError {
    /// `https://`: not supported by the node's exporter.
    #[error(
        "https endpoints are not supported: point the node at a collector over http:// (e.g. an OpenTelemetry Collector on the same host) and let it forward over TLS"
    )]
    Https,
    /// Not `http://host[:port][/path]`.
    #[error("expected http://HOST[:PORT][/PATH], e.g. \"http://127.0.0.1:4318\"")]
    Malformed,
}

impl OtlpEndpoint {
    /// Checks `text`: `http://`, a non-empty host with no user info, an optional numeric
    /// port, an optional path without query or fragment.
    pub fn parse(text: &str) -> Result<OtlpEndpoint, OtlpEndpointError> {
        let text = text.trim();
        if text.len() >= 8 && text[..8].eq_ignore_ascii_case("https://") {
            return Err(OtlpEndpointError::Https);
        }
        let rest = match text.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("http://") => &text[7..],
            _ => return Err(OtlpEndpointError::Malformed),
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let well_formed = !authority.is_empty()
            && !authority.contains(['@', '?', '#', ' '])
            && !path.contains(['?', '#', ' '])
            && port_ok(authority);
        if !well_formed {
            return Err(OtlpEndpointError::Malformed);
        }
        Ok(OtlpEndpoint(text.to_owned()))
    }

    /// The endpoint as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A port after the host (the last `:` outside IPv6 brackets) must be a number.
fn port_ok(authority: &str) -> bool {
    let after_host = match authority.rfind(']') {
        Some(end) => &authority[end + 1..],
        None => authority,
    };
    match after_host.rsplit_once(':') {
        Some((host, port)) => {
            (authority.starts_with('[') || !host.is_empty())
                && !port.is_empty()
                && port.parse::<u16>().is_ok()
        }
        None => true,
    }
}

impl std::fmt::Display for OtlpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_urls() {
        for good in [
            "http://127.0.0.1:4318",
            "http://collector:4318/",
            "http://[::1]:4318/otlp",
            "HTTP://jaeger",
        ] {
            assert!(OtlpEndpoint::parse(good).is_ok(), "{good}");
        }
        assert_eq!(
            OtlpEndpoint::parse("https://collector:4318"),
            Err(OtlpEndpointError::Https)
        );
        for bad in [
            "127.0.0.1:4318",
            "http://",
            "http://:4318",
            "http://host:port",
            "http://user@host:4318",
            "http://host:4318/v1/traces?x=1",
            "grpc://host:4317",
        ] {
            assert_eq!(
                OtlpEndpoint::parse(bad),
                Err(OtlpEndpointError::Malformed),
                "{bad}"
            );
        }
    }
}
