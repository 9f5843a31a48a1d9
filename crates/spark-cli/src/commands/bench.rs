//! `spark bench <scenario>`: the benchmark scenarios of ../shared/BENCHMARKS.md.

use std::path::PathBuf;

use anyhow::Context;
use spark_bench::{
    canary, coldstart, density, fleet, hostile, nn, optimizing, replay, serve, surge,
};

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, clap::Subcommand)]
enum Scenario {
    /// B1: warm HTTP serving vs `wasmtime serve` on the same component.
    Serve {
        /// Component to serve (default: the `hello` guest, or `http-p3` with `--wasi 0.3`).
        #[arg(long)]
        component: Option<PathBuf>,
        /// The WASI the component is built for: `0.2` (`wasi:http/incoming-handler`) or `0.3`
        /// (`wasi:http/handler`, compared with `wasmtime serve -Sp3`, shared and fresh instances).
        #[arg(long, default_value = "0.2", value_parser = ["0.2", "0.3"])]
        wasi: String,
        /// The `wasmtime` CLI to compare with (default: `wasmtime` on PATH, if any).
        #[arg(long)]
        peer: Option<PathBuf>,
        /// A short run (about 20 s).
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// B3: a critical module's latency through a surge while a background module burns CPU,
    /// alone / orchestrator on / orchestrator off.
    Surge {
        /// The CPU-bound component for both modules (default: the `busy` guest).
        #[arg(long)]
        component: Option<PathBuf>,
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// B9: a critical module's success rate and p99 while disconnect storms, slowloris,
    /// zero-window readers, host-memory hogs and a log flood hit other modules.
    Hostile {
        /// The critical module's component (default: the `hello` guest).
        #[arg(long)]
        component: Option<PathBuf>,
        /// A short run (about a minute).
        #[arg(long)]
        quick: bool,
        /// Seconds per phase (default 12, 5 with --quick); each phase's p99 is its worst 1% of
        /// 100 critical requests a second, so longer phases make it steadier.
        #[arg(long, value_name = "SECONDS", value_parser = phase_seconds)]
        phase_secs: Option<f64>,
        /// Every client over TLS (a certificate made for the run), and a handshake flood phase.
        #[arg(long)]
        tls: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// B4 live: a time-compressed slice of an invocation trace against a real node, observed
    /// cold starts next to the simulator's prediction for the same slice.
    Replay {
        /// Invocations per minute (Azure Functions 2019 format).
        #[arg(long)]
        invocations: PathBuf,
        #[arg(long)]
        durations: Option<PathBuf>,
        #[arg(long)]
        memory: Option<PathBuf>,
        /// Applications to replay (each becomes a module): a number, or `all` (every app with
        /// calls in the slice).
        #[arg(long, default_value = "40", value_parser = parse_apps)]
        apps: usize,
        /// First trace minute of the slice.
        #[arg(long, default_value_t = 720)]
        start: usize,
        /// Trace minutes to replay.
        #[arg(long, default_value_t = 60)]
        minutes: usize,
        /// Trace minutes per real minute.
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        /// The node's predictor memory budget, or `equal`: the share of the modules' loaded
        /// size that the simulated Spark keeps loaded on average (the same memory as the
        /// simulator's figures).
        #[arg(long, default_value = "8MiB")]
        memory_budget: String,
        /// The policies to replay live, one node each: `spark` (at the memory budget), and the
        /// simulator's baselines, unbounded as there: `fixed-<N>min` (a fixed keep-alive) and
        /// `hybrid` (the hybrid histogram policy, the paper's parameters).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "spark,fixed-10min,hybrid"
        )]
        live: Vec<replay::LivePolicy>,
        /// The guests the apps' modules run, by name (from `make guests`) or path, shared
        /// round-robin. One guest makes every module cost the node the same, so its memory
        /// budget shares out by apps as the simulator's does by app memory.
        #[arg(long, value_delimiter = ',', default_value = "hello,echo,busy,big")]
        guests: Vec<String>,
        /// 20 apps, 20 minutes at 120x (10 s per live policy).
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// B8: N nodes (each in its own network namespace when run as root) on a JetStream
    /// cluster of three nats-servers: deploy convergence, a fleet canary, a killed node, a
    /// killed NATS server and a cut link mid-rollout, NATS traffic per node.
    Fleet {
        /// Fleet sizes, run in turn (e.g. 3,10,20); the largest's convergence is compared
        /// with the smallest's.
        #[arg(long, value_delimiter = ',', default_value = "3")]
        nodes: Vec<usize>,
        /// The `echo` guest, or a component with its `VERSION` env echoed at `/api/env`
        /// (default: from `make guests`).
        #[arg(long)]
        component: Option<PathBuf>,
        /// Idle NATS traffic over 5 s instead of a minute.
        #[arg(long)]
        quick: bool,
        /// Run every node on loopback even where network namespaces are possible (no link
        /// cut then).
        #[arg(long)]
        loopback: bool,
        /// The nats-server binary (default: SPARK_NATS_SERVER, else scripts/fetch-nats.sh's cache).
        #[arg(long, env = "SPARK_NATS_SERVER")]
        nats_server: Option<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// B5: canary rollouts under steady load: a failing, a slow and a good version deployed
    /// in turn; exposure, decision time, switch failures, time to promotion.
    Canary {
        /// The `echo` guest, or a component with its VERSION/WORK/FAIL_PERCENT knobs.
        #[arg(long)]
        component: Option<PathBuf>,
        /// Steps of 2 s instead of 5 s.
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// B6: one `.wasm` classifying on every inference backend present: latency and top-1
    /// agreement per backend, the automatic choice, fallback and saturation costs.
    Nn {
        /// The `classify` guest (default: from `make guests`).
        #[arg(long)]
        component: Option<PathBuf>,
        /// ONNX Runtime library (default: ~/.cache/spark-nn/ort/libonnxruntime.so.1 if present).
        #[arg(long)]
        ort: Option<PathBuf>,
        /// Do not use ONNX Runtime (tract only).
        #[arg(long)]
        no_ort: bool,
        /// Do not count software Vulkan adapters (lavapipe) as GPUs.
        #[arg(long)]
        no_software: bool,
        /// Requests per image per backend.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// 3 rounds.
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// B7: N distinct components on one node: first start, restart with the AOT cache warm,
    /// idle memory and CPU, requests to random modules, a module served from disk.
    Density {
        /// Registered module counts, run in turn (e.g. 100,1000,10000).
        #[arg(long, value_delimiter = ',', default_value = "100,1000")]
        modules: Vec<usize>,
        /// The component each module is a distinct copy of (default: the `hello` guest).
        #[arg(long)]
        component: Option<PathBuf>,
        /// 100 modules and short windows (well under a minute).
        #[arg(long)]
        quick: bool,
        /// The `spark` executable whose `spark up` runs the node (default: this one), to
        /// measure another build the same way.
        #[arg(long)]
        spark: Option<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// B2: first-response latency cold vs AOT-cached vs pre-warmed.
    Coldstart {
        /// Components to measure (default: the `big` and `hello` guests).
        #[arg(long)]
        component: Vec<PathBuf>,
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub(super) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::Serve {
            component,
            wasi,
            peer,
            quick,
            out,
        } => {
            let wasi = match wasi.as_str() {
                "0.3" => serve::Wasi::P3,
                _ => serve::Wasi::P2,
            };
            let default = match wasi {
                serve::Wasi::P2 => "hello",
                serve::Wasi::P3 => "http-p3",
            };
            let component = component_or(component, default)?;
            let peer = peer.or_else(|| find_on_path("wasmtime"));
            if peer.is_none() {
                eprintln!(
                    "note: no `wasmtime` found (give --peer PATH, or `cargo install wasmtime-cli --locked`); measuring Spark alone"
                );
            }
            let options = serve::ServeOptions {
                component,
                wasi,
                peer,
                spark: spark_exe()?,
                quick,
                out_dir: out.unwrap_or_else(spark_bench::default_out_dir),
            };
            let report = serve::run(&options).await?;
            print!("{}", serve::render(&report));
        }
        Scenario::Surge {
            component,
            quick,
            out,
        } => {
            let component = component_or(component, "busy")?;
            let options = surge::SurgeOptions {
                spark: spark_exe()?,
                component,
                job: component_or(None, "inventory-sync")?,
                faults: component_or(None, "faults")?,
                quick,
                out_dir: out.unwrap_or_else(spark_bench::default_out_dir),
            };
            let report = surge::run(&options).await?;
            print!("{}", surge::render(&report));
        }
        Scenario::Hostile {
            component,
            quick,
            phase_secs,
            tls,
            out,
        } => {
            let options = hostile::HostileOptions {
                spark: spark_exe()?,
                component: component_or(component, "hello")?,
                faults: component_or(None, "faults")?,
                quick,
                phase_secs,
                tls,
                out_dir: out.unwrap_or_else(spark_bench::default_out_dir),
            };
            let report = hostile::run(&options).await?;
            print!("{}", hostile::render(&report));
        }
        Scenario::Replay {
            invocations,
            durations,
            memory,
            apps,
            start,
            minutes,
            speed,
            memory_budget,
            live,
            guests,
            quick,
            out,
        } => {
            let guests = guests
                .iter()
                .map(|g| {
                    let path = if g.ends_with(".wasm") {
                        anyhow::ensure!(std::path::Path::new(g).is_file(), "guest {g} not found");
                        PathBuf::from(g)
                    } else {
                        spark_bench::guest(g)?
                    };
                    std::path::absolute(&path).with_context(|| format!("guest {}", path.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let trace =
                spark_sim::TraceSet::load(&invocations, durations.as_deref(), memory.as_deref())?;
            let (apps, minutes, speed) = if quick {
                (20, 20, 120.0)
            } else {
                (apps, minutes, speed)
            };
            let options = replay::ReplayOptions {
                spark: spark_exe()?,
                trace,
                guests,
                apps,
                start_minute: start,
                minutes,
                speed,
                memory_budget,
                live,
                out_dir: out.unwrap_or_else(spark_bench::default_out_dir),
            };
            let report = replay::run(&options).await?;
            print!("{}", replay::render(&report));
        }
        Scenario::Fleet {
            nodes,
            component,
            quick,
            loopback,
            nats_server,
            out,
        } => {
            let options = fleet::FleetOptions {
                spark: spark_exe()?,
                component: component_or(component, "echo")?,
                nats_server: nats_server
                    .or_else(cached_nats)
                    .context("no nats-server: run scripts/fetch-nats.sh or pass --nats-server")?,
                sizes: nodes,
                idle_window: if quick {
                    fleet::FleetOptions::QUICK_IDLE_WINDOW
                } else {
                    fleet::FleetOptions::IDLE_WINDOW
                },
                loopback,
                out_dir: out.unwrap_or_else(spark_bench::default_out_dir),
            };
            let report = fleet::run(&options).await?;
            print!("{}", fleet::render(&report));
        }
        Scenario::Canary {
            component,
            quick,
            out,
        } => {
            let component = component_or(component, "echo")?;
            let options = canary::CanaryOptions {
                spark: spark_exe()?,
                component,
                quick,
                out_dir: out.unwrap_or_else(spark_bench::default_out_dir),
            };
            let report = canary::run(&options).await?;
            print!("{}", canary::render(&report));
        }
        Scenario::Nn {
            component,
            ort,
            no_ort,
            no_software,
            rounds,
            quick,
            out,
        } => {
            let component = component_or(component, "classify")?;
            let ort_library = match no_ort {
                true => None,
                false => ort.or_else(default_ort),
            };
            if ort_library.is_none() {
                eprintln!(
                    "note: no ONNX Runtime (scripts/fetch-ort.sh, or --ort PATH): tract only"
                );
            }
            let options = nn::NnBenchOptions {
                component,
                ort_library,
                allow_software: !no_software,
                rounds: if quick { 3 } else { rounds },
                out_dir: out.unwrap_or_else(spark_bench::default_out_dir),
            };
            let report = nn::run(&options).await?;
            print!("{}", nn::render(&report));
        }
        Scenario::Density {
            modules,
            component,
            quick,
            spark,
            out,
        } => {
            let options = density::DensityOptions {
                spark: match spark {
                    Some(path) => std::path::absolute(path)?,
                    None => spark_exe()?,
                },
                component: component_or(component, "hello")?,
                sizes: if quick { vec![100] } else { modules },
                quick,
                out_dir: out.unwrap_or_else(spark_bench::default_out_dir),
            };
            let report = density::run(&options).await?;
            print!("{}", density::render(&report));
        }
        Scenario::Coldstart {
            component,
            quick,
            out,
        } => {
            let components = if component.is_empty() {
                vec![
                    ("big".to_owned(), spark_bench::guest("big")?),
                    ("hello".to_owned(), spark_bench::guest("hello")?),
                ]
            } else {
                component
                    .into_iter()
                    .map(|p| {
                        (
                            p.file_stem()
                                .map_or("component".into(), |s| s.to_string_lossy().into_owned()),
                            p,
                        )
                    })
                    .collect()
            };
            let options = coldstart::ColdstartOptions {
                components,
                quick,
                out_dir: out.unwrap_or_else(spark_bench::default_out_dir),
            };
            let results = coldstart::run(&options).await?;
            // A critical module (hello) while the headline component optimizes.
            let (_, headline) = &options.components[0];
            let critical =
                optimizing::measure(&spark_bench::guest("hello")?, headline, quick).await;
            let table = coldstart::render(&results);
            let (table, last) = table
                .trim_end()
                .rsplit_once('\n')
                .unwrap_or(("", table.trim_end()));
            println!("{table}");
            match critical {
                Ok(critical) => {
                    print!("{}", critical.line());
                    println!("{last} {}", critical.keys());
                }
                Err(e) => {
                    println!(
                        "critical module during a background optimization: not measured ({e})"
                    );
                    println!("{last}");
                }
            }
        }
    }
    Ok(())
}

/// The `spark` binary running now: the benchmarks start nodes with it.
fn spark_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("locating the spark executable")
}

/// The component to measure, as an absolute path: the one given, or guest `default`.
fn component_or(given: Option<PathBuf>, default: &str) -> anyhow::Result<PathBuf> {
    let component = match given {
        Some(path) => path,
        None => spark_bench::guest(default)?,
    };
    Ok(std::path::absolute(component)?)
}

/// Where scripts/fetch-nats.sh keeps the pinned nats-server.
fn cached_nats() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = PathBuf::from(home).join(".cache/spark-nats/2.15.1/nats-server");
    path.is_file().then_some(path)
}

/// The library `scripts/fetch-ort.sh` installs, if it did.
pub(super) fn default_ort() -> Option<PathBuf> {
    let cache = std::env::var_os("SPARK_NN_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/spark-nn")))?;
    Some(cache.join("ort/libonnxruntime.so.1")).filter(|p| p.is_file())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// `--apps`: a count, or `all` (as many as the slice has).
fn parse_apps(s: &str) -> Result<usize, String> {
    if s == "all" {
        return Ok(usize::MAX);
    }
    s.parse()
        .map_err(|_| format!("expected a number of apps or `all`, got `{s}`"))
}

/// `--phase-secs`: between 1 s and 10 min.
fn phase_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(secs) if (1.0..=600.0).contains(&secs) => Ok(secs),
        _ => Err(format!("expected seconds between 1 and 600, got `{s}`")),
    }
}
