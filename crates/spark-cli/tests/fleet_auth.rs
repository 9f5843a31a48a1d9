//! An authenticated, encrypted fleet: real nats-server processes configured with users and
//! permissions, and with mutual TLS. The CLI and a node connect with the credentials given
//! (passwords from the environment), a wrong password is refused with a clear error that does
//! not echo it, a node's permissions stop it from writing another node's heartbeat, and TLS
//! needs the CA and, for mutual TLS, the client certificate.

#[allow(dead_code, reason = "shared with tests/fleet.rs, which uses all of it")]
#[path = "fleet/support.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use spark_fleet::{Fleet, FleetAuth, FleetConfig, NodeReport};
use spark_testkit::{NatsServer, wait_until};
use support::*;

const USERS: &str = r#"
accounts {
  SPARK {
    jetstream: enabled
    users: [
      { user: deployer, password: "deployer-pass-1" }
      { user: n1, password: "n1-pass-1",
        permissions: { publish: { allow: [">"], deny: ["$KV.spark-nodes.node.n2"] } } }
    ]
  }
}
"#;

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
    let nats = NatsServer::start_with_config(USERS);
    let url = nats.url();

    let (ok, out) = status_as(&url, "deployer", "not-the-password");
    assert!(!ok && out.to_lowercase().contains("authorization"), "{out}");
    assert!(
        !out.contains("not-the-password"),
        "the password is never echoed: {out}"
    );
    let (ok, out) = status_as(&url, "deployer", "deployer-pass-1");
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
        .env("SPARK_NATS_PASSWORD", "n1-pass-1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deployer = connect_as(&url, "deployer", "deployer-pass-1").await;
    wait_until(Duration::from_secs(20), "n1's heartbeat", || async {
        live_nodes(&deployer).await == 1
    })
    .await;
    let _ = node.kill();
    let output = node.wait_with_output().unwrap();
    let banner = String::from_utf8_lossy(&output.stdout);
    assert!(banner.contains("NATS authentication: user n1"), "{banner}");
    assert!(!banner.contains("n1-pass-1"), "{banner}");

    // n1 may write its own heartbeat, not n2's.
    let as_n1 = connect_as(&url, "n1", "n1-pass-1").await;
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
