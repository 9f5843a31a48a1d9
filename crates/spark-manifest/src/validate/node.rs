//! Validation of the `[node]` table: addresses, the node-wide bounds, the front-door limits
//! and the listeners' certificates.

use std::ops::RangeInclusive;
use std::time::Duration;

use toml::Spanned;

use super::{MAX_INSTANCES, Validator};
use crate::listener::{CertificateFiles, ListenerLimits};
use crate::schema::{RawCertificate, RawNode};
use crate::{NodeSettings, OtlpEndpoint, TraceExport};

/// Front-door timeouts are at least this (a shorter one would cut off healthy clients on a
/// busy link) and at most this (a longer one is not a limit).
const TIMEOUTS: RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(3600);
/// The longest `node.linger_time`: a lingering connection keeps its place under the caps.
const MAX_LINGER_TIME: Duration = Duration::from_secs(60);
const MAX_CONNECTIONS: i64 = 1_000_000;
/// Most `node.max_connection_rate_per_client` (new connections a second; 0 is no limit).
const MAX_CONNECTION_RATE: i64 = 1_000_000;
const MAX_STREAMS: i64 = 10_000;
/// An export request waits at least this for its collector, and at most this.
const OTLP_TIMEOUTS: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(60);
/// Spans held for export at most (each is a few hundred bytes).
const MAX_OTLP_QUEUE: i64 = 1_000_000;
/// The node-wide memory bound must leave room for at least one small invocation.
const MIN_MAX_MEMORY: u64 = 16 << 20;

