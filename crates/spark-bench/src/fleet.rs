//! B8, the fleet: a nats-server and three `spark up --fleet` processes on loopback, under light
//! traffic (each node's own canary needs requests). Measured with the real CLI:
//! - `converge_s`: `spark fleet deploy` (every node at once) until the fleet rollout is
//!   complete (every node's own canary promoted it, and the planner saw it);
//! - `canary_s` / `fleet_canary_s`: a deploy with `--canary-nodes 1` until the canary verdict
//!   releases the next wave, and until the rollout is complete;
//! - `recover_s`: a node killed with SIGKILL while a release is deployed, restarted: from the
//!   restart until its heartbeat reports the desired release as current (`node_start_s` of
//!   that is process start).
//!
//! Each node runs its node-level canary (steps 50%, 100%; 1 s; 5 requests), so the figures are
//! dominated by that analysis, on purpose: it is what a real deploy waits for.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{BenchError, free_port, write_json};

/// Settings of `spark bench fleet`.
pub struct FleetOptions {
    /// The `spark` executable: the three nodes and the `spark fleet` commands.
    pub spark: PathBuf,
    /// The `echo` guest every release serves (its `VERSION` tells releases apart).
    pub component: PathBuf,
    /// The `nats-server` executable (run with JetStream).
    pub nats_server: PathBuf,
    /// Where `fleet.json` goes.
    pub out_dir: PathBuf,
}

/// The B8 result, as written to `fleet.json`; times in seconds.
#[derive(Debug, Serialize)]
pub struct FleetReport {
    /// Nodes in the fleet.
    pub nodes: usize,
    /// `spark fleet deploy` to the fleet rollout complete on every node.
    pub converge_s: f64,
    /// Deploy with `--canary-nodes 1` to the canary verdict releasing the next wave.
    pub canary_s: f64,
    /// The same deploy to the fleet rollout complete.
    pub fleet_canary_s: f64,
    /// Restart of a SIGKILLed node to its heartbeat reporting the desired release as current.
    pub recover_s: f64,
    /// Restart of that node to its `Spark node serving` line (the process-start part of
    /// `recover_s`).
    pub node_start_s: f64,
}

/// Longest wait for any one phase.
const PHASE_LIMIT: Duration = Duration::from_secs(120);

/// Runs B8 and writes `fleet.json`.
pub async fn run(options: &FleetOptions) -> Result<FleetReport, BenchError> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let _nats = Process::nats(&options.nats_server, port, &dir.path().join("js"))?;
    let url = format!("nats://127.0.0.1:{port}");
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(FleetNode::start(options, dir.path(), id, &url)?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(traffic(
        nodes.iter().map(|n| n.addr.clone()).collect(),
        stop.clone(),
    ));
    wait_heartbeats(options, &url).await?;

    let started = Instant::now();
    deploy(options, dir.path(), &url, 2, &[])?;
    wait_rollout(options, &url, "complete").await?;
    let converge_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    deploy(options, dir.path(), &url, 3, &["--canary-nodes", "1"])?;
    wait_rollout(options, &url, "wave 1").await?;
    let canary_s = started.elapsed().as_secs_f64();
    wait_rollout(options, &url, "complete").await?;
    let fleet_canary_s = started.elapsed().as_secs_f64();

    nodes[1].process.kill();
    tokio::time::sleep(Duration::from_secs(11)).await; // its heartbeat expires
    deploy(options, dir.path(), &url, 4, &[])?;
    wait_rollout(options, &url, "complete").await?;
    let started = Instant::now();
    nodes[1].restart(options, &url)?;
    let node_start_s = started.elapsed().as_secs_f64();
    let restarted = nodes[1].addr.clone();
    let extra = tokio::spawn(traffic(vec![restarted], stop.clone()));
    wait_node_current(options, &url, "n2").await?;
    let recover_s = started.elapsed().as_secs_f64();
    wait_all(&nodes, "4").await?;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::join!(load, extra);
    let report = FleetReport {
        nodes: 3,
        converge_s,
        canary_s,
        fleet_canary_s,
        recover_s,
        node_start_s,
    };
    write_json(&options.out_dir, "fleet.json", &report)?;
    Ok(report)
}

/// The summary and the closing `fleet:` line.
pub fn render(report: &FleetReport) -> String {
    format!(
        "B8 fleet: 3 nodes + nats-server on loopback, node canary 50%/100% x 1 s each\n\
         deploy complete on every node: {:.2} s\n\
         canary on 1 node:              {:.2} s (verdict), {:.2} s (whole fleet)\n\
         killed node back on release:   {:.2} s (process start {:.2} s)\n\
         fleet: converge_s={:.2} canary_s={:.2} fleet_canary_s={:.2} recover_s={:.2}\n",
        report.converge_s,
        report.canary_s,
        report.fleet_canary_s,
        report.recover_s,
        report.node_start_s,
        report.converge_s,
        report.canary_s,
        report.fleet_canary_s,
        report.recover_s
    )
}

fn manifest(component: &Path, version: u32) -> String {
    format!(
        "version = 1\n[node]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n[[module]]\nid = \"api\"\ncomponent = \"{}\"\nroutes = [\"/api/...\"]\n[module.env]\nVERSION = \"{version}\"\n[module.rollout]\nsteps = [50, 100]\nstep_duration = \"1s\"\nmin_requests = 5\n",
        component.display()
    )
}

