//! B8, the fleet: N real `spark up --fleet` processes against a JetStream cluster of three
//! nats-servers (R3 buckets; every node is given all three URLs), each node in its own network
//! namespace with its own address when the bench runs as root (else on loopback, and the
//! report says so). Measured with the real CLI, under light traffic (each node's own canary
//! needs requests):
//! - `converge_s`: `spark fleet deploy` (every node at once) until the fleet rollout is
//!   complete (every node's own canary promoted it, and the planner saw it);
//! - `canary_s` / `fleet_canary_s`: a deploy with `--canary-nodes 1` until the canary verdict
//!   releases the next wave, and until the rollout is complete;
//! - `recover_s`: a node killed with SIGKILL while a release is deployed, restarted: from the
//!   restart until its heartbeat reports the desired release as current (`node_start_s` of
//!   that is process start);
//! - a NATS server (the desired-state stream's leader) SIGKILLed mid-rollout: the rollout
//!   still completes, no request fails;
//! - a node's control link cut mid-rollout for longer than the heartbeat expiry: it answers
//!   every probe (over its service link) throughout and rejoins on the release;
//! - NATS messages and bytes per node per minute, idle and during a rollout, from the
//!   servers' `/connz`.
//!
//! Several sizes in one run (`--nodes 3,10,20`) each get a fresh bed, and the largest's
//! convergence is given as a ratio to the smallest's. Each node runs its node-level canary
//! (steps 50%, 100%; 1 s; 5 requests), so the figures are dominated by that analysis, on
//! purpose: it is what a real deploy waits for.

mod nats_stats;
mod net;
mod nodes;
mod observe;
mod reaper;
mod scenario;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use nats_stats::Traffic;
pub use scenario::{FleetRun, LinkCut, NatsKill};

use crate::{BenchError, write_json};

/// Servers in the NATS cluster.
const NATS_SERVERS: usize = 3;
/// Copies of every fleet bucket.
const REPLICAS: usize = 3;

/// Settings of `spark bench fleet`.
pub struct FleetOptions {
    /// The `spark` executable: the nodes and the `spark fleet` commands.
    pub spark: PathBuf,
    /// The `echo` guest every release serves (its `VERSION` tells releases apart).
    pub component: PathBuf,
    /// The `nats-server` executable.
    pub nats_server: PathBuf,
    /// Fleet sizes to run, in turn.
    pub sizes: Vec<usize>,
    /// How long the idle traffic is measured.
    pub idle_window: Duration,
    /// Run on loopback even where namespaces are possible.
    pub loopback: bool,
    /// Where `fleet.json` goes.
    pub out_dir: PathBuf,
}

impl FleetOptions {
    /// The idle window of a full run (a minute, so "per minute" is measured, not scaled).
    pub const IDLE_WINDOW: Duration = Duration::from_secs(60);
    /// The idle window of `--quick`.
    pub const QUICK_IDLE_WINDOW: Duration = Duration::from_secs(5);
}

/// The B8 result, as written to `fleet.json`.
#[derive(Debug, Serialize)]
pub struct FleetReport {
    /// `netns` (each node in its own network namespace) or `loopback`.
    pub network: String,
    /// The namespaces' subnets, or why the run fell back to loopback.
    pub network_note: String,
    /// Leftovers of an earlier, crashed run removed before this one.
    pub stale_removed: Vec<String>,
    /// Servers in the NATS cluster.
    pub nats_servers: usize,
    /// Copies of each fleet bucket.
    pub replicas: usize,
    /// One entry per fleet size, smallest first.
    pub runs: Vec<FleetRun>,
    /// `converge_s` of the largest fleet over that of the smallest (with several sizes).
    pub converge_ratio: Option<f64>,
}

/// Runs B8 at every size and writes `fleet.json`. Ctrl-C ends it early with everything torn
/// down (processes, namespaces).
pub async fn run(options: &FleetOptions) -> Result<FleetReport, BenchError> {
    tokio::select! {
        report = run_all(options) => report,
        _ = tokio::signal::ctrl_c() => Err(BenchError::runtime("interrupted (everything it started was removed)")),
    }
}

async fn run_all(options: &FleetOptions) -> Result<FleetReport, BenchError> {
    let mut sizes = options.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.is_empty() || sizes[0] < 2 {
        return Err(BenchError::Missing(
            "--nodes: fleet sizes of 2 or more (e.g. 3,10,20)".into(),
        ));
    }
    let mut stale_removed = reaper::reap_stale();
    if !options.loopback {
        stale_removed.extend(net::clean_stale());
    }
    let mut network = if options.loopback {
        Err("--loopback given".to_owned())
    } else {
        Ok(())
    };
    let mut note = String::new();
    let mut runs = Vec::new();
    for &size in &sizes {
        let net = match network {
            Ok(()) => match net::Network::create(size) {
                Ok(net) => {
                    note = net.describe();
                    Some(net)
                }
                Err(e) => {
                    network = Err(format!(
                        "no network namespaces ({}): nodes on loopback, link cut not measured",
                        spark_error::chain(&e)
                    ));
                    None
                }
            },
            Err(_) => None,
        };
        if let Err(why) = &network {
            note = why.clone();
        }
        runs.push(scenario::run(options, size, net).await?);
    }
    let converge_ratio = (runs.len() > 1)
        .then(|| runs[runs.len() - 1].converge_s / runs[0].converge_s.max(f64::EPSILON));
    let report = FleetReport {
        network: if network.is_ok() { "netns" } else { "loopback" }.to_owned(),
        network_note: note,
        stale_removed,
        nats_servers: NATS_SERVERS,
        replicas: REPLICAS,
        runs,
        converge_ratio,
    };
    write_json(&options.out_dir, "fleet.json", &report)?;
    Ok(report)
}

