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
//! A claim has two parts ([`NodeSlot`]): the instance's (its slot and `limits.memory`) and
//! the request's (`limits.host_memory`). They are taken together, since a request may have to
//! open an instance; a WASI 0.3 request that joins an instance already open gives the
//! instance's part back at once (see `spark_runtime::Claims`). A claim marked as *ending* is
//! on its way back (its instance answered everything and is being torn down): a request that
//! would be refused only for want of what ending claims are about to return waits for them,
//! up to its queue timeout, instead of being refused.
//!
//! With the orchestrator off every class is treated alike (plain first come, first served).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spark_manifest::Priority;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// What one invocation of a module reserves of the node's memory: everything it may use, as
/// the part its instance needs and the part the request itself does.
pub(crate) fn reservation(limits: &spark_manifest::Limits) -> Reservation {
    Reservation {
        instance: limits.memory,
        request: limits.host_memory,
    }
}

/// Bytes of node memory an invocation reserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reservation {
    /// For the instance: its linear memory.
    pub instance: u64,
    /// For the request: the host memory it may make the host hold.
    pub request: u64,
}

impl Reservation {
    pub fn total(self) -> u64 {
        self.instance.saturating_add(self.request)
    }
}

/// Memory is counted in KiB, so a semaphore of `u32` permits covers 4 TiB.
const UNIT: u64 = 1 << 10;

/// The node's slots and memory, and the reserves kept for higher classes.
#[derive(Debug)]
pub struct NodeCapacity {
    slots: Gate,
    memory: Gate,
}

/// Claims on their way back, per gate, and the signal that one came back.
#[derive(Debug, Default)]
struct Returning {
    permits: AtomicU32,
    released: Notify,
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
    /// Permits held by ending claims.
    returning: Arc<Returning>,
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

/// One invocation's claim on the node: the instance's part (a slot and its linear memory),
/// which may be split off, and the request's (its host memory); each released on drop.
#[derive(Debug)]
pub struct NodeSlot {
    instance: Mutex<Option<NodeClaim>>,
    request: Mutex<NodeClaim>,
}

/// Permits of the node's gates held together; released on drop.
#[derive(Debug, Default)]
pub struct NodeClaim {
    held: Vec<Held>,
}

/// Permits of one gate, and whether they are counted as on their way back.
#[derive(Debug)]
struct Held {
    permit: Option<OwnedSemaphorePermit>,
    returning: Arc<Returning>,
    /// Permits counted as returning.
    ending: u32,
}

impl Held {
    /// Splits `n` permits off into a claim of their own (none if `n` is 0).
    fn split(&mut self, n: u32) -> Option<Held> {
        if n == 0 {
            return None;
        }
        let permit = self.permit.as_mut()?.split(n as usize)?;
        Some(Held {
            permit: Some(permit),
            returning: self.returning.clone(),
            ending: 0,
        })
    }
}

impl NodeSlot {
    /// The instance's part, if it has not been split off already.
    pub fn split_instance(&self) -> Option<NodeClaim> {
        self.instance.lock().expect("node slot lock").take()
    }

