//! Hostile clients and guests against a real node: clients that disconnect mid-request,
//! reset HTTP/2 streams, never finish their headers, stop reading, or open too many
//! connections; guests that try to make the host hold memory for them. Every limit must hold
//! and every gauge must come back to zero. Its own test binary: these tests wait out
//! (short) timeouts.

mod caps;
mod disconnects;
mod host_memory;
mod slow_clients;
mod support;
mod tls;
