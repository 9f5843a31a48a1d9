//! The admin API's bearer token check, in constant time. The token itself (32 random bytes,
//! hex, owner-only in `<data_dir>/admin.token`) is made and kept by [`spark_store::DataDir`].

/// Whether an `Authorization` header carries the token (`Bearer <token>`).
pub(crate) fn authorized(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bearer_token_is_authorized() {
        let token = "f".repeat(64);
        assert!(authorized(Some(&format!("Bearer {token}")), &token));
        assert!(!authorized(Some("Bearer nope"), &token));
        assert!(!authorized(Some(&token), &token), "the scheme is required");
        assert!(!authorized(None, &token));
    }
}