    /// Everything still held is on its way back.
    pub fn ending(&self) {
        if let Some(instance) = &mut *self.instance.lock().expect("node slot lock") {
            instance.ending();
        }
        self.request.lock().expect("node slot lock").ending();
    }
}

impl NodeClaim {
    /// What this claim holds is on its way back.
    pub fn ending(&mut self) {
        for held in &mut self.held {
            let n = held.permit.as_ref().map_or(0, |p| p.num_permits() as u32);
            if held.ending == 0 && n > 0 {
                held.returning.permits.fetch_add(n, Ordering::SeqCst);
                held.ending = n;
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // The permits go back before they stop counting as returning: a waiter looking in
        // between counts them twice and looks again when woken, never misses them.
        drop(self.permit.take());
        if self.ending > 0 {
            self.returning
                .permits
                .fetch_sub(self.ending, Ordering::SeqCst);
            self.returning.released.notify_waiters();
        }
    }
}

impl Gate {
    fn new(total: u32, by_priority: bool) -> Gate {
        let reserve = if by_priority { (total / 10).max(1) } else { 0 };
        Gate {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
            reserve_for_critical: reserve,
            reserve_for_normal: reserve.saturating_mul(2),
            returning: Arc::default(),
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
    /// reserves of the classes above it, or waits (until `deadline`) only while claims on
    /// their way back would make up what is missing.
    async fn take(
        &self,
        priority: Priority,
        n: u32,
        deadline: tokio::time::Instant,
    ) -> Option<Held> {
        let permit = if priority == Priority::Critical {
            let wait = self.permits.clone().acquire_many_owned(n);
            tokio::time::timeout_at(deadline, wait).await.ok()?.ok()?
        } else {
            self.take_above_reserve(
                u64::from(self.keep_free(priority)) + u64::from(n),
                n,
                deadline,
            )
            .await?
        };
        Some(Held {
            permit: Some(permit),
            returning: self.returning.clone(),
            ending: 0,
        })
    }

    /// Takes `n` permits if `need` are free; waits for ending claims while they cover the
    /// shortfall.
    async fn take_above_reserve(
        &self,
        need: u64,
        n: u32,
        deadline: tokio::time::Instant,
    ) -> Option<OwnedSemaphorePermit> {
        loop {
            let released = self.returning.released.notified();
            let mut released = std::pin::pin!(released);
            // Registered before looking, so a release after the look is not missed.
            released.as_mut().enable();
            let available = self.permits.available_permits() as u64;
            if available >= need
                && let Ok(permit) = self.permits.clone().try_acquire_many_owned(n)
            {
                return Some(permit);
            }
            let returning = u64::from(self.returning.permits.load(Ordering::SeqCst));
            if available + returning < need {
                return None;
            }
            tokio::time::timeout_at(deadline, released).await.ok()?;
        }
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

    /// Takes a slot and `memory` for `priority`. Critical work may wait up to `wait` for
    /// them; other work is refused at once when taking them would eat into a higher class's
    /// reserve, unless claims on their way back make up the difference (then it waits for
    /// them, up to `wait`).
    pub async fn admit(
        &self,
        priority: Priority,
        memory: Reservation,
        wait: Duration,
    ) -> Result<NodeSlot, NodeRefusal> {
        let deadline = tokio::time::Instant::now() + wait;
        let slot = self
            .slots
            .take(priority, 1, deadline)
            .await
            .ok_or(NodeRefusal::Slots)?;
        let request_units = Self::units(memory.request);
        let mut instance_memory = self
            .memory
            .take(
                priority,
                Self::units(memory.instance).saturating_add(request_units),
                deadline,
            )
            .await
            .ok_or(NodeRefusal::Memory)?;
        let request_memory = instance_memory.split(request_units);
        Ok(NodeSlot {
            instance: Mutex::new(Some(NodeClaim {
                held: vec![slot, instance_memory],
            })),
            request: Mutex::new(NodeClaim {
                held: request_memory.into_iter().collect(),
            }),
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
    const MIB: u64 = 1 << 20;

    /// A reservation of `n` bytes, all for the instance.
    fn bytes(n: u64) -> Reservation {
        Reservation {
            instance: n,
            request: 0,
        }
    }

    #[tokio::test]
    async fn lower_classes_are_refused_first() {
        let node = NodeCapacity::new(10, PLENTY, true);
        let mut held = Vec::new();
        while let Ok(slot) = node.admit(Priority::Background, bytes(0), NOW).await {
            held.push(slot);
        }
        assert_eq!(held.len(), 8, "background leaves two slots");
        held.push(
            node.admit(Priority::Normal, bytes(0), NOW)
                .await
                .expect("normal gets the next one"),
        );
        assert_eq!(
            node.admit(Priority::Normal, bytes(0), NOW)
                .await
                .unwrap_err(),
            NodeRefusal::Slots,
            "the last slot is critical's"
        );
        held.push(
            node.admit(Priority::Critical, bytes(0), NOW)
                .await
                .expect("critical is never refused while lower classes hold slots"),
        );
        assert!(
            node.admit(Priority::Critical, bytes(0), NOW).await.is_err(),
            "only when everything is taken"
        );
        held.pop();
        assert!(node.admit(Priority::Critical, bytes(0), NOW).await.is_ok());
    }

    #[tokio::test]
    async fn memory_is_reserved_by_class_and_given_back() {
        let mib = 1 << 20;
        let node = NodeCapacity::new(100, 100 * mib, true);
        assert!(node.fits(100 * mib) && !node.fits(101 * mib));
        let mut held = Vec::new();
        while let Ok(slot) = node.admit(Priority::Background, bytes(10 * mib), NOW).await {
            held.push(slot);
        }
        assert_eq!(held.len(), 8, "background leaves 20 MiB");
        assert_eq!(node.memory_in_use(), 80 * mib);
        assert_eq!(
            node.admit(Priority::Normal, bytes(15 * mib), NOW)
                .await
                .unwrap_err(),
            NodeRefusal::Memory,
            "normal leaves 10 MiB for critical"
        );
        let critical = node.admit(Priority::Critical, bytes(20 * mib), NOW).await;
        assert!(critical.is_ok(), "critical takes what is left");
        assert_eq!(node.in_use(), 9);
        let waiting = node.admit(Priority::Critical, bytes(10 * mib), Duration::from_secs(5));
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
            (0..3).map(|_| node.admit(Priority::Background, bytes(1 << 20), NOW)),
        )
        .await;
        assert!(held.iter().all(Result::is_ok));
        assert_eq!(node.in_use(), 3);
    }

    #[tokio::test]
    async fn a_split_instance_part_is_given_back_alone() {
        let node = NodeCapacity::new(10, 100 * MIB, false);
        let both = Reservation {
            instance: 30 * MIB,
            request: 10 * MIB,
        };
        let slot = node.admit(Priority::Normal, both, NOW).await.unwrap();
        assert_eq!(node.memory_in_use(), 40 * MIB);
        assert_eq!(node.in_use(), 1);
        let instance = slot.split_instance().expect("the instance's part");
        assert!(slot.split_instance().is_none(), "split once");
        drop(instance);
        assert_eq!(node.memory_in_use(), 10 * MIB, "the request's part stays");
        assert_eq!(node.in_use(), 0, "the slot was the instance's");
        drop(slot);
        assert_eq!(node.memory_in_use(), 0);
    }

    #[tokio::test]
    async fn work_waits_for_ending_claims_and_only_for_them() {
        let node = NodeCapacity::new(100, 100 * MIB, false);
        let first = node
            .admit(Priority::Normal, bytes(60 * MIB), NOW)
            .await
            .unwrap();
        // Nothing on its way back: refused at once.
        let refused = node
            .admit(Priority::Normal, bytes(60 * MIB), Duration::from_secs(5))
            .await;
        assert_eq!(refused.unwrap_err(), NodeRefusal::Memory);
        // On its way back: the next request waits for it.
        first.ending();
        let waiting = tokio::spawn({
            let node = Arc::new(node);
            let waiter = node.clone();
            async move {
                let slot = waiter
                    .admit(Priority::Normal, bytes(60 * MIB), Duration::from_secs(5))
                    .await;
                (slot.map(|_| ()), node)
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "it waits while the claim is held");
        drop(first);
        let (admitted, node) = waiting.await.unwrap();
        assert!(admitted.is_ok(), "admitted once the ending claim came back");
        assert_eq!(node.memory_in_use(), 0);
        // An ending claim too small to make up the difference: refused at once.
        let small = node
            .admit(Priority::Normal, bytes(30 * MIB), NOW)
            .await
            .unwrap();
        let big = node
            .admit(Priority::Normal, bytes(60 * MIB), NOW)
            .await
            .unwrap();
        small.ending();
        let started = std::time::Instant::now();
        let refused = node
            .admit(Priority::Normal, bytes(50 * MIB), Duration::from_secs(5))
            .await;
        assert_eq!(refused.unwrap_err(), NodeRefusal::Memory);
        assert!(started.elapsed() < Duration::from_secs(5), "not waited for");
        drop((small, big));
    }
}
