//! Node-wide capacity by priority class: instance slots and memory. The instance pool and the
//! machine's memory are shared, so lower classes may only take slots (and memory) while
//! enough are left for the classes above them. Under overload the background is refused
//! first, then normal work, and a critical request is never refused while lower classes could
//! still have been.
//!
//! Memory is reserved, not measured: every running invocation holds the most it may use (its
//! module's `limits.memory` plus `limits.host_memory`) out of the node's invocation memory,
//! so the sum of what running guests may touch never exceeds it. A request that does not fit
//! waits (critical, up to its queue timeout) or is refused (others): the kernel's OOM killer
//! never decides.
//!
//! With the orchestrator off every class is treated alike (plain first come, first served).

use std::sync::Arc;
use std::time::Duration;

use spark_manifest::Priority;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What one invocation of a module reserves of the node's memory: everything it may use.
pub(crate) fn reservation(limits: &spark_manifest::Limits) -> u64 {
    limits.memory.saturating_add(limits.host_memory)
}

/// Memory is counted in KiB, so a semaphore of `u32` permits covers 4 TiB.
const UNIT: u64 = 1 << 10;

/// The node's slots and memory, and the reserves kept for higher classes.
#[derive(Debug)]
pub struct NodeCapacity {
    slots: Gate,
    memory: Gate,
}

/// One pool (slots or KiB) with its class reserves.
#[derive(Debug)]
struct Gate {
    permits: Arc<Semaphore>,
    total: u32,
    /// What normal work must leave free (for critical).
    reserve_for_critical: u32,
    /// What background work must leave free (for critical and normal).
    reserve_for_normal: u32,
}

/// Why the node refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRefusal {
    /// No instance slot left for this class.
    Slots,
    /// Not enough invocation memory left for this class.
    Memory,
}

impl NodeRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRefusal::Slots => "node_full",
            NodeRefusal::Memory => "node_memory",
        }
    }
}

/// One invocation's claim on the node: a slot and its memory; released on drop.
#[derive(Debug)]
pub struct NodeSlot {
    _slot: OwnedSemaphorePermit,
    _memory: OwnedSemaphorePermit,
}

impl Gate {
    fn new(total: u32, by_priority: bool) -> Gate {
        let reserve = if by_priority { (total / 10).max(1) } else { 0 };
        Gate {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
            reserve_for_critical: reserve,
            reserve_for_normal: reserve.saturating_mul(2),
        }
    }

    fn keep_free(&self, priority: Priority) -> u32 {
        match priority {
            Priority::Critical => 0,
            Priority::Normal => self.reserve_for_critical,
            Priority::Background => self.reserve_for_normal,
        }
    }

    /// Critical work waits until `deadline`; other work takes what is free now, above the
    /// reserves of the classes above it.
    async fn take(
        &self,
        priority: Priority,
        n: u32,
        deadline: tokio::time::Instant,
    ) -> Option<OwnedSemaphorePermit> {
        if priority == Priority::Critical {
            let wait = self.permits.clone().acquire_many_owned(n);
            return tokio::time::timeout_at(deadline, wait).await.ok()?.ok();
        }
        let keep_free = self.keep_free(priority);
        if (self.permits.available_permits() as u64) < u64::from(keep_free) + u64::from(n) {
            return None;
        }
        self.permits.clone().try_acquire_many_owned(n).ok()
    }

    fn in_use(&self) -> u32 {
        self.total - self.permits.available_permits() as u32
    }
}

impl NodeCapacity {
    /// `slots` instance slots and `memory` bytes for running invocations; with
    /// `by_priority`, a tenth (at least one unit) of each is kept for critical work and
    /// another tenth for normal work.
    pub fn new(slots: u32, memory: u64, by_priority: bool) -> NodeCapacity {
        let units = u32::try_from(memory / UNIT).unwrap_or(u32::MAX >> 1);
        NodeCapacity {
            slots: Gate::new(slots, by_priority),
            memory: Gate::new(units.min(Semaphore::MAX_PERMITS as u32), by_priority),
        }
    }

