//! Host memory accounting: how much memory outside its linear memory the host holds on behalf
//! of each invocation (headers, bodies in flight, tensors and models, resource-table growth,
//! log lines, anything a host interface allocates while the guest calls it).
//!
//! The process's global allocator is [`AccountingAllocator`]. While a guest's future is being
//! polled ([`enter`], from the metering wrapper), every allocation of at least
//! [`TRACKED_FROM`] bytes made on that thread is charged to the invocation's [`HostAccount`]
//! and carries a pointer to it in a small header, so it is credited back to the same account
//! whenever and wherever it is freed (a response chunk the guest wrote is freed by the
//! connection that sent it). The epoch callback stops a guest whose account is over its limit.
//!
//! The decision worth knowing: accounting in the allocator, not in each host interface, is
//! what makes the bound hold for interfaces we do not own (`wasi:http` fields and bodies, the
//! resource table, WASI 0.3 later) without wrapping every function they export. The price is
//! a 16-byte header on allocations of [`TRACKED_FROM`] bytes or more, tracked or not (the
//! size alone, which `dealloc` is given, says whether a block has one). Smaller allocations
//! are not charged: a host structure that grows with what a guest asks for grows in blocks
//! at least that large.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Allocations of at least this many bytes carry an account header.
pub const TRACKED_FROM: usize = 128;
/// Room in front of a tracked block for the account pointer (keeps 16-byte alignment).
const HEADER: usize = 16;

/// Host bytes charged to all live invocations' accounts (what `/metrics` shows as the host
/// memory held for guests).
static CHARGED_TO_GUESTS: AtomicUsize = AtomicUsize::new(0);
/// Host bytes charged to all live connection accounts (listeners: hyper's buffers, HTTP/2
/// streams), which `/metrics` shows per listener.
static CHARGED_TO_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The account charged for allocations on this thread right now (null: none).
    static CURRENT: Cell<*const AccountInner> = const { Cell::new(ptr::null()) };
}

/// The process's allocator: the system allocator plus per-invocation accounting.
pub struct AccountingAllocator;

#[global_allocator]
static GLOBAL: AccountingAllocator = AccountingAllocator;

struct AccountInner {
    bytes: AtomicUsize,
    peak: AtomicUsize,
    /// The handle plus one per live tracked allocation.
    refs: AtomicUsize,
    /// The process-wide total this account's bytes are part of.
    total: &'static AtomicUsize,
}

/// One invocation's host memory: what it holds now and the most it held.
pub struct HostAccount {
    inner: *const AccountInner,
}

// SAFETY: `AccountInner` holds only atomics; the pointer is reference counted and freed once.
unsafe impl Send for HostAccount {}
// SAFETY: as above; every access goes through atomics.
unsafe impl Sync for HostAccount {}

impl Default for HostAccount {
    fn default() -> Self {
        Self::new()
    }
}

impl HostAccount {
    /// An empty account for an invocation; allocations are charged to it only inside
    /// [`enter`], and count in [`charged_to_guests`].
    pub fn new() -> HostAccount {
        HostAccount::counting_in(&CHARGED_TO_GUESTS)
    }

    /// An empty account for connections (a listener's), counting in
    /// [`charged_to_connections`] instead of the guests' total.
    pub fn for_connections() -> HostAccount {
        HostAccount::counting_in(&CHARGED_TO_CONNECTIONS)
    }

    fn counting_in(total: &'static AtomicUsize) -> HostAccount {
        let inner = Box::new(AccountInner {
            bytes: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            refs: AtomicUsize::new(1),
            total,
        });
        HostAccount {
            inner: Box::into_raw(inner),
        }
    }

    fn inner(&self) -> &AccountInner {
        // SAFETY: the handle holds a reference, so the account is alive.
        unsafe { &*self.inner }
    }

    /// Host bytes held for the invocation now.
    pub fn bytes(&self) -> usize {
        self.inner().bytes.load(Ordering::Relaxed)
    }

