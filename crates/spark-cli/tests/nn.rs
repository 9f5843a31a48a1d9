//! Inference fallbacks that need a process of their own (the Vulkan driver is found through
//! the environment, and ONNX Runtime is bound once per process): a real `spark up` serving
//! the `classify` guest, real HTTP, `spark status` reading it, a graceful stop at the end.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use spark_testkit::{get, guest, nn, post};

fn spark() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spark"));
    command.env("RUST_LOG", "warn");
    command
}

/// A `spark up` process, killed if the test fails before stopping it.
struct Node {
    child: Child,
    http: String,
    admin: String,
    /// Kept open: the node prints to stdout after startup, and a closed pipe would kill it.
    _stdout: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn up(dir: &Path, nn_table: &str, env: &[(&str, &str)]) -> Node {
        let manifest = dir.join("spark.toml");
        // `classify` passes its embedded model as bytes: the module needs an `nn_model` limit.
        let text = format!(
            "version = 1\n[node]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n[nn]\nrediscover = \"0s\"\nallow_software_adapters = true\n{nn_table}\n\n[[module]]\nid = \"classify\"\ncomponent = {:?}\nroutes = [\"/nn/...\"]\nhealth = \"/nn/health\"\n[module.limits]\nnn_model = \"1MiB\"\n",
            guest("classify").display().to_string()
        );
        std::fs::write(&manifest, text).unwrap();
        let mut command = spark();
        command.arg("up").arg(&manifest).stdout(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut address = |marker: &str| {
            for line in lines.by_ref() {
                let line = line.unwrap();
                if line.contains(marker) {
                    let start = line.find("http://").expect("an address") + "http://".len();
                    let end = line[start..]
                        .find(['/', ' '])
                        .map_or(line.len(), |i| start + i);
                    return line[start..end].to_owned();
                }
            }
            panic!("spark up ended before printing {marker:?}");
        };
        let http = address("Spark node serving");
        let admin = address("Admin:");
        Node {
            child,
            http,
            admin,
            _stdout: lines,
        }
    }

    async fn classify(&self, image: &[u8], target: &str) -> Value {
        let url = format!("http://{}/nn/classify?target={target}", self.http);
        let reply = post(&url, image).await.unwrap();
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(reply.status, 200, "{body}");
        body
    }

    fn status(&self, dir: &Path) -> String {
        let output = spark()
            .args(["status", "--admin", &self.admin, "--data-dir"])
            .arg(dir.join(".spark"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    async fn stop(mut self) {
        let health = get(&format!("http://{}/nn/health", self.http))
            .await
            .unwrap();
        assert_eq!(health.status, 200, "the node stays up");
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "no graceful exit");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "graceful stop: {status}");
    }
}

/// The status line of `backend` in `spark status`.
fn line<'a>(status: &'a str, backend: &str) -> &'a str {
    status
        .lines()
        .find(|l| l.trim_start().starts_with(backend))
        .unwrap_or_else(|| panic!("no {backend} in:\n{status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vulkan_driver_hidden_the_node_serves_on_cpu_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::up(
        dir.path(),
        &nn::ort_line(),
        &[("VK_DRIVER_FILES", "/nonexistent.json")],
    );
    for (image, label) in nn::samples().into_iter().take(2) {
        let answer = node.classify(&image, "gpu").await;
        assert_eq!(answer["class"], label, "{answer}");
        assert_eq!(answer["device"], "cpu", "{answer}");
    }
    let status = node.status(dir.path());
    let webgpu = line(&status, "ort-webgpu");
    assert!(
        webgpu.contains("not used") && webgpu.contains("Vulkan"),
        "{status}"
    );
    // Which backend serves each target of the model, measured, and why.
    assert!(status.contains("selection: measured"), "{status}");
    let gpu = line(&status, "gpu  ->");
    assert!(
        gpu.contains("measuring") || gpu.contains("fastest measured"),
        "{status}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bogus_onnx_runtime_library_leaves_tract_serving() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("libonnxruntime.so.1");
    std::fs::write(&bogus, b"\x7fELF but not really a library").unwrap();
    let table = format!("ort_library = {:?}", bogus.display().to_string());
    let node = Node::up(dir.path(), &table, &[]);
    for (image, label) in nn::samples().into_iter().take(2) {
        let answer = node.classify(&image, "gpu").await;
        assert_eq!(answer["class"], label, "{answer}");
        assert_eq!(answer["backend"], "tract", "{answer}");
    }
    let status = node.status(dir.path());
    let ort_cpu = line(&status, "ort-cpu");
    assert!(ort_cpu.contains("not used"), "{status}");
    assert!(
        status.contains(&format!(
            "cannot load ONNX Runtime from {}",
            bogus.display()
        )),
        "{status}"
    );
    node.stop().await;
}
