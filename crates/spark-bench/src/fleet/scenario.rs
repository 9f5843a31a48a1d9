//! One B8 run at one fleet size: the test bed (network, NATS cluster, nodes, probers) and its
//! phases in order, each on a new release of the same echo guest (`VERSION` 2, 3, ...):
//!
//! 1. deploy to every node at once (`converge_s`, and the NATS traffic of that rollout);
//! 2. an idle window (the NATS traffic of a fleet with nothing to do);
//! 3. a fleet canary, `--canary-nodes 1` (`canary_s`, `fleet_canary_s`);
//! 4. a node SIGKILLed, a deploy without it, the node restarted (`recover_s`);
//! 5. a deploy during which the JetStream leader of the desired-state bucket is SIGKILLed;
//! 6. with namespaces: a fleet canary during which another node's control link is cut for
//!    longer than the heartbeat expiry, then restored (it must answer every probe with its
//!    current release throughout, then rejoin and take the new one).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use spark_testkit::{NatsCluster, NatsClusterOptions};

use super::nats_stats::{self, Traffic};
use super::net::Network;
use super::nodes::{self, APP, FleetNode, NodeSetup, ProbeCounts};
use super::observe::{Observer, View};
use super::reaper::PidFile;
use super::{FleetOptions, NATS_SERVERS, REPLICAS};
use crate::BenchError;

/// Longest wait for any one phase.
const PHASE_LIMIT: Duration = Duration::from_secs(180);
/// How far into a rollout a server is killed.
const MID_ROLLOUT: Duration = Duration::from_millis(300);
/// How long a cut link stays down: longer than the 10 s heartbeat expiry, so the node drops
/// out of the live fleet and has to rejoin.
const LINK_HOLD: Duration = Duration::from_secs(13);
/// Rollouts a run may see rolled back (and retry) before it gives up.
const MAX_ROLLBACKS: usize = 3;
/// The stream behind the desired-state bucket.
const DESIRED_STREAM: &str = "KV_spark-desired";

/// A deploy while a NATS server dies.
#[derive(Debug, Clone, Serialize)]
pub struct NatsKill {
    /// The server killed (the JetStream leader of the desired-state bucket when known).
    pub server: String,
    /// Whether it was that bucket's leader.
    pub was_leader: bool,
    /// Deploy to the fleet rollout complete on every node.
    pub converge_s: f64,
    /// Requests to the nodes from the deploy to completion.
    pub requests: u64,
    /// Of those, how many failed.
    pub failed: u64,
}

/// A deploy while one node's control link is cut.
#[derive(Debug, Clone, Serialize)]
pub struct LinkCut {
    /// The cut node.
    pub node: String,
    /// How long the link stayed down.
    pub held_s: f64,
    /// Whether the node's heartbeat expired while cut (it left the live fleet).
    pub dropped: bool,
    /// Deploy to every other node serving the release.
    pub others_s: f64,
    /// Restore to the node's heartbeat reporting the desired release.
    pub rejoin_s: f64,
    /// Restore to the fleet rollout complete.
    pub complete_s: f64,
    /// The cut node's probes from before the deploy to its rejoining.
    pub requests: u64,
    /// Of those, how many failed.
    pub failed: u64,
    /// Answers per `VERSION` while the link was down.
    pub versions_while_cut: BTreeMap<String, u64>,
    /// Every probe while the link was down answered, by the release it ran before.
    pub served_current: bool,
}

/// The result at one fleet size; times in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRun {
    /// Nodes in the fleet.
    pub nodes: usize,
    /// Spawn of every node to all of them heartbeating.
    pub start_s: f64,
    /// `spark fleet deploy` to the fleet rollout complete on every node.
    pub converge_s: f64,
    /// Deploy with `--canary-nodes 1` to the canary verdict releasing the next wave.
    pub canary_s: f64,
    /// The same deploy to the fleet rollout complete.
    pub fleet_canary_s: f64,
    /// Restart of a SIGKILLed node to its heartbeat reporting the desired release.
    pub recover_s: f64,
    /// Restart of that node to its `Spark node serving` line (part of `recover_s`).
    pub node_start_s: f64,
    /// A NATS server killed mid-rollout.
    pub nats_kill: NatsKill,
    /// A node's link cut mid-rollout (namespaces only).
    pub link_cut: Option<LinkCut>,
    /// NATS traffic with nothing to do.
    pub idle: Traffic,
    /// NATS traffic during the first deploy's rollout.
    pub rollout: Traffic,
    /// Rollouts a node's canary rolled back (on identical code: noise of a busy machine),
    /// each retried with the next version: `phase: vN why`.
    pub rollbacks: Vec<String>,
}

