//! The `spark` binary as users run it: real processes, real signals, real HTTP.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use spark_testkit::{get, guest};

fn spark() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spark"));
    command.env("RUST_LOG", "warn");
    command
}

fn write_manifest(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("spark.toml");
    std::fs::write(&path, spark_testkit_expand(text)).unwrap();
    path
}

fn spark_testkit_expand(text: &str) -> String {
    text.replace("{hello}", &guest("hello").display().to_string())
        .replace("{echo}", &guest("echo").display().to_string())
        .replace("{job}", &guest("inventory-sync").display().to_string())
        .replace("{spin-rs}", &guest("spin-rs").display().to_string())
}

fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

const GOOD: &str = r#"version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"

[[module]]
id = "hello"
component = "{hello}"
routes = ["/hello"]

[[module]]
id = "api"
component = "{echo}"
routes = ["/api/..."]
allowed_outbound_hosts = ["http://127.0.0.1:*"]

[[module]]
id = "sync"
component = "{job}"
schedule = { every = "1h" }
"#;

#[test]
fn check_accepts_a_good_manifest_and_lists_its_modules() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), GOOD);
    let (output, stdout, stderr) = run(spark().arg("check").arg(&manifest));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok    hello") && stdout.contains("wasi:http/proxy"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok    sync") && stdout.contains("wasi:cli/command"),
        "{stdout}"
    );
    assert!(stdout.contains("3 module(s) valid"), "{stdout}");
}

#[test]
fn check_names_file_line_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD.replace(
        "routes = [\"/hello\"]",
        "routes = [\"/hello\"]\nmemory_limit = \"1GiB\"",
    );
    let manifest = write_manifest(dir.path(), &bad);
    let (output, _, stderr) = run(spark().arg("check").arg(&manifest));
    assert!(!output.status.success());
    let expected = format!("{}:10:1: unknown field `memory_limit`", manifest.display());
    assert!(
        stderr.contains(&expected),
        "expected {expected:?} in:\n{stderr}"
    );
}

#[test]
fn check_reports_a_corrupt_component() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let text = GOOD.replace("{job}", &junk.display().to_string());
    let manifest = write_manifest(dir.path(), &text);
    let (output, stdout, stderr) = run(spark().arg("check").arg(&manifest));
    assert!(!output.status.success());
    assert!(
        stdout.contains("FAIL  sync") && stdout.contains("is not a valid component"),
        "{stdout}"
    );
    assert!(stderr.contains("1 module(s) failed: sync"), "{stderr}");
}

