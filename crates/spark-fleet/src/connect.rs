//! Connecting to NATS and opening (or creating) the fleet's three buckets.
//!
//! The client pings often and reconnects quickly (capped at one second between attempts), so a
//! restarted server is noticed in seconds; it also connects in the background when the server
//! is down at start ([`FleetConfig::wait_for_server`] false), which is what a node wants: it
//! serves from its own store and joins when NATS appears.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};

use crate::FleetError;

/// Desired state per application (history kept for `spark fleet status`).
pub const DESIRED_BUCKET: &str = "spark-desired";
/// Heartbeats per node; entries expire after [`FleetConfig::heartbeat_ttl`].
pub const NODES_BUCKET: &str = "spark-nodes";
/// Components by digest.
pub const ARTIFACTS_BUCKET: &str = "spark-artifacts";

/// How to reach the fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// One or more server URLs, comma-separated (`nats://127.0.0.1:4222,nats://...`).
    pub url: String,
    /// Heartbeat expiry: a node silent for this long is no longer listed.
    pub heartbeat_ttl: Duration,
    /// Fail at once when no server answers (the CLI) instead of connecting in the background
    /// (a node).
    pub wait_for_server: bool,
}

impl FleetConfig {
    /// Default heartbeat expiry: 10 s, about ten missed heartbeats.
    pub const DEFAULT_HEARTBEAT_TTL: Duration = Duration::from_secs(10);

    /// Settings for `url` with the default heartbeat expiry, failing at once when no server
    /// answers.
    pub fn new(url: impl Into<String>) -> FleetConfig {
        FleetConfig {
            url: url.into(),
            heartbeat_ttl: Self::DEFAULT_HEARTBEAT_TTL,
            wait_for_server: true,
        }
    }
}

/// A connection to the fleet's buckets.
#[derive(Clone)]
pub struct Fleet {
    pub(crate) client: async_nats::Client,
    pub(crate) desired: kv::Store,
    pub(crate) nodes: kv::Store,
    pub(crate) artifacts: object_store::ObjectStore,
}

impl Fleet {
    /// Connects and opens the buckets, creating any that is missing. With
    /// `wait_for_server` false this returns only once a server has answered (retrying).
    pub async fn connect(config: &FleetConfig) -> Result<Fleet, FleetError> {
        let client = client(config).await?;
        let js = jetstream::new(client.clone());
        let desired = key_value(&js, desired_config()).await?;
        let nodes = key_value(&js, nodes_config(config.heartbeat_ttl)).await?;
        let artifacts = object(&js).await?;
        Ok(Fleet {
            client,
            desired,
            nodes,
            artifacts,
        })
    }

    /// Is the client connected right now?
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// `urls` (comma-separated) with any `user:password@` or `token@` replaced by `***@`, for
/// printing and logging: credentials in a URL never reach a log line, an error or a status.
pub fn redact_url(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let redacted = if host.len() == rest.len() {
                host.to_owned()
            } else {
                format!("***@{host}")
            };
            if scheme.is_empty() {
                redacted
            } else {
                format!("{scheme}://{redacted}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

async fn client(config: &FleetConfig) -> Result<async_nats::Client, FleetError> {
    let urls: Vec<async_nats::ServerAddr> = config
        .url
        .split(',')
        .map(|u| u.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e: std::io::Error| FleetError::Connect {
            url: redact_url(&config.url),
            source: e.into(),
        })?;
    let mut options = async_nats::ConnectOptions::new()
        .name("spark")
        .ping_interval(Duration::from_secs(2))
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(3)))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 100).clamp(50, 1000))
        })
        .event_callback(|event| async move {
            // An outage gets a line of its own (the node keeps serving what it has).
            match event {
                async_nats::Event::Disconnected => tracing::warn!(
                    "lost the connection to NATS: serving the current release, reconnecting"
                ),
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                other => tracing::debug!(event = %other, "NATS connection event"),
            }
        });
    if !config.wait_for_server {
        options = options.retry_on_initial_connect();
    }
    options
        .connect(urls)
        .await
        .map_err(|e| FleetError::Connect {
            url: redact_url(&config.url),
            source: e.into(),
        })
}

fn desired_config() -> kv::Config {
    kv::Config {
        bucket: DESIRED_BUCKET.into(),
        description: "Spark: desired release and rollout per application".into(),
        history: 16,
        ..Default::default()
    }
}

fn nodes_config(ttl: Duration) -> kv::Config {
    kv::Config {
        bucket: NODES_BUCKET.into(),
        description: "Spark: node heartbeats and telemetry".into(),
        history: 1,
        max_age: ttl,
        ..Default::default()
    }
}

/// Opens a KV bucket, creating it when missing (two creators racing both end up opening it).
async fn key_value(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store, FleetError> {
    if let Ok(store) = js.get_key_value(&config.bucket).await {
        return Ok(store);
    }
    let bucket = config.bucket.clone();
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        Err(create) => js
            .get_key_value(&bucket)
            .await
            .map_err(|_| FleetError::nats("creating a KV bucket", create)),
    }
}

async fn object(js: &jetstream::Context) -> Result<object_store::ObjectStore, FleetError> {
    if let Ok(store) = js.get_object_store(ARTIFACTS_BUCKET).await {
        return Ok(store);
    }
    let config = object_store::Config {
        bucket: ARTIFACTS_BUCKET.into(),
        description: Some("Spark: components by SHA-256".into()),
        ..Default::default()
    };
    match js.create_object_store(config).await {
        Ok(store) => Ok(store),
        Err(create) => js
            .get_object_store(ARTIFACTS_BUCKET)
            .await
            .map_err(|_| FleetError::nats("creating the artifact bucket", create)),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn credentials_in_urls_are_never_shown() {
        assert_eq!(
            redact_url("nats://deployer:s3cret@10.0.0.1:4222, tls://tok@nats.example:4443"),
            "nats://***@10.0.0.1:4222,tls://***@nats.example:4443"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_url("u:p@host:4222"), "***@host:4222");
    }
}
