//! One file per subcommand.

mod bench;
mod check;
mod client;
mod dashboard;
mod deploy;
mod events;
pub(crate) mod fleet;
mod key;
mod nn;
mod progress;
mod releases;
mod rollout;
mod serve;
mod sim;
mod status;
mod top;
mod up;

use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Start a node serving the applications a manifest describes.
    Up(up::UpArgs),
    /// Validate a manifest and its components without serving.
    Check(check::CheckArgs),
    /// Serve one component at `/` with default limits (like `wasmtime serve`).
    Serve(serve::ServeArgs),
    /// Show a running node's modules, limits and counters.
    Status(status::StatusArgs),
    /// Print a one-time link that opens the node's live dashboard in a browser.
    Dashboard(dashboard::DashboardArgs),
    /// The dashboard's live view in the terminal: modules, modes, decisions, rollout, events.
    Top(top::TopArgs),
    /// Run a benchmark scenario (baseline and Spark in the same run).
    Bench(bench::BenchArgs),
    /// Replay an invocation trace through the keep-alive policies in simulated time (B4).
    Sim(sim::SimArgs),
    /// Run the inference host in this process, without a node: what the machine offers, the
    /// `classify` guest on a sample line, or B6 under the host's options.
    Nn(nn::NnArgs),
    /// Upload a manifest's components to a running node and deploy them as a new release.
    Deploy(deploy::DeployArgs),
    /// List the node's releases.
    Releases(releases::ReleasesArgs),
    /// The node's release and rollout history: deploys, canary verdicts, promotions, rollbacks.
    Events(events::EventsArgs),
    /// Follow or steer the rollout in progress.
    Rollout(rollout::RolloutArgs),
    /// Switch back to an earlier release.
    Rollback(rollout::RollbackArgs),
    /// Manage a fleet of nodes through NATS JetStream: deploy, status, rollout.
    Fleet(fleet::FleetArgs),
    /// Ed25519 keys for signing fleet releases: generate one, print a public key.
    Key(key::KeyArgs),
}

pub(crate) async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up::run(args).await,
        Command::Check(args) => check::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Dashboard(args) => dashboard::run(args).await,
        Command::Top(args) => top::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Sim(args) => sim::run(args),
        Command::Nn(args) => nn::run(args).await,
        Command::Deploy(args) => deploy::run(args).await,
        Command::Releases(args) => releases::run(args).await,
        Command::Events(args) => events::run(args).await,
        Command::Rollout(args) => rollout::run(args).await,
        Command::Rollback(args) => rollout::rollback(args).await,
        Command::Fleet(args) => fleet::run(args).await,
        Command::Key(args) => key::run(args),
    }
}

/// The data directory: the flag, else the manifest's `node.data_dir`, else `.spark` next to
/// the manifest.
/// The manifest a command works on: the one given, else `./spark.toml`, else a Spin app's
/// `./spin.toml`.
pub(crate) fn manifest_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    ["spark.toml", "spin.toml"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!("no manifest given, and neither ./spark.toml nor ./spin.toml exists")
        })
}

pub(crate) fn data_dir(flag: Option<PathBuf>, manifest: &spark_manifest::Manifest) -> PathBuf {
    flag.or_else(|| manifest.node.data_dir.clone())
        .unwrap_or_else(|| {
            manifest
                .source
                .parent()
                .unwrap_or(Path::new("."))
                .join(".spark")
        })
}

/// SIGINT and SIGTERM, caught from the moment this is made. Made before the node starts, so
/// a signal sent as soon as it says it serves (a supervisor, a test) shuts it down gracefully
/// instead of meeting the default action, which kills the process.
pub(crate) struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers (a tokio runtime must be running).
    pub(crate) fn install() -> anyhow::Result<ShutdownSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Waits for either; names the one that came. (`up` and `serve` race the node's start
    /// against it: a signal during a long first start stops the process, as it did before the
    /// handlers were installed that early.)
    pub(crate) async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Runs a started node until a signal, then shuts it down gracefully.
pub(crate) async fn serve_until_signal(
    node: spark_node::RunningNode,
    mut signals: ShutdownSignals,
) -> anyhow::Result<()> {
    let token = node.shutdown_token();
    tokio::spawn(async move {
        let signal = signals.next().await;
        tracing::info!(signal, "shutting down: finishing in-flight requests");
        token.cancel();
    });
    node.wait().await;
    Ok(())
}
