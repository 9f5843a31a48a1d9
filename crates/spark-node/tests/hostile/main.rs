//! Hostile clients and guests against a real node: clients that disconnect mid-request,
//! reset HTTP/2 streams, never finish their headers, stop reading, or open too many
//! connections (guests that try to make the host hold memory for them are in `tests/host_memory.rs`,
//! a binary of their own: it measures the process's memory). Every limit must hold
//! and every gauge must come back to zero. Its own test binary: these tests wait out
//! (short) timeouts.

mod caps;
mod disconnects;
mod slow_clients;
mod support;
mod tls;
