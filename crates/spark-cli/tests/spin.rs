//! Spin applications (`spin.toml`) as users run them: `spark check`, `spark up` and
//! `spark deploy` on a real manifest, real processes and real HTTP.
//!
//! The Spin SDK guests (`guests/spin-py`, PyPI `spin-sdk` 5; `guests/spin-rs`, crates.io
//! `spin-sdk` 7) run from their own `spin.toml` with key-value, variables and (spin-py) traps
//! for what Spark does not provide; routing, headers and files are tested on the repo's plain
//! `wasi:http` guests.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use spark_testkit::{get, guest, request_with};

fn spark() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spark"));
    command.env("RUST_LOG", "warn");
    command
}

fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// A Spin app in a fresh directory: the repo's `hello` and `echo` guests copied in beside its
/// `spin.toml`, a `static/` and a `data/` directory to mount.
fn app_dir(manifest: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guest("hello"), dir.path().join("hello.wasm")).unwrap();
    std::fs::copy(guest("echo"), dir.path().join("echo.wasm")).unwrap();
    std::fs::create_dir(dir.path().join("static")).unwrap();
    std::fs::write(dir.path().join("static/hello.txt"), "static hello\n").unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/x.txt"), "data x\n").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "not mounted\n").unwrap();
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    (dir, path)
}

/// 1-based line and column of the first `needle` in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).expect("needle in text");
    let line = text[..at].matches('\n').count() + 1;
    let column = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

const APP: &str = r#"spin_manifest_version = 2

[application]
name = "shop"
version = "0.1.0"
authors = ["Spark tests"]

[application.trigger.http]
base = "/shop"

[application.tool.spark.node]
listen = "LISTEN"
admin = "127.0.0.1:0"

[[trigger.http]]
route = "/hello"
component = "hello"

[[trigger.http]]
route = "/api/..."
component = "api"

[[trigger.http]]
route = { private = true }
component = "internal"

[component.hello]
source = "hello.wasm"
[component.hello.build]
command = "cargo build --release --target wasm32-wasip2"

[component.api]
source = "echo.wasm"
environment = { GREETING = "hej" }
files = ["static/**/*", { source = "data", destination = "/data" }]
[component.api.tool.spark]
priority = "critical"
[component.api.tool.spark.limits]
concurrency = 4

[component.internal]
source = "echo.wasm"
"#;

#[test]
fn check_names_the_file_line_and_column_of_a_spin_problem() {
    let bad = APP.replace(
        "environment = {",
        "sqlite_databases = [\"default\"]\nenvironment = {",
    );
    let (_dir, manifest) = app_dir(&bad);
    let (output, _, stderr) = run(spark().arg("check").arg(&manifest));
    assert!(!output.status.success());
    let (line, column) = position(&bad, "[\"default\"]");
    let expected = format!(
        "{}:{line}:{column}: component 'api': sqlite_databases is not supported by Spark",
        manifest.display()
    );
    assert!(
        stderr.contains(&expected),
        "expected {expected:?} in:\n{stderr}"
    );

    let remote = APP.replace(
        "source = \"hello.wasm\"",
        "source = { url = \"https://example.com/hello.wasm\", digest = \"sha256:0123\" }",
    );
    let (_dir, manifest) = app_dir(&remote);
    let (output, _, stderr) = run(spark().arg("check").arg(&manifest));
    assert!(!output.status.success());
    let (line, column) = position(&remote, "{ url");
    assert!(
        stderr.contains(&format!("{}:{line}:{column}: component 'hello': source {{ url = \"https://example.com/hello.wasm\"", manifest.display()))
            && stderr.contains("cannot be fetched here"),
        "{stderr}"
    );

    let redis = format!("{APP}\n[[trigger.redis]]\nchannel = \"orders\"\ncomponent = \"api\"\n");
    let (_dir, manifest) = app_dir(&redis);
    let (output, _, stderr) = run(spark().arg("check").arg(&manifest));
    assert!(!output.status.success());
    let (line, column) = position(&redis, "redis]]");
    assert!(
        stderr.contains(&format!(
            "{}:{line}:{column}: trigger type 'redis' is not supported",
            manifest.display()
        )),
        "{stderr}"
    );
}

#[test]
fn check_loads_every_component_of_a_spin_app() {
    let (dir, _) = app_dir(&APP.replace("LISTEN", "127.0.0.1:0"));
    // No argument: ./spin.toml, as there is no ./spark.toml.
    let (output, stdout, stderr) = run(spark().arg("check").current_dir(dir.path()));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok    hello") && stdout.contains("ok    api"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("internal"),
        "a private-only component is not served: {stdout}"
    );
    assert!(stdout.contains("spin.toml: 2 module(s) valid"), "{stdout}");
}

