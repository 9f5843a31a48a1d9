//! B5: canary rollouts under steady load. One node serves `api` (the `echo` guest, version 1)
//! to closed-loop clients; three releases are deployed through the admin API one after the
//! other: (a) `bad`, failing 10% of its requests; (b) `slow`, three times the work per request;
//! (c) `good`. Each answer is attributed to the version that gave it (the guest reports its
//! `VERSION`; a bad version's failures say they are on purpose), so the run counts what reached
//! a bad version and what failed for any other reason: a failure the switch itself caused.
//!
//! The baseline, measured in the same run: the bad release deployed all at once (one step of
//! 100%, what a redeploy without canary does), left serving for as long as the canary took to
//! decide, then rolled back. `failed_vs_all_at_once` compares the requests each one failed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::node::{NodeLaunch, SparkNode};
use crate::{BenchError, write_json};

/// Settings of `spark bench canary`.
#[derive(Debug, Clone)]
pub struct CanaryOptions {
    /// The `spark` executable the node runs.
    pub spark: PathBuf,
    /// The `echo` guest (it knows the `VERSION`, `WORK` and `FAIL_PERCENT` knobs).
    pub component: PathBuf,
    /// Shorter rollout steps: 2 s each instead of 5 s.
    pub quick: bool,
    /// Where `canary.json` (and the node log, if kept) go.
    pub out_dir: PathBuf,
}

/// Answers seen by the clients, by who gave them.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tally {
    /// Correct answers from the stable version (`VERSION` 1).
    pub stable: u64,
    /// Correct answers from any other version (the one being rolled out).
    pub canary: u64,
    /// The bad version's deliberate failures.
    pub canary_failed: u64,
    /// Anything else that was not a correct answer: refused, reset, 5xx from the stable
    /// version, an unknown version.
    pub other_failed: u64,
}

impl Tally {
    fn total(&self) -> u64 {
        self.stable + self.canary + self.canary_failed + self.other_failed
    }

    fn minus(&self, earlier: &Tally) -> Tally {
        Tally {
            stable: self.stable - earlier.stable,
            canary: self.canary - earlier.canary,
            canary_failed: self.canary_failed - earlier.canary_failed,
            other_failed: self.other_failed - earlier.other_failed,
        }
    }
}

/// One deploy and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryCase {
    /// `bad`, `slow`, `good`, or `all-at-once` for the baseline.
    pub name: &'static str,
    /// `promoted`, `rolled-back`, or `undecided` (the run gave up waiting).
    pub outcome: String,
    /// Why, from the `promoted` / `rolled-back` event (or why the run gave up waiting).
    pub reason: String,
    /// From the deploy call to the decision.
    pub decision_s: f64,
    /// Requests the new version answered (or failed) before the decision.
    pub canary_requests: u64,
    /// Every request answered or failed in the window, whichever version.
    pub requests: u64,
    /// Share of all requests in the window that reached the new version, in percent.
    pub exposure_pct: f64,
    /// Requests that failed in the window, on purpose or not.
    pub failed: u64,
    /// Failures other than the bad version's deliberate ones: what the switch itself cost
    /// (target: 0).
    pub switch_failures: u64,
    /// The window's answers by who gave them.
    pub tally: Tally,
}

/// The whole B5 result, as written to `canary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryReport {
    /// Closed-loop clients driving the node.
    pub clients: usize,
    /// Rollout steps: percent of the module's traffic on the new version.
    pub steps: Vec<f64>,
    /// Time at each step, seconds.
    pub step_duration_s: f64,
    /// The canary deploys in order: `bad`, `slow`, `good`.
    pub cases: Vec<CanaryCase>,
    /// The baseline: the failing release at 100% for as long as the canary took to reject `bad`.
    pub all_at_once: CanaryCase,
    /// Requests failed by a switch, over every case (target: 0).
    pub switch_failures: u64,
    /// Share of requests that reached a bad version before it was rolled back (the worse of
    /// the failing and the slow one), percent.
    pub bad_exposure_pct: f64,
    /// The slower of the two rollback decisions, seconds.
    pub decision_s: f64,
    /// Deploy to full promotion of the good version, seconds.
    pub promote_s: f64,
    /// Requests the bad version failed with the canary, over those it failed when deployed
    /// all at once for as long.
    pub failed_vs_all_at_once: f64,
}