    /// The most it held at once.
    pub fn peak(&self) -> usize {
        self.inner().peak.load(Ordering::Relaxed)
    }
}

impl Clone for HostAccount {
    /// Another handle on the same account.
    fn clone(&self) -> Self {
        self.inner().refs.fetch_add(1, Ordering::Relaxed);
        HostAccount { inner: self.inner }
    }
}

impl std::fmt::Debug for HostAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostAccount")
            .field("bytes", &self.bytes())
            .field("peak", &self.peak())
            .finish()
    }
}

pin_project_lite::pin_project! {
    /// A future whose every poll is charged to an account (a connection and its streams).
    pub struct Charged<F> {
        #[pin]
        inner: F,
        account: HostAccount,
    }
}

impl<F> Charged<F> {
    /// Charges every poll of `inner` to `account`.
    pub fn new(inner: F, account: HostAccount) -> Charged<F> {
        Charged { inner, account }
    }
}

impl<F: Future> Future for Charged<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let _charged = enter(this.account);
        this.inner.poll(cx)
    }
}

impl Drop for HostAccount {
    fn drop(&mut self) {
        // SAFETY: this handle's reference is released exactly once.
        unsafe { release(self.inner) }
    }
}

/// Charges allocations on this thread to `account` until the guard is dropped.
pub fn enter(account: &HostAccount) -> Entered {
    let previous = CURRENT.with(|c| c.replace(account.inner));
    Entered { previous }
}

/// Restores the previous account (usually none) when dropped.
pub struct Entered {
    previous: *const AccountInner,
}

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Host bytes charged to every live invocation together (connections left out).
pub fn charged_to_guests() -> usize {
    CHARGED_TO_GUESTS.load(Ordering::Relaxed)
}

/// Host bytes charged to every live connection account together.
pub fn charged_to_connections() -> usize {
    CHARGED_TO_CONNECTIONS.load(Ordering::Relaxed)
}

fn current() -> *const AccountInner {
    CURRENT.try_with(Cell::get).unwrap_or(ptr::null())
}

/// Adds `bytes` to `account` and takes a reference for the allocation.
///
/// # Safety
/// `account` must be alive (the caller holds a reference to it).
unsafe fn charge(account: *const AccountInner, bytes: usize) {
    // SAFETY: alive per the contract.
    let inner = unsafe { &*account };
    inner.refs.fetch_add(1, Ordering::Relaxed);
    let now = inner.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
    inner.peak.fetch_max(now, Ordering::Relaxed);
    inner.total.fetch_add(bytes, Ordering::Relaxed);
}

/// Takes `bytes` off `account` and releases the allocation's reference.
///
/// # Safety
/// `account` must hold the reference `charge` took for this allocation.
unsafe fn credit(account: *const AccountInner, bytes: usize) {
    // SAFETY: the allocation's reference keeps it alive until `release`.
    let inner = unsafe { &*account };
    inner.bytes.fetch_sub(bytes, Ordering::Relaxed);
    inner.total.fetch_sub(bytes, Ordering::Relaxed);
    // SAFETY: releases the reference taken in `charge`.
    unsafe { release(account) }
}

/// Drops one reference; frees the account with the last one.
///
/// # Safety
/// The caller owns the reference it releases.
unsafe fn release(account: *const AccountInner) {
    // SAFETY: alive until this reference is gone.
    let inner = unsafe { &*account };
    if inner.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
        // SAFETY: the last reference; the account came from `Box::into_raw`. Freeing it
        // re-enters the allocator with a block smaller than `TRACKED_FROM`: no header.
        drop(unsafe { Box::from_raw(account.cast_mut()) });
    }
}

/// The layout of the block that holds a tracked allocation and its header, and the offset of
/// the allocation in it.
fn outer(layout: Layout) -> Option<(Layout, usize)> {
    let offset = HEADER.max(layout.align());
    let size = layout.size().checked_add(offset)?;
    Layout::from_size_align(size, offset)
        .ok()
        .map(|l| (l, offset))
}

