//! Releases on a real node: deploys validated before traffic, canary steps driven by the
//! analysis, automatic rollback of a bad version, manual promote/abort, rollback to an earlier
//! release, and no request failing because of a switch.
//!
//! Rollouts that walk their steps run on a manual clock moved by the traffic: one rollout tick
//! passes per [`REQUESTS_PER_TICK`] answered requests, so a step's duration and its evidence
//! (requests in the windows) keep the same proportion on a fast machine and a busy one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use serde_json::{Value, json};
use spark_testkit::{TestNode, get, guest};

const V1: &str = r#"
version = 1

[[module]]
id = "api"
component = "{guest:echo}"
routes = ["/api/..."]
[module.env]
VERSION = "1"
[module.rollout]
steps = [20, 50, 100]
step_duration = "1s"
min_requests = 30

[[module]]
id = "hello"
component = "{guest:hello}"
routes = ["/hello"]
"#;

/// Uploads a guest's bytes; returns its digest.
async fn upload(node: &TestNode, name: &str) -> String {
    let bytes = std::fs::read(guest(name)).unwrap();
    let digest = spark_store::Digest::of(&bytes).as_str().to_owned();
    let reply = node
        .admin("POST", &format!("/v1/artifacts/{digest}"), &bytes)
        .await
        .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    digest
}

/// Deploys `manifest` (components given by guest name in `{guest:..}` as digests).
async fn deploy(node: &TestNode, manifest: &str) -> spark_testkit::Reply {
    let mut text = manifest.to_owned();
    for name in ["echo", "hello", "faults", "http-p3"] {
        let pattern = format!("{{guest:{name}}}");
        if text.contains(&pattern) {
            let digest = upload(node, name).await;
            text = text.replace(&pattern, &format!("sha256:{digest}"));
        }
    }
    let body = serde_json::to_vec(&json!({ "manifest": text, "note": "test" })).unwrap();
    node.admin("POST", "/v1/deploy", &body).await.unwrap()
}

async fn rollout(node: &TestNode) -> Value {
    serde_json::from_slice(&node.admin("GET", "/v1/rollout", b"").await.unwrap().body).unwrap()
}

/// Which VERSION answered.
async fn version(node: &TestNode) -> Result<String, String> {
    let reply = get(&node.url("/api/env"))
        .await
        .map_err(|e| format!("{e:?}"))?;
    if reply.status != 200 {
        return Err(format!("status {}", reply.status));
    }
    let env: Value = serde_json::from_slice(&reply.body).map_err(|e| e.to_string())?;
    Ok(env["VERSION"].as_str().unwrap_or("?").to_owned())
}

/// The node's rollout tick, and how many answered requests stand for it.
const TICK: Duration = Duration::from_millis(500);
const REQUESTS_PER_TICK: u64 = 25;

/// Clients hitting `/api/env` until stopped, counting answers per version and failures, and
/// all answers (watched: [`wait_for`] moves the clock by them).
fn load(
    node: &TestNode,
    stop: Arc<AtomicBool>,
) -> (
    tokio::task::JoinHandle<()>,
    Arc<[AtomicU64; 4]>,
    watch::Receiver<u64>,
) {
    load_at(node, stop, "/api/env")
}

