//! Admission control per module: at most `concurrency` invocations run, at most `queue` wait,
//! and none waits longer than `queue_timeout`. Everything else is refused at once with a
//! reason the front end turns into `503` + `Retry-After`.
//!
//! Refusing early is the point: a module that cannot keep up must not hold connections and
//! memory for requests it will never serve in time, and must not slow down its neighbours.
//!
//! The orchestrator changes the caps live ([`Admission::set_limits`]): raising the concurrency
//! adds slots at once; lowering it takes free slots away at once and the rest as running
//! invocations finish (their slots are retired instead of returned), so nothing in flight is
//! disturbed.

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
    /// The node is at capacity and this class must leave the rest to higher ones.
    NodeFull,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::QueueFull => "queue_full",
            Rejection::QueueTimeout => "queue_timeout",
            Rejection::NodeFull => "node_full",
        }
    }
}

/// The gate in front of one module.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    /// Current cap (what `set_limits` last asked for).
    concurrency: AtomicU32,
    /// Slots still to retire after a lowered cap, as running invocations finish.
    debt: Arc<AtomicU32>,
    queue_capacity: AtomicU32,
    queue_timeout: Duration,
    queued: AtomicU32,
    rejected: AtomicU64,
}

/// A running invocation's slot; returned on drop (or retired, if the cap was lowered).
#[derive(Debug)]
pub struct Ticket {
    permit: Option<OwnedSemaphorePermit>,
    debt: Arc<AtomicU32>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let retire = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if let Some(permit) = self.permit.take()
            && retire
        {
            permit.forget();
        }
    }
}

/// A place in a module's queue, given back on drop.
struct QueuePlace<'a> {
    queued: &'a AtomicU32,
    /// Requests that were waiting when this one arrived.
    ahead: u32,
}

impl<'a> QueuePlace<'a> {
    fn take(queued: &'a AtomicU32) -> QueuePlace<'a> {
        let ahead = queued.fetch_add(1, Ordering::AcqRel);
        QueuePlace { queued, ahead }
    }
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(concurrency: u32, queue_capacity: u32, queue_timeout: Duration) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(concurrency as usize)),
            concurrency: AtomicU32::new(concurrency),
            debt: Arc::new(AtomicU32::new(0)),
            queue_capacity: AtomicU32::new(queue_capacity),
            queue_timeout,
            queued: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    fn ticket(&self, permit: OwnedSemaphorePermit) -> Ticket {
        Ticket {
            permit: Some(permit),
            debt: self.debt.clone(),
        }
    }

    /// Changes the concurrency cap and queue capacity, live.
    pub fn set_limits(&self, concurrency: u32, queue: u32) {
        self.queue_capacity.store(queue, Ordering::Release);
        let old = self.concurrency.swap(concurrency, Ordering::AcqRel);
        if concurrency > old {
            let mut raise = concurrency - old;
            // First cancel slots still owed from an earlier lowering.
            let _ = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    let cancel = d.min(raise);
                    raise -= cancel;
                    Some(d - cancel)
                });
            self.slots.add_permits(raise as usize);
        } else if concurrency < old {
            let lower = old - concurrency;
            let taken = self.slots.forget_permits(lower as usize) as u32;
            self.debt.fetch_add(lower - taken, Ordering::AcqRel);
        }
    }

    /// Waits for a slot, within the queue's capacity and timeout.
    pub async fn admit(&self) -> Result<Ticket, Rejection> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(self.ticket(permit));
        }
        // The queue place is held by a guard: a waiter whose client gives up (its future is
        // dropped mid-wait) gives its place back.
        let place = QueuePlace::take(&self.queued);
        let result = if place.ahead >= self.queue_capacity.load(Ordering::Acquire) {
            Err(Rejection::QueueFull)
        } else {
            match tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await
            {
                Ok(Ok(permit)) => Ok(self.ticket(permit)),
                Ok(Err(_)) | Err(_) => Err(Rejection::QueueTimeout),
            }
        };
        drop(place);
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
            .map(|permit| self.ticket(permit))
    }

    /// Invocations running now.
    pub fn running(&self) -> u32 {
        let cap = self.concurrency.load(Ordering::Acquire) + self.debt.load(Ordering::Acquire);
        cap.saturating_sub(self.slots.available_permits() as u32)
    }

    /// Requests waiting now.
    pub fn queued(&self) -> u32 {
        self.queued
            .load(Ordering::Acquire)
            .min(self.queue_capacity.load(Ordering::Acquire))
    }

    pub fn queue_capacity(&self) -> u32 {
        self.queue_capacity.load(Ordering::Acquire)
    }

    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub fn concurrency(&self) -> u32 {
        self.concurrency.load(Ordering::Acquire)
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

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_gives_its_queue_place_back() {
        let gate = Arc::new(Admission::new(1, 2, Duration::from_secs(60)));
        let _running = gate.admit().await.unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.admit().await.map(drop) })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(gate.queued(), 2);
        for waiter in &waiters {
            waiter.abort();
        }
        for waiter in waiters {
            assert!(waiter.await.unwrap_err().is_cancelled());
        }
        assert_eq!(gate.queued(), 0, "abandoned places are free again");
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert_eq!(gate.queued(), 1, "and the queue takes new waiters");
        drop(_running);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn lowering_the_cap_waits_for_running_invocations() {
        let gate = Admission::new(4, 0, Duration::from_millis(10));
        let running: Vec<Ticket> = (0..3).map(|_| gate.try_admit().unwrap()).collect();
        gate.set_limits(1, 0);
        assert_eq!(gate.concurrency(), 1);
        assert_eq!(gate.running(), 3, "in-flight work is not disturbed");
        assert!(
            gate.try_admit().is_none(),
            "over the new cap: no new admissions"
        );
        drop(running);
        assert_eq!(gate.running(), 0);
        let one = gate.try_admit().expect("one slot under the new cap");
        assert!(gate.try_admit().is_none());
        drop(one);

        // Raising restores slots, cancelling any debt first.
        let a = gate.try_admit().unwrap();
        gate.set_limits(0, 0);
        gate.set_limits(3, 5);
        drop(a);
        let tickets: Vec<Ticket> = (0..3).map(|_| gate.try_admit().unwrap()).collect();
        assert!(gate.try_admit().is_none());
        assert_eq!((gate.running(), gate.queue_capacity()), (3, 5));
        drop(tickets);
    }
}
