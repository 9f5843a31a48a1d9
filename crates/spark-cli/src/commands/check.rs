//! `spark check [spark.toml | spin.toml]`: validate a manifest and load (compile, link) every component
//! it names, without serving. Exits non-zero with every problem listed.

use std::path::PathBuf;

use anyhow::Context;
use spark_manifest::{Manifest, Trigger};
use spark_runtime::{EngineSettings, Expect, Runtime, RuntimeConfig};

#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// The manifest to check: a `spark.toml` or a Spin `spin.toml` (default: ./spark.toml,
    /// else ./spin.toml).
    manifest: Option<PathBuf>,
    /// Store directory whose AOT cache is used (and warmed).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub(super) async fn run(args: CheckArgs) -> anyhow::Result<()> {
    let path = super::manifest_path(args.manifest.clone())?;
    let manifest = Manifest::load(&path)?;
    let runtime = Runtime::new(&RuntimeConfig {
        engine: EngineSettings {
            max_instances: 1,
            max_memory: manifest.node.max_module_memory,
            ..EngineSettings::default()
        },
        cache_dir: Some(
            spark_store::DataDir::new(super::data_dir(args.data_dir, &manifest)).aot_cache(),
        ),
        nn: manifest.nn.is_some(),
        // A check compiles with Cranelift, as a node's background optimizer would: it fills
        // the AOT cache with the optimized code a node then starts on.
        tiering: false,
        optimize_delay: std::time::Duration::ZERO,
    })
    .context("creating the Wasm engine")?;
    let mut failures = Vec::new();
    for module in &manifest.modules {
        let expect = match module.trigger {
            Trigger::Http { .. } => Expect::Http,
            Trigger::Schedule { .. } => Expect::Job,
        };
        let spark_manifest::ComponentRef::File(file) = &module.component else {
            println!(
                "skip  {:<20} {} is an artifact reference: checked by the node on deploy",
                module.id.as_str(),
                module.component
            );
            continue;
        };
        match runtime.prepare(file, expect).await {
            Ok(prepared) => println!(
                "ok    {:<20} {:<18} {:>9} bytes  {}  sha256:{}",
                module.id.as_str(),
                prepared.entry.world(),
                prepared.report.wasm_bytes,
                module.priority,
                &prepared.digest[..16]
            ),
            Err(e) => {
                println!(
                    "FAIL  {:<20} {}",
                    module.id.as_str(),
                    spark_error::chain(&e)
                );
                failures.push(module.id.to_string());
            }
        }
    }
    if failures.is_empty() {
        println!(
            "{}: {} module(s) valid",
            path.display(),
            manifest.modules.len()
        );
        Ok(())
    } else {
        anyhow::bail!(
            "{} module(s) failed: {}",
            failures.len(),
            failures.join(", ")
        )
    }
}
