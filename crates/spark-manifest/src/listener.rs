//! What a client may hold of a listener, and for how long: the front-door limits of `[node]`
//! and the TLS certificates of each listener (`[[node.tls]]`, `[[node.admin_tls]]`).
//!
//! The decision worth knowing: the defaults are for a node on the open internet, not for a
//! benchmark. Every timeout is finite and every count is capped, because the clients that
//! matter most to the limits are the ones that never finish a request, never read a
//! response or never close a socket. A node behind a trusted proxy can raise them.

use std::path::PathBuf;
use std::time::Duration;

/// Limits every connection on a listener is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// A new connection must deliver a complete request head within this (and a request head
    /// begun on an idle connection must be finished within it): slowloris ends here.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// A response the client does not take for this long (socket or HTTP/2 window stalled)
    /// closes the connection, which releases everything its requests hold.
    pub send_timeout: Duration,
    /// A request body that delivers nothing for this long fails (the guest sees an error).
    pub request_body_timeout: Duration,
    /// Connections open at once on the listener; beyond it new ones are closed at accept.
    pub max_connections: u32,
    /// Connections open at once from one client address.
    pub max_connections_per_client: u32,
    /// Connections a second one client address may open and leave unused, after a burst of
    /// `max_connections_per_client` (zero: no limit): every connection takes a token at
    /// accept and one that carried a request gives it back (unless the node cut it for
    /// misbehaviour), so a client that opens and closes connections without using them (a TLS
    /// handshake flood) is reset at accept, before its handshake, and one that opens a
    /// connection per request is not held to it.
    pub max_connection_rate_per_client: u32,
    /// Connections served apart on the critical executor at once (those whose first request is
    /// for a critical module, with `orchestrator.critical_first`); beyond it they are served
    /// like any other. Zero: none is.
    pub max_connections_apart: u32,
    /// Streams one HTTP/2 connection may have open at once.
    pub h2_max_concurrent_streams: u32,
    /// How often an idle HTTP/2 peer is pinged (zero: never); a peer that does not answer
    /// within [`H2_KEEPALIVE_TIMEOUT`] is dropped.
    pub h2_keepalive_interval: Duration,
    /// Requests a connection may abandon (HTTP/2 `RST_STREAM`, or a close mid-request) per
    /// minute before it is closed.
    pub h2_reset_budget: u32,
    /// Longest a finished connection waits for its client to stop sending before it closes
    /// (zero: it closes at once, and a client still uploading may see a reset instead of the
    /// answer it was sent).
    pub linger_time: Duration,
    /// Most a finished connection reads (and drops) from a client still sending before it
    /// closes anyway.
    pub linger_bytes: u64,
}

/// Default `node.header_read_timeout`: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `node.idle_timeout`: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `node.send_timeout`: 20 s.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// Default `node.request_body_timeout`: 20 s.
pub const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(20);
/// Default `node.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
/// Default `node.max_connections_per_client`.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: u32 = 256;
/// Default `node.max_connection_rate_per_client`: unused connections a second. A client
/// whose connections carry requests never spends it; one opening a hundred a second that
/// carry nothing, for longer than its burst, is flooding.
pub const DEFAULT_MAX_CONNECTION_RATE_PER_CLIENT: u32 = 100;
/// Default `node.max_connections_apart`: a critical client's connection pool, not a flood.
pub const DEFAULT_MAX_CONNECTIONS_APART: u32 = 64;
/// Default `node.admin_max_connections`.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: u32 = 128;
/// Default `node.h2_max_concurrent_streams`.
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Default `node.h2_keepalive_interval`: 30 s.
pub const DEFAULT_H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long an HTTP/2 keep-alive ping may go unanswered.
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Default `node.h2_reset_budget`: abandoned requests per minute.
pub const DEFAULT_H2_RESET_BUDGET: u32 = 200;
/// Default `node.linger_time`: 3 s (Apache lingers 2 s, nginx up to 30 s).
pub const DEFAULT_LINGER_TIME: Duration = Duration::from_secs(3);
/// Default `node.linger_bytes`: 16 MiB.
pub const DEFAULT_LINGER_BYTES: u64 = 16 << 20;

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            request_body_timeout: DEFAULT_REQUEST_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            max_connection_rate_per_client: DEFAULT_MAX_CONNECTION_RATE_PER_CLIENT,
            max_connections_apart: DEFAULT_MAX_CONNECTIONS_APART,
            h2_max_concurrent_streams: DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            h2_keepalive_interval: DEFAULT_H2_KEEPALIVE_INTERVAL,
            h2_reset_budget: DEFAULT_H2_RESET_BUDGET,
            linger_time: DEFAULT_LINGER_TIME,
            linger_bytes: DEFAULT_LINGER_BYTES,
        }
    }
}

impl ListenerLimits {
    /// The admin listener's limits: the same timeouts, its own (smaller) connection cap.
    pub fn for_admin(&self, max_connections: u32) -> ListenerLimits {
        ListenerLimits {
            max_connections,
            max_connections_per_client: self.max_connections_per_client.min(max_connections),
            max_connections_apart: self.max_connections_apart.min(max_connections),
            ..*self
        }
    }
}

/// A certificate chain and its private key, both PEM files (manifest-relative paths resolved).
/// The names it serves are read from the certificate itself (its subject alternative names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The PEM certificate chain.
    pub cert: PathBuf,
    /// The PEM private key of the certificate.
    pub key: PathBuf,
}
