//! `spark serve <component.wasm>`: one component at `/` with default limits, the quickest way
//! to try a component built elsewhere and the like-for-like baseline of `wasmtime serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use spark_manifest::{AllowedHost, Manifest, parse_byte_size, parse_duration};
use spark_node::{NodeOptions, RunningNode};
use spark_runtime::PoolingMode;

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The component to serve.
    component: PathBuf,
    /// Where to serve it (loopback by default, like `spark up`; `--addr 0.0.0.0:8080` to
    /// serve other machines).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Where to serve /healthz and /metrics (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    admin_addr: SocketAddr,
    /// Environment variable for the guest, KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// A host the guest may call, e.g. https://api.example.com (repeatable).
    #[arg(long = "allow-outbound", value_parser = checked(AllowedHost::parse))]
    allow_outbound: Vec<String>,
    /// Memory limit per instance, e.g. 128MiB.
    #[arg(long, value_parser = checked(parse_byte_size))]
    memory: Option<String>,
    /// Wall-clock limit per request, e.g. 30s.
    #[arg(long, value_parser = checked(parse_duration))]
    timeout: Option<String>,
    /// Requests served at once.
    #[arg(long)]
    concurrency: Option<u32>,
    /// WASI 0.3 components: requests one instance serves at once (1: a fresh instance per
    /// request; default 16, as `limits.max_concurrent_per_instance`).
    #[arg(long)]
    max_concurrent_per_instance: Option<u32>,
    /// WASI 0.3 components: requests one instance serves over its life (default: as many as
    /// at once, one burst; as `limits.max_requests_per_instance`).
    #[arg(long)]
    max_requests_per_instance: Option<u32>,
    /// WASI 0.3 components: how long an idle instance waits for its next request, e.g. 1s
    /// (default 0: an idle instance takes none; as `limits.instance_idle_timeout`).
    #[arg(long, value_parser = checked(parse_duration))]
    instance_idle_timeout: Option<String>,
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

/// A flag kept as its text (it becomes manifest text) once `parse` accepts it.
fn checked<T: 'static, E: std::fmt::Display + 'static>(
    parse: fn(&str) -> Result<T, E>,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |text| {
        parse(text)
            .map(|_| text.to_owned())
            .map_err(|e| e.to_string())
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

pub(super) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let component = std::path::absolute(&args.component).context("resolving the component path")?;
    let data_dir = match args.data_dir.clone() {
        Some(dir) => dir,
        None => default_data_dir(&component, &args.addr),
    };
    // The flags become manifest text, parsed like any manifest: the node keeps and re-reads
    // the text of what it serves (its release), so nothing given here may live outside it.
    let text = manifest_text(&args, &component);
    let manifest = Manifest::parse(&text, &component)
        .with_context(|| format!("the manifest made from the flags:\n{text}"))?;
    let options = NodeOptions {
        data_dir,
        pooling: if args.no_pooling {
            PoolingMode::Off
        } else {
            PoolingMode::Auto
        },
        aot_cache: !args.no_aot_cache,
        optimize_delay: std::time::Duration::ZERO,
        manifest,
        clock: spark_node::Clock::system(),
    };
    let mut signals = super::ShutdownSignals::install()?;
    let starting = super::progress::Starting::begin(&options.manifest);
    let node = tokio::select! {
        started = RunningNode::start(options) => started.context("starting the node")?,
        signal = signals.next() => anyhow::bail!("stopped by {signal} while starting"),
    };
    starting.done();
    println!(
        "Serving {} on http://{}/ (admin http://{})",
        args.component.display(),
        node.http_addr,
        node.admin_addr
    );
    super::serve_until_signal(node, signals).await
}

/// The one-module manifest `spark serve` runs: the component at `/...`, with the flags.
fn manifest_text(args: &ServeArgs, component: &std::path::Path) -> String {
    use toml::{Table, Value};
    let mut module = Table::new();
    module.insert("id".into(), "app".into());
    module.insert("component".into(), component.display().to_string().into());
    module.insert("routes".into(), Value::Array(vec!["/...".into()]));
    if !args.env.is_empty() {
        let env: Table = args
            .env
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        module.insert("env".into(), env.into());
    }
    if !args.allow_outbound.is_empty() {
        let hosts = args.allow_outbound.iter().map(|h| h.as_str().into());
        module.insert(
            "allowed_outbound_hosts".into(),
            Value::Array(hosts.collect()),
        );
    }
    let mut limits = Table::new();
    if let Some(memory) = &args.memory {
        limits.insert("memory".into(), memory.as_str().into());
    }
    if let Some(timeout) = &args.timeout {
        limits.insert("timeout".into(), timeout.as_str().into());
    }
    if let Some(concurrency) = args.concurrency {
        limits.insert("concurrency".into(), i64::from(concurrency).into());
    }
    if let Some(max) = args.max_concurrent_per_instance {
        limits.insert("max_concurrent_per_instance".into(), i64::from(max).into());
    }
    if let Some(max) = args.max_requests_per_instance {
        limits.insert("max_requests_per_instance".into(), i64::from(max).into());
    }
    if let Some(idle) = &args.instance_idle_timeout {
        limits.insert("instance_idle_timeout".into(), idle.as_str().into());
    }
    if !limits.is_empty() {
        module.insert("limits".into(), limits.into());
    }
    let mut node = Table::new();
    node.insert("listen".into(), args.addr.to_string().into());
    node.insert("admin".into(), args.admin_addr.to_string().into());
    let mut root = Table::new();
    root.insert("version".into(), 1.into());
    root.insert("node".into(), node.into());
    root.insert("module".into(), Value::Array(vec![module.into()]));
    toml::to_string(&root).expect("a table of strings and numbers serializes")
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
