//! B9: hostile clients and guests. A critical module under steady open-loop load on a real
//! node process while, in turn and then all together, a disconnect storm (HTTP/1 closes and
//! HTTP/2 resets), thousands of slowloris connections, zero-window readers, guests trying to
//! exhaust host memory through host interfaces, and a log flood run against other modules.
//! The calm phase (critical load alone) is the baseline, measured in the same run.
//!
//! With `tls`, the node's listener serves TLS (a certificate made for the run) and every
//! client, the critical one included, speaks TLS: each attack pays and costs the node its
//! handshakes, half the slowloris connections stop in the middle of theirs, and one more
//! phase, a handshake flood, runs full handshakes that never send a request.
//!
//! Per phase: the critical module's success rate and p99 (over calm), the node's resident
//! memory peak (against its `node.max_memory`), its open file descriptors, the most guests the
//! attacked module ran at once (against its concurrency), and restarts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::admin::status;
use crate::attacks::{self, Attack};
use crate::density::cpu_seconds;
use crate::dial::{BenchTls, Dialer};
use crate::node::{NodeLaunch, SparkNode};
use crate::openloop::{self, Phase};
use crate::{BenchError, write_json};

/// Settings of `spark bench hostile`.
#[derive(Debug, Clone)]
pub struct HostileOptions {
    /// The `spark` executable the node runs.
    pub spark: PathBuf,
    /// The critical module's component (`hello`).
    pub component: PathBuf,
    /// The misbehaving guest (`faults`).
    pub faults: PathBuf,
    /// Shorter phases: 5 s each instead of 12 s.
    pub quick: bool,
    /// Seconds per phase, overriding `quick`'s and the default: each phase's p99 is its worst
    /// 1% of `100 x seconds` critical requests, so longer phases make it steadier.
    pub phase_secs: Option<f64>,
    /// Every client over TLS, and a handshake flood phase.
    pub tls: bool,
    /// Where `hostile.json` (and the node log, if kept) go.
    pub out_dir: PathBuf,
}

/// The node's bound, and the attacked modules' limits.
const MAX_MEMORY_MB: u64 = 1024;
const SPIN_CONCURRENCY: u32 = 4;
const CRITICAL_RATE: f64 = 100.0;
const SLOWLORIS: usize = 2000;
const ZERO_WINDOW: usize = 50;
/// Clients of the handshake flood, each handshaking again as soon as it is done.
const HANDSHAKERS: usize = 16;

/// What one phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    /// `calm`, the attack's name, or `all together`.
    pub name: &'static str,
    /// Critical requests answered with success.
    pub crit_ok: u64,
    /// Critical requests that failed or got no answer within 30 s.
    pub crit_errors: u64,
    /// Why the critical module's failed requests failed, and how often.
    pub crit_error_kinds: BTreeMap<String, u64>,
    /// `crit_ok` over all critical requests of the phase, percent.
    pub crit_success_pct: f64,
    /// Critical p99 latency, measured from each request's scheduled send time, ms.
    pub crit_p99_ms: f64,
    /// Highest resident memory of the node process (sampled every 100 ms), MiB.
    pub rss_peak_mb: f64,
    /// Most file descriptors the node process had open at once (sampled every 100 ms).
    pub fds_peak: u64,
    /// CPU the node process used over the phase, percent of one core.
    pub node_cpu_pct: f64,
    /// The most guests the looping module ran at once (its concurrency is the limit).
    pub spin_guests_peak: f64,
    /// Requests or connections the phase's attacks made.
    pub attack_requests: u64,
    /// Connections the node reset at accept over the phase (any cap: per client, per
    /// client's rate, in all, connection memory).
    pub refused_at_accept: u64,
}

