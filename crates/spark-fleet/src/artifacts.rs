//! Components in the object store, named by the hex SHA-256 of their bytes. An upload of bytes
//! already there is skipped; a download is verified against its name before anyone sees it.

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::{Fleet, FleetError};

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Fleet {
    /// Stores a component under its digest (returned); a no-op when it is there already.
    pub async fn upload_artifact(&self, bytes: &[u8]) -> Result<String, FleetError> {
        let digest = sha256_hex(bytes);
        if self.artifacts.info(&digest).await.is_ok() {
            return Ok(digest);
        }
        self.put_object(&digest, bytes).await?;
        Ok(digest)
    }

    /// Stores bytes under any name, unchecked. Only for tests that need a damaged artifact.
    #[doc(hidden)]
    pub async fn put_object(&self, name: &str, bytes: &[u8]) -> Result<(), FleetError> {
        let mut reader = bytes;
        self.artifacts
            .put(name, &mut reader)
            .await
            .map(drop)
            .map_err(|e| FleetError::nats("uploading an artifact", e))
    }

    /// Downloads the component `digest` and checks that its bytes hash to it.
    pub async fn fetch_artifact(&self, digest: &str) -> Result<Vec<u8>, FleetError> {
        let mut object = self.artifacts.get(digest).await.map_err(|e| {
            if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound {
                FleetError::MissingArtifact(digest.to_owned())
            } else {
                FleetError::nats("downloading an artifact", e)
            }
        })?;
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| FleetError::nats("downloading an artifact", e))?;
        verify(digest, bytes)
    }
}

/// Refuses bytes that do not hash to `expected`.
pub(crate) fn verify(expected: &str, bytes: Vec<u8>) -> Result<Vec<u8>, FleetError> {
    let actual = sha256_hex(&bytes);
    if actual != expected {
        return Err(FleetError::DigestMismatch {
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_refuses_other_bytes() {
        let digest = sha256_hex(b"good");
        assert!(verify(&digest, b"good".to_vec()).is_ok());
        let error = verify(&digest, b"evil".to_vec()).unwrap_err();
        assert!(error.to_string().contains("refused"), "{error}");
    }
}
