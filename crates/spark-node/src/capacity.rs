//! Node-wide capacity by priority class: the instance pool is shared, so lower classes may
//! only take slots while enough are left for the classes above them. Under overload the
//! background is refused first, then normal work, and a critical request is never refused
//! while lower classes could still have been.
//!
//! With the orchestrator off every class is treated alike (plain first come, first served).

use std::sync::Arc;
use std::time::Duration;

use spark_manifest::Priority;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The node's slots and the reserves kept for higher classes.
#[derive(Debug)]
pub struct NodeCapacity {
    slots: Arc<Semaphore>,
    total: u32,
    /// Slots normal work must leave free (for critical).
    reserve_for_critical: u32,
    /// Slots background work must leave free (for critical and normal).
    reserve_for_normal: u32,
}

/// One invocation's claim on the node; released on drop.
#[derive(Debug)]
pub struct NodeSlot {
    _permit: OwnedSemaphorePermit,
}

impl NodeCapacity {
    /// `total` slots; with `by_priority`, a tenth (at least one) is kept for critical work and
    /// another tenth for normal work.
    pub fn new(total: u32, by_priority: bool) -> NodeCapacity {
        let reserve = if by_priority { (total / 10).max(1) } else { 0 };
        NodeCapacity {
            slots: Arc::new(Semaphore::new(total as usize)),
            total,
            reserve_for_critical: reserve,
            reserve_for_normal: reserve * 2,
        }
    }

    /// Takes a slot for `priority`. Critical work may wait up to `wait` for one; other work is
    /// refused at once when taking a slot would eat into a higher class's reserve.
    pub async fn admit(&self, priority: Priority, wait: Duration) -> Option<NodeSlot> {
        let keep_free = match priority {
            Priority::Critical => 0,
            Priority::Normal => self.reserve_for_critical,
            Priority::Background => self.reserve_for_normal,
        };
        if priority == Priority::Critical {
            let permit = tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await;
            return permit.ok()?.ok().map(|p| NodeSlot { _permit: p });
        }
        if self.slots.available_permits() as u32 <= keep_free {
            return None;
        }
        self.slots
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|p| NodeSlot { _permit: p })
    }

    pub fn in_use(&self) -> u32 {
        self.total - self.slots.available_permits() as u32
    }

    pub fn total(&self) -> u32 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_millis(20);

    #[tokio::test]
    async fn lower_classes_are_refused_first() {
        let node = NodeCapacity::new(10, true);
        let mut held = Vec::new();
        while let Some(slot) = node.admit(Priority::Background, NOW).await {
            held.push(slot);
        }
        assert_eq!(held.len(), 8, "background leaves two slots");
        held.push(
            node.admit(Priority::Normal, NOW)
                .await
                .expect("normal gets the next one"),
        );
        assert!(
            node.admit(Priority::Normal, NOW).await.is_none(),
            "the last slot is critical's"
        );
        held.push(
            node.admit(Priority::Critical, NOW)
                .await
                .expect("critical is never refused while lower classes hold slots"),
        );
        assert!(
            node.admit(Priority::Critical, NOW).await.is_none(),
            "only when everything is taken"
        );
        held.pop();
        assert!(node.admit(Priority::Critical, NOW).await.is_some());
    }

    #[tokio::test]
    async fn without_priorities_everyone_is_alike() {
        let node = NodeCapacity::new(3, false);
        let held: Vec<_> =
            futures::future::join_all((0..3).map(|_| node.admit(Priority::Background, NOW))).await;
        assert!(held.iter().all(Option::is_some));
        assert_eq!(node.in_use(), 3);
    }
}
