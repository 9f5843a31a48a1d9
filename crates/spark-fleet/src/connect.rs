//! Connecting to NATS and opening (or creating) the fleet's buckets. A client whose
//! credentials may not create streams (a node under the least-privilege layout) opens buckets a
//! deployer created; until then its connect fails and the node keeps retrying.
//!
//! The client pings often and reconnects quickly (capped at one second between attempts), so a
//! restarted server is noticed in seconds; it also connects in the background when the server
//! is down at start ([`FleetConfig::wait_for_server`] false), which is what a node wants: it
//! serves from its own store and joins when NATS appears.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};

use crate::FleetError;

/// Desired state per application (history kept for `spark fleet status`).
pub const DESIRED_BUCKET: &str = "spark-desired";
/// Rollout progress per application, written by nodes' planning steps
/// ([`RolloutProgress`](crate::RolloutProgress)).
pub const ROLLOUTS_BUCKET: &str = "spark-rollouts";
/// Heartbeats per node; entries expire after [`FleetConfig::heartbeat_ttl`].
pub const NODES_BUCKET: &str = "spark-nodes";
/// Fleet-wide key-value stores' entries ([`replicated`](crate::replicated)).
pub const KV_BUCKET: &str = "spark-kv";
/// Components by digest.
pub const ARTIFACTS_BUCKET: &str = "spark-artifacts";

/// How a client proves who it is to NATS, and how it checks the server: any mix of a
/// credentials file (JWT + nkey seed), an nkey seed file, user and password, a token, and TLS
/// (a CA to verify the server, a client certificate for mutual TLS). Secrets are kept out of
/// `Debug`, logs and errors.
#[derive(Clone, Default)]
pub struct FleetAuth {
    /// A `.creds` file (JWT and nkey seed, as `nsc` writes them).
    pub creds_file: Option<PathBuf>,
    /// A file holding an nkey seed (`SU...`).
    pub nkey_file: Option<PathBuf>,
    /// User name, with `password`.
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<String>,
    /// An authentication token.
    pub token: Option<String>,
    /// CA certificate (PEM) the server's certificate must chain to; implies TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM), with `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl std::fmt::Debug for FleetAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetAuth")
            .field("creds_file", &self.creds_file)
            .field("nkey_file", &self.nkey_file)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

impl FleetAuth {
    /// What it uses, without secrets, for a startup line (`user n1, TLS with client
    /// certificate`); `None` when nothing is configured.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.creds_file.is_some() {
            parts.push("credentials file".to_owned());
        }
        if self.nkey_file.is_some() {
            parts.push("nkey".to_owned());
        }
        if let Some(user) = &self.user {
            parts.push(format!("user {user}"));
        }
        if self.token.is_some() {
            parts.push("token".to_owned());
        }
        match (&self.tls_ca, &self.tls_cert) {
            (_, Some(_)) => parts.push("TLS with client certificate".to_owned()),
            (Some(_), None) => parts.push("TLS".to_owned()),
            _ => {}
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    async fn apply(
        &self,
        mut options: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, FleetError> {
        let file_error = |what: &str, path: &std::path::Path, e: std::io::Error| FleetError::Auth {
            what: format!("{what} {}", path.display()),
            source: e.into(),
        };
        if let Some(path) = &self.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| file_error("reading the credentials file", path, e))?;
        }
        if let Some(path) = &self.nkey_file {
            let seed = std::fs::read_to_string(path)
                .map_err(|e| file_error("reading the nkey seed file", path, e))?;
            options = options.nkey(seed.trim().to_owned());
        }
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                options = options.user_and_password(user.clone(), password.clone());
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(FleetError::Auth {
                    what: "a NATS user needs a password and a password a user".into(),
                    source: "incomplete user/password".into(),
                });
            }
            (None, None) => {}
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(ca) = &self.tls_ca {
            options = options.require_tls(true).add_root_certificates(ca.clone());
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                options = options
                    .require_tls(true)
                    .add_client_certificate(cert.clone(), key.clone());
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(FleetError::Auth {
                    what: "a TLS client certificate needs its key and a key its certificate".into(),
                    source: "incomplete client certificate".into(),
                });
            }
            (None, None) => {}
        }
        Ok(options)
    }
}

/// How to reach the fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// One or more server URLs, comma-separated (`nats://127.0.0.1:4222,nats://...`).
    pub url: String,
    /// Credentials and TLS (none by default).
    pub auth: FleetAuth,
    /// Heartbeat expiry: a node silent for this long is no longer listed.
    pub heartbeat_ttl: Duration,
    /// Fail at once when no server answers (the CLI) instead of connecting in the background
    /// (a node).
    pub wait_for_server: bool,
    /// Copies JetStream keeps of each bucket this client *creates* (1 to 5; 3 on a cluster of
    /// three servers survives losing one). Buckets that exist are opened as they are.
    pub replicas: usize,
    /// The connection's name as the servers list it (`/connz`): `spark` for the CLI, `spark
    /// node <id>` for a node, so a server's monitoring tells the nodes apart.
    pub client_name: String,
}

