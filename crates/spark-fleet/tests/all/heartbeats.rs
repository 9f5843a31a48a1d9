//! Heartbeats list the live nodes; a silent node's entry expires.

use super::*;
use spark_fleet::NodeReport;

#[tokio::test]
async fn heartbeats_list_live_nodes_and_expire() {
    let server = NatsServer::start();
    let fleet = connect(&server).await;
    for (node, app) in [("b", "shop"), ("a", "shop"), ("c", "other")] {
        let report = NodeReport {
            node: node.into(),
            app: app.into(),
            release_key: Some("k1".into()),
            ..NodeReport::default()
        };
        fleet.report(&report).await.unwrap();
    }
    let nodes = fleet.nodes().await.unwrap();
    let ids: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(fleet.app_nodes("shop").await.unwrap().len(), 2);
    // The bucket's max_age is 2 s here: a node that stops reporting disappears.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(fleet.nodes().await.unwrap().is_empty());
}
