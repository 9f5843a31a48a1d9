//! Components in the object store, named by the hex SHA-256 of their bytes. An upload of bytes
//! already there is skipped; a download is streamed (never whole in memory), size-capped, and
//! verified against its name before anyone uses it.

/// The largest component a node downloads from the fleet (what `spark deploy` may upload to a
/// node, too).
pub const MAX_ARTIFACT_BYTES: u64 = 512 << 20;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

    /// Downloads the component `digest` into memory and checks that its bytes hash to it
    /// (at most `max_bytes`). Nodes stream to disk with [`Fleet::fetch_artifact_to`].
    pub async fn fetch_artifact(
        &self,
        digest: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, FleetError> {
        let mut bytes = Vec::new();
        self.fetch_artifact_to(digest, &mut bytes, max_bytes)
            .await?;
        Ok(bytes)
    }

    /// Streams the component `digest` into `out`, hashing as it goes: refused before a byte
    /// is written when the object store says it is over `max_bytes`, stopped as soon as more
    /// than `max_bytes` arrive, and an error if the bytes do not hash to `digest` (whatever
    /// was written must then be discarded). Returns the size.
    pub async fn fetch_artifact_to(
        &self,
        digest: &str,
        out: &mut (impl AsyncWrite + Unpin),
        max_bytes: u64,
    ) -> Result<u64, FleetError> {
        let mut object = self.artifacts.get(digest).await.map_err(|e| {
            if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound {
                FleetError::MissingArtifact(digest.to_owned())
            } else {
                FleetError::nats("downloading an artifact", e)
            }
        })?;
        let too_large = |size: u64| FleetError::ArtifactTooLarge {
            digest: digest.to_owned(),
            size,
            max: max_bytes,
        };
        if (object.info.size as u64) > max_bytes {
            return Err(too_large(object.info.size as u64));
        }
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = object
                .read(&mut chunk)
                .await
                .map_err(|e| FleetError::nats("downloading an artifact", e))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > max_bytes {
                return Err(too_large(total));
            }
            hasher.update(&chunk[..n]);
            out.write_all(&chunk[..n])
                .await
                .map_err(|e| FleetError::nats("writing a downloaded artifact", e))?;
        }
        out.flush()
            .await
            .map_err(|e| FleetError::nats("writing a downloaded artifact", e))?;
        let actual = hex::encode(hasher.finalize());
        if actual != digest {
            return Err(FleetError::DigestMismatch {
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(total)
    }
}
