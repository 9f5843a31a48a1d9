//! Guests that try to make the host hold memory for them, in a test binary of their own: the
//! check on this process's resident memory must not count other tests' nodes (their loads and
//! background compiles run in the same process when they share a binary).

#[allow(
    dead_code,
    reason = "the hostile binary's helpers; this binary uses some of them"
)]
#[path = "hostile/support.rs"]
mod support;

#[path = "hostile/host_memory.rs"]
mod host_memory;
