//! Desired state changes only by compare-and-set.

use super::*;

#[tokio::test]
async fn compare_and_set_lets_exactly_one_writer_win() {
    let server = NatsServer::start();
    let fleet = connect(&server).await;
    assert_eq!(fleet.desired("shop").await.unwrap(), None);
    let first = fleet
        .put_desired(&desired("shop", 1, "v1"), None)
        .await
        .unwrap();
    // Creating again is refused: someone else created it.
    let again = fleet
        .put_desired(&desired("shop", 1, "v1b"), None)
        .await
        .unwrap_err();
    assert!(again.is_conflict(), "{again}");
    // Two writers that read the same revision: one wins, the other is told.
    let (a, b) = (connect(&server).await, connect(&server).await);
    let (va, vb) = (desired("shop", 2, "v2a"), desired("shop", 2, "v2b"));
    let (ra, rb) = tokio::join!(
        a.put_desired(&va, Some(first)),
        b.put_desired(&vb, Some(first)),
    );
    let (won, lost) = match (ra, rb) {
        (Ok(_), Err(e)) => ("v2a", e),
        (Err(e), Ok(_)) => ("v2b", e),
        other => panic!("exactly one write must win: {other:?}"),
    };
    assert!(lost.is_conflict(), "{lost}");
    assert!(lost.to_string().contains("conflict"), "{lost}");
    let now = fleet.desired("shop").await.unwrap().unwrap();
    assert_eq!(now.value.release.manifest, won);
    assert!(now.revision > first);
    assert_eq!(fleet.apps().await.unwrap().len(), 1);
}

#[tokio::test]
async fn names_are_checked() {
    let server = NatsServer::start();
    let fleet = connect(&server).await;
    assert!(fleet.desired("no.dots").await.is_err());
    assert!(
        fleet
            .put_desired(&desired("a b", 1, "x"), None)
            .await
            .is_err()
    );
}
