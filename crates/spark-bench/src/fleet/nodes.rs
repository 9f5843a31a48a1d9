//! The fleet bench's nodes: real `spark up --fleet` processes (inside their network
//! namespace with `ip netns exec`, or on loopback), and the client traffic each one gets.
//!
//! Every node has a prober of its own: a request to `/api/env` every 20 ms (what the node's
//! own canary needs to judge each step), recording which `VERSION` answered and every
//! failure. A phase reads the counters before and after ([`ProbeCounts::since`]), so "the
//! node kept serving while its link was cut" is a count of failed requests, not a sample.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::net::NodeNet;
use crate::BenchError;

/// The application every node runs.
pub(crate) const APP: &str = "bench";
/// The port a node listens on inside its namespace.
const NAMESPACE_PORT: u16 = 8080;
/// Pause between one prober's requests.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// A probe with no answer within this long is a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a node's `Spark node serving` line.
const START_LIMIT: Duration = Duration::from_secs(180);

/// How every node is started.
#[derive(Debug, Clone)]
pub(crate) struct NodeSetup {
    pub spark: PathBuf,
    pub component: PathBuf,
    /// The cluster's client URLs, comma-separated.
    pub urls: String,
    pub replicas: usize,
}

/// A node's manifest at `version` (the echo guest's `VERSION` tells releases apart). Each node
/// runs its own canary: steps 50% and 100%, 1 s each, 5 requests.
pub(crate) fn manifest(component: &Path, version: u32) -> String {
    format!(
        "version = 1\n[node]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n[[module]]\nid = \"api\"\ncomponent = \"{}\"\nroutes = [\"/api/...\"]\n[module.env]\nVERSION = \"{version}\"\n[module.rollout]\nsteps = [50, 100]\nstep_duration = \"1s\"\nmin_requests = 5\n",
        component.display()
    )
}

/// One `spark up --fleet` process; killed on drop.
pub(crate) struct FleetNode {
    pub id: String,
    dir: PathBuf,
    net: Option<NodeNet>,
    child: Option<Child>,
    /// Where its clients reach it (`ip:port`); shared with its prober.
    pub addr: Arc<Mutex<String>>,
    pub probe: Arc<Probe>,
}

impl FleetNode {
    /// Starts node `id` (without waiting for it: see [`FleetNode::serving`]).
    pub(crate) fn start(
        setup: &NodeSetup,
        base: &Path,
        id: &str,
        net: Option<NodeNet>,
    ) -> Result<(FleetNode, Starting), BenchError> {
        let dir = base.join(id);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("spark.toml"), manifest(&setup.component, 1))?;
        let mut node = FleetNode {
            id: id.into(),
            dir,
            net,
            child: None,
            addr: Arc::default(),
            probe: Arc::default(),
        };
        let starting = node.spawn(setup)?;
        Ok((node, starting))
    }

    /// The process id while it runs, and the path its command line names (its manifest).
    pub(crate) fn process(&self) -> Option<(u32, PathBuf)> {
        let child = self.child.as_ref()?;
        Some((child.id(), self.dir.join("spark.toml")))
    }

    /// Kills the process with SIGKILL.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again (same data directory, same id).
    pub(crate) fn restart(&mut self, setup: &NodeSetup) -> Result<Starting, BenchError> {
        self.kill();
        self.spawn(setup)
    }

    fn spawn(&mut self, setup: &NodeSetup) -> Result<Starting, BenchError> {
        let mut command = match &self.net {
            Some(net) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &net.netns]).arg(&setup.spark);
                c
            }
            None => Command::new(&setup.spark),
        };
        command
            .arg("up")
            .arg(self.dir.join("spark.toml"))
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--fleet", &setup.urls, "--node-id", &self.id, "--app", APP])
            .args(["--nats-replicas", &setup.replicas.to_string()]);
        if self.net.is_some() {
            // Every interface of its own namespace: the service link for clients; the admin
            // API on the namespace's loopback.
            command.args([
                "--listen",
                &format!("0.0.0.0:{NAMESPACE_PORT}"),
                "--admin",
                "127.0.0.1:9090",
            ]);
        }
        let log = std::fs::File::create(self.dir.join("node.log"))?;
        let mut child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|source| BenchError::Spawn {
                what: "spark up".into(),
                source,
            })?;
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("Spark node serving")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line);
                }
            }
        });
        Ok(Starting {
            id: self.id.clone(),
            service: self.net.as_ref().map(|n| n.service),
            started: Instant::now(),
            line: rx,
            addr: self.addr.clone(),
        })
    }
}

