//! B1: warm HTTP serving, Spark against `wasmtime serve`, same component, same run.
//!
//! Both servers run as separate processes on 127.0.0.1 and get the same load from the same
//! generator at each concurrency, alternating which goes first, so drift on a shared machine
//! hits both alike. A WASI 0.2 component: fresh instance per request on both sides (the
//! default of each). A WASI 0.3 component ([`Wasi::P3`]) is measured twice: each server's
//! default for 0.3 (Spark: up to 16 requests at once per instance, never reused once idle;
//! `wasmtime serve -Sp3`: up to 16 at once and 128 in an instance's life, kept 1 s when idle),
//! the same reuse on both (Spark with `--max-requests-per-instance 128
//! --instance-idle-timeout 1s`, the peer's default), and a fresh instance per request on both
//! (`--max-concurrent-per-instance 1` against `--max-instance-reuse-count 1`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::loadgen::{self, Load, LoadResult};
use crate::{BenchError, free_port, write_json};

/// Which WASI the component is built for (what B1 compares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Wasi {
    /// `wasi:http/incoming-handler@0.2`: one request per instance on both sides.
    #[serde(rename = "0.2")]
    P2,
    /// `wasi:http/handler@0.3`: each server's default sharing, then a fresh instance each.
    #[serde(rename = "0.3")]
    P3,
}

/// How the servers use instances in one series of points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Each server's default.
    Default,
    /// A fresh instance per request on both.
    Fresh,
    /// Instances reused as `wasmtime serve -Sp3` does by default, on both.
    Reuse,
}

/// Settings of `spark bench serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The `wasi:http` component both servers serve.
    pub component: PathBuf,
    /// The WASI it is built for.
    pub wasi: Wasi,
    /// The `wasmtime` CLI to compare with (`None`: Spark alone).
    pub peer: Option<PathBuf>,
    /// The `spark` executable to run as the server.
    pub spark: PathBuf,
    /// Shorter runs: 0.5 s warm-up and 2 s measured instead of 2 s and 10 s.
    pub quick: bool,
    /// Where `serve.json` goes.
    pub out_dir: PathBuf,
}

/// Both servers at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct ServePoint {
    /// Connections, each with one request in flight.
    pub concurrency: usize,
    /// Spark's figures.
    pub spark: LoadResult,
    /// `wasmtime serve`'s figures (`None` without a peer).
    pub peer: Option<LoadResult>,
    /// Spark's requests per second over the peer's (above 1: Spark serves more).
    pub rps_ratio: Option<f64>,
    /// Spark's median latency over the peer's (below 1: Spark is faster).
    pub p50_ratio: Option<f64>,
    /// Spark's p99 latency over the peer's.
    pub p99_ratio: Option<f64>,
}

/// The B1 result, as written to `serve.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ServeReport {
    /// Path of the component both servers serve.
    pub component: String,
    /// The WASI it is built for.
    pub wasi: Wasi,
    /// Path of the `wasmtime` CLI compared with, if any.
    pub peer: Option<String>,
    /// How each side uses instances in `points`.
    pub mode: &'static str,
    /// One point per concurrency: 1, 16, 64.
    pub points: Vec<ServePoint>,
    /// WASI 0.3 only: the same with a fresh instance per request on both sides.
    pub fresh: Option<Vec<ServePoint>>,
    /// WASI 0.3 only: the same with instances reused alike on both sides (16 at once, 128
    /// over a life, kept 1 s idle).
    pub reuse: Option<Vec<ServePoint>>,
}

const CONCURRENCY: [usize; 3] = [1, 16, 64];

/// A server process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(mut command: Command, addr: SocketAddr, what: &str) -> Result<Server, BenchError> {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("RUST_LOG", "error")
        .spawn()
        .map_err(|source| BenchError::Spawn {
            what: what.to_string(),
            source,
        })?;
    Ok(Server { child, addr })
}

