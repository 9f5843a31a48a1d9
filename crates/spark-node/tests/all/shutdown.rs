//! Graceful shutdown: in-flight requests finish, new connections are refused.

use std::time::Duration;

use spark_testkit::{TestNode, get};

use crate::upstream;

#[tokio::test]
async fn in_flight_requests_finish_during_shutdown() {
    let upstream = upstream::start("slow answer", Duration::from_millis(1500)).await;
    let manifest = format!(
        r#"
version = 1
[[module]]
id = "api"
component = "{{guest:echo}}"
routes = ["/..."]
allowed_outbound_hosts = ["http://{upstream}"]
"#
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let url = node.url(&format!("/fetch?url=http://{upstream}/"));
    let in_flight = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let base = node.url("/");
    let stopping = tokio::spawn(node.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        get(&base).await.is_err(),
        "no new connections once shutdown began"
    );

    let reply = in_flight.await.unwrap().unwrap();
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "upstream 200: slow answer")
    );
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown completes")
        .unwrap();
}
