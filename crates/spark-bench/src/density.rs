//! B7: density. N distinct components registered on one real `spark up` node process: what
//! the first start (every component compiled), a restart with the AOT cache warm, idle memory,
//! the control loop's idle CPU, requests to random modules and a module served only from disk
//! cost as N grows.
//!
//! Each module's component is the `hello` guest with a custom section of its own appended, so
//! every module has a different digest and nothing is shared by compile dedup: what is
//! measured is N components, not one component N times. Memory and CPU are the node
//! process's, read from `/proc/<pid>/status` and `/proc/<pid>/stat`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::node::{NodeLaunch, SparkNode};
use crate::{BenchError, percentile, write_json};

/// Settings of `spark bench density`.
#[derive(Debug, Clone)]
pub struct DensityOptions {
    /// The `spark` executable the node runs.
    pub spark: PathBuf,
    /// The component every module is a distinct copy of (`hello`).
    pub component: PathBuf,
    /// Registered module counts, run in turn.
    pub sizes: Vec<usize>,
    /// Short windows (idle 1 s, 300 requests).
    pub quick: bool,
    /// Where `density.json` (and the node log, if kept) go.
    pub out_dir: PathBuf,
}

/// What one size measured.
#[derive(Debug, Clone, Serialize)]
pub struct DensityResult {
    /// Modules registered (each its own component).
    pub modules: usize,
    /// First start on a fresh data dir (every component imported and compiled) until the node
    /// answers, seconds.
    pub cold_start_s: f64,
    /// Restart on the same data dir (AOT cache warm) until the node answers, seconds.
    pub restart_s: f64,
    /// Resident memory of the node process after the restart, idle, MiB.
    pub rss_mb: f64,
    /// `rss_mb` per registered module, KiB.
    pub rss_per_module_kb: f64,
    /// Virtual memory the node process has reserved (VmSize), GiB.
    pub vm_reserved_gb: f64,
    /// CPU the orchestrator's loop used at idle (as it meters itself), percent of one core.
    pub control_cpu_pct: f64,
    /// CPU the whole node process used at idle (control loop, predictor, timers, the epoch
    /// ticker), percent of one core.
    pub idle_cpu_pct: f64,
    /// First request to a module never loaded since the restart (code only on disk), ms.
    pub lazy_first_ms: f64,
    /// Median of the first requests to several never-loaded modules, ms.
    pub lazy_p50_ms: f64,
    /// Requests sent to random modules while the control loop runs.
    pub requests: u64,
    /// Of those, failed (error status or no answer).
    pub errors: u64,
    /// Median latency of the random requests (lazy loads included), ms.
    pub p50_ms: f64,
    /// 99th percentile of the same, ms.
    pub p99_ms: f64,
    /// Resident memory after the random requests, MiB.
    pub rss_after_mb: f64,
    /// Resident memory once the optimizer has compiled what the random requests loaded and
    /// the node has given back the heap those compiles freed (see `spark_runtime::heap`), MiB.
    #[serde(default)]
    pub rss_settled_mb: f64,
    /// Loaded code on the node's ledger after the random requests (the predictor's units:
    /// each module's loaded artifact image, at least 64 KiB), MiB.
    pub loaded_code_mb: f64,
    /// What the ledger lets loaded code reach (the predictor's budget less its ready
    /// instances), MiB.
    pub loaded_code_limit_mb: f64,
    /// Modules evicted to make room for a request's load between the predictor's revisions.
    pub code_evictions: u64,
}

/// The whole run, as written to `density.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DensityReport {
    /// One entry per size, in the order run.
    pub results: Vec<DensityResult>,
    /// Whether the short windows were used.
    pub quick: bool,
}

/// `component`'s bytes with a custom section naming module `index` appended: a valid
/// component with a digest of its own.
pub fn distinct(component: &[u8], index: usize) -> Vec<u8> {
    let mut bytes = component.to_vec();
    let data = format!("spark-density module {index}");
    let section = wasm_encoder::CustomSection {
        name: "spark-density".into(),
        data: data.as_bytes().into(),
    };
    bytes.push(0);
    wasm_encoder::Encode::encode(&section, &mut bytes);
    bytes
}