fn spark_server(options: &ServeOptions, data_dir: &Path, mode: Mode) -> Result<Server, BenchError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut command = Command::new(&options.spark);
    command
        .arg("serve")
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--concurrency")
        .arg("1024");
    match mode {
        Mode::Default => {}
        Mode::Fresh => {
            command.args(["--max-concurrent-per-instance", "1"]);
        }
        Mode::Reuse => {
            command.args([
                "--max-concurrent-per-instance",
                "16",
                "--max-requests-per-instance",
                "128",
                "--instance-idle-timeout",
                "1s",
            ]);
        }
    }
    command.arg(&options.component);
    start(command, addr, "spark serve")
}

fn peer_server(
    peer: &Path,
    component: &Path,
    wasi: Wasi,
    mode: Mode,
) -> Result<Server, BenchError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut command = Command::new(peer);
    command.arg("serve").arg("-Scli");
    if wasi == Wasi::P3 {
        command.arg("-Sp3");
        if mode == Mode::Fresh {
            command.args(["--max-instance-reuse-count", "1"]);
        }
    }
    command.arg("--addr").arg(addr.to_string()).arg(component);
    // Spark turns off the backtraces libraries capture into error values (Wasmtime makes one
    // per dropped store) unless `RUST_LIB_BACKTRACE` says otherwise; the peer gets the same,
    // so that a `RUST_BACKTRACE=1` in the environment does not tilt the comparison.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        command.env("RUST_LIB_BACKTRACE", "0");
    }
    start(command, addr, "wasmtime serve")
}

/// Runs B1 and writes `serve.json`.
pub async fn run(options: &ServeOptions) -> Result<ServeReport, BenchError> {
    let points = series(options, Mode::Default).await?;
    let (reuse, fresh) = match options.wasi {
        Wasi::P2 => (None, None),
        Wasi::P3 => (
            Some(series(options, Mode::Reuse).await?),
            Some(series(options, Mode::Fresh).await?),
        ),
    };
    let report = ServeReport {
        component: options.component.display().to_string(),
        wasi: options.wasi,
        peer: options.peer.as_ref().map(|p| p.display().to_string()),
        mode: match options.wasi {
            Wasi::P2 => "fresh instance per request (both)",
            Wasi::P3 => {
                "each server's default for WASI 0.3 (Spark: up to 16 requests at once per instance, no reuse once idle; wasmtime serve -Sp3: up to 16 at once, 128 per instance, kept 1 s idle)"
            }
        },
        points,
        fresh,
        reuse,
    };
    write_json(&options.out_dir, "serve.json", &report)?;
    Ok(report)
}

/// Both servers, started for `mode`, at each concurrency.
async fn series(options: &ServeOptions, mode: Mode) -> Result<Vec<ServePoint>, BenchError> {
    let data_dir = tempfile::tempdir().map_err(BenchError::Io)?;
    let spark = spark_server(options, data_dir.path(), mode)?;
    let peer = options
        .peer
        .as_deref()
        .map(|p| peer_server(p, &options.component, options.wasi, mode))
        .transpose()?;
    for server in std::iter::once(&spark).chain(peer.as_ref()) {
        if !loadgen::wait_ready(server.addr, "/", Duration::from_secs(120)).await {
            return Err(BenchError::NotReady(server.addr.to_string()));
        }
    }
    let (warmup, duration) = if options.quick {
        (Duration::from_millis(500), Duration::from_secs(2))
    } else {
        (Duration::from_secs(2), Duration::from_secs(10))
    };
    let mut points = Vec::new();
    for (i, &concurrency) in CONCURRENCY.iter().enumerate() {
        let load = |addr| Load {
            target: addr,
            path: "/".into(),
            connections: concurrency,
            warmup,
            duration,
        };
        let spark_first = i % 2 == 0;
        let mut spark_result = None;
        let mut peer_result = None;
        for turn in 0..2 {
            let run_spark = (turn == 0) == spark_first;
            if run_spark {
                spark_result = Some(loadgen::run(&load(spark.addr)).await);
            } else if let Some(peer) = &peer {
                peer_result = Some(loadgen::run(&load(peer.addr)).await);
            }
        }
        let spark_result = spark_result.expect("spark always runs");
        let ratio =
            |f: fn(&LoadResult) -> f64| peer_result.as_ref().map(|p| f(&spark_result) / f(p));
        points.push(ServePoint {
            concurrency,
            rps_ratio: ratio(|r| r.rps),
            p50_ratio: ratio(|r| r.p50_ms),
            p99_ratio: ratio(|r| r.p99_ms),
            spark: spark_result,
            peer: peer_result,
        });
    }
    Ok(points)
}

