//! `spark up <spark.toml>`: the node's main job.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use spark_manifest::{Manifest, Trigger};
use spark_node::{NodeOptions, RunningNode};
use spark_runtime::PoolingMode;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The manifest to serve.
    manifest: PathBuf,
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
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let mut manifest = Manifest::load(&args.manifest)?;
    if let Some(listen) = args.listen {
        manifest.node.listen = listen;
    }
    if let Some(admin) = args.admin {
        manifest.node.admin = admin;
    }
    let data_dir = super::data_dir(args.data_dir, &manifest);
    let options = NodeOptions {
        data_dir,
        pooling: if args.no_pooling {
            PoolingMode::Off
        } else {
            PoolingMode::Auto
        },
        aot_cache: true,
        manifest: manifest.clone(),
    };
    let node = RunningNode::start(options)
        .await
        .with_context(|| format!("starting the node from {}", args.manifest.display()))?;
    print_hints(&manifest, &node);
    super::serve_until_signal(node).await
}

fn print_hints(manifest: &Manifest, node: &RunningNode) {
    println!(
        "Spark node serving {} module(s) on http://{}",
        manifest.modules.len(),
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
                    "  {:<16} job every {}s (run now: curl -X POST http://{}/v1/jobs/{}/run)",
                    module.id,
                    every.as_secs(),
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
    println!("Stop with Ctrl-C (in-flight requests finish).");
}

fn example_path(route: &spark_manifest::Route) -> String {
    match route {
        spark_manifest::Route::Exact(path) => path.clone(),
        spark_manifest::Route::Wildcard(prefix) => format!("{prefix}/"),
    }
}
