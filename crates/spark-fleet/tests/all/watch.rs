//! The re-watch loop: changes arrive once and in order, across a server restart.

use super::*;

async fn next(rx: &mut tokio::sync::mpsc::Receiver<spark_fleet::Change>) -> spark_fleet::Change {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a change within 20 s")
        .expect("the watch is running")
}

#[tokio::test]
async fn watch_resumes_after_the_server_restarts() {
    let mut server = NatsServer::start();
    let fleet = connect(&server).await;
    let r1 = fleet
        .put_desired(&desired("shop", 1, "v1"), None)
        .await
        .unwrap();
    let mut rx = fleet.watch_desired("shop", 0);
    let first = next(&mut rx).await;
    assert_eq!(first.revision, r1);
    assert_eq!(first.value.unwrap().release.manifest, "v1");

    let r2 = fleet
        .put_desired(&desired("shop", 2, "v2"), Some(r1))
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await.revision, r2);

    // SIGKILL the server, restart it on the same store, write again.
    server.restart();
    let writer = connect(&server).await;
    let r3 = writer
        .put_desired(&desired("shop", 3, "v3"), Some(r2))
        .await
        .unwrap();
    let third = next(&mut rx).await;
    assert_eq!(third.revision, r3, "no change skipped, none repeated");
    assert_eq!(third.value.unwrap().generation, 3);
}