fn manifest(dir: &Path, modules: usize, addr: SocketAddr, admin: SocketAddr) -> String {
    let mut text = format!("version = 1\n[node]\nlisten = \"{addr}\"\nadmin = \"{admin}\"\n");
    for i in 0..modules {
        text.push_str(&format!(
            "\n[[module]]\nid = \"m-{i}\"\ncomponent = \"{}\"\nroutes = [\"/m-{i}/...\"]\n",
            dir.join(format!("m-{i}.wasm")).display()
        ));
    }
    text
}

/// Resident and virtual size of a process, KiB, from `/proc/<pid>/status`.
fn memory_kib(pid: u32) -> Result<(u64, u64), BenchError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmSize:")))
}

/// User + system CPU time of a process so far, seconds (`/proc/<pid>/stat`).
pub(crate) fn cpu_seconds(pid: u32) -> Result<f64, BenchError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the command.
    let hz = 100.0;
    Ok((ticks(11) + ticks(12)) as f64 / hz)
}

/// Whether the node's background optimizer still has compiles queued.
async fn optimizer_busy(admin: SocketAddr) -> bool {
    let page = crate::admin::metrics(admin).await.unwrap_or_default();
    crate::admin::series(&page, "spark_optimizer_queued").is_none_or(|q| q > 0.0)
}

/// The orchestrator loop's CPU so far, seconds, from the node's metrics.
async fn control_cpu(admin: SocketAddr) -> Result<f64, BenchError> {
    let page = crate::admin::metrics(admin).await?;
    Ok(
        crate::admin::series(&page, "spark_orchestrator_cpu_seconds_total")
            .or_else(|| crate::admin::series(&page, "spark_orchestrator_cpu_seconds"))
            .unwrap_or(0.0),
    )
}