fn tracked(size: usize) -> bool {
    size >= TRACKED_FROM
}

/// The header slot of a tracked allocation at `data`.
///
/// # Safety
/// `data` must be a tracked allocation made by this allocator.
unsafe fn header(data: *mut u8) -> *mut *const AccountInner {
    // SAFETY: the header lies in the `offset >= HEADER` bytes before the data, 8-aligned.
    unsafe { data.sub(std::mem::size_of::<*const AccountInner>()).cast() }
}

/// Writes the header of a freshly allocated tracked block and charges it.
///
/// # Safety
/// `base` is a block of `outer` layout just returned by the system allocator (or null).
unsafe fn finish_tracked(base: *mut u8, offset: usize, size: usize) -> *mut u8 {
    if base.is_null() {
        return base;
    }
    // SAFETY: the block is at least `offset + size` bytes.
    let data = unsafe { base.add(offset) };
    let account = current();
    // SAFETY: the header lies inside the block.
    unsafe { header(data).write(account) };
    if !account.is_null() {
        // SAFETY: the current account is alive while it is entered (its handle is held by
        // the metering wrapper that entered it).
        unsafe { charge(account, size) };
    }
    data
}

// SAFETY: every tracked block is allocated with `outer(layout)` and freed with the same outer
// layout at the same base (`data - offset`); untracked blocks go to `System` unchanged. Whether
// a block is tracked depends only on its size, which `dealloc` and `realloc` are given.
unsafe impl GlobalAlloc for AccountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !tracked(layout.size()) {
            // SAFETY: forwarded unchanged.
            return unsafe { System.alloc(layout) };
        }
        let Some((outer, offset)) = outer(layout) else {
            return ptr::null_mut();
        };
        // SAFETY: `outer` has a non-zero size; the block is finished before use.
        unsafe { finish_tracked(System.alloc(outer), offset, layout.size()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !tracked(layout.size()) {
            // SAFETY: forwarded unchanged.
            return unsafe { System.alloc_zeroed(layout) };
        }
        let Some((outer, offset)) = outer(layout) else {
            return ptr::null_mut();
        };
        // SAFETY: as in `alloc`.
        unsafe { finish_tracked(System.alloc_zeroed(outer), offset, layout.size()) }
    }

    unsafe fn dealloc(&self, data: *mut u8, layout: Layout) {
        if !tracked(layout.size()) {
            // SAFETY: an untracked block, allocated by `System` with this layout.
            return unsafe { System.dealloc(data, layout) };
        }
        let (outer, offset) = outer(layout).expect("the layout was valid when allocated");
        // SAFETY: a tracked block: its header holds the account it was charged to (or null).
        let account = unsafe { header(data).read() };
        if !account.is_null() {
            // SAFETY: the block holds the reference `charge` took.
            unsafe { credit(account, layout.size()) };
        }
        // SAFETY: the base and outer layout it was allocated with.
        unsafe { System.dealloc(data.sub(offset), outer) }
    }

    unsafe fn realloc(&self, data: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (was, will) = (tracked(layout.size()), tracked(new_size));
        if !was && !will {
            // SAFETY: untracked before and after.
            return unsafe { System.realloc(data, layout, new_size) };
        }
        if was && will {
            let (outer_old, offset) = outer(layout).expect("valid when allocated");
            let Some(new_total) = new_size.checked_add(offset) else {
                return ptr::null_mut();
            };
            // SAFETY: the header moves with the block (it is part of it).
            let base = unsafe { System.realloc(data.sub(offset), outer_old, new_total) };
            if base.is_null() {
                return base;
            }
            // SAFETY: the block is at least `offset + new_size` bytes.
            let data = unsafe { base.add(offset) };
            // SAFETY: still a tracked block.
            let account = unsafe { header(data).read() };
            if !account.is_null() {
                // SAFETY: the block's reference keeps the account alive.
                let inner = unsafe { &*account };
                if new_size >= layout.size() {
                    let grow = new_size - layout.size();
                    let now = inner.bytes.fetch_add(grow, Ordering::Relaxed) + grow;
                    inner.peak.fetch_max(now, Ordering::Relaxed);
                    inner.total.fetch_add(grow, Ordering::Relaxed);
                } else {
                    let shrink = layout.size() - new_size;
                    inner.bytes.fetch_sub(shrink, Ordering::Relaxed);
                    inner.total.fetch_sub(shrink, Ordering::Relaxed);
                }
            }
            return data;
        }
        // Crossing the threshold changes the block's shape: move it.
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: a valid non-zero layout (new_size > 0 when crossing upwards; when crossing
        // downwards realloc is never asked for size 0 by the standard library).
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks hold at least the smaller size.
            unsafe { ptr::copy_nonoverlapping(data, moved, layout.size().min(new_size)) };
            // SAFETY: the old block with its own layout.
            unsafe { self.dealloc(data, layout) };
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_while_entered_are_charged_and_credited_wherever_freed() {
        let account = HostAccount::new();
        let big = {
            let _entered = enter(&account);
            let _small = Box::new([0u8; 16]);
            vec![7u8; 1 << 20]
        };
        assert!(account.bytes() >= 1 << 20, "{}", account.bytes());
        let freed = std::thread::spawn(move || drop(big));
        freed.join().unwrap();
        assert!(account.bytes() < 1 << 10, "{}", account.bytes());
        assert!(account.peak() >= 1 << 20);
        let outside = vec![0u8; 1 << 20];
        assert!(account.bytes() < 1 << 10, "not entered: not charged");
        drop(outside);
    }

    #[test]
    fn connections_count_apart_from_guests() {
        let (guest, connections) = (HostAccount::new(), HostAccount::for_connections());
        // No other test of this process charges connections (guests' totals move with them).
        let connections_before = charged_to_connections();
        let held = {
            let _entered = enter(&connections);
            vec![3u8; 4 << 20]
        };
        assert!(connections.bytes() >= 4 << 20 && guest.bytes() == 0);
        assert!(charged_to_connections() >= connections_before + (4 << 20));
        drop(held);
        assert!(charged_to_connections() < connections_before + (1 << 20));
    }

    #[test]
    fn growth_and_shrinking_are_followed() {
        let account = HostAccount::new();
        let mut grown = Vec::<u8>::new();
        {
            let _entered = enter(&account);
            for i in 0..100_000u32 {
                grown.push(i as u8);
            }
        }
        assert!(account.bytes() >= 100_000, "{}", account.bytes());
        grown.truncate(10);
        grown.shrink_to_fit();
        assert!(account.bytes() < 1 << 10, "{}", account.bytes());
        drop(grown);
        assert_eq!(account.bytes(), 0);
    }

    #[test]
    fn an_account_outlives_its_handle_while_blocks_remain() {
        let account = HostAccount::new();
        let block = {
            let _entered = enter(&account);
            vec![1u8; 4096]
        };
        drop(account);
        // The block still refers to the account; freeing it frees the account.
        assert_eq!(block.iter().map(|b| *b as usize).sum::<usize>(), 4096);
        drop(block);
    }

    #[test]
    fn over_aligned_blocks_keep_their_alignment() {
        let account = HostAccount::new();
        let _entered = enter(&account);
        for align in [16usize, 64, 4096] {
            let layout = Layout::from_size_align(1000, align).unwrap();
            // SAFETY: a valid layout, freed below with the same layout.
            unsafe {
                let p = GLOBAL.alloc(layout);
                assert_eq!(p as usize % align, 0);
                let p = GLOBAL.realloc(p, layout, 5000);
                assert_eq!(p as usize % align, 0);
                GLOBAL.dealloc(p, Layout::from_size_align(5000, align).unwrap());
            }
        }
    }
}
