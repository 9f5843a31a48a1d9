//! Releases through the `spark` binary against a real node process: deploy, follow, promote,
//! roll back; and kill -9 in the middle of a rollout and of promotions, after which the node
//! comes back serving one consistent release and losing no committed one.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spark_testkit::{get, guest};

fn spark() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spark"));
    command.env("RUST_LOG", "warn");
    command
}

fn manifest(version: u32, step: &str) -> String {
    format!(
        "version = 1\n[node]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n[[module]]\nid = \"api\"\ncomponent = \"{}\"\nroutes = [\"/api/...\"]\n[module.env]\nVERSION = \"{version}\"\n[module.rollout]\nsteps = [20, 100]\nstep_duration = \"{step}\"\nmin_requests = 5\n",
        guest("echo").display()
    )
}

/// A `spark up` process; killed (SIGKILL) when dropped.
struct Node {
    child: Child,
    addr: String,
    admin: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn start(path: &Path) -> Node {
        let mut child = spark()
            .arg("up")
            .arg(path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut address = |marker: &str| loop {
            let line = lines.next().expect("the node exited early").unwrap();
            if line.contains(marker) {
                let start = line.find("http://").unwrap() + 7;
                let end = line[start..]
                    .find(['/', ' '])
                    .map_or(line.len(), |i| start + i);
                return line[start..end].to_owned();
            }
        };
        let addr = address("Spark node serving");
        let admin = address("Admin:");
        std::thread::spawn(move || for _ in lines {});
        Node { child, addr, admin }
    }

    fn cli(&self, data_dir: &Path, args: &[&str]) -> (bool, String) {
        spark_testkit::run_command(
            spark()
                .args(args)
                .args(["--admin", &self.admin, "--data-dir"])
                .arg(data_dir),
        )
    }

    async fn version(&self) -> String {
        let reply = get(&format!("http://{}/api/env", self.addr)).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        let env: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        env["VERSION"].as_str().unwrap().to_owned()
    }
}

struct Site {
    _dir: tempfile::TempDir,
    base: PathBuf,
    data: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        Site {
            data: base.join(".spark"),
            base,
            _dir: dir,
        }
    }

    /// Writes manifest `name` and returns its path.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.base.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_follow_promote_and_roll_back_with_the_cli() {
    let site = Site::new();
    let node = Node::start(&site.write("spark.toml", &manifest(1, "1h")));
    assert_eq!(node.version().await, "1");

