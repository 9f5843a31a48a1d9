//! How fast one client may open connections that carry nothing: a token bucket per client
//! address. Every connection takes a token at accept and a connection that carried a request
//! gives it back when it closes, unless the node cut it for misbehaviour (a reset budget
//! spent, a stalled head, body or read), so a client that opens and closes connections without
//! using them (a TLS handshake flood, a connect-and-close loop, slowloris reconnecting, a
//! rapid-reset client reconnecting each time it is cut off) is reset at
//! accept once its bucket is empty, before a TLS handshake costs the node anything, while a
//! client opening a connection per request is held only by admission (its tokens in use are
//! its open connections, which the per-client cap bounds below the burst). The open-connection
//! caps (`serve::listener`'s gate) only see the few such a flood holds at once.
//!
//! Pure: time is an argument (a [`Duration`] since any fixed origin), so it is tested without a
//! clock. The decision worth knowing: a client whose bucket is full has no entry, so the table
//! holds only clients that opened a connection within the last refill time, and it is swept
//! whenever it has doubled since the last sweep (amortised constant work per connection, and
//! memory bounded by the accept rate, not by how many addresses a flood can use).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Per-client buckets of connection tokens.
#[derive(Debug)]
pub(crate) struct ConnectionRates {
    /// Tokens a second (0: no limit).
    rate: f64,
    /// Most tokens a bucket holds: the burst a client may open at once.
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
    /// Entries after the last sweep; the next one comes when the table is twice that.
    swept_at_len: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

/// Fewest entries before the table is swept at all.
const MIN_SWEEP_LEN: usize = 64;

impl ConnectionRates {
    /// `per_second` new connections a second per client after a burst of `burst` (0: no limit).
    pub(crate) fn new(per_second: u32, burst: u32) -> ConnectionRates {
        ConnectionRates {
            rate: f64::from(per_second),
            burst: f64::from(burst.max(per_second).max(1)),
            buckets: HashMap::new(),
            swept_at_len: 0,
        }
    }

    /// Whether `client` may open a connection at `now`; takes its token if so.
    pub(crate) fn admit(&mut self, client: IpAddr, now: Duration) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if self.buckets.len() >= (2 * self.swept_at_len).max(MIN_SWEEP_LEN) {
            self.sweep(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens = refilled(*bucket, rate, burst, now);
        bucket.at = now.max(bucket.at);
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }

    /// Gives `client` back the token of a connection that turned out to be used (it carried a
    /// request), so a client opening a connection per request is never held to the rate.
    pub(crate) fn give_back(&mut self, client: IpAddr, now: Duration) {
        let (rate, burst) = (self.rate, self.burst);
        if let Some(bucket) = self.buckets.get_mut(&client) {
            bucket.tokens = (refilled(*bucket, rate, burst, now) + 1.0).min(burst);
            bucket.at = now.max(bucket.at);
        }
    }

    /// Drops the buckets that are full again by `now` (a full bucket and no entry are alike).
    fn sweep(&mut self, now: Duration) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .retain(|_, bucket| refilled(*bucket, rate, burst, now) < burst);
        self.swept_at_len = self.buckets.len();
    }

    /// Clients with a bucket that is not full.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// The bucket's tokens at `now` (a clock that went backwards adds nothing).
fn refilled(bucket: Bucket, rate: f64, burst: f64, now: Duration) -> f64 {
    let elapsed = now.saturating_sub(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * rate).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn client(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_client_gets_its_burst_then_the_rate() {
        let mut rates = ConnectionRates::new(10, 20);
        let a = client(1);
        assert!((0..20).all(|_| rates.admit(a, ms(0))), "the burst at once");
        assert!(!rates.admit(a, ms(0)), "then nothing");
        assert!(!rates.admit(a, ms(99)), "a token takes 100 ms");
        assert!(rates.admit(a, ms(100)));
        assert!(!rates.admit(a, ms(100)));
        // A second of quiet refills ten.
        assert!((0..10).all(|_| rates.admit(a, ms(1_100))));
        assert!(!rates.admit(a, ms(1_100)));
        // Other clients have their own buckets.
        assert!(rates.admit(client(2), ms(1_100)));
    }

    #[test]
    fn refused_attempts_cost_nothing_and_a_backwards_clock_adds_nothing() {
        let mut rates = ConnectionRates::new(10, 1);
        let a = client(1);
        assert_eq!(rates.burst, 10.0, "the burst is at least a second's worth");
        assert!((0..10).all(|_| rates.admit(a, ms(1_000))));
        for _ in 0..1_000 {
            assert!(!rates.admit(a, ms(1_050)));
        }
        assert!(rates.admit(a, ms(1_100)), "refusals took no tokens");
        assert!(!rates.admit(a, ms(500)), "time going back refills nothing");
        assert!(rates.admit(a, ms(1_200)));
    }

    #[test]
    fn used_connections_give_their_tokens_back() {
        let mut rates = ConnectionRates::new(10, 10);
        let a = client(1);
        // A connection per request, a thousand in a second: each gives its token back.
        for n in 0..1_000 {
            assert!(rates.admit(a, ms(n)));
            rates.give_back(a, ms(n));
        }
        // Never above the burst, and nothing for a client without a bucket.
        rates.give_back(a, ms(5_000));
        rates.give_back(client(2), ms(5_000));
        assert!((0..10).all(|_| rates.admit(a, ms(5_000))));
        assert!(!rates.admit(a, ms(5_000)));
    }

    #[test]
    fn zero_is_no_limit() {
        let mut rates = ConnectionRates::new(0, 0);
        assert!((0..100_000).all(|_| rates.admit(client(1), ms(0))));
        assert_eq!(rates.tracked(), 0);
    }

    #[test]
    fn the_table_holds_only_recent_clients() {
        let mut rates = ConnectionRates::new(100, 100);
        // A flood from a million addresses, one connection each, 10,000 a second.
        let mut most = 0;
        for n in 0..1_000_000u32 {
            assert!(rates.admit(client(n), Duration::from_micros(u64::from(n) * 100)));
            most = most.max(rates.tracked());
        }
        // A bucket refills in 10 ms: about 100 addresses are recent at any time, and the
        // table is swept when it doubles.
        assert!(most <= 2 * 128, "at most {most} entries");
        // Long after, new clients' entries sweep every old one away.
        for n in 0..300 {
            assert!(rates.admit(client(2_000_000 + n), Duration::from_secs(1_000)));
        }
        assert_eq!(rates.tracked(), 300);
    }
}
