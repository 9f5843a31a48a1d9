//! Signed fleet releases end to end: a real nats-server, a `spark up --fleet --trust-key`
//! node, keys made by `spark key generate`. The node runs only what the trusted key signed
//! for its application; an unsigned release, one signed by another key and one whose
//! manifest was changed after signing are each refused with the reason in `spark fleet
//! status`, and the fleet rolls back while the node keeps serving what it had.

#[allow(dead_code, reason = "shared with tests/fleet.rs, which uses all of it")]
#[path = "fleet/support.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use spark_fleet::DesiredApp;
use spark_fleet::plan::{self, CanarySpec, Stage};
use spark_testkit::{NatsServer, wait_until};
use support::*;

/// `spark key generate --out <dir>/<name>`; returns the public key it printed.
fn generate(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let output = spark()
        .args(["key", "generate", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let public = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(public.starts_with("ed25519:"), "{public}");
    let again = spark()
        .args(["key", "generate", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!again.status.success(), "a key file is never overwritten");
    (public, path.display().to_string())
}

/// Deploys `version` with `extra` flags and waits; returns (succeeded, output).
fn deploy(url: &str, dir: &Path, version: u32, extra: &[&str]) -> (bool, String) {
    let path = write(dir, &format!("v{version}.toml"), &manifest(version, 0));
    let mut args = vec!["deploy", path.as_str(), "--wait", "--timeout", "60"];
    args.extend_from_slice(extra);
    fleet_cli(url, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_only_what_its_trusted_key_signed() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let (public, key) = generate(dir.path(), "deployer.key");
    let (_, stranger) = generate(dir.path(), "stranger.key");
    let n1 = Node::start_with(dir.path(), "n1", &url, &[], &["--trust-key", &public]);
    let fleet = connect(&url).await;
    wait_until(Duration::from_secs(20), "a heartbeat", || async {
        live_nodes(&fleet).await == 1
    })
    .await;
    let traffic = Traffic::start(vec![n1.addr.clone()]);

    let (ok, out) = deploy(&url, dir.path(), 2, &[]);
    assert!(!ok && out.contains("rolled back"), "unsigned: {out}");
    let (_, status) = fleet_cli(&url, &["status"]);
    assert!(status.contains("unsigned"), "the node says why: {status}");

    let (ok, out) = deploy(&url, dir.path(), 3, &["--sign-key", &stranger]);
    assert!(!ok && out.contains("rolled back"), "another key: {out}");
    let (_, status) = fleet_cli(&url, &["status"]);
    assert!(status.contains("does not trust"), "{status}");
    assert_eq!(n1.version().await.as_deref(), Some("1"), "still serving v1");

    let (ok, out) = deploy(&url, dir.path(), 4, &["--sign-key", &key]);
    assert!(ok && out.contains("signed     with ed25519:"), "{out}");
    assert!(all_serve(&[&n1], "4").await);

    // Someone with write access to the desired state changes the manifest but keeps the
    // deployer's signature: the node refuses it.
    let current = fleet.desired("shop").await.unwrap().unwrap();
    let mut release = current.value.release.clone();
    release.manifest = release
        .manifest
        .replace("VERSION = \"4\"", "VERSION = \"5\"");
    let views: Vec<plan::NodeView> = fleet
        .app_nodes("shop")
        .await
        .unwrap()
        .iter()
        .map(|n| n.view())
        .collect();
    let forged = DesiredApp {
        generation: current.value.generation + 1,
        previous: Some(current.value.release.clone()),
        rollout: plan::start(&release.key(), &CanarySpec::default(), &views).unwrap(),
        release,
        updated_by: "someone".into(),
        intent: None,
        app: "shop".into(),
    };
    fleet
        .put_desired(&forged, Some(current.revision))
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        "the forged release is refused and the fleet rolls back",
        || async {
            matches!(
                fleet
                    .effective("shop")
                    .await
                    .ok()
                    .flatten()
                    .map(|d| d.value.rollout.stage),
                Some(Stage::RolledBack { .. })
            )
        },
    )
    .await;
    let (_, status) = fleet_cli(&url, &["status"]);
    assert!(status.contains("signature does not match"), "{status}");
    assert_eq!(n1.version().await.as_deref(), Some("4"));

    // A promotion skips the node's own canary (hour-long steps here) only when signed.
    let slow =
        |version| manifest(version, 0).replace("step_duration = \"1s\"", "step_duration = \"1h\"");
    for (version, signed) in [(6, false), (7, true)] {
        let path = write(dir.path(), &format!("slow{version}.toml"), &slow(version));
        let (ok, out) = fleet_cli(&url, &["deploy", &path, "--sign-key", &key]);
        assert!(ok, "{out}");
        wait_until(
            Duration::from_secs(20),
            "the node starts its own canary",
            || async {
                fleet
                    .app_nodes("shop")
                    .await
                    .unwrap_or_default()
                    .iter()
                    .any(|n| n.rollout.is_some())
            },
        )
        .await;
        let mut promote = vec!["rollout", "promote"];
        if signed {
            promote.extend(["--sign-key", key.as_str()]);
        }
        let (ok, out) = fleet_cli(&url, &promote);
        assert!(ok, "{out}");
        if signed {
            wait_until(
                Duration::from_secs(30),
                "a signed promotion ends the node's canary",
                || async { all_serve(&[&n1], "7").await && all_serve(&[&n1], "7").await },
            )
            .await;
        } else {
            wait_until(
                Duration::from_secs(20),
                "the node says it did not apply the unsigned promotion",
                || async {
                    let (_, status) = fleet_cli(&url, &["status"]);
                    status.contains("not applied here")
                },
            )
            .await;
            let node = fleet.app_nodes("shop").await.unwrap();
            assert!(node[0].rollout.is_some(), "its canary goes on: {node:?}");
            // Done with v6: the canary decides (here a person aborts it through the node).
            let (ok, out) = fleet_cli(&url, &["rollout", "rollback", "--sign-key", &key]);
            assert!(ok, "{out}");
            wait_until(Duration::from_secs(30), "back on v4", || async {
                all_serve(&[&n1], "4").await && all_serve(&[&n1], "4").await
            })
            .await;
        }
    }
    traffic.stop().await;
}
