//! What the request path reads: an immutable snapshot of the modules and the route table.
//!
//! The snapshot is swapped as a whole (`ArcSwap`), so a request sees exactly one version of
//! the node from routing to response, readers never take a lock, and whoever changes the node
//! builds the next snapshot off to the side and publishes it in one store.

use std::sync::Arc;

use arc_swap::ArcSwap;
use spark_manifest::{ModuleSpec, Route, RouteTable, Trigger};
use spark_runtime::GuestModule;

use crate::admission::Admission;
use crate::metrics::ModuleMetrics;

/// One module as the node runs it.
pub struct ModuleSlot {
    pub spec: ModuleSpec,
    pub guest: GuestModule,
    pub admission: Admission,
    pub metrics: ModuleMetrics,
}

impl ModuleSlot {
    pub fn new(spec: ModuleSpec, guest: GuestModule, metrics: ModuleMetrics) -> ModuleSlot {
        let limits = &spec.limits;
        let admission = match spec.trigger {
            // A job runs once at a time: an overdue run is skipped, never doubled up.
            Trigger::Schedule { .. } => Admission::new(1, 0, limits.queue_timeout),
            Trigger::Http { .. } => {
                Admission::new(limits.concurrency, limits.queue, limits.queue_timeout)
            }
        };
        ModuleSlot {
            spec,
            guest,
            admission,
            metrics,
        }
    }

    pub fn id(&self) -> &str {
        self.spec.id.as_str()
    }
}

/// The node's modules at one point in time.
pub struct Snapshot {
    pub modules: Vec<Arc<ModuleSlot>>,
    pub routes: RouteTable<usize>,
}

impl Snapshot {
    /// Builds the route table over `modules`; duplicates were refused by manifest validation.
    pub fn new(modules: Vec<Arc<ModuleSlot>>) -> Snapshot {
        let entries = modules.iter().enumerate().flat_map(|(index, slot)| {
            let routes = match &slot.spec.trigger {
                Trigger::Http { routes } => routes.clone(),
                Trigger::Schedule { .. } => Vec::new(),
            };
            routes.into_iter().map(move |route| (route, index))
        });
        let routes = RouteTable::new(entries).unwrap_or_else(|duplicate| {
            panic!("duplicate route {duplicate} passed manifest validation")
        });
        Snapshot { modules, routes }
    }

    /// The module serving `path`, if any, with the route that matched.
    pub fn route(&self, path: &str) -> Option<(&Route, &Arc<ModuleSlot>)> {
        self.routes
            .lookup_route(path)
            .map(|(route, &index)| (route, &self.modules[index]))
    }

    pub fn module(&self, id: &str) -> Option<&Arc<ModuleSlot>> {
        self.modules.iter().find(|slot| slot.id() == id)
    }
}

/// The published snapshot.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;
