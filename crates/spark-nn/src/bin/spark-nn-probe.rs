//! `spark-nn-probe`: runs the inference host in its own process. Used by the fallback tests
//! (each scenario needs a fresh process: ONNX Runtime binds one library per process, and the
//! Vulkan driver is chosen by environment at load) and by hand to see what a machine offers.
//!
//! ```text
//! spark-nn-probe status   [OPTIONS]                  # devices, backends, why not used (JSON)
//! spark-nn-probe classify --wasm classify.wasm [--target gpu] [--rotated] [OPTIONS]
//! spark-nn-probe bench    --wasm classify.wasm [--rounds N] [--out DIR] [OPTIONS]   # B6
//! OPTIONS: --ort LIB | --no-ort   --root DIR   --allow-software
//!          --vulkan loader|off|assume-software|assume-hardware
//! ```
//! The ONNX Runtime library defaults to `$SPARK_NN_ORT_LIB`, else
//! `$SPARK_NN_CACHE/ort/libonnxruntime.so.1` (cache default `~/.cache/spark-nn`) if present.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use spark_nn::discovery::{Adapter, AdapterKind};
use spark_nn::{NnConfig, NnService, VulkanProbe};

#[derive(Parser)]
#[command(about = "Spark's inference host, in one process")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(clap::Args)]
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

#[derive(Clone, Copy, ValueEnum)]
enum Vulkan {
    Loader,
    Off,
    /// Pretend a software adapter was found (the GPU is listed but may not work).
    AssumeSoftware,
    AssumeHardware,
}

#[derive(Subcommand)]
enum Command {
    Status,
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
        ort_library: ort,
        root: args.root.clone(),
        allow_software_accelerators: args.allow_software,
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

fn default_ort() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SPARK_NN_ORT_LIB") {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("SPARK_NN_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/spark-nn")))?;
    Some(cache.join("ort/libonnxruntime.so.1")).filter(|p| p.is_file())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = config(&cli.host);
    let service = tokio::task::spawn_blocking(move || NnService::start(config)).await??;
    match cli.command {
        Command::Status => {
            println!("{}", serde_json::to_string_pretty(&service.status())?);
        }
        Command::Classify {
            wasm,
            target,
            rotated,
            text,
            requests,
        } => {
            let harness =
                spark_nn::harness::Harness::new(service.clone(), &wasm, Default::default())?;
            let line = spark_nn::samples::text_line(&text, 3);
            let image = if rotated { line.rotated() } else { line };
            let mut answers = Vec::new();
            for _ in 0..requests {
                let reply = harness
                    .request(
                        "POST",
                        &format!("/classify?target={target}"),
                        image.to_ppm(),
                    )
                    .await?;
                let body: serde_json::Value = serde_json::from_slice(&reply.body)?;
                answers.push(serde_json::json!({ "status": reply.status, "body": body }));
            }
            let out = serde_json::json!({ "answers": answers, "nn": service.status() });
            println!("{}", serde_json::to_string(&out)?);
        }
        Command::Bench { wasm, rounds, out } => {
            let options = spark_nn::bench::B6Options { wasm, rounds };
            let report = spark_nn::bench::run(service, &options).await?;
            let path = report.write_json(&out)?;
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
