//! An authenticated, encrypted fleet: real nats-server processes configured with users and
//! permissions, and with mutual TLS. The CLI and a node connect with the credentials given
//! (passwords from the environment), a wrong password is refused with a clear error that does
//! not echo it, and TLS needs the CA and, for mutual TLS, the client certificate. Under the
//! documented least-privilege layout (`examples/fleet/nats-accounts.conf`, used as shipped) a
//! fleet canary rollout completes while the server refuses a node writing the desired state,
//! another node's heartbeat or an artifact, or deleting a bucket.

#[allow(dead_code, reason = "shared with tests/fleet.rs, which uses all of it")]
#[path = "fleet/support.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use spark_fleet::{Fleet, FleetAuth, FleetConfig, NodeReport};
use spark_testkit::{NatsServer, wait_until};
use support::*;

/// The documented least-privilege layout, as shipped.
fn accounts() -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet/nats-accounts.conf");
    std::fs::read_to_string(path).unwrap()
}

/// `spark fleet status` as `user` with `password` in the environment.
fn status_as(url: &str, user: &str, password: &str) -> (bool, String) {
    run(spark()
        .args(["fleet", "status", "--nats", url, "--nats-user", user])
        .env("SPARK_NATS_PASSWORD", password))
}

async fn connect_as(url: &str, user: &str, password: &str) -> Fleet {
    let config = FleetConfig {
        auth: FleetAuth {
            user: Some(user.into()),
            password: Some(password.into()),
            ..FleetAuth::default()
        },
        ..FleetConfig::new(url)
    };
    Fleet::connect(&config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_permissions_are_enforced_by_a_real_server() {
    let nats = NatsServer::start_with_config(&accounts());
    let url = nats.url();

    let (ok, out) = status_as(&url, "deployer", "not-the-password");
    assert!(!ok && out.to_lowercase().contains("authorization"), "{out}");
    assert!(
        !out.contains("not-the-password"),
        "the password is never echoed: {out}"
    );
    let (ok, out) = status_as(&url, "deployer", "change-me-deployer");
    assert!(ok, "{out}");

    // A node joins with its own user; its banner names the method, never the secret.
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().join("n1");
    std::fs::create_dir_all(&dir_path).unwrap();
    std::fs::write(dir_path.join("spark.toml"), manifest(1, 0)).unwrap();
    let mut node = spark()
        .arg("up")
        .arg(dir_path.join("spark.toml"))
        .args(["--fleet", &url, "--node-id", "n1", "--app", "shop"])
        .env("SPARK_NATS_USER", "n1")
        .env("SPARK_NATS_PASSWORD", "change-me-n1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deployer = connect_as(&url, "deployer", "change-me-deployer").await;
    wait_until(Duration::from_secs(20), "n1's heartbeat", || async {
        live_nodes(&deployer).await == 1
    })
    .await;
    let _ = node.kill();
    let output = node.wait_with_output().unwrap();
    let banner = String::from_utf8_lossy(&output.stdout);
    assert!(banner.contains("NATS authentication: user n1"), "{banner}");
    assert!(!banner.contains("change-me-n1"), "{banner}");

    // n1 may write its own heartbeat, not n2's.
    let as_n1 = connect_as(&url, "n1", "change-me-n1").await;
    let own = NodeReport {
        node: "n1".into(),
        app: "shop".into(),
        ..NodeReport::default()
    };
    as_n1.report(&own).await.unwrap();
    let forged = NodeReport {
        node: "n2".into(),
        ..own
    };
    assert!(
        as_n1.report(&forged).await.is_err(),
        "the server refuses n1 writing n2's heartbeat"
    );
    let nodes = deployer.nodes().await.unwrap();
    assert!(nodes.iter().all(|n| n.node != "n2"), "{nodes:?}");
    // A node publishes the entries of fleet-wide key-value stores.
    as_n1
        .publish_kv("n1", "shop/default", "k", Some(b"v"))
        .await
        .unwrap();
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn certificates(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, san) in [("server", "127.0.0.1"), ("client", "spark-node")] {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![san.to_owned()]).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

#[test]
fn mutual_tls_needs_the_ca_and_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let p = |name: &str| dir.path().join(name).display().to_string();
    let tls = format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n}}\n",
        p("server.pem"),
        p("server.key"),
        p("ca.pem")
    );
    let nats = NatsServer::start_with_config(&tls);
    let url = format!("tls://127.0.0.1:{}", nats.port());
    let status = |extra: &[&str]| {
        run(spark()
            .args(["fleet", "status", "--nats", &url])
            .args(extra))
    };
    let (ca, cert, key) = (p("ca.pem"), p("client.pem"), p("client.key"));
    let (ok, err) = status(&["--nats-ca", &ca, "--nats-cert", &cert, "--nats-key", &key]);
    assert!(ok, "mutual TLS: {err}");
    let (ok, err) = status(&["--nats-ca", &ca]);
    assert!(!ok, "no client certificate: refused ({err})");
    let (ok, err) = status(&["--nats-cert", &cert]);
    assert!(!ok && err.contains("needs its key"), "{err}");
}