    /// KiB an invocation reserving `bytes` holds (rounded up).
    fn units(bytes: u64) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
    }

    /// Whether an invocation reserving `memory` bytes could ever be admitted.
    pub fn fits(&self, memory: u64) -> bool {
        Self::units(memory) <= self.memory.total
    }

    /// Takes a slot and `memory` bytes for `priority`. Critical work may wait up to `wait`
    /// for them; other work is refused at once when taking them would eat into a higher
    /// class's reserve.
    pub async fn admit(
        &self,
        priority: Priority,
        memory: u64,
        wait: Duration,
    ) -> Result<NodeSlot, NodeRefusal> {
        let deadline = tokio::time::Instant::now() + wait;
        let slot = self
            .slots
            .take(priority, 1, deadline)
            .await
            .ok_or(NodeRefusal::Slots)?;
        let memory = self
            .memory
            .take(priority, Self::units(memory), deadline)
            .await
            .ok_or(NodeRefusal::Memory)?;
        Ok(NodeSlot {
            _slot: slot,
            _memory: memory,
        })
    }

    pub fn in_use(&self) -> u32 {
        self.slots.in_use()
    }

    pub fn total(&self) -> u32 {
        self.slots.total
    }

    /// Invocation memory reserved now, in bytes.
    pub fn memory_in_use(&self) -> u64 {
        u64::from(self.memory.in_use()) * UNIT
    }

    /// Invocation memory the node has, in bytes.
    pub fn memory_total(&self) -> u64 {
        u64::from(self.memory.total) * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_millis(20);
    const PLENTY: u64 = 1 << 40;

    #[tokio::test]
    async fn lower_classes_are_refused_first() {
        let node = NodeCapacity::new(10, PLENTY, true);
        let mut held = Vec::new();
        while let Ok(slot) = node.admit(Priority::Background, 0, NOW).await {
            held.push(slot);
        }
        assert_eq!(held.len(), 8, "background leaves two slots");
        held.push(
            node.admit(Priority::Normal, 0, NOW)
                .await
                .expect("normal gets the next one"),
        );
        assert_eq!(
            node.admit(Priority::Normal, 0, NOW).await.unwrap_err(),
            NodeRefusal::Slots,
            "the last slot is critical's"
        );
        held.push(
            node.admit(Priority::Critical, 0, NOW)
                .await
                .expect("critical is never refused while lower classes hold slots"),
        );
        assert!(
            node.admit(Priority::Critical, 0, NOW).await.is_err(),
            "only when everything is taken"
        );
        held.pop();
        assert!(node.admit(Priority::Critical, 0, NOW).await.is_ok());
    }

    #[tokio::test]
    async fn memory_is_reserved_by_class_and_given_back() {
        let mib = 1 << 20;
        let node = NodeCapacity::new(100, 100 * mib, true);
        assert!(node.fits(100 * mib) && !node.fits(101 * mib));
        let mut held = Vec::new();
        while let Ok(slot) = node.admit(Priority::Background, 10 * mib, NOW).await {
            held.push(slot);
        }
        assert_eq!(held.len(), 8, "background leaves 20 MiB");
        assert_eq!(node.memory_in_use(), 80 * mib);
        assert_eq!(
            node.admit(Priority::Normal, 15 * mib, NOW)
                .await
                .unwrap_err(),
            NodeRefusal::Memory,
            "normal leaves 10 MiB for critical"
        );
        let critical = node.admit(Priority::Critical, 20 * mib, NOW).await;
        assert!(critical.is_ok(), "critical takes what is left");
        assert_eq!(node.in_use(), 9);
        let waiting = node.admit(Priority::Critical, 10 * mib, Duration::from_secs(5));
        held.pop();
        assert!(waiting.await.is_ok(), "a critical request waits for memory");
        drop(held);
        drop(critical);
        assert_eq!(node.memory_in_use(), 0);
    }

    #[tokio::test]
    async fn without_priorities_everyone_is_alike() {
        let node = NodeCapacity::new(3, PLENTY, false);
        let held: Vec<_> = futures::future::join_all(
            (0..3).map(|_| node.admit(Priority::Background, 1 << 20, NOW)),
        )
        .await;
        assert!(held.iter().all(Result::is_ok));
        assert_eq!(node.in_use(), 3);
    }
}