/// As [`load`], on `path`: answers are `echo`'s JSON environment or a bare version (the
/// `http-p3` guest's `/version`).
fn load_at(
    node: &TestNode,
    stop: Arc<AtomicBool>,
    path: &str,
) -> (
    tokio::task::JoinHandle<()>,
    Arc<[AtomicU64; 4]>,
    watch::Receiver<u64>,
) {
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let (answered, watched) = watch::channel(0u64);
    let url = node.url(path);
    let (c, s) = (counts.clone(), stop.clone());
    let task = tokio::spawn(async move {
        while !s.load(Ordering::Relaxed) {
            let index = match get(&url).await {
                Ok(r) if r.status == 200 => match serde_json::from_slice::<Value>(&r.body)
                    .ok()
                    .and_then(|v| v["VERSION"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| r.text().trim().to_owned())
                    .as_str()
                {
                    "1" => 0,
                    "2" => 1,
                    _ => 2,
                },
                _ => 3,
            };
            c[index].fetch_add(1, Ordering::Relaxed);
            answered.send_modify(|n| *n += 1);
        }
    });
    (task, counts, watched)
}

/// Moves the node's clock one rollout tick per [`REQUESTS_PER_TICK`] answered requests until
/// the rollout status passes `check`, or `within` of the node's time has passed.
async fn wait_for(
    node: &TestNode,
    answered: &mut watch::Receiver<u64>,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut waited = Duration::ZERO;
    loop {
        let status = rollout(node).await;
        if check(&status) || waited > within {
            return status;
        }
        let seen = *answered.borrow_and_update();
        answered
            .wait_for(|&n| n >= seen + REQUESTS_PER_TICK)
            .await
            .expect("the load runs until the rollout ends");
        node.advance(TICK).await;
        waited += TICK;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_version_walks_the_canary_steps_and_is_promoted_without_failing_a_request() {
    let node = TestNode::start_manual(V1).await.unwrap();
    // Judge the versions on the same code: the swap to optimized code landing mid-step would
    // give whichever side swaps later its instantiations (a loaded machine can lose this race).
    until_optimized(&node, Duration::from_secs(60)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (task, counts, mut answered) = load(&node, stop.clone());
    let reply = deploy(&node, &V1.replace("VERSION = \"1\"", "VERSION = \"2\"")).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let outcome: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(outcome["action"], "rollout");
    assert_eq!(
        outcome["canary"],
        json!(["api"]),
        "only the changed module is canaried"
    );
    let release = outcome["release"].as_str().unwrap().to_owned();

    let during = rollout(&node).await;
    assert_eq!(during["rollout"]["modules"]["api"]["share"], 20.0);
    assert_eq!(
        during["rollout"]["modules"]["api"]["compared_with"], "baseline",
        "a fresh copy of v1 is the yardstick: {during}"
    );
    let metrics = spark_testkit::get(&node.admin_url("/metrics"))
        .await
        .unwrap()
        .text();
    let share = format!(r#"spark_canary_share_percent{{module="api",release="{release}"}}"#);
    assert_eq!(
        spark_testkit::metric(&metrics, &share),
        Some(20.0),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"spark_release_info{release="r1-"#),
        "{metrics}"
    );
    let done = wait_for(&node, &mut answered, Duration::from_secs(30), |s| {
        s["rollout"].is_null()
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let events = String::from_utf8(
        node.admin("GET", "/v1/events", b"")
            .await
            .unwrap()
            .body
            .to_vec(),
    )
    .unwrap();
    assert_eq!(
        done["current"],
        release.as_str(),
        "promoted: {done} {events}"
    );
    let [v1, v2, other, failed] = [0, 1, 2, 3].map(|i| counts[i].load(Ordering::Relaxed));
    assert_eq!(
        (other, failed),
        (0, 0),
        "no request failed or saw anything else during the switch"
    );
    assert!(
        v1 > 0 && v2 > 0,
        "both versions served during the rollout: v1 {v1}, v2 {v2}"
    );
    for _ in 0..10 {
        assert_eq!(version(&node).await.unwrap(), "2");
    }
    for kind in ["rollout-started", "step", "promoted"] {
        assert!(events.contains(kind), "{kind} missing from {events}");
    }
    // The module's request count spans both releases (it did not restart at the switch).
    let status: spark_node::NodeStatus =
        serde_json::from_slice(&node.admin("GET", "/v1/status", b"").await.unwrap().body).unwrap();
    let api = status.modules.iter().find(|m| m.id == "api").unwrap();
    assert!(
        api.requests.requests >= v1 + v2 + 10,
        "{:?} after {v1} + {v2} + 10 requests",
        api.requests
    );
    node.stop().await;
}

/// A WASI 0.3 module goes through the same canary (its instances shared by concurrent
/// requests on each side) and is promoted without a failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_03_module_is_promoted_through_its_canary() {
    let v1 = V1.replace("{guest:echo}", "{guest:http-p3}");
    let node = TestNode::start_manual(&v1).await.unwrap();
    spark_testkit::wait_until(Duration::from_secs(60), "optimized code", || async {
        node.node
            .snapshot()
            .modules
            .iter()
            .all(|slot| !matches!(slot.tier().state, spark_runtime::TierState::Baseline))
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (task, counts, mut answered) = load_at(&node, stop.clone(), "/api/version");
    let reply = deploy(&node, &v1.replace("VERSION = \"1\"", "VERSION = \"2\"")).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let release = serde_json::from_slice::<Value>(&reply.body).unwrap()["release"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = wait_for(&node, &mut answered, Duration::from_secs(30), |s| {
        s["rollout"].is_null()
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    assert_eq!(done["current"], release.as_str(), "promoted: {done}");
    let [v1, v2, other, failed] = [0, 1, 2, 3].map(|i| counts[i].load(Ordering::Relaxed));
    assert_eq!(
        (other, failed),
        (0, 0),
        "no request failed during the switch"
    );
    assert!(v1 > 0 && v2 > 0, "both versions served: v1 {v1}, v2 {v2}");
    let after = get(&node.url("/api/version")).await.unwrap();
    assert_eq!(after.text(), "2\n");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_automatically() {
    let node = TestNode::start_manual(V1).await.unwrap();
    let before = rollout(&node).await["current"].clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (task, counts, mut answered) = load(&node, stop.clone());
    let bad = V1.replace("VERSION = \"1\"", "VERSION = \"2\"\nFAIL_PERCENT = \"40\"");
    assert_eq!(deploy(&node, &bad).await.status, 202);
    let done = wait_for(&node, &mut answered, Duration::from_secs(20), |s| {
        s["rollout"].is_null()
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    assert_eq!(
        done["current"], before,
        "the stable release still serves: {done}"
    );
    let events = String::from_utf8(
        node.admin("GET", "/v1/events", b"")
            .await
            .unwrap()
            .body
            .to_vec(),
    )
    .unwrap();
    assert!(
        events.contains("rolled-back") && events.contains("canary fails more"),
        "{events}"
    );
    let (v2, failed) = (
        counts[1].load(Ordering::Relaxed),
        counts[3].load(Ordering::Relaxed),
    );
    assert!(
        failed > 0 && failed < 200,
        "only canary requests failed, and not for long: {failed} failed, {v2} served by v2"
    );
    for _ in 0..20 {
        assert_eq!(version(&node).await.unwrap(), "1");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deploys_are_refused_and_leave_the_running_version_alone() {
    let node = TestNode::start(V1).await.unwrap();
    // Not a valid manifest: the answer names the line.
    let reply = deploy(
        &node,
        &V1.replace(
            "[[module]]\nid = \"hello\"",
            "[[module]]\nid = \"hello\"\nbogus = 1",
        ),
    )
    .await;
    assert_eq!(reply.status, 422);
    assert!(
        reply.text().contains("unknown field `bogus`"),
        "{}",
        reply.text()
    );
    // An upload whose bytes do not match its digest.
    let wrong = "0".repeat(64);
    let reply = node
        .admin(
            "POST",
            &format!("/v1/artifacts/{wrong}"),
            b"\0asm not really",
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 422);
    assert!(reply.text().contains(&wrong), "{}", reply.text());
    // A component never uploaded.
    let reply = deploy(
        &node,
        &V1.replace("{guest:echo}", &format!("sha256:{}", "a".repeat(64))),
    )
    .await;
    assert_eq!(reply.status, 422);
    assert!(
        reply.text().contains("was not uploaded"),
        "{}",
        reply.text()
    );
    // A truncated component: uploaded fine (its digest is its own), refused at validation.
    let bytes = std::fs::read(guest("echo")).unwrap();
    let half = &bytes[..bytes.len() / 2];
    let digest = spark_store::Digest::of(half).as_str().to_owned();
    assert_eq!(
        node.admin("POST", &format!("/v1/artifacts/{digest}"), half)
            .await
            .unwrap()
            .status,
        201
    );
    let reply = deploy(
        &node,
        &V1.replace("{guest:echo}", &format!("sha256:{digest}"))
            .replace("\"1\"", "\"2\""),
    )
    .await;
    assert_eq!(reply.status, 422);
    assert!(
        reply.text().contains("module 'api'") && reply.text().contains("not a valid component"),
        "{}",
        reply.text()
    );
    // A version that fails its health check.
    let unhealthy = V1
        .replace(
            "routes = [\"/hello\"]",
            "routes = [\"/hello\"]\nhealth = \"/hello/trap\"",
        )
        .replace("{guest:hello}", "{guest:faults}");
    let reply = deploy(&node, &unhealthy).await;
    assert_eq!(reply.status, 422);
    assert!(
        reply.text().contains("failed its health check"),
        "{}",
        reply.text()
    );
    // Nothing changed.
    assert_eq!(version(&node).await.unwrap(), "1");
    assert_eq!(
        get(&node.url("/hello")).await.unwrap().text(),
        "Hello from Spark!\n"
    );
    let releases: Value =
        serde_json::from_slice(&node.admin("GET", "/v1/releases", b"").await.unwrap().body)
            .unwrap();
    assert_eq!(
        releases.as_array().unwrap().len(),
        1,
        "refused deploys leave no release: {releases}"
    );
    // And without the token, nothing at all.
    let anonymous = get(&node.admin_url("/v1/releases")).await.unwrap();
    assert_eq!(anonymous.status, 401);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_during_a_rollout_is_refused_and_people_win() {
    let slow = V1.replace("step_duration = \"1s\"", "step_duration = \"1h\"");
    let node = TestNode::start(&slow).await.unwrap();
    assert_eq!(
        deploy(&node, &slow.replace("\"1\"", "\"2\"")).await.status,
        202
    );
    let conflict = deploy(&node, &slow.replace("\"1\"", "\"3\"")).await;
    assert_eq!(conflict.status, 409);
    assert!(
        conflict.text().contains("in progress"),
        "{}",
        conflict.text()
    );
    // Abort: back to v1 at once.
    let abort = node
        .admin("POST", "/v1/rollout/abort", b"{\"by\":\"ops\"}")
        .await
        .unwrap();
    assert_eq!(abort.status, 200, "{}", abort.text());
    for _ in 0..10 {
        assert_eq!(version(&node).await.unwrap(), "1");
    }
    // Deploy again and promote by hand: v2 everywhere, without waiting for the hour-long step.
    assert_eq!(
        deploy(&node, &slow.replace("\"1\"", "\"2\"")).await.status,
        202
    );
    let promote = node
        .admin("POST", "/v1/rollout/promote", b"{}")
        .await
        .unwrap();
    assert_eq!(promote.status, 200, "{}", promote.text());
    for _ in 0..10 {
        assert_eq!(version(&node).await.unwrap(), "2");
    }
    let events = String::from_utf8(
        node.admin("GET", "/v1/events", b"")
            .await
            .unwrap()
            .body
            .to_vec(),
    )
    .unwrap();
    assert!(
        events.contains("aborted by ops") && events.contains("promoted by admin API"),
        "{events}"
    );
    // Roll back to the release before: v1 again.
    let back = node.admin("POST", "/v1/rollback", b"{}").await.unwrap();
    assert_eq!(back.status, 200, "{}", back.text());
    for _ in 0..10 {
        assert_eq!(version(&node).await.unwrap(), "1");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_resumes_its_rollout() {
    let slow = V1.replace("step_duration = \"1s\"", "step_duration = \"1h\"");
    let node = TestNode::start(&slow).await.unwrap();
    let reply = deploy(&node, &slow.replace("\"1\"", "\"2\"")).await;
    let release = serde_json::from_slice::<Value>(&reply.body).unwrap()["release"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = node.stop().await;
    let node = TestNode::start_in(&slow, dir, spark_runtime::PoolingMode::Auto)
        .await
        .unwrap();
    let status = rollout(&node).await;
    assert_eq!(status["rollout"]["to"], release.as_str(), "{status}");
    assert_eq!(status["rollout"]["modules"]["api"]["share"], 20.0);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        seen.insert(version(&node).await.unwrap());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec!["1", "2"],
        "both versions serve again"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_canary_is_rolled_back_on_latency_alone() {
    let node = TestNode::start_manual(V1).await.unwrap();
    let before = rollout(&node).await["current"].clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (task, counts, mut answered) = load(&node, stop.clone());
    // Every answer correct, but each costs ~30x the CPU of the stable version's.
    let slow = V1.replace("VERSION = \"1\"", "VERSION = \"2\"\nWORK = \"15\"");
    assert_eq!(deploy(&node, &slow).await.status, 202);
    let done = wait_for(&node, &mut answered, Duration::from_secs(30), |s| {
        s["rollout"].is_null()
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let events = String::from_utf8(
        node.admin("GET", "/v1/events", b"")
            .await
            .unwrap()
            .body
            .to_vec(),
    )
    .unwrap();
    assert_eq!(
        done["current"], before,
        "the stable release still serves: {done} {events}"
    );
    assert!(
        events.contains("rolled-back") && events.contains("slower"),
        "{events}"
    );
    assert_eq!(
        counts[3].load(Ordering::Relaxed),
        0,
        "a slow canary fails no request"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_what_was_deployed_and_an_edited_file_takes_over() {
    let fast = V1.replace("step_duration = \"1s\"", "step_duration = \"1h\"");
    let node = TestNode::start(&fast).await.unwrap();
    assert_eq!(
        deploy(&node, &fast.replace("\"1\"", "\"2\"")).await.status,
        202
    );
    assert_eq!(
        node.admin("POST", "/v1/rollout/promote", b"{}")
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(version(&node).await.unwrap(), "2");
    // Restarted with the same file: the deployed release still serves.
    let dir = node.stop().await;
    let node = TestNode::start_in(&fast, dir, spark_runtime::PoolingMode::Auto)
        .await
        .unwrap();
    for _ in 0..10 {
        assert_eq!(
            version(&node).await.unwrap(),
            "2",
            "a restart undid a deploy"
        );
    }
    // Restarted with an edited file: the file is the operator's newest word.
    let dir = node.stop().await;
    let edited = fast.replace("\"1\"", "\"3\"");
    let node = TestNode::start_in(&edited, dir, spark_runtime::PoolingMode::Auto)
        .await
        .unwrap();
    for _ in 0..10 {
        assert_eq!(version(&node).await.unwrap(), "3");
    }
    let releases: Value =
        serde_json::from_slice(&node.admin("GET", "/v1/releases", b"").await.unwrap().body)
            .unwrap();
    assert_eq!(releases.as_array().unwrap().len(), 3, "{releases}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploying_what_already_serves_changes_nothing_and_says_so() {
    let node = TestNode::start(V1).await.unwrap();
    // The first deploy makes a release of its own (its manifest names components by digest,
    // not by file); deploying exactly that again changes nothing.
    let first: Value = serde_json::from_slice(&deploy(&node, V1).await.body).unwrap();
    assert_eq!(first["action"], "switched", "{first}");
    let reply = deploy(&node, V1).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let outcome: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(outcome["action"], "unchanged", "{outcome}");
    assert_eq!(
        outcome["release"], first["release"],
        "no new release id for the same content"
    );
    let releases: Value =
        serde_json::from_slice(&node.admin("GET", "/v1/releases", b"").await.unwrap().body)
            .unwrap();
    assert_eq!(releases.as_array().unwrap().len(), 2, "{releases}");
    node.stop().await;
}

/// Waits (in real time) until every module of the node, canaries included, runs optimized code.
async fn until_optimized(node: &TestNode, within: Duration) {
    spark_testkit::wait_until(within, "optimized code", || async {
        let snapshot = node.node.snapshot();
        let canaries = snapshot.canaries.values().map(|canary| &canary.slot);
        snapshot
            .modules
            .iter()
            .chain(canaries)
            .all(|slot| !matches!(slot.tier().state, spark_runtime::TierState::Baseline))
    })
    .await;
}

/// The echo guest's bytes with a custom section appended: the same behaviour under another
/// digest, so the node has no compiled code for it.
fn distinct_echo() -> Vec<u8> {
    let mut bytes = std::fs::read(guest("echo")).unwrap();
    let (name, payload) = (b"spark-test", b"canary on baseline code");
    let size = 1 + name.len() + payload.len();
    bytes.push(0); // custom section
    bytes.push(size as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_on_baseline_code_is_not_judged_on_latency_until_its_optimized_code_serves() {
    // The optimizer waits 3 s before each compile: v1 first, then the canary's component.
    let node = TestNode::start_manual_tiered(V1, Duration::from_secs(3))
        .await
        .unwrap();
    until_optimized(&node, Duration::from_secs(90)).await;
    let bytes = distinct_echo();
    let digest = spark_store::Digest::of(&bytes).as_str().to_owned();
    let reply = node
        .admin("POST", &format!("/v1/artifacts/{digest}"), &bytes)
        .await
        .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    let stop = Arc::new(AtomicBool::new(false));
    let (task, counts, mut answered) = load(&node, stop.clone());
    let v2 = V1.replace("VERSION = \"1\"", "VERSION = \"2\"").replace(
        "component = \"{guest:echo}\"",
        &format!("component = \"sha256:{digest}\""),
    );
    let reply = deploy(&node, &v2).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let outcome: Value = serde_json::from_slice(&reply.body).unwrap();
    let release = outcome["release"].as_str().unwrap().to_owned();
    // On baseline code the canary waits, whatever the step's time, with the reason.
    let status = wait_for(&node, &mut answered, Duration::from_secs(2), |s| {
        s.to_string().contains("latency not comparable yet")
    })
    .await;
    assert!(
        status
            .to_string()
            .contains("the canary version runs baseline code"),
        "{status:#}"
    );
    assert_eq!(
        status["rollout"]["modules"]["api"]["share"].as_f64(),
        Some(20.0),
        "{status:#}"
    );
    // Once the canary's optimized code serves, the steps are judged and walked. The compile
    // takes real time; the canary's clock is the test's, so wait for the code first.
    until_optimized(&node, Duration::from_secs(120)).await;
    let done = wait_for(&node, &mut answered, Duration::from_secs(120), |s| {
        s["rollout"].is_null()
    })
    .await;
    assert_eq!(done["current"], release.as_str(), "promoted: {done:#}");
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    assert_eq!(counts[3].load(Ordering::Relaxed), 0, "no request failed");
    node.stop().await;
}
