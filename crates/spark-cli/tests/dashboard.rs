//! The dashboard through the `spark` binary against a real node process: the one-time login
//! link `spark dashboard` prints, the session it opens (read-only), `spark top --once`, and
//! the page itself in headless Chromium while a real surge switches the orchestrator's mode.
//!
//! The browser test needs Debian's `chromium` and `npm ci` in `tests/browser/`; without them
//! it says so and passes, unless `SPARK_REQUIRE_BROWSER=1` (CI), where it fails.
//! `SPARK_DASHBOARD_SCREENSHOT=<file.png>` saves the page during the surge.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use spark_testkit::{get, guest, request_with};

fn spark() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spark"));
    command.env("RUST_LOG", "warn");
    for var in ["SPARK_ADMIN", "SPARK_TOKEN", "SPARK_DATA_DIR"] {
        command.env_remove(var);
    }
    command
}

/// A critical module with one slot and a background one: more critical clients than the slot
/// queue, which the orchestrator (200 ms ticks) reads as a surge within a few ticks.
fn manifest() -> String {
    format!(
        r#"version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
shutdown_grace = "2s"

[orchestrator]
interval = "200ms"

[[module]]
id = "shop"
component = "{busy}"
routes = ["/shop/..."]
priority = "critical"
[module.limits]
concurrency = 1
queue = 64
queue_timeout = "10s"

[[module]]
id = "api"
component = "{hello}"
routes = ["/api"]

[[module]]
id = "reports"
component = "{busy}"
routes = ["/reports/..."]
priority = "background"
"#,
        busy = guest("busy").display(),
        hello = guest("hello").display()
    )
}