/// A spawned `spark` process that is killed if the test fails.
struct Process(
    Child,
    Option<std::io::Lines<BufReader<std::process::ChildStdout>>>,
);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn spawn(command: &mut Command) -> Process {
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Process(child, Some(lines))
    }

    /// Reads stdout until a line containing `marker`; returns that line.
    fn line_with(&mut self, marker: &str) -> String {
        let lines = self.1.as_mut().unwrap();
        for line in lines {
            let line = line.unwrap();
            if line.contains(marker) {
                return line;
            }
        }
        panic!("process ended before printing {marker:?}");
    }

    /// Reads stdout until a line containing `marker`; returns the first `http://ADDR` on it.
    fn address_after(&mut self, marker: &str) -> String {
        let lines = self.1.as_mut().unwrap();
        for line in lines {
            let line = line.unwrap();
            if line.contains(marker) {
                let start = line.find("http://").expect("an address") + "http://".len();
                let end = line[start..]
                    .find(['/', ' '])
                    .map_or(line.len(), |i| start + i);
                return line[start..end].to_owned();
            }
        }
        panic!("process ended before printing {marker:?}");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.0.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the process did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_reports_status_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), GOOD);
    let log_path = dir.path().join("node.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut node = Process::spawn(
        spark()
            .arg("up")
            .arg(&manifest)
            .env("RUST_LOG", "info")
            .stderr(log),
    );
    let banner = node.line_with("Spark node serving");
    assert!(banner.contains("of release r1-"), "{banner}");
    let addr = banner
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("{banner}"))
        .trim()
        .to_owned();
    let job_hint = node.line_with("run now:");
    let admin = node.address_after("Admin:");

    // The banner's job hint carries the token's path and the admin address: as printed, it runs.
    let token_path = job_hint
        .split("$(cat ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("{job_hint}"));
    let token = std::fs::read_to_string(token_path).unwrap();
    let url = format!("http://{admin}/v1/jobs/sync/run");
    assert!(job_hint.contains(&url), "{job_hint}");
    let bearer = format!("Bearer {}", token.trim());
    let ran = spark_testkit::request_with("POST", &url, &[("authorization", &bearer)], b"")
        .await
        .unwrap();
    assert_eq!(ran.status, 200, "{}", ran.text());

    let hello = get(&format!("http://{addr}/hello")).await.unwrap();
    assert_eq!(
        (hello.status, hello.text().as_str()),
        (200, "Hello from Spark!\n")
    );

    let data_dir = dir.path().join(".spark");
    let (output, stdout, stderr) = run(spark()
        .args(["status", "--admin", &admin, "--data-dir"])
        .arg(&data_dir));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("hello") && stdout.contains("/api/...") && stdout.contains("every 3600s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("loaded code: ") && stdout.contains(" MiB (0 module(s) evicted"),
        "the predictor's budget bounds loaded code: {stdout}"
    );

    // Run in the manifest's folder, an admin command finds the node's token by itself.
    let (output, stdout, stderr) = run(spark()
        .args(["status", "--admin", &admin])
        .current_dir(dir.path()));
    assert!(output.status.success(), "{stdout}\n{stderr}");

    // The data directory defaults to `.spark` beside the manifest, holding the AOT cache.
    assert!(dir.path().join(".spark/aot").is_dir());

    node.signal("TERM");
    assert!(
        node.wait_exit(Duration::from_secs(15)).success(),
        "a graceful stop exits 0"
    );

    // Written to a file, the log has no colour codes, and a job run is one INFO line: the
    // guest's own output (the run's outcome is in /metrics and at debug level).
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains('\u{1b}'), "no ANSI escapes in a file:\n{log}");
    let runs = log
        .lines()
        .filter(|l| l.contains("INFO") && l.contains("inventory-sync store="))
        .count();
    assert!(runs >= 1, "the guest's line is logged:\n{log}");
    let job_lines = log
        .lines()
        .filter(|l| l.contains("INFO") && l.contains("module=sync") && !l.contains("module loaded"))
        .count();
    assert_eq!(job_lines, runs, "one INFO line per job run:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_single_component_at_the_root() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Process::spawn(
        spark()
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .arg(guest("hello")),
    );
    let addr = server.address_after("Serving");
    for path in ["/", "/any/path?x=1"] {
        let reply = get(&format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "Hello from Spark!\n")
        );
    }
    server.signal("INT");
    assert!(server.wait_exit(Duration::from_secs(15)).success());
}

#[test]
fn serve_blames_a_missing_component_not_the_store() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("nope.wasm");
    let (output, _, stderr) = run(spark()
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg(&missing));
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot read") && stderr.contains("nope.wasm") && !stderr.contains("store"),
        "{stderr}"
    );
}

/// `spark serve`'s flags reach the guest and its limits (they become the manifest the node
/// serves and re-reads, not settings beside it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_applies_its_flags_to_the_module() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Process::spawn(
        spark()
            .args(["serve", "--addr", "127.0.0.1:0", "-e", "STORE=single"])
            .args(["--concurrency", "3", "--timeout", "7s", "--data-dir"])
            .arg(data.path())
            .arg(guest("echo")),
    );
    let banner = server.line_with("Serving");
    let addresses: Vec<&str> = banner
        .split("http://")
        .skip(1)
        .map(|rest| rest.split(['/', ' ', ')']).next().unwrap())
        .collect();
    let [addr, admin] = addresses[..] else {
        panic!("{banner}")
    };
    let env = get(&format!("http://{addr}/env")).await.unwrap();
    let env: serde_json::Value = serde_json::from_str(&env.text()).unwrap();
    assert_eq!(env["STORE"], "single", "{env}");
    let metrics = get(&format!("http://{admin}/metrics")).await.unwrap();
    let limit = spark_testkit::metric(
        &metrics.text(),
        r#"spark_module_concurrency_limit{module="app"}"#,
    );
    assert_eq!(limit, Some(3.0), "{}", metrics.text());
    server.signal("INT");
    assert!(server.wait_exit(Duration::from_secs(15)).success());
}