/// The table, notes and the closing `fleet:` line.
pub fn render(report: &FleetReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "B8 fleet: {} nats-servers (JetStream cluster, R{} buckets); network: {} ({})",
        report.nats_servers, report.replicas, report.network, report.network_note
    );
    if !report.stale_removed.is_empty() {
        let _ = writeln!(
            out,
            "removed leftovers of a crashed earlier run: {}",
            report.stale_removed.join(" ")
        );
    }
    let _ = writeln!(
        out,
        "node canary 50%/100% x 1 s each; times in seconds; NATS traffic per node per minute (sent + received)\n\
         NODES  START  CONVERGE  CANARY  FLEET-CANARY  RECOVER  NATS-KILL  LINK-REJOIN  CUT-FAILED  IDLE msg   IDLE KiB  ROLLOUT msg  ROLLOUT KiB"
    );
    for r in &report.runs {
        let (rejoin, failed) = r.link_cut.as_ref().map_or(("-".into(), "-".into()), |c| {
            (
                format!("{:.2}", c.rejoin_s),
                format!("{}/{}", c.failed, c.requests),
            )
        });
        let _ = writeln!(
            out,
            "{:>5} {:>6.1} {:>9.2} {:>7.2} {:>13.2} {:>8.2} {:>10.2} {:>12} {:>11} {:>9.0} {:>10.1} {:>12.0} {:>12.1}",
            r.nodes,
            r.start_s,
            r.converge_s,
            r.canary_s,
            r.fleet_canary_s,
            r.recover_s,
            r.nats_kill.converge_s,
            rejoin,
            failed,
            r.idle.msgs_per_node_min,
            r.idle.bytes_per_node_min / 1024.0,
            r.rollout.msgs_per_node_min,
            r.rollout.bytes_per_node_min / 1024.0,
        );
    }
    for r in report.runs.iter().filter(|r| !r.rollbacks.is_empty()) {
        let _ = writeln!(
            out,
            "{} nodes: {} rollout(s) rolled back by a node's canary on identical code (noise), retried: {}",
            r.nodes,
            r.rollbacks.len(),
            r.rollbacks.join("; ")
        );
    }
    let last = report.runs.last().expect("at least one run");
    let k = &last.nats_kill;
    let _ = writeln!(
        out,
        "NATS server {} ({}) killed mid-rollout: rollout complete in {:.2} s, {} of {} requests failed",
        k.server,
        if k.was_leader {
            "leader of the desired-state stream"
        } else {
            "first server"
        },
        k.converge_s,
        k.failed,
        k.requests
    );
    match &last.link_cut {
        Some(c) => {
            let versions: Vec<String> = c
                .versions_while_cut
                .iter()
                .map(|(v, n)| format!("v{v} x{n}"))
                .collect();
            let _ = writeln!(
                out,
                "link of {} cut {:.1} s mid-rollout ({}): answered {} of {} probes (while cut: {}{}); others converged in {:.2} s; rejoined {:.2} s after restore, rollout complete {:.2} s after",
                c.node,
                c.held_s,
                if c.dropped {
                    "dropped from the live fleet"
                } else {
                    "still listed"
                },
                c.requests - c.failed,
                c.requests,
                versions.join(", "),
                if c.served_current {
                    ", all by the release it ran"
                } else {
                    ", NOT all by the release it ran"
                },
                c.others_s,
                c.rejoin_s,
                c.complete_s
            );
        }
        None => {
            let _ = writeln!(out, "link cut: not measured on loopback");
        }
    }
    let (rejoin, cut_failed) = last
        .link_cut
        .as_ref()
        .map_or(("na".into(), "na".into()), |c| {
            (format!("{:.2}", c.rejoin_s), c.failed.to_string())
        });
    let ratio = report
        .converge_ratio
        .map_or("na".into(), |r| format!("{r:.2}"));
    let _ = writeln!(
        out,
        "fleet: network={} nodes={} converge_s={:.2} canary_s={:.2} fleet_canary_s={:.2} recover_s={:.2} nats_kill_s={:.2} nats_kill_failed={} link_rejoin_s={} link_cut_failed={} idle_msgs_per_node_min={:.0} idle_bytes_per_node_min={:.0} rollout_msgs_per_node_min={:.0} rollout_bytes_per_node_min={:.0} converge_ratio={} rollbacks={}",
        report.network,
        last.nodes,
        last.converge_s,
        last.canary_s,
        last.fleet_canary_s,
        last.recover_s,
        k.converge_s,
        k.failed,
        rejoin,
        cut_failed,
        last.idle.msgs_per_node_min,
        last.idle.bytes_per_node_min,
        last.rollout.msgs_per_node_min,
        last.rollout.bytes_per_node_min,
        ratio,
        last.rollbacks.len()
    );
    out
}
