//! The fleet on a JetStream cluster of three (`NatsCluster`): buckets created with three
//! replicas keep working, for a client given every server's URL, when the server leading
//! them dies; a restarted server catches up. Replica counts JetStream cannot keep are refused.

use super::*;
use spark_testkit::{NatsCluster, wait_until};

/// The leader and the follower count of `stream`, from any running server's `/jsz`.
fn placement(cluster: &NatsCluster, stream: &str) -> Option<(String, usize)> {
    (0..cluster.len())
        .filter(|&i| cluster.is_running(i))
        .find_map(|i| {
            let (_, body) = cluster.monitor_get(i, "/jsz?accounts=true&streams=true")?;
            let value: serde_json::Value = serde_json::from_str(&body).ok()?;
            let detail = value["account_details"]
                .as_array()?
                .iter()
                .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
                .find(|s| s["name"] == stream)?
                .clone();
            let leader = detail["cluster"]["leader"].as_str()?.to_owned();
            let followers = detail["cluster"]["replicas"].as_array().map_or(0, Vec::len);
            Some((leader, followers))
        })
}

async fn manifest_now(fleet: &Fleet) -> Option<String> {
    fleet
        .desired("shop")
        .await
        .ok()
        .flatten()
        .map(|d| d.value.release.manifest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_buckets_survive_the_death_of_their_leader() {
    let mut cluster = NatsCluster::start();
    let config = FleetConfig {
        replicas: 3,
        client_name: "spark node t1".into(),
        ..FleetConfig::new(cluster.urls())
    };
    let fleet = Fleet::connect(&config).await.unwrap();
    for stream in ["KV_spark-desired", "KV_spark-nodes", "OBJ_spark-artifacts"] {
        let (_, followers) = placement(&cluster, stream).expect(stream);
        assert_eq!(followers, 2, "{stream}: a leader and two followers");
    }
    // The servers list the connection under its name (what `spark bench fleet` counts by).
    let named = (0..cluster.len()).any(|i| {
        cluster
            .monitor_get(i, "/connz")
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .is_some_and(|connz| {
                connz["connections"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["name"] == "spark node t1"))
            })
    });
    assert!(named, "no server lists the connection by its name");

    let first = fleet
        .put_desired(&desired("shop", 1, "v1"), None)
        .await
        .unwrap();
    let (leader, _) = placement(&cluster, "KV_spark-desired").unwrap();
    let victim = (0..cluster.len())
        .find(|&i| cluster.name(i) == leader)
        .unwrap();
    cluster.kill(victim);
    // The two left elect a leader; the client (moved to another server if it was on the
    // dead one) writes on. A write whose reply was lost shows as a conflict with v2 stored.
    wait_until(
        Duration::from_secs(30),
        "a write after the leader died",
        || async {
            match fleet
                .put_desired(&desired("shop", 2, "v2"), Some(first))
                .await
            {
                Ok(_) => true,
                Err(e) if e.is_conflict() => manifest_now(&fleet).await.as_deref() == Some("v2"),
                Err(_) => false,
            }
        },
    )
    .await;
    assert_eq!(manifest_now(&fleet).await.as_deref(), Some("v2"));

    // Back, the server catches up: a client of that server alone reads v2.
    cluster.restart(victim).unwrap();
    let alone = Fleet::connect(&FleetConfig::new(cluster.url(victim)))
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        "the restarted server serving v2",
        || async { manifest_now(&alone).await.as_deref() == Some("v2") },
    )
    .await;
}

#[tokio::test]
async fn replica_counts_jetstream_cannot_keep_are_refused() {
    let server = NatsServer::start();
    for replicas in [0, 6] {
        let config = FleetConfig {
            replicas,
            ..FleetConfig::new(server.url())
        };
        let error = Fleet::connect(&config).await.err().expect("refused");
        assert_eq!(
            error.to_string(),
            format!(
                "invalid bucket replica count '{replicas}': JetStream keeps 1 to 5 copies of a bucket"
            )
        );
    }
    // Three copies on a single server: JetStream refuses, and nothing is created.
    let config = FleetConfig {
        replicas: 3,
        ..FleetConfig::new(server.url())
    };
    let error = Fleet::connect(&config).await.err().expect("refused");
    assert!(
        spark_error::chain(&error)
            .to_string()
            .contains("creating a KV bucket: bucket creation failed: jetstream error: replicas > 1 not supported in non-clustered mode"),
        "{}",
        spark_error::chain(&error)
    );
    let fleet = Fleet::connect(&FleetConfig::new(server.url()))
        .await
        .unwrap();
    assert_eq!(fleet.desired("shop").await.unwrap(), None);
}