/// The bed; fields drop in order: probers stop, nodes die, then NATS, then the network, then
/// the files.
struct Bed {
    stop: StopOnDrop,
    nodes: Vec<FleetNode>,
    observer: Observer,
    cluster: NatsCluster,
    net: Option<Network>,
    dir: tempfile::TempDir,
    setup: NodeSetup,
    version: u32,
    /// Rollouts a node's canary rolled back, each retried with the next version.
    rollbacks: Vec<String>,
    /// Every process started, for the clean-up of a run killed before its guards ran.
    pids: PidFile,
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Why a phase did not finish: a node's canary rolled the release back (the phase is run
/// again on the next version), or the bench failed.
enum Phase {
    RolledBack(String),
    Failed(BenchError),
}

impl From<BenchError> for Phase {
    fn from(e: BenchError) -> Phase {
        Phase::Failed(e)
    }
}

impl From<std::io::Error> for Phase {
    fn from(e: std::io::Error) -> Phase {
        Phase::Failed(e.into())
    }
}

/// Runs every phase with `size` nodes, on `net` (namespaces) or loopback.
pub(super) async fn run(
    options: &FleetOptions,
    size: usize,
    net: Option<Network>,
) -> Result<FleetRun, BenchError> {
    let dir = tempfile::tempdir()?;
    let host = net
        .as_ref()
        .map_or(std::net::Ipv4Addr::LOCALHOST, Network::host_control);
    let cluster = NatsCluster::try_start(&NatsClusterOptions {
        client_host: host.into(),
        ..NatsClusterOptions::local(options.nats_server.clone(), NATS_SERVERS)
    })
    .map_err(BenchError::runtime)?;
    let urls = cluster.urls();
    // The bench's own connection creates the buckets (R3) before any node starts.
    let observer = Observer::connect(&urls, APP, REPLICAS).await?;
    let setup = NodeSetup {
        spark: options.spark.clone(),
        component: options.component.clone(),
        urls,
        replicas: REPLICAS,
    };
    let mut bed = Bed {
        stop: StopOnDrop(Arc::default()),
        nodes: Vec::new(),
        observer,
        cluster,
        net,
        dir,
        setup,
        version: 1,
        rollbacks: Vec::new(),
        pids: PidFile::new(),
    };
    bed.record_servers();
    let result = bed.phases(options, size).await;
    if result.is_err() {
        bed.keep_logs(&options.out_dir.join("fleet-logs"));
    }
    result
}

impl Bed {
    async fn phases(
        &mut self,
        options: &FleetOptions,
        size: usize,
    ) -> Result<FleetRun, BenchError> {
        let start_s = self.start_nodes(size).await?;
        let (converge_s, rollout) = self.retried("deploy", async |b| b.converge().await).await?;
        let idle = self.idle(options.idle_window).await;
        let (canary_s, fleet_canary_s) = self.retried("canary", async |b| b.canary().await).await?;
        let (recover_s, node_start_s) = self
            .retried("node killed", async |b| b.kill_node().await)
            .await?;
        let nats_kill = self
            .retried("NATS server killed", async |b| b.kill_nats().await)
            .await?;
        let link_cut = match self.net.is_some() {
            true => Some(
                self.retried("link cut", async |b| b.cut_link().await)
                    .await?,
            ),
            false => None,
        };
        Ok(FleetRun {
            nodes: size,
            start_s,
            converge_s,
            canary_s,
            fleet_canary_s,
            recover_s,
            node_start_s,
            nats_kill,
            link_cut,
            idle,
            rollout,
            rollbacks: std::mem::take(&mut self.rollbacks),
        })
    }

    /// Runs `phase` until no node's canary rolls its release back, at most
    /// [`MAX_ROLLBACKS`] times in the whole run. Every node serves the same guest, so a
    /// rollback is a canary misjudging noise (a busy machine); it is reported, not hidden.
    async fn retried<T>(
        &mut self,
        name: &str,
        mut phase: impl AsyncFnMut(&mut Bed) -> Result<T, Phase>,
    ) -> Result<T, BenchError> {
        loop {
            match phase(self).await {
                Ok(value) => return Ok(value),
                Err(Phase::Failed(e)) => return Err(e),
                Err(Phase::RolledBack(why)) => {
                    self.rollbacks
                        .push(format!("{name}: v{} {why}", self.version));
                    if self.rollbacks.len() > MAX_ROLLBACKS {
                        return Err(BenchError::runtime(format!(
                            "rolled back {} times: {}",
                            self.rollbacks.len(),
                            self.rollbacks.join("; ")
                        )));
                    }
                    // The next attempt starts with the whole fleet live and settled.
                    self.all_live("every node back after a rollback").await?;
                }
            }
        }
    }

