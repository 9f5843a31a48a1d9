//! Idle connections kept for reuse, per destination: the bookkeeping, without the sockets.
//!
//! Bounded three ways, by named constants: connections kept per destination, in total, and
//! for how long one may sit idle. Taking is last-in-first-out (the connection used most
//! recently is the one most likely still open at the server); expiry drops from the other
//! end. The decision worth knowing: time is an argument, so the rules are tested without
//! sleeping, and a full pool refuses the newcomer rather than evicting another
//! destination's connection (a busy destination cannot starve the others of reuse).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Idle connections kept per destination (scheme, host, port).
pub(crate) const MAX_IDLE_PER_HOST: usize = 8;
/// Idle connections kept in one pool (one module) across destinations.
pub(crate) const MAX_IDLE_TOTAL: usize = 64;
/// How long a connection may sit idle before it is closed. Shorter than the usual server
/// keep-alive (nginx: 75 s; many APIs: 60 s), so the pool rarely hands out a connection the
/// server is closing.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a pooled connection goes: TLS or not, host as the guest named it, port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// Idle connections by destination.
#[derive(Debug)]
pub(crate) struct IdleSet<C> {
    by_key: HashMap<PoolKey, VecDeque<(C, Instant)>>,
    total: usize,
}

impl<C> Default for IdleSet<C> {
    fn default() -> Self {
        IdleSet {
            by_key: HashMap::new(),
            total: 0,
        }
    }
}

impl<C> IdleSet<C> {
    /// Keeps `conn` for reuse; hands it back when the destination or the pool is full.
    pub(crate) fn put(&mut self, key: PoolKey, conn: C, now: Instant) -> Result<(), C> {
        self.expire(now);
        let idle = self.by_key.entry(key).or_default();
        if idle.len() >= MAX_IDLE_PER_HOST || self.total >= MAX_IDLE_TOTAL {
            return Err(conn);
        }
        idle.push_back((conn, now));
        self.total += 1;
        Ok(())
    }

    /// The most recently idled connection to `key` that has not expired.
    pub(crate) fn take(&mut self, key: &PoolKey, now: Instant) -> Option<C> {
        self.expire(now);
        let idle = self.by_key.get_mut(key)?;
        let (conn, _) = idle.pop_back()?;
        self.total -= 1;
        if idle.is_empty() {
            self.by_key.remove(key);
        }
        Some(conn)
    }

    /// Drops connections idle for longer than [`IDLE_TIMEOUT`].
    pub(crate) fn expire(&mut self, now: Instant) {
        let mut dropped = 0;
        self.by_key.retain(|_, idle| {
            while idle
                .front()
                .is_some_and(|(_, since)| now.saturating_duration_since(*since) >= IDLE_TIMEOUT)
            {
                idle.pop_front();
                dropped += 1;
            }
            !idle.is_empty()
        });
        self.total -= dropped;
    }

    pub(crate) fn len(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str) -> PoolKey {
        PoolKey {
            tls: false,
            host: host.into(),
            port: 80,
        }
    }

    #[test]
    fn takes_the_most_recent_connection_of_its_destination() {
        let t0 = Instant::now();
        let mut set = IdleSet::default();
        set.put(key("a"), 1, t0).unwrap();
        set.put(key("a"), 2, t0 + Duration::from_secs(1)).unwrap();
        set.put(key("b"), 3, t0).unwrap();
        assert_eq!(set.take(&key("a"), t0 + Duration::from_secs(2)), Some(2));
        assert_eq!(set.take(&key("a"), t0 + Duration::from_secs(2)), Some(1));
        assert_eq!(set.take(&key("a"), t0 + Duration::from_secs(2)), None);
        let tls = PoolKey {
            tls: true,
            ..key("b")
        };
        assert_eq!(set.take(&tls, t0), None, "TLS and plain never mix");
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn idle_connections_expire() {
        let t0 = Instant::now();
        let mut set = IdleSet::default();
        set.put(key("a"), 1, t0).unwrap();
        set.put(key("a"), 2, t0 + Duration::from_secs(10)).unwrap();
        set.put(key("b"), 3, t0).unwrap();
        set.expire(t0 + IDLE_TIMEOUT);
        assert_eq!(set.len(), 1, "only the younger one is left");
        assert_eq!(set.take(&key("a"), t0 + IDLE_TIMEOUT), Some(2));
        set.put(key("a"), 4, t0).unwrap();
        assert_eq!(set.take(&key("a"), t0 + IDLE_TIMEOUT * 2), None);
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn bounded_per_destination_and_in_total() {
        let t0 = Instant::now();
        let mut set = IdleSet::default();
        for n in 0..MAX_IDLE_PER_HOST {
            set.put(key("a"), n, t0).unwrap();
        }
        assert_eq!(set.put(key("a"), 99, t0), Err(99));
        let mut host = 0;
        while set.len() < MAX_IDLE_TOTAL {
            host += 1;
            set.put(key(&format!("h{host}")), host, t0).unwrap();
        }
        assert_eq!(
            set.put(key("new"), 100, t0),
            Err(100),
            "full: the newcomer is refused"
        );
        assert_eq!(set.take(&key("a"), t0), Some(MAX_IDLE_PER_HOST - 1));
        assert!(set.put(key("new"), 100, t0).is_ok(), "room again");
    }
}