/// The B9 result, as written to `hostile.json`.
#[derive(Debug, Clone, Serialize)]
pub struct HostileReport {
    /// Whether every client spoke TLS.
    pub tls: bool,
    /// Length of each phase, seconds.
    pub phase_secs: f64,
    /// Open-loop rate of the critical load, requests per second.
    pub critical_rate: f64,
    /// The node's `max_memory`, MiB.
    pub max_memory_mb: u64,
    /// Concurrency limit of the looping `spin` module.
    pub spin_concurrency: u32,
    /// One result per phase, `calm` first.
    pub phases: Vec<PhaseResult>,
    /// Modules loaded again over the run (1 if the node process died).
    pub restarts: u64,
}

fn manifest(
    options: &HostileOptions,
    tls: Option<&BenchTls>,
    addr: SocketAddr,
    admin: SocketAddr,
) -> String {
    let (hello, faults) = (options.component.display(), options.faults.display());
    let certificate = tls.map(BenchTls::manifest_entry).unwrap_or_default();
    format!(
        r#"version = 1
[node]
listen = "{addr}"
admin = "{admin}"
max_memory = "{MAX_MEMORY_MB}MiB"
header_read_timeout = "2s"
idle_timeout = "5s"
send_timeout = "2s"
request_body_timeout = "2s"
{certificate}
[[module]]
id = "shop"
component = "{hello}"
routes = ["/shop/..."]
priority = "critical"
[module.limits]
memory = "16MiB"
host_memory = "8MiB"

[[module]]
id = "spin"
component = "{faults}"
routes = ["/spin/..."]
[module.limits]
concurrency = {SPIN_CONCURRENCY}
queue = 16
memory = "16MiB"
host_memory = "8MiB"

[[module]]
id = "stream"
component = "{faults}"
routes = ["/stream/..."]
[module.limits]
memory = "16MiB"
host_memory = "8MiB"

[[module]]
id = "hog"
component = "{faults}"
routes = ["/hog/..."]
[module.limits]
memory = "32MiB"
host_memory = "16MiB"
resources = 500
log = "64KiB"
"#
    )
}

/// The phases: calm, each attack alone, then all of them at once (the handshake flood only
/// over TLS).
fn phases(tls: bool) -> Vec<&'static str> {
    let mut phases = vec![
        "calm",
        "disconnect storm",
        "slowloris",
        "zero-window readers",
        "host-memory hogs",
        "log flood",
    ];
    if tls {
        phases.push("handshake flood");
    }
    phases.push("all together");
    phases
}

fn launch(phase: &str, dialer: &Dialer, to: SocketAddr, hold: Duration) -> Vec<Attack> {
    let storm = || attacks::disconnect_storm(dialer, to, "/spin/loop", 40, 2);
    let slow = || attacks::slowloris(dialer, to, "/shop/", SLOWLORIS);
    let readers = || attacks::zero_window(dialer, to, "/stream/huge?mb=256", ZERO_WINDOW, hold);
    let hogs = || {
        vec![
            attacks::repeat(dialer, to, "/hog/hog-fields", 2, 40),
            attacks::repeat(dialer, to, "/hog/hog-bodies", 2, 41),
            attacks::repeat(dialer, to, "/hog/hog-handles", 2, 42),
        ]
    };
    let flood = || attacks::repeat(dialer, to, "/hog/log-flood?mb=8", 2, 43);
    let handshakes = || attacks::handshake_flood(dialer, to, HANDSHAKERS);
    match phase {
        "calm" => vec![],
        "disconnect storm" => vec![storm()],
        "slowloris" => vec![slow()],
        "zero-window readers" => vec![readers()],
        "host-memory hogs" => hogs(),
        "log flood" => vec![flood()],
        "handshake flood" => vec![handshakes()],
        _ => {
            let mut all = vec![storm(), slow(), readers(), flood()];
            all.extend(hogs());
            if dialer.is_tls() {
                all.push(handshakes());
            }
            all
        }
    }
}

/// Peaks of the node's RSS, open files and the looping module's guests, sampled until stop.
#[derive(Debug, Default, Clone, Copy)]
struct Peaks {
    rss_kib: u64,
    fds: u64,
    spin_guests: f64,
}