fn deploy(
    options: &FleetOptions,
    dir: &Path,
    url: &str,
    version: u32,
    extra: &[&str],
) -> Result<(), BenchError> {
    let path = dir.join(format!("v{version}.toml"));
    std::fs::write(&path, manifest(&options.component, version))?;
    let output = Command::new(&options.spark)
        .args(["fleet", "deploy"])
        .arg(&path)
        .args(["--nats", url, "--app", "bench"])
        .args(extra)
        .output()?;
    if !output.status.success() {
        return Err(BenchError::runtime(format!(
            "spark fleet deploy: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

async fn wait_heartbeats(options: &FleetOptions, url: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + PHASE_LIMIT;
    while Instant::now() < deadline {
        let output = Command::new(&options.spark)
            .args(["fleet", "status", "--json", "--nats", url])
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        if text.matches("\"node\": \"n").count() == 3 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(BenchError::NotReady("three heartbeats".into()))
}

/// `spark fleet rollout status` output (the first line names the desired release key).
fn rollout_status(options: &FleetOptions, url: &str) -> Result<String, BenchError> {
    let output = Command::new(&options.spark)
        .args([
            "fleet", "rollout", "status", "--nats", url, "--app", "bench",
        ])
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Waits until the fleet rollout's status mentions `marker` (`wave 1`, `complete`).
async fn wait_rollout(options: &FleetOptions, url: &str, marker: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + PHASE_LIMIT;
    while Instant::now() < deadline {
        if rollout_status(options, url)?.contains(marker) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(BenchError::NotReady(format!("the fleet rollout: {marker}")))
}

/// Waits until `node`'s heartbeat says its current release is the desired one (promoted by
/// its own canary, not merely started).
async fn wait_node_current(
    options: &FleetOptions,
    url: &str,
    node: &str,
) -> Result<(), BenchError> {
    let status = rollout_status(options, url)?;
    let key = status
        .split_whitespace()
        .skip_while(|w| *w != "release")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let deadline = Instant::now() + PHASE_LIMIT;
    while Instant::now() < deadline {
        let output = Command::new(&options.spark)
            .args(["fleet", "status", "--nats", url])
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let line = text.lines().find(|l| l.starts_with(&format!("{node} ")));
        if line.is_some_and(|l| l.split_whitespace().nth(2) == Some(key.as_str())) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(BenchError::NotReady(format!("{node} on release {key}")))
}

async fn wait_all(nodes: &[FleetNode], version: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + PHASE_LIMIT;
    for node in nodes {
        while version_of(&node.addr).await.as_deref() != Some(version) {
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

/// The `VERSION` the echo guest reports at `addr` (plain HTTP/1.1 GET).
async fn version_of(addr: &str) -> Option<String> {
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

/// Light load on every node (bounded: stops with `stop` or after ten minutes).
async fn traffic(addrs: Vec<String>, stop: Arc<AtomicBool>) {
    let end = Instant::now() + Duration::from_secs(600);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        for addr in &addrs {
            let _ = version_of(addr).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A child process, killed on drop.
struct Process(Option<Child>);

impl Process {
    fn nats(bin: &Path, port: u16, store: &Path) -> Result<Process, BenchError> {
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| BenchError::Spawn {
                what: bin.display().to_string(),
                source,
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(BenchError::NotReady(format!("nats-server on port {port}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Process(Some(child)))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

struct FleetNode {
    id: String,
    dir: PathBuf,
    addr: String,
    process: Process,
}

impl FleetNode {
    fn start(
        options: &FleetOptions,
        base: &Path,
        id: &str,
        url: &str,
    ) -> Result<FleetNode, BenchError> {
        let dir = base.join(id);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("spark.toml"), manifest(&options.component, 1))?;
        let mut node = FleetNode {
            id: id.into(),
            dir,
            addr: String::new(),
            process: Process(None),
        };
        node.spawn(options, url)?;
        Ok(node)
    }

    fn restart(&mut self, options: &FleetOptions, url: &str) -> Result<(), BenchError> {
        self.process.kill();
        self.spawn(options, url)
    }

    fn spawn(&mut self, options: &FleetOptions, url: &str) -> Result<(), BenchError> {
        let mut child = Command::new(&options.spark)
            .arg("up")
            .arg(self.dir.join("spark.toml"))
            .args(["--fleet", url, "--node-id", &self.id, "--app", "bench"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| BenchError::Spawn {
                what: "spark up".into(),
                source,
            })?;
        let stdout = child.stdout.take().expect("piped stdout");
        self.process = Process(Some(child));
        let mut lines = BufReader::new(stdout).lines();
        let line = loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("Spark node serving") => break line,
                Some(Ok(_)) => {}
                _ => return Err(BenchError::NotReady(format!("node {}", self.id))),
            }
        };
        let start = line.find("http://").map_or(0, |i| i + 7);
        self.addr = line[start..].trim().to_owned();
        std::thread::spawn(move || for _ in lines {});
        Ok(())
    }
}
