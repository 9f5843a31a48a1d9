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
    assert_eq!(fleet.fetch_artifact(&digest).await.unwrap(), bytes);

    // Bytes stored under a name they do not hash to.
    let claimed = sha256_hex(b"the real component");
    fleet.put_object(&claimed, b"something else").await.unwrap();
    let error = fleet.fetch_artifact(&claimed).await.unwrap_err();
    assert!(
        matches!(error, FleetError::DigestMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("refused"), "{error}");

    let missing = fleet
        .fetch_artifact(&sha256_hex(b"never uploaded"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, FleetError::MissingArtifact(_)),
        "{missing}"
    );
}
