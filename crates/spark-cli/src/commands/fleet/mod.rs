//! `spark fleet deploy|status|rollout`: manage a fleet from any machine that reaches NATS.
//! One file per subcommand; they share the connection flags below.

mod deploy;
mod rollout;
mod status;

use anyhow::Context;
use std::path::PathBuf;

use spark_fleet::{Fleet, FleetAuth, FleetConfig};

#[derive(Debug, clap::Args)]
pub(crate) struct FleetArgs {
    #[command(subcommand)]
    command: FleetCommand,
}

#[derive(Debug, clap::Subcommand)]
enum FleetCommand {
    /// Upload a manifest's components and make it the application's desired release.
    Deploy(deploy::DeployArgs),
    /// Every node's heartbeat and every application's desired state.
    Status(status::StatusArgs),
    /// Follow or steer the fleet rollout of an application.
    Rollout(rollout::RolloutArgs),
}

/// How to authenticate to NATS and check its TLS certificate (for `spark fleet ...` and
/// `spark up --fleet`), and how many copies of a bucket to ask for when creating one.
/// Passwords and tokens are best given in the environment.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NatsAuthArgs {
    /// A NATS credentials file (JWT + nkey seed, as `nsc` writes it).
    #[arg(long, value_name = "FILE", env = "SPARK_NATS_CREDS")]
    nats_creds: Option<PathBuf>,
    /// A file holding an nkey seed.
    #[arg(long, value_name = "FILE", env = "SPARK_NATS_NKEY")]
    nats_nkey: Option<PathBuf>,
    /// NATS user (with SPARK_NATS_PASSWORD or --nats-password).
    #[arg(long, env = "SPARK_NATS_USER")]
    nats_user: Option<String>,
    /// NATS password (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "SPARK_NATS_PASSWORD", hide_env_values = true)]
    nats_password: Option<String>,
    /// NATS token (prefer the environment variable).
    #[arg(long, env = "SPARK_NATS_TOKEN", hide_env_values = true)]
    nats_token: Option<String>,
    /// Copies JetStream keeps of each fleet bucket this command creates (3 on a cluster of
    /// three servers; existing buckets are used as they are).
    #[arg(long, value_name = "N", env = "SPARK_NATS_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub(crate) nats_replicas: u8,
    /// CA certificate (PEM) to verify the NATS server with; turns TLS on.
    #[arg(long, value_name = "FILE", env = "SPARK_NATS_CA")]
    nats_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with --nats-key.
    #[arg(long, value_name = "FILE", env = "SPARK_NATS_CERT")]
    nats_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS, with --nats-cert.
    #[arg(long, value_name = "FILE", env = "SPARK_NATS_KEY")]
    nats_key: Option<PathBuf>,
}

impl NatsAuthArgs {
    /// The settings for `spark_fleet`.
    pub(crate) fn auth(&self) -> FleetAuth {
        FleetAuth {
            creds_file: self.nats_creds.clone(),
            nkey_file: self.nats_nkey.clone(),
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
            token: self.nats_token.clone(),
            tls_ca: self.nats_ca.clone(),
            tls_cert: self.nats_cert.clone(),
            tls_key: self.nats_key.clone(),
        }
    }
}

/// Where the fleet is, and which application.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct Target {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "SPARK_NATS", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// The application (nodes join it with `spark up --fleet URL --app NAME`).
    #[arg(long, default_value = "default")]
    app: String,
    #[command(flatten)]
    auth: NatsAuthArgs,
}

impl Target {
    async fn connect(&self) -> anyhow::Result<Fleet> {
        spark_fleet::check_name("application", &self.app)?;
        let config = FleetConfig {
            auth: self.auth.auth(),
            replicas: self.auth.nats_replicas.into(),
            ..FleetConfig::new(&self.nats)
        };
        Fleet::connect(&config).await.with_context(|| {
            format!(
                "connecting to the fleet at {}",
                spark_fleet::redact_url(&self.nats)
            )
        })
    }
}

pub(super) async fn run(args: FleetArgs) -> anyhow::Result<()> {
    match args.command {
        FleetCommand::Deploy(args) => deploy::run(args).await,
        FleetCommand::Status(args) => status::run(args).await,
        FleetCommand::Rollout(args) => rollout::run(args).await,
    }
}