/// The table and the closing `B1:` line.
pub fn render(report: &ServeReport) -> String {
    let mut out = format!(
        "B1 warm serving, WASI {}: {} ({})\n",
        match report.wasi {
            Wasi::P2 => "0.2",
            Wasi::P3 => "0.3",
        },
        report.component,
        report.mode
    );
    table(&mut out, &report.points);
    if let Some(reuse) = &report.reuse {
        out.push_str("reuse alike (both: 16 at once, 128 per instance, kept 1 s idle):\n");
        table(&mut out, reuse);
    }
    if let Some(fresh) = &report.fresh {
        out.push_str("fresh instance per request (both):\n");
        table(&mut out, fresh);
    }
    let key = |r: Option<f64>| r.map_or("na".to_owned(), |r| format!("{r:.3}"));
    let at16 = |points: &[ServePoint]| points.iter().find(|p| p.concurrency == 16).cloned();
    let errors: u64 = report
        .points
        .iter()
        .chain(report.fresh.iter().flatten())
        .chain(report.reuse.iter().flatten())
        .map(|p| p.spark.errors + p.peer.as_ref().map_or(0, |r| r.errors))
        .sum();
    let main = at16(&report.points);
    let mut line = format!(
        "B1: rps_ratio={} p99_ratio={} spark_rps_c16={:.0} peer_rps_c16={}",
        key(main.as_ref().and_then(|p| p.rps_ratio)),
        key(main.as_ref().and_then(|p| p.p99_ratio)),
        main.as_ref().map_or(0.0, |p| p.spark.rps),
        main.as_ref()
            .and_then(|p| p.peer.as_ref())
            .map_or("na".to_owned(), |r| format!("{:.0}", r.rps)),
    );
    if let Some(fresh) = &report.fresh {
        let fresh = at16(fresh);
        line.push_str(&format!(
            " wasi=0.3 fresh_rps_ratio={} fresh_p99_ratio={}",
            key(fresh.as_ref().and_then(|p| p.rps_ratio)),
            key(fresh.as_ref().and_then(|p| p.p99_ratio)),
        ));
    }
    if let Some(reuse) = &report.reuse {
        let reuse = at16(reuse);
        line.push_str(&format!(
            " reuse_rps_ratio={} reuse_p99_ratio={}",
            key(reuse.as_ref().and_then(|p| p.rps_ratio)),
            key(reuse.as_ref().and_then(|p| p.p99_ratio)),
        ));
    }
    out.push_str(&format!("{line} errors={errors}\n"));
    out
}

fn table(out: &mut String, points: &[ServePoint]) {
    out.push_str(&format!(
        "{:>4} {:>11} {:>9} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9}\n",
        "c", "spark rps", "p50 ms", "p99 ms", "peer rps", "p50 ms", "p99 ms", "rps x", "p99 x"
    ));
    for p in points {
        let peer = |f: fn(&LoadResult) -> f64| {
            p.peer
                .as_ref()
                .map_or("-".to_owned(), |r| format!("{:.2}", f(r)))
        };
        let ratio = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.2}"));
        out.push_str(&format!(
            "{:>4} {:>11.0} {:>9.3} {:>9.3} {:>11} {:>9} {:>9} {:>9} {:>9}\n",
            p.concurrency,
            p.spark.rps,
            p.spark.p50_ms,
            p.spark.p99_ms,
            peer(|r| r.rps),
            peer(|r| r.p50_ms),
            peer(|r| r.p99_ms),
            ratio(p.rps_ratio),
            ratio(p.p99_ratio)
        ));
    }
}