/// Waits until `GET path` answers with a success, polling every 5 ms; false after `timeout`.
async fn wait_serving(addr: SocketAddr, path: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    while Instant::now() < deadline {
        if let Ok(response) = client.get(uri(addr, path)).await
            && response.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

fn uri(addr: SocketAddr, path: &str) -> http::Uri {
    format!("http://{addr}{path}").parse().expect("valid uri")
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// One GET; its latency in ms, or `None` if it failed.
async fn timed_get(client: &HttpClient, addr: SocketAddr, path: &str) -> Option<f64> {
    let sent = Instant::now();
    let response = client.get(uri(addr, path)).await.ok()?;
    let ok = response.status().is_success();
    response.into_body().collect().await.ok()?;
    ok.then(|| sent.elapsed().as_secs_f64() * 1e3)
}

/// A small deterministic generator for the module picks (xorshift64*).
struct Picks(u64);

impl Picks {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

/// Measures one size.
async fn measure(options: &DensityOptions, modules: usize) -> Result<DensityResult, BenchError> {
    let components = tempfile::tempdir()?;
    let hello = std::fs::read(&options.component)?;
    for i in 0..modules {
        std::fs::write(
            components.path().join(format!("m-{i}.wasm")),
            distinct(&hello, i),
        )?;
    }
    let dir = components.path().to_owned();
    let text = move |addr, admin| manifest(&dir, modules, addr, admin);
    let started = Instant::now();
    // A first start compiles every component: allow a second per module on top of the usual.
    let within = Duration::from_secs(120 + modules as u64);
    let mut node = SparkNode::start_within(
        NodeLaunch {
            spark: &options.spark,
            manifest: &text,
            ready_path: "/m-0/",
            out_dir: &options.out_dir,
            log_name: "density-node",
            tls: None,
        },
        within,
    )
    .await?;
    let cold_start_s = started.elapsed().as_secs_f64();
    let restarted = node.restart()?;
    if !wait_serving(node.addr, "/m-0/", Duration::from_secs(600)).await {
        return Err(BenchError::NotReady(node.addr.to_string()));
    }
    let restart_s = restarted.elapsed().as_secs_f64();
    let addr = node.addr;
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http();
    // Modules never loaded since the restart: the last ones (the predictor pre-warms nothing
    // it has not seen called).
    let lazy: Vec<f64> = {
        let mut times = Vec::new();
        for i in (modules.saturating_sub(10).max(1)..modules).rev() {
            if let Some(ms) = timed_get(&client, addr, &format!("/m-{i}/")).await {
                times.push(ms);
            }
        }
        times
    };
    let lazy_first_ms = lazy.first().copied().unwrap_or(0.0);
    let lazy_p50_ms = percentile(&lazy, 0.5);
    // Idle: once the background optimizer has nothing left to compile for the modules the
    // requests above loaded.
    let settle = Instant::now() + Duration::from_secs(if options.quick { 20 } else { 120 });
    while Instant::now() < settle && optimizer_busy(node.admin).await {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = Duration::from_secs(if options.quick { 2 } else { 10 });
    let pid = node.pid();
    let (rss, vm) = memory_kib(pid)?;
    // The node's CPU is read inside the scrapes of its metrics (which list every module), so
    // that rendering them is not counted as idle work.
    let control_before = control_cpu(node.admin).await?;
    let (cpu_before, window) = (cpu_seconds(pid)?, Instant::now());
    tokio::time::sleep(idle).await;
    let (cpu_after, seconds) = (cpu_seconds(pid)?, window.elapsed().as_secs_f64());
    let idle_cpu_pct = (cpu_after - cpu_before) / seconds * 100.0;
    let control_cpu_pct = (control_cpu(node.admin).await? - control_before) / seconds * 100.0;
    let count = if options.quick { 300 } else { 2000 };
    let (histogram, errors) = random_requests(&client, addr, modules, count).await;
    let (rss_after, _) = memory_kib(pid)?;
    let page = crate::admin::metrics(node.admin).await?;
    // Settled: the optimizer has compiled what the requests loaded on baseline code, and
    // three of the node's heap checks later the heap those compiles freed is given back.
    let settle = Instant::now() + Duration::from_secs(if options.quick { 20 } else { 180 });
    while Instant::now() < settle && optimizer_busy(node.admin).await {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (rss_settled, _) = memory_kib(pid)?;
    let mib = |series: &str| crate::admin::series(&page, series).unwrap_or(0.0) / 1_048_576.0;
    let loaded_code_mb = mib("spark_loaded_code_bytes");
    let loaded_code_limit_mb = mib("spark_loaded_code_limit_bytes");
    let code_evictions =
        crate::admin::series(&page, "spark_loaded_code_evictions_total").unwrap_or(0.0) as u64;
    if !node.alive() {
        return Err(BenchError::runtime("the node exited during the run"));
    }
    let rss_mb = rss as f64 / 1024.0;
    Ok(DensityResult {
        modules,
        cold_start_s,
        restart_s,
        rss_mb,
        rss_per_module_kb: rss as f64 / modules.max(1) as f64,
        vm_reserved_gb: vm as f64 / (1024.0 * 1024.0),
        control_cpu_pct,
        idle_cpu_pct,
        lazy_first_ms,
        lazy_p50_ms,
        requests: histogram.len() + errors,
        errors,
        p50_ms: histogram.value_at_quantile(0.50) as f64 / 1e3,
        p99_ms: histogram.value_at_quantile(0.99) as f64 / 1e3,
        rss_after_mb: rss_after as f64 / 1024.0,
        rss_settled_mb: rss_settled as f64 / 1024.0,
        loaded_code_mb,
        loaded_code_limit_mb,
        code_evictions,
    })
}

/// `count` GETs to random modules, four at a time; latency histogram (µs) and failures.
async fn random_requests(
    client: &HttpClient,
    addr: SocketAddr,
    modules: usize,
    count: usize,
) -> (Histogram<u64>, u64) {
    const AT_ONCE: usize = 4;
    let mut picks = Picks(0x9e37_79b9_7f4a_7c15 ^ modules as u64);
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let mut errors = 0;
    let mut sent = 0;
    while sent < count {
        let batch: Vec<_> = (0..AT_ONCE.min(count - sent))
            .map(|_| {
                let path = format!("/m-{}/", picks.next(modules));
                let client = client.clone();
                tokio::spawn(async move { timed_get(&client, addr, &path).await })
            })
            .collect();
        sent += batch.len();
        for task in batch {
            match task.await.ok().flatten() {
                Some(ms) => {
                    let _ = histogram.record((ms * 1e3) as u64);
                }
                None => errors += 1,
            }
        }
    }
    (histogram, errors)
}

/// Runs every size in turn and writes `density.json`.
pub async fn run(options: &DensityOptions) -> Result<DensityReport, BenchError> {
    let mut results = Vec::new();
    for &modules in &options.sizes {
        if modules == 0 {
            return Err(BenchError::Missing("--modules takes counts above 0".into()));
        }
        results.push(measure(options, modules).await?);
    }
    let report = DensityReport {
        results,
        quick: options.quick,
    };
    write_json(&options.out_dir, "density.json", &report)?;
    Ok(report)
}

/// The table and the closing `density:` line (for the largest size).
pub fn render(report: &DensityReport) -> String {
    let mut out = String::from(
        "MODULES  COLD(s)  RESTART(s)  RSS(MB)  KB/MODULE  VM(GB)  CONTROL CPU(%)  IDLE CPU(%)  LAZY FIRST(ms)  P50(ms)  P99(ms)  RSS AFTER(MB)  SETTLED(MB)  CODE/LIMIT(MB)  EVICTED  ERRORS\n",
    );
    for r in &report.results {
        out.push_str(&format!(
            "{:>7}  {:>7.2}  {:>10.3}  {:>7.1}  {:>9.1}  {:>6.0}  {:>14.3}  {:>11.2}  {:>14.2}  {:>7.2}  {:>7.2}  {:>13.1}  {:>11.1}  {:>14}  {:>7}  {:>6}\n",
            r.modules,
            r.cold_start_s,
            r.restart_s,
            r.rss_mb,
            r.rss_per_module_kb,
            r.vm_reserved_gb,
            r.control_cpu_pct,
            r.idle_cpu_pct,
            r.lazy_first_ms,
            r.p50_ms,
            r.p99_ms,
            r.rss_after_mb,
            r.rss_settled_mb,
            format!("{:.0}/{:.0}", r.loaded_code_mb, r.loaded_code_limit_mb),
            r.code_evictions,
            r.errors
        ));
    }
    if let Some(r) = report.results.last() {
        out.push_str(&format!(
            "density: modules={} cold_start_s={:.2} restart_s={:.3} rss_mb={:.1} rss_per_module_kb={:.1} vm_reserved_gb={:.1} control_cpu_pct={:.3} idle_cpu_pct={:.2} p50_ms={:.2} p99_ms={:.2} lazy_first_ms={:.2} rss_after_mb={:.1} rss_settled_mb={:.1} loaded_code_mb={:.1} loaded_code_limit_mb={:.1} code_evictions={} errors={}\n",
            r.modules,
            r.cold_start_s,
            r.restart_s,
            r.rss_mb,
            r.rss_per_module_kb,
            r.vm_reserved_gb,
            r.control_cpu_pct,
            r.idle_cpu_pct,
            r.p50_ms,
            r.p99_ms,
            r.lazy_first_ms,
            r.rss_after_mb,
            r.rss_settled_mb,
            r.loaded_code_mb,
            r.loaded_code_limit_mb,
            r.code_evictions,
            r.errors
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_copies_differ_and_keep_the_original_bytes_first() {
        let original = b"\0asm\x0d\0\x01\0".to_vec();
        let (a, b) = (distinct(&original, 1), distinct(&original, 2));
        assert_ne!(a, b);
        assert!(a.starts_with(&original));
        // A custom section: id 0, size, name, data.
        assert_eq!(a[original.len()], 0);
        let parsed: Vec<_> = wasmparser::Parser::new(0)
            .parse_all(&a)
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(parsed.iter().any(|p| matches!(
            p,
            wasmparser::Payload::CustomSection(c) if c.name() == "spark-density"
        )));
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        let (rss, vm) = memory_kib(pid).unwrap();
        assert!(rss > 0 && vm >= rss);
    }
}