fn sample_peaks(
    pid: u32,
    admin: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Peaks> {
    tokio::spawn(async move {
        let mut peaks = Peaks::default();
        while !stop.load(Ordering::Relaxed) {
            peaks.rss_kib = peaks.rss_kib.max(rss_kib(pid));
            peaks.fds = peaks.fds.max(open_fds(pid));
            if let Ok(page) = crate::admin::metrics(admin).await {
                let running =
                    crate::admin::series(&page, r#"spark_module_in_flight{module="spin"}"#);
                peaks.spin_guests = peaks.spin_guests.max(running.unwrap_or(0.0));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peaks
    })
}

/// Connections the node's public listener has reset at accept so far, for any reason.
async fn refused_at_accept(admin: SocketAddr) -> Result<u64, BenchError> {
    let page = crate::admin::metrics(admin).await?;
    let total = page
        .lines()
        .filter(|line| line.starts_with(r#"spark_connections_refused_total{listener="public","#))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    Ok(total as u64)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Runs B9 and writes `hostile.json`.
pub async fn run(options: &HostileOptions) -> Result<HostileReport, BenchError> {
    let secs = options
        .phase_secs
        .unwrap_or(if options.quick { 5.0 } else { 12.0 });
    let phase = Duration::from_secs_f64(secs);
    let certificates = tempfile::tempdir()?;
    let tls = match options.tls {
        true => Some(Arc::new(BenchTls::issue(certificates.path())?)),
        false => None,
    };
    let dialer = tls.clone().map_or_else(Dialer::plain, Dialer::tls);
    let names = phases(options.tls);
    let manifest = |addr, admin| manifest(options, tls.as_deref(), addr, admin);
    let mut node = SparkNode::start(NodeLaunch {
        spark: &options.spark,
        manifest: &manifest,
        ready_path: "/shop/",
        out_dir: &options.out_dir,
        log_name: "hostile-node",
        tls: tls.clone(),
    })
    .await?;
    let before = status(node.admin, &node.token).await?;
    // One open loop through every phase, so the critical client is the same throughout.
    let warmup = Phase {
        duration: Duration::from_secs(2),
        rate: CRITICAL_RATE,
    };
    let mut load = vec![warmup];
    load.extend(names.iter().map(|_| Phase {
        duration: phase,
        rate: CRITICAL_RATE,
    }));
    let critical = openloop::run_apart(node.addr, "/shop/".into(), load, 1, tls.clone());
    tokio::time::sleep(warmup.duration).await;
    let mut peaks = Vec::new();
    let mut attempts = Vec::new();
    let mut node_cpu = Vec::new();
    let mut refused = Vec::new();
    for name in &names {
        let (cpu_before, started) = (cpu_seconds(node.pid())?, std::time::Instant::now());
        let refused_before = refused_at_accept(node.admin).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_peaks(node.pid(), node.admin, stop.clone());
        let running = launch(name, &dialer, node.addr, options_hold());
        tokio::time::sleep(phase).await;
        let mut made = 0;
        for attack in running {
            made += attack.stop().await;
        }
        stop.store(true, Ordering::Relaxed);
        peaks.push(sampler.await.map_err(BenchError::runtime)?);
        attempts.push(made);
        let used = cpu_seconds(node.pid())? - cpu_before;
        node_cpu.push(100.0 * used / started.elapsed().as_secs_f64());
        refused.push(refused_at_accept(node.admin).await? - refused_before);
    }
    let critical = critical.await.map_err(BenchError::runtime)?;
    let restarts = if node.alive() {
        let after = status(node.admin, &node.token).await?;
        crate::surge::restarts(&before.modules, &after.modules)
    } else {
        1
    };
    let phases = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (ok, errors) = (critical.phase_ok[i], critical.phase_errors[i]);
            PhaseResult {
                name,
                crit_ok: ok,
                crit_errors: errors,
                crit_error_kinds: critical.phase_error_kinds[i].clone(),
                crit_success_pct: 100.0 * ok as f64 / (ok + errors).max(1) as f64,
                crit_p99_ms: critical.phase_p99_ms[i],
                rss_peak_mb: peaks[i].rss_kib as f64 / 1024.0,
                fds_peak: peaks[i].fds,
                node_cpu_pct: node_cpu[i],
                spin_guests_peak: peaks[i].spin_guests,
                attack_requests: attempts[i],
                refused_at_accept: refused[i],
            }
        })
        .collect();
    let report = HostileReport {
        tls: options.tls,
        phase_secs: secs,
        critical_rate: CRITICAL_RATE,
        max_memory_mb: MAX_MEMORY_MB,
        spin_concurrency: SPIN_CONCURRENCY,
        phases,
        restarts,
    };
    write_json(&options.out_dir, "hostile.json", &report)?;
    Ok(report)
}

/// How long a zero-window reader holds each connection: longer than the node's
/// `send_timeout`, so the node is the one that gives up.
fn options_hold() -> Duration {
    Duration::from_secs(4)
}

/// The table and the closing `hostile:` line.
pub fn render(report: &HostileReport) -> String {
    let mut out = format!(
        "B9 hostile clients and guests{}: critical at {} req/s, {:.0} s per phase; node.max_memory {} MiB; looping module concurrency {}\n",
        if report.tls {
            ", every client over TLS"
        } else {
            ""
        },
        report.critical_rate,
        report.phase_secs,
        report.max_memory_mb,
        report.spin_concurrency
    );
    out.push_str(&format!(
        "{:<22} {:>9} {:>7} {:>9} {:>9} {:>8} {:>7} {:>9} {:>11} {:>9} {:>9}\n",
        "phase",
        "crit ok",
        "errors",
        "success%",
        "p99 ms",
        "rss MB",
        "fds",
        "node cpu%",
        "spin guests",
        "attacks",
        "refused"
    ));
    for p in &report.phases {
        out.push_str(&format!(
            "{:<22} {:>9} {:>7} {:>9.2} {:>9.2} {:>8.0} {:>7} {:>9.0} {:>11.0} {:>9} {:>9}\n",
            p.name,
            p.crit_ok,
            p.crit_errors,
            p.crit_success_pct,
            p.crit_p99_ms,
            p.rss_peak_mb,
            p.fds_peak,
            p.node_cpu_pct,
            p.spin_guests_peak,
            p.attack_requests,
            p.refused_at_accept
        ));
        for (why, n) in &p.crit_error_kinds {
            out.push_str(&format!("    {n} x {why}\n"));
        }
    }
    let calm = &report.phases[0];
    let attacked = &report.phases[1..];
    let worst = |f: fn(&PhaseResult) -> f64| attacked.iter().map(f).fold(f64::MIN, f64::max);
    let success = attacked
        .iter()
        .map(|p| p.crit_success_pct)
        .fold(100.0, f64::min);
    let p99_ratio = worst(|p| p.crit_p99_ms) / calm.crit_p99_ms.max(f64::EPSILON);
    let all = report.phases.last().expect("phases");
    let over = attacked
        .iter()
        .filter(|p| p.spin_guests_peak > f64::from(report.spin_concurrency))
        .count();
    out.push_str(&format!(
        "hostile: transport={} crit_success_pct={success:.2} crit_p99_ratio={p99_ratio:.3} crit_p99_ratio_all={:.3} rss_peak_mb={:.0} max_memory_mb={} fds_peak={:.0} guests_over_limit={over} restarts={}\n",
        if report.tls { "tls" } else { "tcp" },
        all.crit_p99_ms / calm.crit_p99_ms.max(f64::EPSILON),
        worst(|p| p.rss_peak_mb),
        report.max_memory_mb,
        worst(|p| p.fds_peak as f64),
        report.restarts,
    ));
    out
}
