//! A fleet on loopback for the tests: nats-server, `spark up --fleet` processes, traffic.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spark_fleet::{Fleet, FleetConfig};
use spark_testkit::{get, guest};

pub(crate) fn spark() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spark"));
    command.env("RUST_LOG", "warn");
    command
}

/// The application manifest: `echo` answering `VERSION`, failing `fail` percent of requests,
/// with a node-level canary of two short steps.
pub(crate) fn manifest(version: u32, fail: u32) -> String {
    format!(
        "version = 1\n[node]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n[[module]]\nid = \"api\"\ncomponent = \"{}\"\nroutes = [\"/api/...\"]\n[module.env]\nVERSION = \"{version}\"\nFAIL_PERCENT = \"{fail}\"\n[module.rollout]\nsteps = [50, 100]\nstep_duration = \"1s\"\nmin_requests = 5\n",
        guest("echo").display()
    )
}

/// A fleet node: its directory persists across restarts; the process is SIGKILLed on drop.
pub(crate) struct Node {
    pub id: String,
    dir: PathBuf,
    url: String,
    labels: Vec<String>,
    /// More `spark up` arguments (e.g. `--trust-key`).
    extra: Vec<String>,
    child: Option<Child>,
    pub addr: String,
    /// The admin listener's address.
    pub admin: String,
}

impl Node {
    pub(crate) fn start(base: &Path, id: &str, url: &str, labels: &[&str]) -> Node {
        Node::start_with(base, id, url, labels, &[])
    }

    /// [`Node::start`] with more `spark up` arguments.
    pub(crate) fn start_with(
        base: &Path,
        id: &str,
        url: &str,
        labels: &[&str],
        extra: &[&str],
    ) -> Node {
        Node::start_app(base, id, url, labels, extra, &manifest(1, 0))
    }

    /// [`Node::start_with`] serving `manifest` (a `spark.toml`'s text).
    pub(crate) fn start_app(
        base: &Path,
        id: &str,
        url: &str,
        labels: &[&str],
        extra: &[&str],
        manifest: &str,
    ) -> Node {
        let dir = base.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("spark.toml"), manifest).unwrap();
        let mut node = Node {
            id: id.into(),
            dir,
            url: url.into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            addr: String::new(),
            admin: String::new(),
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let mut command = spark();
        command.arg("up").arg(self.dir.join("spark.toml")).args([
            "--fleet",
            &self.url,
            "--node-id",
            &self.id,
            "--app",
            "shop",
        ]);
        for label in &self.labels {
            command.args(["--label", label]);
        }
        command.args(&self.extra);
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = loop {
            let line = lines.next().expect("the node exited early").unwrap();
            if line.contains("Spark node serving") {
                break line;
            }
        };
        let start = line.find("http://").unwrap() + 7;
        self.addr = line[start..].trim().to_owned();
        let admin = loop {
            let line = lines.next().expect("the node exited early").unwrap();
            if let Some(rest) = line.strip_prefix("Admin: http://") {
                break rest.split('/').next().unwrap().to_owned();
            }
        };
        self.admin = admin;
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// `spark top --once` against this node: success and output.
    pub(crate) fn top(&self) -> (bool, String) {
        run(spark()
            .args(["top", "--once", "--admin", &self.admin, "--data-dir"])
            .arg(self.dir.join(".spark")))
    }

    /// `spark status` against this node: success and output.
    pub(crate) fn status(&self) -> (bool, String) {
        run(spark()
            .args(["status", "--admin", &self.admin, "--data-dir"])
            .arg(self.dir.join(".spark")))
    }

    /// SIGKILL.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The VERSION the node serves now (None: no 200 answer).
    pub(crate) async fn version(&self) -> Option<String> {
        let reply = get(&format!("http://{}/api/env", self.addr)).await.ok()?;
        if reply.status != 200 {
            return None;
        }
        let env: serde_json::Value = serde_json::from_slice(&reply.body).ok()?;
        env["VERSION"].as_str().map(str::to_owned)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Requests to every node until stopped; counts answers that are not 200 or a transport error.
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    pub(crate) fn start(addrs: Vec<String>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, f, halt) = (sent.clone(), failed.clone(), stop.clone());
        let task = tokio::spawn(async move {
            // Bounded: at most 10 minutes of requests.
            let end = Instant::now() + Duration::from_secs(600);
            while !halt.load(Ordering::Relaxed) && Instant::now() < end {
                for addr in &addrs {
                    let reply = get(&format!("http://{addr}/api/env")).await;
                    s.fetch_add(1, Ordering::Relaxed);
                    if !matches!(reply, Ok(r) if r.status == 200) {
                        f.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Traffic {
            stop,
            sent,
            failed,
            task: Some(task),
        }
    }

    pub(crate) async fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Runs `spark fleet ARGS --nats URL --app shop`; (success, stdout+stderr).
pub(crate) fn fleet_cli(url: &str, args: &[&str]) -> (bool, String) {
    run(spark()
        .arg("fleet")
        .args(args)
        .args(["--nats", url, "--app", "shop"]))
}

/// Runs `command`; returns whether it succeeded and its stdout then stderr.
pub(crate) fn run(command: &mut Command) -> (bool, String) {
    spark_testkit::run_command(command)
}

/// Writes manifest `name` in `base` and returns its path as a string.
pub(crate) fn write(base: &Path, name: &str, text: &str) -> String {
    let path = base.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

pub(crate) async fn connect(url: &str) -> Fleet {
    Fleet::connect(&FleetConfig::new(url)).await.unwrap()
}

/// Every node serves `version`.
pub(crate) async fn all_serve(nodes: &[&Node], version: &str) -> bool {
    for node in nodes {
        if node.version().await.as_deref() != Some(version) {
            return false;
        }
    }
    true
}

/// The number of live nodes in the fleet.
pub(crate) async fn live_nodes(fleet: &Fleet) -> usize {
    fleet.app_nodes("shop").await.map_or(0, |n| n.len())
}