/// A `spark up` process in its own folder (manifest and `.spark` there); killed on drop.
struct Node {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
    admin: String,
    banner: Vec<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spark.toml"), manifest()).unwrap();
        let mut child = spark()
            .args(["up", "spark.toml"])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = Vec::new();
        loop {
            let line = lines.next().expect("the node exited early").unwrap();
            let done = line.starts_with("Stop with");
            banner.push(line);
            if done {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let address = |marker: &str| {
            let line = banner.iter().find(|l| l.contains(marker)).unwrap();
            let start = line.find("http://").unwrap() + 7;
            let end = line[start..]
                .find(['/', ' '])
                .map_or(line.len(), |i| start + i);
            line[start..end].to_owned()
        };
        let (addr, admin) = (address("Spark node serving"), address("Admin:"));
        Node {
            child,
            dir,
            addr,
            admin,
            banner,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join(".spark")
    }

    /// Runs `spark <args>` in the node's folder; success and stdout+stderr.
    fn cli(&self, args: &[&str]) -> (bool, String) {
        spark_testkit::run_command(spark().args(args).current_dir(self.dir.path()))
    }

    /// The login link from the `spark dashboard` command the banner prints, run as printed.
    fn login_url(&self) -> String {
        let hint = self
            .banner
            .iter()
            .find_map(|l| l.strip_prefix("Dashboard: "))
            .expect("the banner names the dashboard command");
        let command = hint.split("   ").next().unwrap();
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let (ok, out) = self.cli(&args);
        assert!(ok, "`{command}` failed: {out}");
        out.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no link in: {out}"))
            .to_owned()
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }
}

async fn with_cookie(method: &str, url: &str, cookie: &str) -> spark_testkit::Reply {
    request_with(method, url, &[("cookie", cookie)], b"{}")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_link_works_once_and_its_session_only_reads() {
    let node = Node::start();
    let url = node.login_url();
    assert!(
        url.starts_with(&node.admin_url("/dashboard/login?code=")),
        "{url}"
    );

    let login = get(&url).await.unwrap();
    assert_eq!(login.status, 303, "{}", login.text());
    assert_eq!(login.headers["location"], "/dashboard");
    let set_cookie = login.headers["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(
        cookie.starts_with("spark_session=") && cookie.len() > 60,
        "{cookie}"
    );

    let again = get(&url).await.unwrap();
    assert_eq!(again.status, 401, "a link works once");
    assert!(again.text().contains("not valid"), "{}", again.text());
    let wrong = get(&node.admin_url("/dashboard/login?code=0123"))
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
    assert_eq!(
        get(&node.admin_url("/dashboard/login"))
            .await
            .unwrap()
            .status,
        401
    );

    // The session reads: the page and the read endpoints.
    let page = with_cookie("GET", &node.admin_url("/dashboard"), &cookie).await;
    assert_eq!(page.status, 200);
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    for path in [
        "/v1/dashboard",
        "/v1/status",
        "/v1/orchestrator",
        "/v1/predictor",
        "/v1/rollout",
        "/v1/events",
    ] {
        let reply = with_cookie("GET", &node.admin_url(path), &cookie).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    let view: spark_node::DashboardView = serde_json::from_slice(
        &with_cookie("GET", &node.admin_url("/v1/dashboard"), &cookie)
            .await
            .body,
    )
    .unwrap();
    let ids: Vec<&str> = view.modules.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        ["shop", "api", "reports"],
        "critical, normal, background"
    );
    // ... but changes nothing.
    for path in ["/v1/rollback", "/v1/dashboard/login", "/v1/rollout/abort"] {
        let reply = with_cookie("POST", &node.admin_url(path), &cookie).await;
        assert_eq!(reply.status, 401, "{path} with a session cookie");
    }
    // No token, no session: refused everywhere but the login page's assets.
    let forged = "spark_session=".to_owned() + &"0".repeat(64);
    for cookie in ["", forged.as_str(), "spark_session="] {
        let data = with_cookie("GET", &node.admin_url("/v1/dashboard"), cookie).await;
        assert_eq!(data.status, 401, "cookie {cookie:?}");
        let page = with_cookie("GET", &node.admin_url("/dashboard"), cookie).await;
        assert_eq!(page.status, 401);
        assert!(
            page.text().contains("spark dashboard"),
            "the page says what to do"
        );
    }
    assert_eq!(
        get(&node.admin_url("/dashboard/dashboard.js"))
            .await
            .unwrap()
            .status,
        200
    );
    let (ok, out) = node.cli(&["dashboard", "--admin", &node.admin, "--token", "nope"]);
    assert!(!ok && out.contains("401"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_top_once_shows_the_modules_with_their_rates() {
    let node = Node::start();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (url, stop) = (format!("http://{}/api", node.addr), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = get(&url).await;
            }
        })
    };
    let data_dir = node.data_dir();
    let (ok, out) = node.cli(&[
        "top",
        "--once",
        "--admin",
        &node.admin,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("CLASS") && out.contains("REQ/S"), "{out}");
    let row = |id: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{out}"))
            .to_owned()
    };
    assert!(row("shop").starts_with("critical"), "{out}");
    assert!(row("reports").starts_with("background"), "{out}");
    let api_rate: f64 = row("api")
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(api_rate > 0.0, "the api's requests/s is measured:\n{out}");
    assert!(out.contains("modes: surge off"), "{out}");
    assert!(!out.contains('\x1b'), "no escape codes when piped");

    let (ok, out) = node.cli(&["top", "--once", "--admin", &node.admin]);
    assert!(ok, "finds .spark in the manifest's folder: {out}");
    let (ok, out) = node.cli(&["top", "--once", "--interval", "0"]);
    assert!(!ok && out.contains("between 0.2 and 3600"), "{out}");
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

/// Whether the browser test can run; without chromium or node_modules it is skipped, unless
/// `SPARK_REQUIRE_BROWSER=1`.
fn browser_available() -> bool {
    let chromium = std::env::var("SPARK_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let modules = browser_dir().join("node_modules/playwright-core");
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing: Vec<&str> = [
        (!Path::new(&chromium).is_file()).then_some("chromium (apt-get install chromium)"),
        (!modules.is_dir()).then_some("playwright-core (npm ci in tests/browser)"),
        (!node).then_some("node"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("SPARK_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "SPARK_REQUIRE_BROWSER=1 but missing: {}",
        missing.join(", ")
    );
    eprintln!(
        "SKIPPED: the dashboard browser test needs {}",
        missing.join(", ")
    );
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_shows_the_modules_and_a_surge() {
    if !browser_available() {
        return;
    }
    let node = Node::start();
    let url = node.login_url();
    let mut browser = Command::new("node");
    browser
        .arg(browser_dir().join("dashboard.mjs"))
        .arg(&url)
        .args(["--modules", "shop,api,reports", "--mode", "surge"])
        .stdout(Stdio::piped());
    if let Ok(path) = std::env::var("SPARK_DASHBOARD_SCREENSHOT") {
        browser.args(["--screenshot", &path]);
    }
    let mut browser = browser.spawn().unwrap();
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    // Logged in, every module on the page, surge off: now the surge.
    while let Some(Ok(line)) = lines.next() {
        let ready = line == "READY";
        seen.push(line);
        if ready {
            break;
        }
    }
    assert_eq!(seen.last().map(String::as_str), Some("READY"), "{seen:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (url, stop) = (format!("http://{}/shop/?work=1", node.addr), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = get(&url).await;
                }
            })
        })
        .collect();
    let rest = tokio::task::spawn_blocking(move || {
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        (browser.wait().unwrap(), rest)
    });
    let (status, rest) = tokio::time::timeout(Duration::from_secs(60), rest)
        .await
        .expect("the browser test ended within a minute")
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.abort();
    }
    seen.extend(rest);
    assert!(status.success(), "browser test failed: {seen:?}");
    assert!(seen.iter().any(|l| l == "MODE surge on"), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("OK"), "{seen:?}");
}