const CLIENTS: usize = 4;
const STEPS: [f64; 3] = [10.0, 50.0, 100.0];

fn manifest(
    component: &str,
    version: u32,
    knobs: &str,
    steps: &[f64],
    step_duration: &str,
) -> String {
    let steps: Vec<String> = steps.iter().map(|s| format!("{s}")).collect();
    format!(
        r#"version = 1

[[module]]
id = "api"
component = "{component}"
routes = ["/api/..."]
priority = "critical"
[module.limits]
concurrency = 64
queue = 256
[module.env]
VERSION = "{version}"
{knobs}
[module.rollout]
steps = [{steps}]
step_duration = "{step_duration}"
min_requests = 100
"#,
        steps = steps.join(", ")
    )
}

fn node_manifest(
    component: &str,
    step_duration: &str,
    addr: SocketAddr,
    admin: SocketAddr,
) -> String {
    let base = manifest(component, 1, "WORK = \"1\"", &STEPS, step_duration);
    base.replacen(
        "version = 1\n",
        &format!("version = 1\n[node]\nlisten = \"{addr}\"\nadmin = \"{admin}\"\n"),
        1,
    )
}

/// The closed-loop clients: each sends the next request when the previous answer is in.
fn clients(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|_| {
            let (stop, tally) = (stop.clone(), tally.clone());
            tokio::spawn(async move {
                let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
                let uri: http::Uri = format!("http://{addr}/api/env").parse().expect("valid uri");
                while !stop.load(Ordering::Relaxed) {
                    let answer = ask(&client, uri.clone()).await;
                    let mut t = tally.lock().expect("tally lock");
                    match answer {
                        Answer::Version(v) if v == "1" => t.stable += 1,
                        Answer::Version(_) => t.canary += 1,
                        Answer::FailedOnPurpose => t.canary_failed += 1,
                        Answer::Failed => t.other_failed += 1,
                    }
                }
            })
        })
        .collect()
}

enum Answer {
    Version(String),
    FailedOnPurpose,
    Failed,
}

async fn ask(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    uri: http::Uri,
) -> Answer {
    let Ok(response) = client.get(uri).await else {
        return Answer::Failed;
    };
    let ok = response.status() == http::StatusCode::OK;
    let Ok(body) = response.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Answer::Failed;
    };
    if !ok {
        let on_purpose = String::from_utf8_lossy(&body).contains("failing on purpose");
        return if on_purpose {
            Answer::FailedOnPurpose
        } else {
            Answer::Failed
        };
    }
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["VERSION"].as_str().map(str::to_owned))
        .map_or(Answer::Failed, Answer::Version)
}

struct Bench<'a> {
    node: &'a SparkNode,
    tally: Arc<Mutex<Tally>>,
    component: String,
    step_duration: String,
    timeout: Duration,
}

