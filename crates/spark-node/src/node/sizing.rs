//! How the node divides what the machine gives it: memory between running invocations and
//! client connections, and file descriptors between the listeners and everything else.
//!
//! Pure: the machine's figures come in as arguments, so the arithmetic is tested without a
//! machine. What does not fit is clamped and said (one log line each), never silently.

use spark_manifest::{ListenerLimits, NodeSettings};

/// Without `node.max_memory`, the node takes this share of the machine's (or cgroup's) memory.
const DEFAULT_SHARE: (u64, u64) = (3, 4);
/// When the machine's memory cannot be read.
const FALLBACK_MAX_MEMORY: u64 = 1 << 30;
/// Client connections may use this fraction of `max_memory` (measured); invocations the rest.
const CONNECTION_DIVISOR: u64 = 4;
/// The admin listener's connections may use at most this much.
const ADMIN_CONNECTION_MEMORY: u64 = 32 << 20;
/// File descriptors kept for the node itself (store, logs, certificates, outbound requests).
const FD_RESERVE: u64 = 512;
/// And per module (copy-on-write memory images), which only a *loaded* module holds.
const FD_PER_MODULE: u64 = 2;
/// At most this share of the descriptors left after [`FD_RESERVE`] is kept for modules: only
/// loaded modules hold descriptors, and a node registering thousands keeps few loaded, so
/// reserving for every registered one would leave the listeners nothing (10,000 modules under
/// a 20,000 limit: one connection). A node that does load that many fails a module's load
/// (an error for that module) before it refuses every client.
const MODULE_FD_SHARE: (u64, u64) = (1, 2);

/// The node's budgets.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sizing {
    /// The bound on running invocations' reservations plus connection memory.
    pub max_memory: u64,
    /// What running invocations may reserve together.
    pub invocation_memory: u64,
    /// What the public listener's connections may use before new ones are refused.
    pub connection_memory: u64,
    /// The same, for the admin listener.
    pub admin_connection_memory: u64,
    pub public: ListenerLimits,
    pub admin: ListenerLimits,
    /// Settings that had to be lowered, said once at startup.
    pub notes: Vec<String>,
}

/// Divides `max_memory` (or a share of `machine_memory`) and the open-files limit.
pub(super) fn size(
    node: &NodeSettings,
    machine_memory: Option<u64>,
    fd_limit: u64,
    modules: usize,
) -> Sizing {
    let mut notes = Vec::new();
    let max_memory = node.max_memory.unwrap_or_else(|| {
        machine_memory.map_or(FALLBACK_MAX_MEMORY, |m| {
            m / DEFAULT_SHARE.1 * DEFAULT_SHARE.0
        })
    });
    let connections = max_memory / CONNECTION_DIVISOR;
    let admin_connection_memory = ADMIN_CONNECTION_MEMORY.min(connections / 8);
    let mut public = node.limits;
    let mut admin = node.limits.for_admin(node.admin_max_connections);
    let available = fd_limit.saturating_sub(FD_RESERVE);
    let for_modules =
        (FD_PER_MODULE * modules as u64).min(available / MODULE_FD_SHARE.1 * MODULE_FD_SHARE.0);
    let fds = available - for_modules;
    let wanted = u64::from(public.max_connections) + u64::from(admin.max_connections);
    if wanted > fds {
        let admin_cap = u64::from(admin.max_connections).min(fds / 8).max(1);
        let public_cap = fds.saturating_sub(admin_cap).max(1);
        notes.push(format!(
            "the open-files limit ({fd_limit}) leaves room for {public_cap} connections on the public listener and {admin_cap} on the admin listener: node.max_connections lowered from {}",
            public.max_connections
        ));
        public.max_connections = u32::try_from(public_cap).unwrap_or(u32::MAX);
        public.max_connections_per_client = public
            .max_connections_per_client
            .min(public.max_connections);
        public.max_connections_apart = public.max_connections_apart.min(public.max_connections);
        admin = admin.for_admin(u32::try_from(admin_cap).unwrap_or(u32::MAX));
    }
    Sizing {
        max_memory,
        invocation_memory: max_memory - connections,
        connection_memory: connections - admin_connection_memory,
        admin_connection_memory,
        public,
        admin,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn memory_is_split_between_invocations_and_connections() {
        let node = NodeSettings::default();
        let s = size(&node, Some(24 * GIB), 1 << 20, 10);
        assert_eq!(s.max_memory, 18 * GIB, "three quarters of the machine");
        assert_eq!(s.invocation_memory, 18 * GIB / 4 * 3);
        assert_eq!(
            s.connection_memory + s.admin_connection_memory + s.invocation_memory,
            s.max_memory
        );
        assert_eq!(s.admin_connection_memory, 32 << 20);
        assert!(s.notes.is_empty());

        let explicit = NodeSettings {
            max_memory: Some(GIB),
            ..NodeSettings::default()
        };
        let s = size(&explicit, Some(24 * GIB), 1 << 20, 10);
        assert_eq!((s.max_memory, s.invocation_memory), (GIB, GIB / 4 * 3));
        assert_eq!(size(&node, None, 1 << 20, 1).max_memory, GIB);
    }

    #[test]
    fn connection_caps_fit_under_the_open_files_limit() {
        let node = NodeSettings::default();
        let s = size(&node, Some(GIB), 4096, 100);
        let room = 4096 - FD_RESERVE - 100 * FD_PER_MODULE;
        assert_eq!(
            u64::from(s.public.max_connections) + u64::from(s.admin.max_connections),
            room
        );
        assert!(s.public.max_connections_per_client <= s.public.max_connections);
        assert!(s.public.max_connections_apart <= s.public.max_connections);
        assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
        assert!(s.notes[0].contains("node.max_connections lowered"));
        let roomy = size(&node, Some(GIB), 1 << 20, 100);
        assert_eq!(roomy.public.max_connections, node.limits.max_connections);
    }

    #[test]
    fn thousands_of_registered_modules_leave_the_listeners_half_the_descriptors() {
        let node = NodeSettings::default();
        let s = size(&node, Some(GIB), 20_000, 10_000);
        let half = (20_000 - FD_RESERVE) / 2;
        assert_eq!(
            u64::from(s.public.max_connections) + u64::from(s.admin.max_connections),
            half
        );
        assert!(s.public.max_connections > 8_000, "{:?}", s.public);
    }
}