/// A signal sent the moment `spark serve` says it serves (a supervisor's SIGTERM, a test's
/// SIGINT) shuts it down gracefully: the handlers are in place before the banner, so the
/// signal never meets the default action, which kills the process.
#[test]
fn a_signal_right_after_the_banner_still_shuts_down_gracefully() {
    for signal in ["INT", "TERM"] {
        let data = tempfile::tempdir().unwrap();
        let mut server = Process::spawn(
            spark()
                .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
                .arg(data.path())
                .arg(guest("hello")),
        );
        server.line_with("Serving");
        server.signal(signal);
        let status = server.wait_exit(Duration::from_secs(15));
        assert!(status.success(), "SIG{signal}: {status}");
    }
}

/// Like `wasmtime serve`, several `spark serve` run side by side on the default data directory
/// (each component and address gets its own store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_side_by_side_on_the_default_data_dir() {
    let cache = tempfile::tempdir().unwrap();
    let mut servers: Vec<(Process, &str)> = [("hello", "Hello from Spark!\n"), ("echo", "")]
        .into_iter()
        .map(|(name, text)| {
            let server = Process::spawn(
                spark()
                    .env("XDG_CACHE_HOME", cache.path())
                    .args(["serve", "--addr", "127.0.0.1:0"])
                    .arg(guest(name)),
            );
            (server, text)
        })
        .collect();
    for (server, text) in &mut servers {
        let addr = server.address_after("Serving");
        let reply = get(&format!("http://{addr}/")).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        if !text.is_empty() {
            assert_eq!(reply.text(), *text);
        }
    }
    for (server, _) in servers {
        server.signal("INT");
        assert!(server.wait_exit(Duration::from_secs(15)).success());
    }
    let dirs = std::fs::read_dir(cache.path().join("spark/serve"))
        .unwrap()
        .count();
    assert_eq!(dirs, 2, "one data directory per component and address");
}

#[test]
fn up_refuses_a_bad_manifest_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), &GOOD.replace("\"/api/...\"", "\"/hello\""));
    let (output, _, stderr) = run(spark().arg("up").arg(&manifest));
    assert!(!output.status.success());
    assert!(
        stderr.contains("duplicate route /hello (already served by module 'hello')"),
        "{stderr}"
    );
}

/// Variables from the environment (`SPARK_VARIABLE_<NAME>`) override the manifest's defaults;
/// a secret's value appears neither in `spark status` nor in the node's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_takes_variables_from_the_environment_and_keeps_secrets_out_of_sight() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        r#"version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"

[variables]
greeting = { default = "hello" }
token = { required = true, secret = true }

[[module]]
id = "spin"
component = "{spin-rs}"
routes = ["/..."]
key_value_stores = ["default"]
[module.variables]
message = "{{ greeting }}, world"
token = "{{ token }}"
"#,
    );
    let log_path = dir.path().join("node.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut node = Process::spawn(
        spark()
            .arg("up")
            .arg(&manifest)
            .env("RUST_LOG", "debug")
            .env("SPARK_VARIABLE_GREETING", "bonjour")
            .env("SPARK_VARIABLE_TOKEN", "tok-3f9a-secret")
            .stderr(log),
    );
    let banner = node.line_with("Spark node serving");
    let addr = banner
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("{banner}"))
        .trim()
        .to_owned();
    let message = get(&format!("http://{addr}/var/message")).await.unwrap();
    assert_eq!(message.text(), "bonjour, world");
    let token = get(&format!("http://{addr}/var/token")).await.unwrap();
    assert_eq!(token.text(), "tok-3f9a-secret");
    let count = get(&format!("http://{addr}/count")).await.unwrap();
    assert_eq!(count.text(), "1");
    let admin = node.address_after("Admin:");
    let (output, status, stderr) = run(spark()
        .args(["status", "--admin", &admin, "--data-dir"])
        .arg(dir.path().join(".spark")));
    assert!(output.status.success(), "{stderr}");
    assert!(
        status.contains("key-value: module 'spin' store 'default'"),
        "{status}"
    );
    assert!(!status.contains("tok-3f9a-secret"), "{status}");
    node.signal("TERM");
    node.wait_exit(Duration::from_secs(30));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains("tok-3f9a-secret"), "the log shows the secret");
}
