//! B8 from the command line, quick, with three nodes: `spark bench fleet --nodes 3 --quick`
//! against a real JetStream cluster of three nats-servers. As root (CI) the nodes run in
//! network namespaces and the link cut is measured; otherwise the bench falls back to
//! loopback and must say so. Checks that every phase is reported and happened, not how fast.

use std::process::{Command, Stdio};

use spark_testkit::{guest, nats_server_bin};

/// Whether this process runs as root (from /proc, as `id -u` would say).
fn root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

fn ip_available() -> bool {
    Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn bench_fleet_quick_reports_every_phase_of_three_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let echo = guest("echo").display().to_string();
    let nats = nats_server_bin().display().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_spark"))
        .args(["bench", "fleet", "--nodes", "3", "--quick"])
        .args(["--component", &echo, "--nats-server", &nats, "--out", &out])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("fleet.json")).unwrap()).unwrap();
    let namespaces = root() && ip_available();
    let network = if namespaces { "netns" } else { "loopback" };
    assert_eq!(json["network"], network, "{json}");
    assert_eq!(json["nats_servers"], 3);
    assert_eq!(json["replicas"], 3);
    let run = &json["runs"][0];
    assert_eq!(run["nodes"], 3);
    for key in [
        "start_s",
        "converge_s",
        "canary_s",
        "fleet_canary_s",
        "recover_s",
        "node_start_s",
    ] {
        assert!(run[key].as_f64().unwrap() > 0.0, "{key}: {run}");
    }
    assert!(run["canary_s"].as_f64() <= run["fleet_canary_s"].as_f64());
    // A killed NATS server mid-rollout: the rollout completes, the nodes keep answering.
    let kill = &run["nats_kill"];
    assert!(kill["converge_s"].as_f64().unwrap() > 0.0, "{kill}");
    assert!(kill["requests"].as_u64().unwrap() > 0, "{kill}");
    assert_eq!(kill["failed"], 0, "{kill}");
    // Every node's connection was counted, idle and during a rollout.
    for window in ["idle", "rollout"] {
        let traffic = &run[window];
        assert_eq!(traffic["nodes_seen"], 3, "{window}: {traffic}");
        assert!(
            traffic["msgs_per_node_min"].as_f64().unwrap() > 0.0,
            "{traffic}"
        );
        assert!(
            traffic["bytes_per_node_min"].as_f64().unwrap() > 0.0,
            "{traffic}"
        );
        assert!(
            traffic["msgs_per_server_min"].as_f64().unwrap() > 0.0,
            "{traffic}"
        );
    }
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("fleet: network={network} nodes=3 converge_s=")),
        "{stdout}"
    );
    for key in [
        " canary_s=",
        " fleet_canary_s=",
        " recover_s=",
        " nats_kill_s=",
        " nats_kill_failed=0 ",
        " idle_msgs_per_node_min=",
        " rollout_bytes_per_node_min=",
        " converge_ratio=na",
    ] {
        assert!(last.contains(key), "{key} missing: {last}");
    }
    if namespaces {
        // The cut node answered every probe over its service link, with the release it ran
        // (it could not learn of the new one), left the live fleet (held past the heartbeat
        // expiry) and came back on the new release.
        let cut = &run["link_cut"];
        assert_eq!(cut["node"], "n3", "{cut}");
        assert_eq!(cut["failed"], 0, "{cut}");
        assert_eq!(cut["served_current"], true, "{cut}");
        assert_eq!(
            cut["versions_while_cut"].as_object().unwrap().len(),
            1,
            "{cut}"
        );
        assert!(cut["requests"].as_u64().unwrap() > 100, "{cut}");
        assert_eq!(cut["dropped"], true, "{cut}");
        assert!(cut["rejoin_s"].as_f64().unwrap() > 0.0, "{cut}");
        assert!(last.contains(" link_cut_failed=0 "), "{last}");
        assert!(
            stdout.contains("network: netns (3 namespaces; control 10.231."),
            "{stdout}"
        );
    } else {
        assert!(run["link_cut"].is_null(), "{run}");
        assert!(
            stdout.contains("link cut: not measured on loopback"),
            "{stdout}"
        );
        assert!(
            last.contains(" link_rejoin_s=na link_cut_failed=na "),
            "{last}"
        );
    }
    // Nothing of the run is left behind: no namespace, bridge or veth named for its pid.
    if namespaces {
        let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let links = Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .unwrap();
        let listed = format!(
            "{}{}",
            String::from_utf8_lossy(&netns.stdout),
            String::from_utf8_lossy(&links.stdout)
        );
        for kind in ["n", "c", "s"] {
            assert!(!listed.contains(&format!("spk{pid}{kind}")), "{listed}");
        }
    }
}
