//! `spark nn`: the inference host in this process, without a node (the former
//! `spark-nn-probe`). Used by the fallback tests (each scenario needs a fresh process: ONNX
//! Runtime binds one library per process, and the Vulkan driver is chosen by environment at
//! load) and by hand to see what a machine offers.
//!
//! ```text
//! spark nn status   [OPTIONS]                  # devices, backends, why not used (JSON)
//! spark nn classify --wasm classify.wasm [--target gpu] [--rotated] [OPTIONS]
//! spark nn bench    --wasm classify.wasm [--rounds N] [--out DIR] [OPTIONS]   # B6
//! OPTIONS: --ort LIB | --no-ort   --root DIR   --allow-software
//!          --vulkan loader|off|assume-software|assume-hardware
//! ```
//! The ONNX Runtime library defaults to `$SPARK_NN_ORT_LIB`, else
//! `$SPARK_NN_CACHE/ort/libonnxruntime.so.1` (cache default `~/.cache/spark-nn`) if present.
//!
//! The decision worth knowing: the host's options mirror the knobs of `[nn]` and of discovery
//! (root, Vulkan probe, software adapters), so one process reproduces any node's view of the
//! machine; `spark bench nn` is the benchmark as a node runs it, `spark nn bench` the same
//! measurement under these knobs.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use spark_bench::nn::{B6Options, b6, probe};
use spark_nn::discovery::{Adapter, AdapterKind};
use spark_nn::{NnConfig, NnService, NnSettings, VulkanProbe};

#[derive(Debug, clap::Args)]
pub(crate) struct NnArgs {
    #[command(subcommand)]
    command: NnCommand,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Debug, clap::Args)]
struct HostArgs {
    /// ONNX Runtime library (default: $SPARK_NN_ORT_LIB or the fetch-ort.sh cache).
    #[arg(long, global = true)]
    ort: Option<PathBuf>,
    /// Do not use ONNX Runtime at all.
    #[arg(long, global = true)]
    no_ort: bool,
    /// Root under which /dev and /sys are read.
    #[arg(long, global = true, default_value = "/")]
    root: PathBuf,
    /// Count software Vulkan adapters (lavapipe) as accelerators.
    #[arg(long, global = true)]
    allow_software: bool,
    #[arg(long, global = true, value_enum, default_value = "loader")]
    vulkan: Vulkan,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Vulkan {
    Loader,
    Off,
    /// Pretend a software adapter was found (the GPU is listed but may not work).
    AssumeSoftware,
    AssumeHardware,
}

#[derive(Debug, Subcommand)]
enum NnCommand {
    /// Devices, backends and why any is not used (JSON).
    Status,
    /// Send a sample line of text to the `classify` guest; the answers and the host's status
    /// (one JSON line).
    Classify {
        #[arg(long)]
        wasm: PathBuf,
        #[arg(long, default_value = "gpu")]
        target: String,
        /// Send the sample line turned 180 degrees.
        #[arg(long)]
        rotated: bool,
        #[arg(long, default_value = "TOTAL 42.50 EUR")]
        text: String,
        #[arg(long, default_value_t = 1)]
        requests: usize,
    },
    /// B6 on this host: one line per backend, `b6.json`, the `B6:` summary line.
    Bench {
        #[arg(long)]
        wasm: PathBuf,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long, default_value = "target/spark-bench")]
        out: PathBuf,
    },
}

fn config(args: &HostArgs) -> NnConfig {
    let ort = if args.no_ort {
        None
    } else {
        args.ort.clone().or_else(default_ort)
    };
    let adapter = |kind, name: &str| Adapter {
        name: name.into(),
        kind,
        vendor_id: 0x10005,
        device_id: 0,
    };
    NnConfig {
        settings: NnSettings {
            ort_library: ort,
            device_root: args.root.clone(),
            allow_software_adapters: args.allow_software,
            ..NnSettings::default()
        },
        vulkan: match args.vulkan {
            Vulkan::Loader => VulkanProbe::Loader,
            Vulkan::Off => VulkanProbe::Off,
            Vulkan::AssumeSoftware => {
                VulkanProbe::Assume(vec![adapter(AdapterKind::Cpu, "assumed software adapter")])
            }
            Vulkan::AssumeHardware => VulkanProbe::Assume(vec![adapter(
                AdapterKind::Discrete,
                "assumed hardware adapter",
            )]),
        },
        ..NnConfig::default()
    }
}

/// `$SPARK_NN_ORT_LIB`, else the library `scripts/fetch-ort.sh` installs, if it did.
fn default_ort() -> Option<PathBuf> {
    std::env::var_os("SPARK_NN_ORT_LIB")
        .map(PathBuf::from)
        .or_else(super::bench::default_ort)
}

pub(super) async fn run(args: NnArgs) -> anyhow::Result<()> {
    let config = config(&args.host);
    let ort_library = config.settings.ort_library.clone();
    let service = tokio::task::spawn_blocking(move || NnService::start(config))
        .await
        .context("the inference host's start panicked")?
        .context("starting the inference host")?;
    match args.command {
        NnCommand::Status => {
            println!("{}", serde_json::to_string_pretty(&service.status())?);
        }
        NnCommand::Classify {
            wasm,
            target,
            rotated,
            text,
            requests,
        } => {
            let options = probe::ClassifyOptions {
                wasm,
                target,
                text,
                rotated,
                requests,
            };
            let out = probe::classify(service, &options).await?;
            println!("{}", serde_json::to_string(&out)?);
        }
        NnCommand::Bench { wasm, rounds, out } => {
            let options = B6Options {
                wasm,
                rounds,
                ort_library,
            };
            let report = b6::run(service, &options).await?;
            let path = spark_bench::write_json(&out, "b6.json", &report)?;
            for b in &report.backends {
                eprintln!(
                    "{:<11} available={:<5} infer_p50_ms={:<8} request_p50_ms={:<8} first_ms={:<8} agrees={:?} {}",
                    b.backend,
                    b.available,
                    b.infer_p50_ms
                        .map(|v| format!("{v:.2}"))
                        .unwrap_or("-".into()),
                    b.request_p50_ms
                        .map(|v| format!("{v:.2}"))
                        .unwrap_or("-".into()),
                    b.first_ms.map(|v| format!("{v:.1}")).unwrap_or("-".into()),
                    b.agrees,
                    b.error.as_deref().unwrap_or(&b.detail),
                );
            }
            eprintln!("full result: {}", path.display());
            println!("{}", report.summary_line());
        }
    }
    Ok(())
}