impl FleetConfig {
    /// Default heartbeat expiry: 10 s, about ten missed heartbeats.
    pub const DEFAULT_HEARTBEAT_TTL: Duration = Duration::from_secs(10);
    /// Most replicas JetStream keeps of a stream.
    pub const MAX_REPLICAS: usize = 5;

    /// Settings for `url` with the default heartbeat expiry, failing at once when no server
    /// answers.
    pub fn new(url: impl Into<String>) -> FleetConfig {
        FleetConfig {
            url: url.into(),
            auth: FleetAuth::default(),
            heartbeat_ttl: Self::DEFAULT_HEARTBEAT_TTL,
            wait_for_server: true,
            replicas: 1,
            client_name: "spark".to_owned(),
        }
    }
}

/// A connection to the fleet's buckets.
#[derive(Clone)]
pub struct Fleet {
    pub(crate) client: async_nats::Client,
    pub(crate) desired: kv::Store,
    pub(crate) rollouts: kv::Store,
    pub(crate) nodes: kv::Store,
    pub(crate) kv: kv::Store,
    pub(crate) artifacts: object_store::ObjectStore,
}

impl Fleet {
    /// Connects and opens the buckets, creating any that is missing. With
    /// `wait_for_server` false this returns only once a server has answered (retrying).
    pub async fn connect(config: &FleetConfig) -> Result<Fleet, FleetError> {
        if !(1..=FleetConfig::MAX_REPLICAS).contains(&config.replicas) {
            return Err(FleetError::InvalidName {
                what: "bucket replica count",
                value: config.replicas.to_string(),
                reason: "JetStream keeps 1 to 5 copies of a bucket",
            });
        }
        let client = client(config).await?;
        let js = jetstream::new(client.clone());
        let desired = key_value(&js, desired_config(), config.replicas).await?;
        let rollouts = key_value(&js, rollouts_config(), config.replicas).await?;
        let nodes = key_value(&js, nodes_config(config.heartbeat_ttl), config.replicas).await?;
        let kv = key_value(&js, kv_config(), config.replicas).await?;
        let artifacts = object(&js, config.replicas).await?;
        Ok(Fleet {
            client,
            desired,
            rollouts,
            nodes,
            kv,
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
    let lost = Arc::new(AtomicBool::new(false));
    let mut options = async_nats::ConnectOptions::new()
        .name(&config.client_name)
        .ping_interval(Duration::from_secs(2))
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(3)))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 100).clamp(50, 1000))
        })
        .event_callback(move |event| {
            let lost = lost.clone();
            async move {
                // An outage gets a line of its own (the node keeps serving what it has), and
                // so does its end; the first connection is the caller's to announce.
                match event {
                    async_nats::Event::Disconnected => {
                        lost.store(true, Ordering::Relaxed);
                        tracing::warn!(
                            "lost the connection to NATS: serving the current release, reconnecting"
                        )
                    }
                    async_nats::Event::Connected if lost.swap(false, Ordering::Relaxed) => {
                        tracing::info!("reconnected to NATS")
                    }
                    other => tracing::debug!(event = %other, "NATS connection event"),
                }
            }
        });
    if !config.wait_for_server {
        options = options.retry_on_initial_connect();
    }
    let options = config.auth.apply(options).await?;
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

fn rollouts_config() -> kv::Config {
    kv::Config {
        bucket: ROLLOUTS_BUCKET.into(),
        description: "Spark: fleet rollout progress per application (written by nodes)".into(),
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

fn kv_config() -> kv::Config {
    kv::Config {
        bucket: KV_BUCKET.into(),
        description: "Spark: entries of fleet-wide key-value stores".into(),
        history: 1,
        ..Default::default()
    }
}

/// Opens a KV bucket, creating it with `replicas` copies when missing (two creators racing
/// both end up opening it).
async fn key_value(
    js: &jetstream::Context,
    config: kv::Config,
    replicas: usize,
) -> Result<kv::Store, FleetError> {
    if let Ok(store) = js.get_key_value(&config.bucket).await {
        return Ok(store);
    }
    let config = kv::Config {
        num_replicas: replicas,
        ..config
    };
    let bucket = config.bucket.clone();
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        Err(create) => js
            .get_key_value(&bucket)
            .await
            .map_err(|_| FleetError::nats("creating a KV bucket", create)),
    }
}

async fn object(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<object_store::ObjectStore, FleetError> {
    if let Ok(store) = js.get_object_store(ARTIFACTS_BUCKET).await {
        return Ok(store);
    }
    let config = object_store::Config {
        bucket: ARTIFACTS_BUCKET.into(),
        description: Some("Spark: components by SHA-256".into()),
        num_replicas: replicas,
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
