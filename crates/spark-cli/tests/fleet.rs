//! The fleet end to end: a real nats-server (JetStream, 127.0.0.1) and three real `spark up
//! --fleet` processes, driven by the `spark fleet` CLI. Deploys converge; a node killed with
//! SIGKILL comes back to the desired state; NATS killed mid-rollout leaves the nodes serving
//! and the rollout finishes when it returns; a bad canary rolls the fleet back; a damaged
//! artifact is refused; of two concurrent deploys exactly one wins; a fleet-wide key-value
//! store written on one node is read on another, within each node's limits, and writes made
//! while NATS is away reach the other node when it returns.

#[path = "fleet/support.rs"]
mod support;

use std::time::Duration;

use spark_fleet::plan::Stage;
use spark_testkit::{NatsServer, guest, wait_until};
use support::*;

async fn stage(url: &str) -> Option<Stage> {
    let fleet = connect(url).await;
    fleet
        .effective("shop")
        .await
        .ok()
        .flatten()
        .map(|d| d.value.rollout.stage)
}

fn three(base: &std::path::Path, url: &str) -> (Node, Node, Node) {
    (
        Node::start(base, "n1", url, &["zone=canary"]),
        Node::start(base, "n2", url, &["zone=main"]),
        Node::start(base, "n3", url, &["zone=main"]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_converges_on_three_nodes_and_a_killed_node_comes_back() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let (n1, mut n2, n3) = three(dir.path(), &url);
    let fleet = connect(&url).await;
    wait_until(Duration::from_secs(20), "three heartbeats", || async {
        live_nodes(&fleet).await == 3
    })
    .await;
    // Each node shows the fleet on its dashboard (and in `spark top`).
    wait_until(
        Duration::from_secs(10),
        "n1's top shows three nodes",
        || async {
            let (ok, out) = n1.top();
            ok && out.contains("FLEET: app shop · 3 node(s) · this node n1") && out.contains("n3")
        },
    )
    .await;

    // v2 everywhere at once (no canary flags): each node's canary needs traffic.
    let traffic = Traffic::start(vec![n1.addr.clone(), n2.addr.clone(), n3.addr.clone()]);
    let v2 = write(dir.path(), "v2.toml", &manifest(2, 0));
    let (ok, out) = fleet_cli(&url, &["deploy", &v2, "--wait", "--timeout", "60"]);
    assert!(ok && out.contains("complete:"), "{out}");
    let log: Vec<&str> = out.lines().filter(|l| l.starts_with("  ")).collect();
    let unique: std::collections::BTreeSet<&&str> = log.iter().collect();
    assert_eq!(
        unique.len(),
        log.len(),
        "--wait prints each line once:\n{out}"
    );
    assert!(all_serve(&[&n1, &n2, &n3], "2").await);
    let (ok, out) = fleet_cli(&url, &["status"]);
    assert!(
        ok && out.contains("complete") && out.contains("n3") && out.contains("3 converged"),
        "{out}"
    );

    // n2 dies (SIGKILL); v3 is deployed while it is down; restarted, it catches up.
    n2.kill();
    // n2 gone from the live nodes (by name: on a loaded machine another node's heartbeat can
    // lapse for a moment, and a count of two would then still include n2).
    wait_until(
        Duration::from_secs(20),
        "n2's heartbeat expires",
        || async {
            fleet
                .app_nodes("shop")
                .await
                .is_ok_and(|nodes| nodes.iter().all(|n| n.node != "n2") && nodes.len() == 2)
        },
    )
    .await;
    let v3 = write(dir.path(), "v3.toml", &manifest(3, 0));
    let (ok, out) = fleet_cli(&url, &["deploy", &v3, "--wait", "--timeout", "60"]);
    assert!(ok, "{out}");
    assert!(all_serve(&[&n1, &n3], "3").await);
    n2.restart();
    let restarted = Traffic::start(vec![n2.addr.clone()]);
    wait_until(
        Duration::from_secs(60),
        "the restarted node serves v3",
        || async { n2.version().await.as_deref() == Some("3") },
    )
    .await;
    restarted.stop().await;
    traffic.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_mid_rollout_nodes_keep_serving_and_it_completes() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let (n1, n2, n3) = three(dir.path(), &url);
    let fleet = connect(&url).await;
    wait_until(Duration::from_secs(20), "three heartbeats", || async {
        live_nodes(&fleet).await == 3
    })
    .await;
    let traffic = Traffic::start(vec![n1.addr.clone(), n2.addr.clone(), n3.addr.clone()]);

    let v2 = write(dir.path(), "v2.toml", &manifest(2, 0));
    let (ok, out) = fleet_cli(&url, &["deploy", &v2, "--canary-selector", "zone=canary"]);
    assert!(ok && out.contains("canary on n1"), "{out}");
    let key = fleet
        .desired("shop")
        .await
        .unwrap()
        .unwrap()
        .value
        .release
        .key();
    wait_until(
        Duration::from_secs(20),
        "the canary node takes v2",
        || async {
            fleet.app_nodes("shop").await.is_ok_and(|nodes| {
                nodes.iter().any(|n| {
                    n.node == "n1"
                        && (n.rollout.is_some() || n.release_key.as_deref() == Some(key.as_str()))
                })
            })
        },
    )
    .await;
    nats.kill();
    // NATS is down: every node keeps serving over real HTTP.
    let before = traffic.failed.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for node in [&n1, &n2, &n3] {
        assert!(
            node.version().await.is_some(),
            "{} serves without NATS",
            node.id
        );
    }
    assert_eq!(
        traffic.failed.load(std::sync::atomic::Ordering::Relaxed),
        before,
        "no request failed while NATS was down"
    );
    nats.restart();
    wait_until(
        Duration::from_secs(60),
        "the rollout completes after NATS returns",
        || async { matches!(stage(&url).await, Some(Stage::Complete { .. })) },
    )
    .await;
    wait_until(Duration::from_secs(30), "every node serves v2", || async {
        all_serve(&[&n1, &n2, &n3], "2").await
    })
    .await;
    let (sent, failed) = traffic.stop().await;
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canary_rolls_the_fleet_back() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let (n1, n2, n3) = three(dir.path(), &url);
    let fleet = connect(&url).await;
    wait_until(Duration::from_secs(20), "three heartbeats", || async {
        live_nodes(&fleet).await == 3
    })
    .await;
    let traffic = Traffic::start(vec![n1.addr.clone()]);
    let bad = write(dir.path(), "bad.toml", &manifest(2, 100));
    let (ok, out) = fleet_cli(
        &url,
        &[
            "deploy",
            &bad,
            "--canary-nodes",
            "1",
            "--wait",
            "--timeout",
            "60",
        ],
    );
    assert!(
        !ok && out.contains("rolled back") && out.contains("n1"),
        "{out}"
    );
    traffic.stop().await;
    assert!(
        all_serve(&[&n1, &n2, &n3], "1").await,
        "every node serves v1"
    );
    let (ok, out) = fleet_cli(&url, &["rollout", "status"]);
    assert!(ok && out.contains("rolled back"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_artifact_is_refused() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::start(dir.path(), "n1", &url, &[]);
    let fleet = connect(&url).await;
    wait_until(Duration::from_secs(20), "a heartbeat", || async {
        live_nodes(&fleet).await == 1
    })
    .await;
    // The object store holds other bytes under hello.wasm's digest.
    let hello = std::fs::read(guest("hello")).unwrap();
    fleet
        .put_object(&spark_fleet::sha256_hex(&hello), b"not the component")
        .await
        .unwrap();
    let text = manifest(1, 0).replace(
        guest("echo").to_str().unwrap(),
        guest("hello").to_str().unwrap(),
    );
    let path = write(dir.path(), "hello.toml", &text);
    let (ok, out) = fleet_cli(&url, &["deploy", &path, "--wait", "--timeout", "30"]);
    assert!(!ok && out.contains("rolled back"), "{out}");
    let (ok, out) = fleet_cli(&url, &["status"]);
    assert!(ok && out.contains("refused"), "the node says why: {out}");
    assert_eq!(n1.version().await.as_deref(), Some("1"), "still serving v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_deploys_exactly_one_wins() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.toml", &manifest(2, 0));
    let b = write(dir.path(), "b.toml", &manifest(3, 0));
    let (ua, ub) = (url.clone(), url.clone());
    let ta = std::thread::spawn(move || fleet_cli(&ua, &["deploy", &a]));
    let tb = std::thread::spawn(move || fleet_cli(&ub, &["deploy", &b]));
    let (ra, rb) = (ta.join().unwrap(), tb.join().unwrap());
    assert!(ra.0 != rb.0, "exactly one wins:\n{}\n{}", ra.1, rb.1);
    let loser = if ra.0 { rb.1 } else { ra.1 };
    assert!(loser.contains("conflict"), "{loser}");
    let fleet = connect(&url).await;
    assert_eq!(
        fleet
            .desired("shop")
            .await
            .unwrap()
            .unwrap()
            .value
            .generation,
        1
    );
}

/// Every node serves `version` on several requests in a row (no canary split left).
async fn all_only_serve(nodes: &[&Node], version: &str) -> bool {
    for _ in 0..8 {
        if !all_serve(nodes, version).await {
            return false;
        }
    }
    true
}

/// A manual promote wins at every level: the nodes' own canaries (hour-long steps here) are
/// promoted at once. A rollback returns everyone to the previous fleet release, and is refused
/// with the reason when there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_promotes_past_the_node_canaries_and_rolls_back() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let (n1, n2, n3) = three(dir.path(), &url);
    let fleet = connect(&url).await;
    wait_until(Duration::from_secs(20), "three heartbeats", || async {
        live_nodes(&fleet).await == 3
    })
    .await;
    let slow =
        |version| manifest(version, 0).replace("step_duration = \"1s\"", "step_duration = \"1h\"");

    let v2 = write(dir.path(), "v2.toml", &slow(2));
    let (ok, out) = fleet_cli(&url, &["deploy", &v2, "--canary-selector", "zone=canary"]);
    assert!(ok, "{out}");
    wait_until(
        Duration::from_secs(20),
        "n1 starts its own canary of v2",
        || async {
            fleet
                .app_nodes("shop")
                .await
                .unwrap_or_default()
                .iter()
                .any(|n| n.node == "n1" && n.rollout.is_some())
        },
    )
    .await;
    assert!(
        all_only_serve(&[&n2, &n3], "1").await,
        "only the canary node takes v2"
    );
    let (ok, out) = fleet_cli(&url, &["rollout", "rollback"]);
    assert!(!ok && out.contains("no earlier fleet release"), "{out}");

    let (ok, out) = fleet_cli(&url, &["rollout", "promote"]);
    assert!(ok && out.contains("complete"), "{out}");
    wait_until(
        Duration::from_secs(30),
        "every node serves only v2",
        || async { all_only_serve(&[&n1, &n2, &n3], "2").await },
    )
    .await;

    let v3 = write(dir.path(), "v3.toml", &slow(3));
    let (ok, out) = fleet_cli(&url, &["deploy", &v3]);
    assert!(ok, "{out}");
    let (ok, out) = fleet_cli(&url, &["rollout", "promote"]);
    assert!(ok, "{out}");
    wait_until(
        Duration::from_secs(30),
        "every node serves only v3",
        || async { all_only_serve(&[&n1, &n2, &n3], "3").await },
    )
    .await;
    let (ok, out) = fleet_cli(&url, &["rollout", "rollback"]);
    assert!(ok && out.contains("rolled back"), "{out}");
    wait_until(
        Duration::from_secs(30),
        "every node is back on v2",
        || async { all_only_serve(&[&n1, &n2, &n3], "2").await },
    )
    .await;
    // Status judges the nodes against the release they went back to, not the one they left.
    let previous = fleet
        .desired("shop")
        .await
        .unwrap()
        .unwrap()
        .value
        .previous
        .unwrap()
        .key();
    wait_until(
        Duration::from_secs(20),
        "the heartbeats say every node is back",
        || async {
            let (_, out) = fleet_cli(&url, &["status"]);
            out.contains(&format!("nodes: 3 back on {previous}, 0 returning"))
        },
    )
    .await;
}

/// A `spark.toml` serving the `spin-rs` guest with a fleet-wide store `default` of at most
/// `max_keys` keys and a node-local store `local`.
fn kv_manifest(max_keys: u32) -> String {
    format!(
        "version = 1\n[node]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n[key_value.default]\nfleet = true\nmax_keys = {max_keys}\n\n[[module]]\nid = \"spin\"\ncomponent = \"{}\"\nroutes = [\"/...\"]\nkey_value_stores = [\"default\", \"local\"]\n",
        guest("spin_rs").display()
    )
}

/// `(status, body)` of `METHOD url` with `body`.
async fn call(method: &str, url: &str, body: &[u8]) -> (u16, String) {
    let reply = spark_testkit::request_with(method, url, &[], body)
        .await
        .unwrap();
    (reply.status, reply.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_key_value_store_replicates_between_nodes_within_their_limits() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    // a allows 4 keys, b only 2: b's limit holds against what a writes.
    let a = Node::start_app(dir.path(), "a", &url, &[], &[], &kv_manifest(4));
    let b = Node::start_app(dir.path(), "b", &url, &[], &[], &kv_manifest(2));
    let kv = |node: &Node, key: &str| format!("http://{}/kv/{key}", node.addr);
    let sees = |node: &Node, key: &str, want: Option<&str>| {
        let url = kv(node, key);
        let want = want.map(str::to_owned);
        async move {
            let (status, body) = call("GET", &url, b"").await;
            match &want {
                Some(v) => status == 200 && body == *v,
                None => status == 404,
            }
        }
    };

    // A put on a is read on b; b's later put wins on a; a delete reaches b.
    assert_eq!(call("PUT", &kv(&a, "colour"), b"blue").await.0, 200);
    assert_eq!(call("GET", &kv(&a, "colour"), b"").await.1, "blue");
    wait_until(Duration::from_secs(20), "b reads a's put", || {
        sees(&b, "colour", Some("blue"))
    })
    .await;
    assert_eq!(call("PUT", &kv(&b, "colour"), b"green").await.0, 200);
    wait_until(Duration::from_secs(10), "a reads b's put", || {
        sees(&a, "colour", Some("green"))
    })
    .await;
    assert_eq!(call("DELETE", &kv(&a, "colour"), b"").await.0, 200);
    wait_until(Duration::from_secs(10), "b sees a's delete", || {
        sees(&b, "colour", None)
    })
    .await;

    // A node-local store stays on its node.
    let local = format!("http://{}/kv/secret?store=local", a.addr);
    assert_eq!(call("PUT", &local, b"x").await.0, 200);
    assert_eq!(call("PUT", &kv(&a, "m"), b"1").await.0, 200);
    wait_until(Duration::from_secs(10), "b reads m", || {
        sees(&b, "m", Some("1"))
    })
    .await;
    let b_local = format!("http://{}/kv/secret?store=local", b.addr);
    assert_eq!(call("GET", &b_local, b"").await.0, 404);

    // a holds m, p, q (3 of its 4); b takes m and p, then refuses q (over its 2 keys) and
    // still applies the later update of p.
    for key in ["p", "q"] {
        assert_eq!(call("PUT", &kv(&a, key), b"1").await.0, 200);
    }
    assert_eq!(call("PUT", &kv(&a, "p"), b"2").await.0, 200);
    wait_until(Duration::from_secs(10), "b reads p's update", || {
        sees(&b, "p", Some("2"))
    })
    .await;
    assert_eq!(
        call("GET", &kv(&b, "q"), b"").await.0,
        404,
        "over b's limit"
    );
    assert_eq!(call("GET", &kv(&a, "q"), b"").await.1, "1");
    let (_, keys) = call("GET", &format!("http://{}/keys", b.addr), b"").await;
    assert_eq!(keys, "m\np");
    let (ok, out) = b.status();
    assert!(
        ok && out.contains("store 'default' (-/default): 2 of 2 keys")
            && out.contains("fleet-wide, replicated (0 writes not published: queue full; 1 remote writes over this node's limits)")
            && out
                .lines()
                .any(|l| l.contains("store 'local'") && !l.contains("fleet")),
        "{out}"
    );
    // a's own limit still answers its guest.
    let (status, body) = call("GET", &format!("http://{}/fill?n=3&size=1", a.addr), b"").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("wrote 1;") && body.contains("full"), "{body}");
    // Its fill-0 reached b (and was refused there) before this update of p.
    assert_eq!(call("PUT", &kv(&a, "p"), b"3").await.0, 200);
    wait_until(Duration::from_secs(10), "b reads p's second update", || {
        sees(&b, "p", Some("3"))
    })
    .await;
    assert_eq!(call("GET", &kv(&b, "fill-0"), b"").await.0, 404);
    // b writes within its limit after deleting, and a reads it.
    assert_eq!(call("DELETE", &kv(&b, "m"), b"").await.0, 200);
    assert_eq!(call("PUT", &kv(&b, "from-b"), b"hi").await.0, 200);
    wait_until(Duration::from_secs(10), "a reads b's new key", || {
        sees(&a, "from-b", Some("hi"))
    })
    .await;
    wait_until(Duration::from_secs(10), "a sees b's delete", || {
        sees(&a, "m", None)
    })
    .await;

    // Without NATS both nodes keep reading and writing their copies; what they wrote is
    // published when it returns.
    nats.kill();
    assert_eq!(call("PUT", &kv(&a, "p"), b"a-offline").await.0, 200);
    assert_eq!(call("PUT", &kv(&b, "from-b"), b"b-offline").await.0, 200);
    assert_eq!(call("GET", &kv(&a, "p"), b"").await.1, "a-offline");
    assert_eq!(call("GET", &kv(&b, "p"), b"").await.1, "3");
    nats.restart();
    wait_until(Duration::from_secs(30), "b reads a's offline write", || {
        sees(&b, "p", Some("a-offline"))
    })
    .await;
    wait_until(Duration::from_secs(10), "a reads b's offline write", || {
        sees(&a, "from-b", Some("b-offline"))
    })
    .await;

    // A value the store takes but NATS does not (1 MiB plus the header is over the server's
    // max_payload) stays on its node and does not hold up the writes after it.
    let big = vec![b'x'; 1 << 20];
    let (status, body) = call("PUT", &kv(&a, "q"), &big).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(call("PUT", &kv(&a, "p"), b"after-big").await.0, 200);
    wait_until(
        Duration::from_secs(30),
        "b reads the write after the big one",
        || sees(&b, "p", Some("after-big")),
    )
    .await;

    // A node joining later gets the data: the application keeps it when it moves.
    let c = Node::start_app(dir.path(), "c", &url, &[], &[], &kv_manifest(4));
    wait_until(Duration::from_secs(20), "c reads the fleet's data", || {
        sees(&c, "p", Some("after-big"))
    })
    .await;
    assert_eq!(call("GET", &kv(&c, "from-b"), b"").await.1, "b-offline");
    assert_eq!(call("GET", &kv(&c, "q"), b"").await.1, "1");
}
