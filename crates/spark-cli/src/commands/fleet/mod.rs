//! `spark fleet deploy|status|rollout`: manage a fleet from any machine that reaches NATS.
//! One file per subcommand; they share the connection flags below.

mod deploy;
mod rollout;
mod status;

use anyhow::Context;
use spark_fleet::{Fleet, FleetConfig};

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

/// Where the fleet is, and which application.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct Target {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "SPARK_NATS", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// The application (nodes join it with `spark up --fleet URL --app NAME`).
    #[arg(long, default_value = "default")]
    app: String,
}

impl Target {
    async fn connect(&self) -> anyhow::Result<Fleet> {
        spark_fleet::check_name("application", &self.app)?;
        Fleet::connect(&FleetConfig::new(&self.nats))
            .await
            .with_context(|| {
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