    fn record_servers(&self) {
        for i in 0..self.cluster.len() {
            if let Some(pid) = self.cluster.pid(i) {
                self.pids.record(pid, self.cluster.dir());
            }
        }
    }

    fn record_node(&self, i: usize) {
        if let Some((pid, marker)) = self.nodes[i].process() {
            self.pids.record(pid, &marker);
        }
    }

    /// Copies every node's log (`<id>.log`) to `dir`, for a run that failed.
    fn keep_logs(&self, dir: &std::path::Path) {
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        for node in &self.nodes {
            let _ = std::fs::copy(
                self.dir.path().join(&node.id).join("node.log"),
                dir.join(format!("{}.log", node.id)),
            );
        }
        eprintln!("node logs of the failed run: {}", dir.display());
    }

    async fn start_nodes(&mut self, size: usize) -> Result<f64, BenchError> {
        let started = Instant::now();
        let mut starting = Vec::new();
        for i in 0..size {
            let net = self.net.as_ref().map(|n| n.node(i));
            let (node, up) =
                FleetNode::start(&self.setup, self.dir.path(), &format!("n{}", i + 1), net)?;
            self.nodes.push(node);
            self.record_node(i);
            starting.push(up);
        }
        for up in starting {
            tokio::task::block_in_place(|| up.serving())?;
        }
        for node in &self.nodes {
            tokio::spawn(nodes::probe(
                node.addr.clone(),
                node.probe.clone(),
                self.stop.0.clone(),
            ));
        }
        self.all_live(&format!("{size} heartbeats")).await?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// Waits until every node of the bed is in the live fleet (its heartbeat seen).
    async fn all_live(&self, what: &str) -> Result<(), BenchError> {
        let size = self.nodes.len();
        self.observer
            .until(what, PHASE_LIMIT, |v| v.nodes.len() == size)
            .await?;
        Ok(())
    }

    /// Deploys the next version (`extra`: `spark fleet deploy` flags); the generation it
    /// replaced.
    async fn deploy(&mut self, extra: &[&str]) -> Result<u64, BenchError> {
        let before = self.observer.view().await?.generation;
        self.version += 1;
        let path = self.dir.path().join(format!("v{}.toml", self.version));
        std::fs::write(&path, nodes::manifest(&self.setup.component, self.version))?;
        let output = Command::new(&self.setup.spark)
            .args(["fleet", "deploy"])
            .arg(&path)
            .args(["--nats", &self.setup.urls, "--app", APP])
            .args(["--nats-replicas", &self.setup.replicas.to_string()])
            .args(extra)
            .output()?;
        if !output.status.success() {
            return Err(BenchError::runtime(format!(
                "spark fleet deploy: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(before)
    }

    /// Waits for the rollout after generation `before` to complete.
    async fn complete(&self, before: u64) -> Result<View, Phase> {
        let view = self
            .observer
            .until("the fleet rollout complete", PHASE_LIMIT, |v| {
                v.generation > before && (v.complete || v.rolled_back)
            })
            .await?;
        if view.rolled_back {
            return Err(Phase::RolledBack(view.reason));
        }
        Ok(view)
    }

    /// Waits until `node` serves the desired release (after generation `before`); its own
    /// canary rolling it back is a [`Phase::RolledBack`].
    async fn node_current(&self, node: &str, before: u64) -> Result<(), Phase> {
        let view = self
            .observer
            .until(
                &format!("{node} on the desired release"),
                PHASE_LIMIT,
                |v| v.generation > before && (v.current(node) || v.rejected(node)),
            )
            .await?;
        match view.rejected(node) {
            true => Err(Phase::RolledBack(format!("rejected by {node}'s canary"))),
            false => Ok(()),
        }
    }

    /// Waits until every node but `except` serves the release deployed after generation
    /// `before`.
    async fn others_current(&self, except: &str, before: u64) -> Result<(), Phase> {
        let others: Vec<String> = self
            .nodes
            .iter()
            .map(|n| n.id.clone())
            .filter(|n| n != except)
            .collect();
        let view = self
            .observer
            .until("the other nodes on the release", PHASE_LIMIT, |v| {
                v.generation > before
                    && (v.rolled_back || others.iter().all(|n| v.current(n) || v.rejected(n)))
            })
            .await?;
        match view.rolled_back || others.iter().any(|n| view.rejected(n)) {
            true => Err(Phase::RolledBack(format!("while {except} was away"))),
            false => Ok(()),
        }
    }

    /// Waits until every node answers with the current version.
    async fn all_serving(&self) -> Result<(), BenchError> {
        let version = self.version.to_string();
        let deadline = Instant::now() + PHASE_LIMIT;
        for node in &self.nodes {
            loop {
                let addr = node.addr.lock().expect("node address").clone();
                if nodes::version_of(&addr).await.as_deref() == Some(version.as_str()) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(BenchError::NotReady(format!(
                        "{} serving v{version}",
                        node.id
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    fn probes(&self) -> Vec<ProbeCounts> {
        self.nodes.iter().map(|n| n.probe.counts()).collect()
    }

    async fn converge(&mut self) -> Result<(f64, Traffic), Phase> {
        let sample = nats_stats::sample(&self.cluster);
        let started = Instant::now();
        let before = self.deploy(&[]).await?;
        self.complete(before).await?;
        let elapsed = started.elapsed();
        let traffic = nats_stats::rates(
            &sample,
            &nats_stats::sample(&self.cluster),
            elapsed,
            self.nodes.len(),
        );
        self.all_serving().await?;
        Ok((elapsed.as_secs_f64(), traffic))
    }

    async fn idle(&self, window: Duration) -> Traffic {
        let sample = nats_stats::sample(&self.cluster);
        let started = Instant::now();
        tokio::time::sleep(window).await;
        nats_stats::rates(
            &sample,
            &nats_stats::sample(&self.cluster),
            started.elapsed(),
            self.nodes.len(),
        )
    }

    async fn canary(&mut self) -> Result<(f64, f64), Phase> {
        let started = Instant::now();
        let before = self.deploy(&["--canary-nodes", "1"]).await?;
        self.observer
            .until("the canary verdict", PHASE_LIMIT, |v| {
                v.generation > before && (v.waves >= 1 || v.complete || v.rolled_back)
            })
            .await?;
        let canary_s = started.elapsed().as_secs_f64();
        self.complete(before).await?;
        let fleet_canary_s = started.elapsed().as_secs_f64();
        self.all_serving().await?;
        Ok((canary_s, fleet_canary_s))
    }

    /// A node (the second) SIGKILLed; once its heartbeat expired, a deploy without it; then
    /// it restarts and must take that release.
    async fn kill_node(&mut self) -> Result<(f64, f64), Phase> {
        let victim = 1.min(self.nodes.len() - 1);
        let id = self.nodes[victim].id.clone();
        self.nodes[victim].kill();
        self.observer
            .until(&format!("{id}'s heartbeat to expire"), PHASE_LIMIT, |v| {
                !v.nodes.contains_key(&id)
            })
            .await?;
        let before = self.deploy(&[]).await?;
        // The rollout may still count the dead node among its targets (a replica that had
        // not yet expired its heartbeat answered the deploy's listing): then it completes
        // only once the node is back, so the restart waits for the others alone.
        self.others_current(&id, before).await?;
        let started = Instant::now();
        let up = self.nodes[victim].restart(&self.setup)?;
        self.record_node(victim);
        tokio::task::block_in_place(|| up.serving())?;
        let node_start_s = started.elapsed().as_secs_f64();
        self.node_current(&id, before).await?;
        let recover_s = started.elapsed().as_secs_f64();
        self.complete(before).await?;
        self.all_serving().await?;
        Ok((recover_s, node_start_s))
    }

    /// The server leading the desired-state stream (what the rollout's writes go through),
    /// else the first.
    fn desired_leader(&self) -> (usize, bool) {
        for i in 0..self.cluster.len() {
            let Some((200, body)) = self
                .cluster
                .monitor_get(i, "/jsz?accounts=true&streams=true")
            else {
                continue;
            };
            if let Some(leader) = stream_leader(&body, DESIRED_STREAM)
                && let Some(index) =
                    (0..self.cluster.len()).find(|&j| self.cluster.name(j) == leader)
            {
                return (index, true);
            }
        }
        (0, false)
    }

    async fn kill_nats(&mut self) -> Result<NatsKill, Phase> {
        let probes = self.probes();
        let started = Instant::now();
        let before = self.deploy(&[]).await?;
        tokio::time::sleep(MID_ROLLOUT).await;
        let (victim, was_leader) = self.desired_leader();
        self.cluster.kill(victim);
        let result = self.complete(before).await;
        let converge_s = started.elapsed().as_secs_f64();
        // Back whatever happened, so a retry (or the next phase) has three servers.
        let cluster = &mut self.cluster;
        tokio::task::block_in_place(|| cluster.restart(victim)).map_err(BenchError::runtime)?;
        self.record_servers();
        result?;
        let (requests, failed) = self
            .probes()
            .iter()
            .zip(&probes)
            .map(|(now, then)| now.since(then))
            .fold((0, 0), |(r, f), c| (r + c.ok + c.failed, f + c.failed));
        self.all_serving().await?;
        Ok(NatsKill {
            server: self.cluster.name(victim).to_owned(),
            was_leader,
            converge_s,
            requests,
            failed,
        })
    }

    /// The last node's control link cut while the fleet rollout is in its canary stage (on
    /// `n1`, the first id): the node learns of the release only after the restore, so it must
    /// serve its current release throughout, then catch up. The link stays down for
    /// [`LINK_HOLD`].
    async fn cut_link(&mut self) -> Result<LinkCut, Phase> {
        let victim = self.nodes.len() - 1;
        let id = self.nodes[victim].id.clone();
        let probe = self.nodes[victim].probe.clone();
        let counts = probe.counts();
        let current = self.version.to_string();
        // The canary is the first live node by id: with a node missing from the live fleet
        // (heartbeats still catching up after the NATS server kill) it could be the one cut,
        // which would then take the release before its link goes down.
        self.all_live("every node live before the cut").await?;
        let started = Instant::now();
        let before = self.deploy(&["--canary-nodes", "1"]).await?;
        let net = self.net.as_ref().expect("namespaces");
        net.set_link(victim, false)?;
        let cut = Instant::now();
        let at_cut = probe.counts();
        let result = self.while_cut(&id, before, started, cut).await;
        // Restored whatever happened, so the bed's teardown finds the link as it made it.
        let restore = net.set_link(victim, true);
        let restored = Instant::now();
        let while_cut = probe.counts().since(&at_cut);
        let (others_s, dropped) = result?;
        restore?;
        let held_s = restored.duration_since(cut).as_secs_f64();
        self.node_current(&id, before).await?;
        let rejoin_s = restored.elapsed().as_secs_f64();
        self.complete(before).await?;
        let complete_s = restored.elapsed().as_secs_f64();
        let seen = probe.counts().since(&counts);
        self.all_serving().await?;
        Ok(LinkCut {
            node: id,
            held_s,
            dropped,
            others_s,
            rejoin_s,
            complete_s,
            requests: seen.ok + seen.failed,
            failed: seen.failed,
            served_current: while_cut.failed == 0
                && while_cut.versions.keys().all(|v| *v == current),
            versions_while_cut: while_cut.versions,
        })
    }

    /// While `id` is cut off: the other nodes take the release; the link stays down for
    /// [`LINK_HOLD`]. When the others converged, and whether `id` left the live fleet.
    async fn while_cut(
        &self,
        id: &str,
        before: u64,
        started: Instant,
        cut: Instant,
    ) -> Result<(f64, bool), Phase> {
        self.others_current(id, before).await?;
        let others_s = started.elapsed().as_secs_f64();
        let mut dropped = false;
        while cut.elapsed() < LINK_HOLD {
            if let Ok(view) = self.observer.view().await {
                dropped |= !view.nodes.contains_key(id);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok((others_s, dropped))
    }
}

/// The server name leading `stream`, from a `/jsz?accounts=true&streams=true` body.
fn stream_leader(body: &str, stream: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value["account_details"]
        .as_array()?
        .iter()
        .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
        .find(|s| s["name"] == stream)
        .and_then(|s| s["cluster"]["leader"].as_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::stream_leader;

    #[test]
    fn the_leader_of_a_stream_is_read_from_jsz() {
        let body = r#"{"account_details":[{"name":"$G","stream_detail":[
            {"name":"KV_spark-nodes","cluster":{"leader":"s1"}},
            {"name":"KV_spark-desired","cluster":{"leader":"s3"}}]}]}"#;
        assert_eq!(
            stream_leader(body, "KV_spark-desired").as_deref(),
            Some("s3")
        );
        assert_eq!(stream_leader(body, "KV_other"), None);
        assert_eq!(stream_leader("{}", "KV_spark-desired"), None);
    }
}
