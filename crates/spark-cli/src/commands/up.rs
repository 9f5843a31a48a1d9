//! `spark up [spark.toml | spin.toml]`: the node's main job.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use spark_manifest::{Manifest, Trigger};
use spark_node::FleetOptions;
use spark_node::{NodeOptions, RunningNode};
use spark_runtime::PoolingMode;

#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// The manifest to serve: a `spark.toml` or a Spin `spin.toml` (default: ./spark.toml,
    /// else ./spin.toml).
    manifest: Option<PathBuf>,
    /// Override `node.listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Override `node.admin`.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Where the node keeps its store (default: `node.data_dir`, else `.spark` beside the manifest).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Allocate instances on demand instead of from the pooling allocator.
    #[arg(long)]
    no_pooling: bool,
    #[command(flatten)]
    fleet: FleetFlags,
}

/// Joining a fleet.
#[derive(Debug, clap::Args)]
struct FleetFlags {
    /// Join the fleet on this NATS server (URLs comma-separated); the node keeps serving from
    /// its own store whenever NATS is unreachable.
    #[arg(long, value_name = "NATS_URL")]
    fleet: Option<String>,
    /// A label the fleet can select this node by (repeatable).
    #[arg(long = "label", value_name = "K=V", requires = "fleet")]
    labels: Vec<String>,
    /// This node's id in the fleet (default: one kept in the data directory).
    #[arg(long, requires = "fleet")]
    node_id: Option<String>,
    /// The application this node runs.
    #[arg(long, default_value = "default", requires = "fleet")]
    app: String,
    /// Run only fleet releases signed by this public key (`ed25519:<hex>`, from
    /// `spark key generate`; repeatable, or comma-separated in SPARK_TRUSTED_KEYS).
    #[arg(
        long = "trust-key",
        value_name = "KEY",
        env = "SPARK_TRUSTED_KEYS",
        value_delimiter = ',',
        requires = "fleet"
    )]
    trusted_keys: Vec<String>,
    #[command(flatten)]
    nats_auth: super::fleet::NatsAuthArgs,
}

impl FleetFlags {
    fn options(&self, data_dir: &std::path::Path) -> anyhow::Result<Option<FleetOptions>> {
        let Some(url) = &self.fleet else {
            return Ok(None);
        };
        let node_id = match &self.node_id {
            Some(id) => id.clone(),
            None => spark_store::DataDir::new(data_dir)
                .fleet_node_id()
                .context("keeping the fleet node id")?,
        };
        spark_fleet::check_name("node id", &node_id)?;
        spark_fleet::check_name("application", &self.app)?;
        let labels = self
            .labels
            .iter()
            .map(|l| spark_fleet::parse_label(l))
            .collect::<Result<_, _>>()?;
        let trusted = spark_fleet::TrustedKeys::parse(self.trusted_keys.iter().map(String::as_str))
            .context("--trust-key")?;
        Ok(Some(FleetOptions {
            url: url.clone(),
            app: self.app.clone(),
            node_id,
            labels,
            trusted,
            auth: self.nats_auth.auth(),
            replicas: self.nats_auth.nats_replicas.into(),
        }))
    }
}

pub(super) async fn run(args: UpArgs) -> anyhow::Result<()> {
    let path = super::manifest_path(args.manifest.clone())?;
    let mut manifest = Manifest::load(&path)?;
    if let Some(listen) = args.listen {
        manifest.node.listen = listen;
    }
    if let Some(admin) = args.admin {
        manifest.node.admin = admin;
    }
    let data_dir = super::data_dir(args.data_dir, &manifest);
    let data_dir_flag = data_dir.clone();
    let token_path = spark_store::DataDir::new(&data_dir).admin_token_path();
    let fleet = args.fleet.options(&data_dir)?;
    let options = NodeOptions {
        data_dir,
        pooling: if args.no_pooling {
            PoolingMode::Off
        } else {
            PoolingMode::Auto
        },
        aot_cache: true,
        optimize_delay: std::time::Duration::ZERO,
        manifest: manifest.clone(),
        clock: spark_node::Clock::system(),
    };
    let starting = super::progress::Starting::begin(&manifest);
    let mut signals = super::ShutdownSignals::install()?;
    let mut node = tokio::select! {
        started = RunningNode::start(options) => {
            started.with_context(|| format!("starting the node from {}", path.display()))?
        }
        signal = signals.next() => anyhow::bail!("stopped by {signal} while starting"),
    };
    starting.done();
    print_hints(
        &manifest,
        &node,
        &token_path,
        &admin_flags(&node, &data_dir_flag),
    );
    if let Some(fleet) = fleet {
        println!(
            "Fleet: node {} of app '{}' on {}",
            fleet.node_id,
            fleet.app,
            spark_fleet::redact_url(&fleet.url)
        );
        if let Some(auth) = fleet.auth.describe() {
            println!("  NATS authentication: {auth}");
        }
        node.join_fleet(fleet);
    }
    super::serve_until_signal(node, signals).await
}

/// The flags an admin command needs to reach this node from the current folder: the admin
/// address unless it is the default, the data directory unless it is `.spark` here.
fn admin_flags(node: &RunningNode, data_dir: &std::path::Path) -> String {
    let mut command = String::new();
    if node.admin_addr.to_string() != "127.0.0.1:9090" {
        command.push_str(&format!(" --admin {}", node.admin_addr));
    }
    if data_dir != std::path::Path::new(".spark") {
        command.push_str(&format!(" --data-dir {}", data_dir.display()));
    }
    command
}

fn print_hints(
    manifest: &Manifest,
    node: &RunningNode,
    token_path: &std::path::Path,
    admin_flags: &str,
) {
    println!(
        "Spark node serving {} module(s) of release {} on http://{}",
        manifest.modules.len(),
        node.snapshot().release.as_deref().unwrap_or("-"),
        node.http_addr
    );
    for module in &manifest.modules {
        match &module.trigger {
            Trigger::Http { routes } => {
                let path = routes.first().map(example_path).unwrap_or_default();
                println!("  {:<16} curl http://{}{}", module.id, node.http_addr, path);
            }
            Trigger::Schedule { every } => {
                println!(
                    "  {:<16} job every {}s (run now: curl -X POST -H \"Authorization: Bearer $(cat {})\" http://{}/v1/jobs/{}/run)",
                    module.id,
                    every.as_secs(),
                    token_path.display(),
                    node.admin_addr,
                    module.id
                );
            }
        }
    }
    println!(
        "Admin: http://{0}/healthz  http://{0}/metrics  http://{0}/v1/status",
        node.admin_addr
    );
    println!(
        "Dashboard: spark dashboard{admin_flags}   (prints a one-time login link)   in a terminal: spark top{admin_flags}"
    );
    println!("Stop with Ctrl-C (in-flight requests finish).");
}

fn example_path(route: &spark_manifest::Route) -> String {
    match route {
        spark_manifest::Route::Exact(path) => path.clone(),
        spark_manifest::Route::Wildcard(prefix) => format!("{prefix}/"),
    }
}
