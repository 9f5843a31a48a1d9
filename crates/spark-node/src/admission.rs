//! Admission control per module: at most `concurrency` invocations run, at most `queue` wait,
//! and none waits longer than `queue_timeout`. Everything else is refused at once with a
//! reason the front end turns into `503` + `Retry-After`.
//!
//! Refusing early is the point: a module that cannot keep up must not hold connections and
//! memory for requests it will never serve in time, and must not slow down its neighbours.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The queue was full.
    QueueFull,
    /// The request waited `queue_timeout` without getting a slot.
    QueueTimeout,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::QueueFull => "queue_full",
            Rejection::QueueTimeout => "queue_timeout",
        }
    }
}

/// The gate in front of one module.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    concurrency: u32,
    queue_capacity: u32,
    queue_timeout: Duration,
    queued: AtomicU32,
    rejected: AtomicU64,
}

/// A running invocation's slot; released on drop.
#[derive(Debug)]
pub struct Ticket {
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    pub fn new(concurrency: u32, queue_capacity: u32, queue_timeout: Duration) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(concurrency as usize)),
            concurrency,
            queue_capacity,
            queue_timeout,
            queued: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// Waits for a slot, within the queue's capacity and timeout.
    pub async fn admit(&self) -> Result<Ticket, Rejection> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Ticket { _permit: permit });
        }
        let queued = self.queued.fetch_add(1, Ordering::AcqRel);
        let result = if queued >= self.queue_capacity {
            Err(Rejection::QueueFull)
        } else {
            match tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await
            {
                Ok(Ok(permit)) => Ok(Ticket { _permit: permit }),
                Ok(Err(_)) | Err(_) => Err(Rejection::QueueTimeout),
            }
        };
        self.queued.fetch_sub(1, Ordering::AcqRel);
        if result.is_err() {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Takes a slot only if one is free now (jobs do not queue).
    pub fn try_admit(&self) -> Option<Ticket> {
        self.slots
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|permit| Ticket { _permit: permit })
    }

    /// Invocations running now.
    pub fn running(&self) -> u32 {
        self.concurrency - self.slots.available_permits() as u32
    }

    /// Requests waiting now.
    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::Acquire).min(self.queue_capacity)
    }

    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub fn concurrency(&self) -> u32 {
        self.concurrency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn queue_then_timeout_then_full() {
        let gate = Arc::new(Admission::new(1, 1, Duration::from_millis(100)));
        let first = gate.admit().await.unwrap();
        assert_eq!(gate.running(), 1);

        // One may wait; it times out when the slot is not released in time.
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert_eq!(gate.queued(), 1);
        // A second waiter finds the queue full and is refused at once.
        assert_eq!(gate.admit().await.unwrap_err(), Rejection::QueueFull);
        assert_eq!(waiter.await.unwrap(), Err(Rejection::QueueTimeout));
        assert_eq!(gate.rejected(), 2);

        // A waiter is served as soon as the slot frees up.
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await.map(drop) }
        });
        tokio::task::yield_now().await;
        drop(first);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(gate.running(), 0);
        assert!(gate.try_admit().is_some());
    }
}
