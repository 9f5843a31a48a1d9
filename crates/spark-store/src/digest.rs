//! [`Digest`]: the SHA-256 of an artifact's bytes, the only name an artifact has.
//!
//! Decision: a digest is always 64 *lowercase* hex characters. Parsing refuses uppercase
//! instead of normalising it, so a digest has exactly one spelling: the file name on disk,
//! the JSON in a release record and the string an operator pastes are byte-for-byte equal.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::StoreError;

/// Length of a digest in hex characters.
pub const DIGEST_HEX_LEN: usize = 64;

/// A validated SHA-256 digest in lowercase hex.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(hex::encode(Sha256::digest(bytes)))
    }

    /// The digest of everything `reader` yields, read in chunks (never all in memory).
    pub fn of_reader(mut reader: impl Read) -> std::io::Result<Digest> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
        }
        Ok(Digest(hex::encode(hasher.finalize())))
    }

    /// Parses a digest: exactly 64 characters of `0-9a-f`.
    pub fn parse(s: &str) -> Result<Digest, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidDigest {
            input: s.chars().take(80).collect(),
            reason: reason.to_owned(),
        };
        if s.len() != DIGEST_HEX_LEN {
            return Err(invalid(&format!(
                "expected {DIGEST_HEX_LEN} hex characters, got {}",
                s.len()
            )));
        }
        if let Some(c) = s.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(invalid(&format!("{c:?} is not a lowercase hex digit")));
        }
        Ok(Digest(s.to_owned()))
    }

    /// The 64 lowercase hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first two hex characters: the fan-out directory of the artifact.
    pub fn fan_out(&self) -> &str {
        &self.0[..2]
    }

    /// The first `n` hex characters (at most 64), for short display.
    pub fn short(&self, n: usize) -> &str {
        &self.0[..n.min(DIGEST_HEX_LEN)]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl FromStr for Digest {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl TryFrom<String> for Digest {
    type Error = StoreError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        assert_eq!(
            Digest::of(b"abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::of_reader(&b"abc"[..]).unwrap(), Digest::of(b"abc"));
    }

    #[test]
    fn parse_validates() {
        let good = Digest::of(b"x");
        assert_eq!(Digest::parse(good.as_str()).unwrap(), good);
        assert!(Digest::parse(&good.as_str().to_uppercase()).is_err());
        assert!(Digest::parse(&good.as_str()[..63]).is_err());
        assert!(Digest::parse(&format!("{}0", good.as_str())).is_err());
        let err = Digest::parse(&"g".repeat(64)).unwrap_err().to_string();
        assert!(err.contains("'g'"), "{err}");
        assert!(Digest::parse(&"é".repeat(32)).is_err());
    }

    #[test]
    fn serde_round_trip_validates() {
        let d = Digest::of(b"y");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"ABC\"").is_err());
    }

    #[test]
    fn fan_out_and_short() {
        let d = Digest::of(b"abc");
        assert_eq!(d.fan_out(), "ba");
        assert_eq!(d.short(12), "ba7816bf8f01");
        assert_eq!(d.short(100).len(), 64);
    }
}