/// A spawned `spark` process that is killed if the test fails.
struct Process(Child, std::io::Lines<BufReader<std::process::ChildStdout>>);

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
        Process(child, lines)
    }

    /// Reads stdout until a line containing `marker`; returns the first `ADDR` after `http://`.
    fn address_after(&mut self, marker: &str) -> String {
        for line in self.1.by_ref() {
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
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_a_spin_app_with_its_routes_headers_and_files() {
    // The manifest's own listen address is taken: only the --listen override lets it start.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let (dir, _) = app_dir(&APP.replace("LISTEN", &taken.local_addr().unwrap().to_string()));
    let mut node = Process::spawn(
        spark()
            .args(["up", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .current_dir(dir.path()),
    );
    let addr = node.address_after("Spark node serving");
    let admin = node.address_after("Admin:");
    let url = |path: &str| format!("http://{addr}{path}");

    // Routes under the base path: exact, wildcard; nothing else.
    let hello = get(&url("/shop/hello")).await.unwrap();
    assert_eq!(
        (hello.status, hello.text().as_str()),
        (200, "Hello from Spark!\n")
    );
    for unrouted in ["/hello", "/shop/hello/x", "/shop", "/", "/shop/apix"] {
        assert_eq!(get(&url(unrouted)).await.unwrap().status, 404, "{unrouted}");
    }

    // Spin's request headers, set by the node over whatever the client sent.
    let forged = [
        ("spin-path-info", "/evil"),
        ("spin-client-addr", "6.6.6.6:1"),
    ];
    let reply = request_with("GET", &url("/shop/api/v1/headers?x=1"), &forged, b"")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let headers = json(&reply.text());
    let header = |name: &str| headers[name].as_str().unwrap_or_default().to_owned();
    assert_eq!(header("spin-path-info"), "/v1/headers");
    assert_eq!(header("spin-matched-route"), "/shop/api/...");
    assert_eq!(header("spin-base-path"), "/shop");
    assert_eq!(header("spin-component-route"), "/api");
    assert_eq!(header("spin-raw-component-route"), "/api/...");
    assert_eq!(header("spin-full-url"), url("/shop/api/v1/headers?x=1"));
    assert!(
        header("spin-client-addr").starts_with("127.0.0.1:"),
        "{headers}"
    );

    // `environment` is the guest's environment.
    let env = json(&get(&url("/shop/api/env")).await.unwrap().text());
    assert_eq!(env["GREETING"], "hej", "{env}");

    // `files`: mounted read-only, and nothing else of the app directory is there.
    let read = get(&url("/shop/api/file?path=/static/hello.txt"))
        .await
        .unwrap();
    assert_eq!((read.status, read.text().as_str()), (200, "static hello\n"));
    let read = get(&url("/shop/api/file?path=/data/x.txt")).await.unwrap();
    assert_eq!((read.status, read.text().as_str()), (200, "data x\n"));
    for hidden in ["/secret.txt", "/static/../secret.txt", "/etc/passwd"] {
        let reply = get(&url(&format!("/shop/api/file?path={hidden}")))
            .await
            .unwrap();
        assert_eq!(reply.status, 404, "{hidden}: {}", reply.text());
    }
    for target in ["/static/new.txt", "/static/hello.txt", "/data/x.txt"] {
        let write = request_with(
            "PUT",
            &url(&format!("/shop/api/file?path={target}")),
            &[],
            b"overwritten",
        )
        .await
        .unwrap();
        assert_eq!(write.status, 403, "{target}: {}", write.text());
    }
    assert!(!dir.path().join("static/new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("static/hello.txt")).unwrap(),
        "static hello\n"
    );

    // Spark's own settings from the tool table, and no module for the private-only component.
    let (output, stdout, stderr) = run(spark()
        .args(["status", "--admin", &admin])
        .current_dir(dir.path()));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("critical"), "{stdout}");
    assert!(!stdout.contains("internal"), "{stdout}");

    // `spark deploy spin.toml`: a new component with a new route goes live.
    let deployed = format!(
        "{}\n[[trigger.http]]\nroute = \"/hi\"\ncomponent = \"hi\"\n\n[component.hi]\nsource = \"hello.wasm\"\n",
        APP.replace("LISTEN", "127.0.0.1:0")
    );
    std::fs::write(dir.path().join("spin.toml"), &deployed).unwrap();
    let (output, stdout, stderr) = run(spark()
        .args(["deploy", "spin.toml", "--admin", &admin])
        .current_dir(dir.path()));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("added: hi"), "{stdout}");
    let hi = get(&url("/shop/hi")).await.unwrap();
    assert_eq!(
        (hi.status, hi.text().as_str()),
        (200, "Hello from Spark!\n")
    );
    // The deployed release still mounts the files (relative to the directory the node
    // started from).
    let read = get(&url("/shop/api/file?path=/static/hello.txt"))
        .await
        .unwrap();
    assert_eq!(read.status, 200, "{}", read.text());
    drop(taken);
}

/// `guests/spin-py`'s own `spin.toml`, pointed at the built component.
fn spin_py_app(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guests/spin-py/spin.toml"),
    )
    .unwrap()
    .replace("app.wasm", &guest("spin-py").display().to_string())
    .replace("127.0.0.1:3000", "127.0.0.1:0");
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `spark up` on the spin-py app in `dir` with `env`; returns the process and address.
fn up_spin_py(dir: &Path, env: &[(&str, &str)]) -> (Process, String) {
    let manifest = spin_py_app(dir);
    let mut command = spark();
    command
        .args(["up", "--admin", "127.0.0.1:0"])
        .arg(&manifest)
        .envs(env.iter().copied());
    let mut node = Process::spawn(&mut command);
    let addr = node.address_after("Spark node serving");
    (node, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_py_routes_and_variables() {
    let dir = tempfile::tempdir().unwrap();
    let (node, addr) = up_spin_py(dir.path(), &[]);
    let hello = get(&format!("http://{addr}/")).await.unwrap();
    assert_eq!(hello.status, 200, "{}", hello.text());
    assert!(
        hello.text().contains("Hello from Python on Spark"),
        "{}",
        hello.text()
    );
    let greeting = get(&format!("http://{addr}/greeting")).await.unwrap();
    assert_eq!(greeting.text(), "hej\n");
    drop(node);

    // Spin's environment override of a variable.
    let (_node, addr) = up_spin_py(dir.path(), &[("SPIN_VARIABLE_GREETING", "hallo")]);
    let greeting = get(&format!("http://{addr}/greeting")).await.unwrap();
    assert_eq!(greeting.text(), "hallo\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_py_key_value_get_put_delete_and_a_counter_surviving_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (node, addr) = up_spin_py(dir.path(), &[]);
    key_value_round_trip(&format!("http://{addr}/kv/colour")).await;

    let count =
        |addr: String| async move { get(&format!("http://{addr}/count")).await.unwrap().text() };
    assert_eq!(count(addr.clone()).await, "1\n");
    assert_eq!(count(addr.clone()).await, "2\n");
    drop(node);
    let (_node, addr) = up_spin_py(dir.path(), &[]);
    assert_eq!(count(addr).await, "3\n", "the store outlives the node");
}

/// `guests/spin-rs/spin.toml` (crates.io `spin-sdk` 7, WASI 0.3), pointed at the built component.
fn spin_rs_app(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guests/spin-rs/spin.toml"),
    )
    .unwrap()
    .replace(
        "../target/wasm32-wasip2/release/spin_rs.wasm",
        &guest("spin_rs").display().to_string(),
    )
    .replace("127.0.0.1:3000", "127.0.0.1:0");
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `spark up spin.toml` on the spin-sdk 7 app: key-value get/put/delete, a counter across a
/// restart, a variable with Spin's environment override, a required secret that must be given
/// and never shows in `spark status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_rs_key_value_variables_and_a_counter_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = spin_rs_app(dir.path());

    // The required secret is missing: the start is refused, naming it and how to set it.
    let (output, stdout, stderr_up) = run(spark()
        .args(["up", "--admin", "127.0.0.1:0"])
        .arg(&manifest)
        .env_remove("SPIN_VARIABLE_API_TOKEN"));
    assert!(!output.status.success(), "{stdout}{stderr_up}");
    assert!(
        stderr_up.contains("api_token") && stderr_up.contains("SPIN_VARIABLE_API_TOKEN"),
        "{stderr_up}"
    );

    let up = |env: &[(&str, &str)]| {
        let mut command = spark();
        command
            .args(["up", "--admin", "127.0.0.1:0"])
            .arg(&manifest)
            .envs(env.iter().copied());
        let mut node = Process::spawn(&mut command);
        let addr = node.address_after("Spark node serving");
        (node, addr)
    };
    let secret = "s3cr3t-token-value";
    let (node, addr) = up(&[
        ("SPIN_VARIABLE_API_TOKEN", secret),
        ("SPIN_VARIABLE_GREETING", "hallo"),
    ]);
    let url = |path: &str| format!("http://{addr}{path}");
    let greeting = get(&url("/var/greeting")).await.unwrap();
    assert_eq!((greeting.status, greeting.text().as_str()), (200, "hallo"));
    let token = get(&url("/var/token")).await.unwrap();
    assert_eq!(token.text(), secret);

    key_value_round_trip(&url("/kv/colour")).await;
    assert_eq!(get(&url("/count")).await.unwrap().text(), "1");
    assert_eq!(get(&url("/count")).await.unwrap().text(), "2");
    drop(node);

    let (_node, addr) = up(&[("SPIN_VARIABLE_API_TOKEN", secret)]);
    let url = |path: &str| format!("http://{addr}{path}");
    assert_eq!(
        get(&url("/count")).await.unwrap().text(),
        "3",
        "the store outlives the node"
    );
    assert_eq!(get(&url("/var/greeting")).await.unwrap().text(), "hej");
}

/// A key absent, put, read back, deleted, absent again: through a guest's `/kv/<key>` route.
async fn key_value_round_trip(key_url: &str) {
    assert_eq!(get(key_url).await.unwrap().status, 404);
    let put = request_with("PUT", key_url, &[], b"blue").await.unwrap();
    assert_eq!(put.status, 200, "{}", put.text());
    let read = get(key_url).await.unwrap();
    assert_eq!((read.status, read.text().as_str()), (200, "blue"));
    let delete = request_with("DELETE", key_url, &[], b"").await.unwrap();
    assert_eq!(delete.status, 200, "{}", delete.text());
    assert_eq!(get(key_url).await.unwrap().status, 404);
}