impl Validator<'_> {
    pub(super) fn node(&mut self, raw: Option<&RawNode>) -> NodeSettings {
        let defaults = NodeSettings::default();
        let Some(raw) = raw else { return defaults };
        let max_memory = raw.max_memory.as_ref().map(|m| {
            let bytes = self.size(Some(m), 0, "node.max_memory");
            if bytes < MIN_MAX_MEMORY {
                self.error(m.span(), "node.max_memory must be at least 16MiB");
            }
            bytes
        });
        NodeSettings {
            listen: self.addr(raw.listen.as_ref(), defaults.listen, "node.listen"),
            admin: self.addr(raw.admin.as_ref(), defaults.admin, "node.admin"),
            data_dir: raw.data_dir.as_ref().map(|d| self.base.join(d.get_ref())),
            max_instances: self.int(
                raw.max_instances.as_ref(),
                defaults.max_instances as i64,
                1..=MAX_INSTANCES,
                "node.max_instances",
            ) as u32,
            max_module_memory: self.size(
                raw.max_module_memory.as_ref(),
                defaults.max_module_memory,
                "node.max_module_memory",
            ),
            shutdown_grace: self.duration(
                raw.shutdown_grace.as_ref(),
                defaults.shutdown_grace,
                "node.shutdown_grace",
            ),
            max_memory,
            limits: self.listener_limits(raw, &defaults.limits),
            admin_max_connections: self.int(
                raw.admin_max_connections.as_ref(),
                i64::from(defaults.admin_max_connections),
                1..=MAX_CONNECTIONS,
                "node.admin_max_connections",
            ) as u32,
            tls: self.certificates(&raw.tls, "node.tls"),
            admin_tls: self.certificates(&raw.admin_tls, "node.admin_tls"),
            tiering: raw.tiering.unwrap_or(defaults.tiering),
            trace_export: self.trace_export(raw, &defaults.trace_export),
        }
    }

    fn trace_export(&mut self, raw: &RawNode, d: &TraceExport) -> TraceExport {
        let endpoint = raw.otlp_endpoint.as_ref().and_then(|text| {
            OtlpEndpoint::parse(text.get_ref())
                .map_err(|why| self.error(text.span(), format!("node.otlp_endpoint: {why}")))
                .ok()
        });
        let timeout = self.duration(raw.otlp_timeout.as_ref(), d.timeout, "node.otlp_timeout");
        if let Some(raw) = &raw.otlp_timeout
            && !OTLP_TIMEOUTS.contains(&timeout)
        {
            self.error(
                raw.span(),
                "node.otlp_timeout must be between 100ms and 60s",
            );
        }
        TraceExport {
            endpoint,
            timeout: timeout.clamp(*OTLP_TIMEOUTS.start(), *OTLP_TIMEOUTS.end()),
            queue: self.int(
                raw.otlp_queue.as_ref(),
                i64::from(d.queue),
                1..=MAX_OTLP_QUEUE,
                "node.otlp_queue",
            ) as u32,
        }
    }

    fn listener_limits(&mut self, raw: &RawNode, d: &ListenerLimits) -> ListenerLimits {
        let max_connections = self.int(
            raw.max_connections.as_ref(),
            i64::from(d.max_connections),
            1..=MAX_CONNECTIONS,
            "node.max_connections",
        ) as u32;
        let per_client = self.int(
            raw.max_connections_per_client.as_ref(),
            i64::from(d.max_connections_per_client),
            1..=MAX_CONNECTIONS,
            "node.max_connections_per_client",
        ) as u32;
        let rate = self.int(
            raw.max_connection_rate_per_client.as_ref(),
            i64::from(d.max_connection_rate_per_client),
            0..=MAX_CONNECTION_RATE,
            "node.max_connection_rate_per_client",
        ) as u32;
        let apart = self.int(
            raw.max_connections_apart.as_ref(),
            i64::from(d.max_connections_apart),
            0..=MAX_CONNECTIONS,
            "node.max_connections_apart",
        ) as u32;
        let keepalive = self.duration(
            raw.h2_keepalive_interval.as_ref(),
            d.h2_keepalive_interval,
            "node.h2_keepalive_interval",
        );
        let linger_time =
            self.duration(raw.linger_time.as_ref(), d.linger_time, "node.linger_time");
        let linger_time = match raw.linger_time.as_ref().map(Spanned::span) {
            Some(span) if linger_time > MAX_LINGER_TIME => {
                self.error(
                    span,
                    "node.linger_time must be at most 1m (or \"0s\": close at once)",
                );
                d.linger_time
            }
            _ => linger_time,
        };
        if let Some(span) = raw.h2_keepalive_interval.as_ref().map(Spanned::span)
            && !keepalive.is_zero()
            && !TIMEOUTS.contains(&keepalive)
        {
            self.error(
                span,
                "node.h2_keepalive_interval must be between 100ms and 1h (or \"0s\": off)",
            );
        }
        ListenerLimits {
            header_read_timeout: self.timeout(
                raw.header_read_timeout.as_ref(),
                d.header_read_timeout,
                "node.header_read_timeout",
            ),
            idle_timeout: self.timeout(
                raw.idle_timeout.as_ref(),
                d.idle_timeout,
                "node.idle_timeout",
            ),
            send_timeout: self.timeout(
                raw.send_timeout.as_ref(),
                d.send_timeout,
                "node.send_timeout",
            ),
            request_body_timeout: self.timeout(
                raw.request_body_timeout.as_ref(),
                d.request_body_timeout,
                "node.request_body_timeout",
            ),
            max_connections,
            max_connections_per_client: per_client.min(max_connections),
            max_connection_rate_per_client: rate,
            max_connections_apart: apart.min(max_connections),
            h2_max_concurrent_streams: self.int(
                raw.h2_max_concurrent_streams.as_ref(),
                i64::from(d.h2_max_concurrent_streams),
                1..=MAX_STREAMS,
                "node.h2_max_concurrent_streams",
            ) as u32,
            h2_keepalive_interval: keepalive,
            h2_reset_budget: self.int(
                raw.h2_reset_budget.as_ref(),
                i64::from(d.h2_reset_budget),
                1..=MAX_CONNECTIONS,
                "node.h2_reset_budget",
            ) as u32,
            linger_time,
            linger_bytes: self.size(
                raw.linger_bytes.as_ref(),
                d.linger_bytes,
                "node.linger_bytes",
            ),
        }
    }

    /// A duration within [`TIMEOUTS`].
    fn timeout(
        &mut self,
        raw: Option<&Spanned<String>>,
        default: Duration,
        what: &str,
    ) -> Duration {
        let value = self.duration(raw, default, what);
        if let Some(raw) = raw
            && !TIMEOUTS.contains(&value)
        {
            self.error(raw.span(), format!("{what} must be between 100ms and 1h"));
            return default;
        }
        value
    }

    fn certificates(
        &mut self,
        raw: &[Spanned<RawCertificate>],
        what: &str,
    ) -> Vec<CertificateFiles> {
        raw.iter()
            .filter_map(|entry| {
                let entry = entry.get_ref();
                let mut path = |value: &Spanned<String>, field: &str| {
                    if value.get_ref().trim().is_empty() {
                        self.error(value.span(), format!("{what}: `{field}` is empty"));
                        return None;
                    }
                    Some(self.base.join(value.get_ref()))
                };
                let cert = path(&entry.cert, "cert");
                let key = path(&entry.key, "key");
                Some(CertificateFiles {
                    cert: cert?,
                    key: key?,
                })
            })
            .collect()
    }
}