impl Drop for FleetNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node process on its way up.
pub(crate) struct Starting {
    id: String,
    service: Option<std::net::Ipv4Addr>,
    started: Instant,
    line: std::sync::mpsc::Receiver<String>,
    addr: Arc<Mutex<String>>,
}

impl Starting {
    /// Waits for the `Spark node serving` line; sets the node's address and returns how
    /// long the process took to serve.
    pub(crate) fn serving(self) -> Result<Duration, BenchError> {
        let left = START_LIMIT.saturating_sub(self.started.elapsed());
        let line = self
            .line
            .recv_timeout(left)
            .map_err(|_| BenchError::NotReady(format!("node {} (see its node.log)", self.id)))?;
        let addr = match self.service {
            Some(ip) => format!("{ip}:{NAMESPACE_PORT}"),
            None => {
                let start = line.find("http://").map_or(0, |i| i + 7);
                line[start..].trim().to_owned()
            }
        };
        *self.addr.lock().expect("node address") = addr;
        Ok(self.started.elapsed())
    }
}

/// One node's prober counters.
#[derive(Debug, Default)]
pub(crate) struct Probe {
    counts: Mutex<ProbeCounts>,
}

/// Answers and failures so far, and which versions answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProbeCounts {
    pub ok: u64,
    pub failed: u64,
    pub versions: BTreeMap<String, u64>,
}

impl ProbeCounts {
    /// What happened between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &ProbeCounts) -> ProbeCounts {
        ProbeCounts {
            ok: self.ok - earlier.ok,
            failed: self.failed - earlier.failed,
            versions: self
                .versions
                .iter()
                .map(|(v, n)| (v.clone(), n - earlier.versions.get(v).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}

impl Probe {
    pub(crate) fn counts(&self) -> ProbeCounts {
        self.counts.lock().expect("probe counts").clone()
    }

    fn record(&self, version: Option<String>) {
        let mut counts = self.counts.lock().expect("probe counts");
        match version {
            Some(v) => {
                counts.ok += 1;
                *counts.versions.entry(v).or_default() += 1;
            }
            None => counts.failed += 1,
        }
    }
}

/// Probes one node until `stop` (bounded at an hour).
pub(crate) async fn probe(addr: Arc<Mutex<String>>, probe: Arc<Probe>, stop: Arc<AtomicBool>) {
    let end = Instant::now() + Duration::from_secs(3600);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let target = addr.lock().expect("node address").clone();
        let version = tokio::time::timeout(PROBE_TIMEOUT, version_of(&target))
            .await
            .ok()
            .flatten();
        probe.record(version);
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// The `VERSION` the echo guest reports at `addr` (plain HTTP/1.1 GET).
pub(crate) async fn version_of(addr: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /api/env HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    let start = text.find("\"VERSION\":\"")? + 11;
    let end = text[start..].find('"')? + start;
    Some(text[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::ProbeCounts;

    #[test]
    fn counts_since_an_earlier_reading() {
        let earlier = ProbeCounts {
            ok: 10,
            failed: 1,
            versions: [("1".to_owned(), 10)].into(),
        };
        let now = ProbeCounts {
            ok: 25,
            failed: 1,
            versions: [("1".to_owned(), 12), ("2".to_owned(), 13)].into(),
        };
        assert_eq!(
            now.since(&earlier),
            ProbeCounts {
                ok: 15,
                failed: 0,
                versions: [("1".to_owned(), 2), ("2".to_owned(), 13)].into(),
            }
        );
    }
}