impl Bench<'_> {
    fn snapshot(&self) -> Tally {
        *self.tally.lock().expect("tally lock")
    }

    async fn deploy(&self, version: u32, knobs: &str, steps: &[f64]) -> Result<(), BenchError> {
        let text = manifest(&self.component, version, knobs, steps, &self.step_duration);
        let body = serde_json::to_vec(
            &serde_json::json!({ "manifest": text, "note": format!("bench canary v{version}") }),
        )
        .map_err(BenchError::runtime)?;
        let (status, answer) = self.node.admin_call("POST", "/v1/deploy", body).await?;
        if status != 202 && status != 200 {
            return Err(BenchError::runtime(format!(
                "deploy v{version}: {status} {}",
                String::from_utf8_lossy(&answer)
            )));
        }
        Ok(())
    }

    /// Deploys and waits for the rollout to end; the case as measured.
    async fn case(
        &self,
        name: &'static str,
        version: u32,
        knobs: &str,
    ) -> Result<CanaryCase, BenchError> {
        let before = self.snapshot();
        let started = Instant::now();
        self.deploy(version, knobs, &STEPS).await?;
        let (outcome, reason) = self.wait_for_decision().await?;
        let decision_s = started.elapsed().as_secs_f64();
        let window = self.snapshot().minus(&before);
        // Settle: the answers of the switch itself land in the next case's window otherwise.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(case_of(name, outcome, reason, decision_s, window))
    }

    async fn wait_for_decision(&self) -> Result<(String, String), BenchError> {
        let deadline = Instant::now() + self.timeout;
        while Instant::now() < deadline {
            let status = self.node.admin_json("/v1/rollout").await?;
            if status["rollout"].is_null() {
                return self.last_decision().await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((
            "undecided".into(),
            format!("no decision within {:?}", self.timeout),
        ))
    }

    async fn last_decision(&self) -> Result<(String, String), BenchError> {
        let events = self.node.admin_json("/v1/events").await?;
        let latest = events
            .as_array()
            .and_then(|e| {
                e.iter()
                    .find(|e| matches!(e["kind"].as_str(), Some("promoted" | "rolled-back")))
            })
            .cloned()
            .unwrap_or_default();
        Ok((
            latest["kind"].as_str().unwrap_or("?").to_owned(),
            latest["detail"].as_str().unwrap_or("").to_owned(),
        ))
    }

    /// The baseline: the bad version all at once for `secs`, then rolled back by hand.
    async fn all_at_once(&self, secs: f64) -> Result<CanaryCase, BenchError> {
        let before = self.snapshot();
        let started = Instant::now();
        self.deploy(4, "WORK = \"1\"\nFAIL_PERCENT = \"10\"", &[100.0])
            .await?;
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let (status, answer) = self
            .node
            .admin_call("POST", "/v1/rollback", b"{}".to_vec())
            .await?;
        if status != 200 {
            return Err(BenchError::runtime(format!(
                "rollback: {status} {}",
                String::from_utf8_lossy(&answer)
            )));
        }
        let window = self.snapshot().minus(&before);
        let elapsed = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(case_of(
            "all-at-once",
            "rolled-back".into(),
            "rolled back by hand".into(),
            elapsed,
            window,
        ))
    }
}

fn case_of(
    name: &'static str,
    outcome: String,
    reason: String,
    decision_s: f64,
    window: Tally,
) -> CanaryCase {
    let canary_requests = window.canary + window.canary_failed;
    let requests = window.total();
    CanaryCase {
        name,
        outcome,
        reason,
        decision_s,
        canary_requests,
        requests,
        exposure_pct: 100.0 * canary_requests as f64 / requests.max(1) as f64,
        failed: window.canary_failed + window.other_failed,
        switch_failures: window.other_failed,
        tally: window,
    }
}

/// Runs B5 and writes `canary.json`.
pub async fn run(options: &CanaryOptions) -> Result<CanaryReport, BenchError> {
    let step_duration = if options.quick { "2s" } else { "5s" };
    let component = options.component.display().to_string();
    let manifest = |addr, admin| node_manifest(&component, step_duration, addr, admin);
    let node = SparkNode::start(NodeLaunch {
        spark: &options.spark,
        manifest: &manifest,
        ready_path: "/api/env",
        out_dir: &options.out_dir,
        log_name: "canary-node",
        tls: None,
    })
    .await?;
    let digest = uploaded_digest(&node, &options.component).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let workers = clients(node.addr, stop.clone(), tally.clone());
    let bench = Bench {
        node: &node,
        tally,
        component: format!("sha256:{digest}"),
        step_duration: step_duration.to_owned(),
        timeout: Duration::from_secs(120),
    };
    tokio::time::sleep(Duration::from_secs(2)).await; // warm, steady load
    let result = run_cases(&bench).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    let (cases, all_at_once) = result?;
    let report = summarize(cases, all_at_once, step_duration);
    write_json(&options.out_dir, "canary.json", &report)?;
    Ok(report)
}

async fn run_cases(bench: &Bench<'_>) -> Result<(Vec<CanaryCase>, CanaryCase), BenchError> {
    let bad = bench
        .case("bad", 2, "WORK = \"1\"\nFAIL_PERCENT = \"10\"")
        .await?;
    let all_at_once = bench.all_at_once(bad.decision_s).await?;
    let slow = bench.case("slow", 3, "WORK = \"3\"").await?;
    let good = bench.case("good", 5, "WORK = \"1\"").await?;
    Ok((vec![bad, slow, good], all_at_once))
}

/// The node imported the component at startup; its digest is what a deploy names.
async fn uploaded_digest(
    node: &SparkNode,
    component: &std::path::Path,
) -> Result<String, BenchError> {
    let bytes = std::fs::read(component)?;
    let digest = spark_store::Digest::of(&bytes).as_str().to_owned();
    let (status, answer) = node
        .admin_call("POST", &format!("/v1/artifacts/{digest}"), bytes)
        .await?;
    if !(200..300).contains(&status) {
        return Err(BenchError::runtime(format!(
            "upload: {status} {}",
            String::from_utf8_lossy(&answer)
        )));
    }
    Ok(digest)
}

fn summarize(cases: Vec<CanaryCase>, all_at_once: CanaryCase, step_duration: &str) -> CanaryReport {
    let find = |name: &str| cases.iter().find(|c| c.name == name).expect("case ran");
    let (bad, slow, good) = (find("bad"), find("slow"), find("good"));
    CanaryReport {
        clients: CLIENTS,
        steps: STEPS.to_vec(),
        step_duration_s: step_duration.trim_end_matches('s').parse().unwrap_or(0.0),
        switch_failures: cases.iter().map(|c| c.switch_failures).sum::<u64>()
            + all_at_once.switch_failures,
        bad_exposure_pct: bad.exposure_pct.max(slow.exposure_pct),
        decision_s: bad.decision_s.max(slow.decision_s),
        promote_s: good.decision_s,
        failed_vs_all_at_once: bad.tally.canary_failed as f64
            / all_at_once.tally.canary_failed.max(1) as f64,
        cases: cases.clone(),
        all_at_once,
    }
}

/// The report as text, ending with the `canary:` key line.
pub fn render(report: &CanaryReport) -> String {
    let mut out = format!(
        "B5 canary: {} closed-loop clients, steps {:?} of {} s each\n",
        report.clients, report.steps, report.step_duration_s
    );
    out.push_str("case          outcome       decision_s  canary/all requests  exposure%  failed  switch_failures\n");
    for c in report
        .cases
        .iter()
        .chain(std::iter::once(&report.all_at_once))
    {
        out.push_str(&format!(
            "{:<13} {:<13} {:>10.2}  {:>8}/{:<10} {:>9.2}  {:>6}  {:>15}\n",
            c.name,
            c.outcome,
            c.decision_s,
            c.canary_requests,
            c.requests,
            c.exposure_pct,
            c.failed,
            c.switch_failures
        ));
    }
    for c in &report.cases {
        out.push_str(&format!("  {}: {}\n", c.name, c.reason));
    }
    let outcomes: Vec<String> = report
        .cases
        .iter()
        .map(|c| format!("{}={}", c.name, c.outcome))
        .collect();
    out.push_str(&format!(
        "canary: switch_failures={} bad_exposure_pct={:.2} decision_s={:.2} promote_s={:.2} failed_vs_all_at_once={:.3} {}\n",
        report.switch_failures,
        report.bad_exposure_pct,
        report.decision_s,
        report.promote_s,
        report.failed_vs_all_at_once,
        outcomes.join(" ")
    ));
    out
}