/// A deployer's `spark fleet ...` command, authenticated as the layout's deployer.
fn as_deployer(url: &str, args: &[&str]) -> (bool, String) {
    run(spark()
        .arg("fleet")
        .args(args)
        .args(["--nats", url, "--app", "shop", "--nats-user", "deployer"])
        .env("SPARK_NATS_PASSWORD", "change-me-deployer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_least_privilege_layout_nodes_roll_out_but_cannot_steer() {
    let nats = NatsServer::start_with_config(&accounts());
    let url = nats.url();
    // The deployer's first connection creates the buckets (nodes may not create any).
    let deployer = connect_as(&url, "deployer", "change-me-deployer").await;
    let dir = tempfile::tempdir().unwrap();
    let node = |id: &str, zone: &str| {
        let password = format!("change-me-{id}");
        Node::start_with(
            dir.path(),
            id,
            &url,
            &[zone],
            &["--nats-user", id, "--nats-password", &password],
        )
    };
    let (n1, n2) = (node("n1", "zone=canary"), node("n2", "zone=main"));
    wait_until(Duration::from_secs(20), "both heartbeats", || async {
        live_nodes(&deployer).await == 2
    })
    .await;
    let traffic = Traffic::start(vec![n1.addr.clone(), n2.addr.clone()]);

    // A canary rollout completes with nodes writing only progress and their heartbeats.
    let v2 = write(dir.path(), "v2.toml", &manifest(2, 0));
    let (ok, out) = as_deployer(
        &url,
        &["deploy", &v2, "--canary-selector", "zone=canary", "--wait"],
    );
    assert!(
        ok && out.contains("wave 1: n2") && out.contains("complete:"),
        "{out}"
    );
    wait_until(Duration::from_secs(30), "both nodes serve v2", || async {
        all_serve(&[&n1, &n2], "2").await
    })
    .await;
    let (sent, failed) = traffic.stop().await;
    assert_eq!(failed, 0, "of {sent} requests");
    let desired = deployer.desired("shop").await.unwrap().unwrap().value;
    assert_eq!(
        desired.updated_by, "spark fleet deploy",
        "nodes never wrote it"
    );
    let progress = deployer.progress("shop").await.unwrap().unwrap().value;
    assert!(progress.updated_by.starts_with("node n"), "{progress:?}");
    assert_eq!(progress.generation, desired.generation);

    // What a node's credentials cannot do, refused by the server itself.
    let as_n1 = connect_as(&url, "n1", "change-me-n1").await;
    let current = as_n1.desired("shop").await.unwrap().unwrap();
    let mut forged = current.value.clone();
    forged.rollout.forced = true;
    forged.updated_by = "n1".into();
    assert!(
        as_n1
            .put_desired(&forged, Some(current.revision))
            .await
            .is_err(),
        "a node may not write the desired state"
    );
    let other = spark_fleet::NodeReport {
        node: "n2".into(),
        app: "shop".into(),
        ..spark_fleet::NodeReport::default()
    };
    assert!(
        as_n1.report(&other).await.is_err(),
        "a node may not write another node's heartbeat"
    );
    assert!(
        as_n1.upload_artifact(b"not a component").await.is_err(),
        "a node may not upload artifacts"
    );
    let raw =
        async_nats::ConnectOptions::with_user_and_password("n1".into(), "change-me-n1".into())
            .connect(url.as_str())
            .await
            .unwrap();
    let js = async_nats::jetstream::new(raw);
    assert!(
        js.delete_key_value(spark_fleet::DESIRED_BUCKET)
            .await
            .is_err()
    );
    assert!(js.delete_stream("KV_spark-nodes").await.is_err());
    assert!(
        js.get_key_value(spark_fleet::DESIRED_BUCKET).await.is_ok(),
        "but it can read the desired state"
    );
    assert_eq!(
        deployer.desired("shop").await.unwrap().unwrap().revision,
        current.revision,
        "nothing a node tried changed the desired state"
    );
}
