//! The dashboard's login codes and browser sessions, as pure logic (time is an argument).
//!
//! A bearer-token holder (`spark dashboard`) mints a login code: single use, short-lived. A
//! browser redeems it once for a session id carried in an HttpOnly cookie. Both are 32 random
//! bytes (hex); both tables are bounded (a flood of logins evicts the oldest entries instead of
//! growing memory), and every lookup compares each live secret in constant time, so the time a
//! check takes does not say how much of a guess was right.

/// How long a login code can be redeemed.
pub(crate) const CODE_TTL_MS: u64 = 120_000;
/// How long a session lasts after login.
pub(crate) const SESSION_TTL_MS: u64 = 12 * 3_600_000;
/// Login codes kept at most (the oldest is dropped for a new one).
pub(crate) const MAX_CODES: usize = 16;
/// Sessions kept at most (the oldest is dropped for a new one).
pub(crate) const MAX_SESSIONS: usize = 64;

/// A secret and when it stops being valid (Unix ms).
#[derive(Debug, Clone)]
struct Entry {
    secret: String,
    expires_ms: u64,
}

/// Why a login code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Unknown, already used, or expired: indistinguishable on purpose.
    UnknownOrExpired,
}

/// The live login codes and sessions.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    codes: Vec<Entry>,
    sessions: Vec<Entry>,
}

impl Sessions {
    /// Records a fresh login code (`secret`, from the caller's random source) valid until
    /// `now_ms + CODE_TTL_MS`.
    pub(crate) fn add_code(&mut self, secret: String, now_ms: u64) {
        insert_bounded(
            &mut self.codes,
            Entry {
                secret,
                expires_ms: now_ms + CODE_TTL_MS,
            },
            now_ms,
            MAX_CODES,
        );
    }

    /// Redeems a login code: removes it (single use) and opens a session `session` (from the
    /// caller's random source) valid until `now_ms + SESSION_TTL_MS`.
    pub(crate) fn redeem(
        &mut self,
        code: &str,
        session: String,
        now_ms: u64,
    ) -> Result<(), Refused> {
        let found = find(&self.codes, code, now_ms).ok_or(Refused::UnknownOrExpired)?;
        self.codes.swap_remove(found);
        insert_bounded(
            &mut self.sessions,
            Entry {
                secret: session,
                expires_ms: now_ms + SESSION_TTL_MS,
            },
            now_ms,
            MAX_SESSIONS,
        );
        Ok(())
    }

    /// Whether `session` is a live session.
    pub(crate) fn valid(&self, session: &str, now_ms: u64) -> bool {
        find(&self.sessions, session, now_ms).is_some()
    }

    /// Live codes and sessions (for tests of the bound).
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        (self.codes.len(), self.sessions.len())
    }
}

/// The index of the unexpired entry whose secret equals `given`; every entry is compared in
/// full.
fn find(entries: &[Entry], given: &str, now_ms: u64) -> Option<usize> {
    let mut found = None;
    for (i, entry) in entries.iter().enumerate() {
        if constant_time_eq(entry.secret.as_bytes(), given.as_bytes()) && now_ms < entry.expires_ms
        {
            found = Some(i);
        }
    }
    found
}

/// Drops expired entries, then the oldest while full, then adds `entry`.
fn insert_bounded(entries: &mut Vec<Entry>, entry: Entry, now_ms: u64, max: usize) {
    entries.retain(|e| now_ms < e.expires_ms);
    while entries.len() >= max {
        let oldest = entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.expires_ms)
            .map(|(i, _)| i)
            .expect("a full table is not empty");
        entries.swap_remove(oldest);
    }
    entries.push(entry);
}

/// Equal bytes, in time that depends only on the lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_logs_in_once_and_the_session_is_valid_until_it_expires() {
        let mut s = Sessions::default();
        s.add_code("c1".into(), 1_000);
        assert_eq!(s.redeem("c1", "s1".into(), 2_000), Ok(()));
        assert!(s.valid("s1", 2_000));
        assert_eq!(
            s.redeem("c1", "s2".into(), 2_001),
            Err(Refused::UnknownOrExpired),
            "single use"
        );
        assert!(!s.valid("s2", 2_001));
        assert!(s.valid("s1", 2_000 + SESSION_TTL_MS - 1));
        assert!(!s.valid("s1", 2_000 + SESSION_TTL_MS));
    }

    #[test]
    fn wrong_and_expired_codes_are_refused() {
        let mut s = Sessions::default();
        s.add_code("good".into(), 0);
        assert!(s.redeem("goof", "x".into(), 1).is_err());
        assert!(s.redeem("", "x".into(), 1).is_err());
        assert!(
            s.redeem("good", "x".into(), CODE_TTL_MS).is_err(),
            "expired"
        );
        assert!(!s.valid("x", CODE_TTL_MS));
    }

    #[test]
    fn a_flood_keeps_the_tables_bounded_and_the_newest_entries() {
        let mut s = Sessions::default();
        for i in 0..1_000u64 {
            s.add_code(format!("c{i}"), i);
        }
        assert_eq!(s.counts().0, MAX_CODES);
        assert!(s.redeem("c999", "s".into(), 1_000).is_ok());
        assert!(s.redeem("c0", "s0".into(), 1_000).is_err(), "evicted");
        for i in 0..1_000u64 {
            s.add_code(format!("d{i}"), 2_000 + i);
            s.redeem(&format!("d{i}"), format!("s{i}"), 2_000 + i)
                .unwrap();
        }
        assert_eq!(s.counts().1, MAX_SESSIONS);
        assert!(s.valid("s999", 3_000));
        assert!(!s.valid("s0", 3_000));
    }
}