    let v2 = site.write("v2.toml", &manifest(2, "1h"));
    let (ok, out) = node.cli(
        &site.data,
        &["deploy", v2.to_str().unwrap(), "--note", "price fix"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("uploaded  api") && out.contains(": rollout") && out.contains("canary: api"),
        "{out}"
    );
    let (ok, out) = node.cli(&site.data, &["rollout", "status"]);
    assert!(
        ok && out.contains("20.0%") && out.contains("step 1 of 2"),
        "{out}"
    );
    let (ok, out) = node.cli(&site.data, &["deploy", v2.to_str().unwrap()]);
    assert!(
        !ok && out.contains("409") && out.contains("in progress"),
        "a second deploy is refused: {out}"
    );

    let (ok, out) = node.cli(&site.data, &["rollout", "promote"]);
    assert!(ok, "{out}");
    assert_eq!(node.version().await, "2");
    let (ok, out) = node.cli(&site.data, &["rollout", "status"]);
    assert!(
        ok && out.contains("no rollout in progress")
            && out.contains("last rollout: r2-")
            && out.contains("promoted by spark CLI"),
        "how the last rollout ended: {out}"
    );
    let (ok, out) = node.cli(&site.data, &["releases"]);
    assert!(
        ok && out.contains("price fix") && out.lines().filter(|l| l.starts_with('r')).count() == 2,
        "{out}"
    );

    let (ok, out) = node.cli(&site.data, &["rollback"]);
    assert!(ok && out.contains("rolled back: serving r1-"), "{out}");
    assert_eq!(node.version().await, "1");
    let (ok, out) = node.cli(&site.data, &["rollback"]);
    assert!(
        !ok && out.contains("roll back"),
        "a bare rollback never goes forward: {out}"
    );
    assert_eq!(node.version().await, "1");
    let (ok, out) = node.cli(&site.data, &["events"]);
    let promoted = out.find("promoted").unwrap_or(usize::MAX);
    let rolled_back = out.find("rollback from").unwrap_or(0);
    assert!(
        ok && promoted < rolled_back && out.contains("TIME (UTC)"),
        "the story, oldest first: {out}"
    );
    let (ok, out) = node.cli(&site.data, &["events", "--kind", "promoted"]);
    assert!(ok && !out.contains("rollback from"), "{out}");
    let (ok, out) = node.cli(&site.data, &["status"]);
    assert!(ok && out.contains("release r1-"), "{out}");
}

/// Requests to `addr` in the background until the returned flag is set.
fn traffic(addr: &str) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, url) = (stop.clone(), format!("http://{addr}/api/env"));
    tokio::spawn(async move {
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = get(&url).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_wait_follows_the_rollout_to_promotion_or_rollback() {
    let site = Site::new();
    let node = Node::start(&site.write("spark.toml", &manifest(1, "200ms")));
    let stop = traffic(&node.addr);

    let v2 = site.write("v2.toml", &manifest(2, "200ms"));
    let args = ["deploy", v2.to_str().unwrap(), "--wait", "--timeout", "60"];
    let (ok, out) = tokio::task::block_in_place(|| node.cli(&site.data, &args));
    assert!(
        ok && out.contains("MiB in ") && out.contains("step 1 of 2"),
        "upload time and the steps as they pass: {out}"
    );
    assert!(out.contains("promoted: serving r2-"), "{out}");

    let bad =
        manifest(3, "200ms").replace("VERSION = \"3\"", "VERSION = \"3\"\nFAIL_PERCENT = \"100\"");
    let v3 = site.write("v3.toml", &bad);
    let args = ["deploy", v3.to_str().unwrap(), "--wait", "--timeout", "60"];
    let (ok, out) = tokio::task::block_in_place(|| node.cli(&site.data, &args));
    assert!(
        !ok && out.contains("rolled back:") && out.contains("serving r2-"),
        "a failing canary ends the wait with the reason: {out}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(node.version().await, "2");
    let (ok, out) = node.cli(&site.data, &["releases"]);
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(ok && out.contains("CREATED (UTC)"), "{out}");
    assert!(line("r3-").contains("rolled back"), "{out}");
    assert!(line("r2-").contains("serving"), "{out}");
    assert!(line("r1-").contains("replaced"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_rollout_resumes_it() {
    let site = Site::new();
    let first = site.write("spark.toml", &manifest(1, "1h"));
    let node = Node::start(&first);
    let v2 = site.write("v2.toml", &manifest(2, "1h"));
    let (ok, out) = node.cli(&site.data, &["deploy", v2.to_str().unwrap()]);
    assert!(ok, "{out}");
    drop(node); // SIGKILL

    let node = Node::start(&first);
    let (ok, out) = node.cli(&site.data, &["rollout", "status"]);
    assert!(
        ok && out.contains("rolling out r2-") && out.contains("20.0%"),
        "the rollout resumed: {out}"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        seen.insert(node.version().await);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec!["1", "2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_promotions_loses_no_committed_release() {
    let site = Site::new();
    let first = site.write("spark.toml", &manifest(1, "100ms"));
    let mut node = Node::start(&first);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut committed = 1;
    for version in 2..=5u32 {
        let next = site.write(&format!("v{version}.toml"), &manifest(version, "100ms"));
        let (ok, out) = node.cli(&site.data, &["deploy", next.to_str().unwrap()]);
        assert!(ok, "{out}");
        // Traffic drives the canary through its steps; the kill lands somewhere in them.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = Duration::from_millis(100 + seed % 900);
        let started = Instant::now();
        while started.elapsed() < kill_after {
            let _ = get(&format!("http://{}/api/env", node.addr)).await;
        }
        drop(node); // SIGKILL
        node = Node::start(&first);
        let (ok, status) = node.cli(&site.data, &["rollout", "status"]);
        assert!(ok, "{status}");
        let current: u32 = status
            .lines()
            .next()
            .unwrap()
            .split("current release: r")
            .nth(1)
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            current >= committed,
            "a committed release was lost: serving r{current} after r{committed}\n{status}"
        );
        if status.contains("no rollout in progress") {
            // Serving exactly one version, the current release's.
            let expected = current.to_string();
            for _ in 0..10 {
                assert_eq!(node.version().await, expected, "{status}");
            }
        } else {
            assert!(
                status.contains(&format!("rolling out r{version}-")),
                "{status}"
            );
            let (ok, out) = node.cli(&site.data, &["rollout", "promote"]);
            assert!(ok, "{out}");
        }
        committed = current;
        let (ok, releases) = node.cli(&site.data, &["releases"]);
        assert!(
            ok && releases.lines().filter(|l| l.starts_with('r')).count() == version as usize,
            "every release survives: {releases}"
        );
    }
}
