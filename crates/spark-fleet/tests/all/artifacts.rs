//! Artifacts by digest, verified on download.

use super::*;
use spark_fleet::{FleetError, sha256_hex};

#[tokio::test]
async fn artifacts_round_trip_and_damaged_ones_are_refused() {
    let server = NatsServer::start();
    let fleet = connect(&server).await;
    let bytes = vec![7u8; 300_000];
    let digest = fleet.upload_artifact(&bytes).await.unwrap();
    assert_eq!(digest, sha256_hex(&bytes));
    assert_eq!(fleet.upload_artifact(&bytes).await.unwrap(), digest);
    assert_eq!(fleet.fetch_artifact(&digest, 1 << 20).await.unwrap(), bytes);

    // Bytes stored under a name they do not hash to.
    let claimed = sha256_hex(b"the real component");
    fleet.put_object(&claimed, b"something else").await.unwrap();
    let error = fleet.fetch_artifact(&claimed, 1 << 20).await.unwrap_err();
    assert!(
        matches!(error, FleetError::DigestMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("refused"), "{error}");

    let missing = fleet
        .fetch_artifact(&sha256_hex(b"never uploaded"), 1 << 20)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, FleetError::MissingArtifact(_)),
        "{missing}"
    );

    // Over the cap: refused from the object's size, before any byte is written.
    let big = vec![7u8; 300 * 1024];
    let big_digest = fleet.upload_artifact(&big).await.unwrap();
    let mut out = Vec::new();
    let error = fleet
        .fetch_artifact_to(&big_digest, &mut out, 256 * 1024)
        .await
        .unwrap_err();
    assert!(
        matches!(error, FleetError::ArtifactTooLarge { size, .. } if size == big.len() as u64),
        "{error}"
    );
    assert!(out.is_empty(), "nothing written");
    // Streamed into a file, in chunks, under the cap.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("download");
    let mut file = tokio::fs::File::create(&path).await.unwrap();
    let size = fleet
        .fetch_artifact_to(&big_digest, &mut file, spark_fleet::MAX_ARTIFACT_BYTES)
        .await
        .unwrap();
    assert_eq!(size, big.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), big);
}
