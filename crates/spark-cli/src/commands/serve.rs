//! `spark serve <component.wasm>`: one component at `/` with default limits, the quickest way
//! to try a component built elsewhere and the like-for-like baseline of `wasmtime serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use spark_manifest::{AllowedHost, Manifest, OutboundPolicy, parse_byte_size, parse_duration};
use spark_node::{NodeOptions, RunningNode};
use spark_runtime::PoolingMode;

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The component to serve.
    component: PathBuf,
    /// Where to serve it.
    #[arg(long, default_value = "0.0.0.0:8080")]
    addr: SocketAddr,
    /// Where to serve /healthz and /metrics (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    admin_addr: SocketAddr,
    /// Environment variable for the guest, KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// A host the guest may call, e.g. https://api.example.com (repeatable).
    #[arg(long = "allow-outbound", value_parser = AllowedHost::parse)]
    allow_outbound: Vec<AllowedHost>,
    /// Memory limit per instance, e.g. 128MiB.
    #[arg(long, value_parser = parse_byte_size)]
    memory: Option<u64>,
    /// Wall-clock limit per request, e.g. 30s.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<std::time::Duration>,
    /// Requests served at once.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Data directory: AOT cache and the node's store (default: one per component and address
    /// under ~/.cache/spark/serve, so several `spark serve` can run at once).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Compile every start instead of using the AOT cache.
    #[arg(long)]
    no_aot_cache: bool,
    /// Allocate instances on demand instead of from the pooling allocator.
    #[arg(long)]
    no_pooling: bool,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

pub(super) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let component = std::path::absolute(&args.component).context("resolving the component path")?;
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => default_data_dir(&component, &args.addr),
    };
    let mut manifest = Manifest::single(component, args.addr);
    manifest.node.admin = args.admin_addr;
    let module = &mut manifest.modules[0];
    module.env = args.env.into_iter().collect();
    module.outbound = OutboundPolicy::new(args.allow_outbound);
    if let Some(memory) = args.memory {
        module.limits.memory = memory;
    }
    if let Some(timeout) = args.timeout {
        module.limits.timeout = timeout;
    }
    if let Some(concurrency) = args.concurrency {
        module.limits.concurrency = concurrency;
    }
    let options = NodeOptions {
        data_dir,
        pooling: if args.no_pooling {
            PoolingMode::Off
        } else {
            PoolingMode::Auto
        },
        aot_cache: !args.no_aot_cache,
        manifest,
        clock: spark_node::Clock::system(),
    };
    let node = RunningNode::start(options)
        .await
        .context("starting the node")?;
    println!(
        "Serving {} on http://{}/ (admin http://{})",
        args.component.display(),
        node.http_addr,
        node.admin_addr
    );
    super::serve_until_signal(node).await
}

/// A data directory of its own for this component on this address: a node's store admits one
/// node at a time, and `spark serve` is expected to run side by side like `wasmtime serve`.
fn default_data_dir(component: &std::path::Path, addr: &impl std::fmt::Display) -> PathBuf {
    use sha2::Digest;
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let key = sha2::Sha256::digest(format!("{}\n{addr}", component.display()));
    base.join("spark/serve").join(&hex::encode(key)[..16])
}
