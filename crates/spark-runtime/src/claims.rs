//! What a request holds while a guest works for it (its admission slots, its share of the
//! node's capacity), as the runtime sees it: an owned guard, released on drop, that the
//! runtime keeps exactly as long as the guest works for the request.
//!
//! Two things only the runtime knows matter to the holder, so the guard has a say in them:
//! - which part of a claim belongs to an *instance* rather than to a request. A WASI 0.2
//!   request has an instance of its own, so the two are one; a WASI 0.3 request may join an
//!   instance that is already open, which already holds its instance slot and the reservation
//!   for its linear memory. The request that opens an instance hands that part to the
//!   instance (kept until its store is gone); a request that joins gives it back at once.
//! - when what is held is only *on its way back*: the requests are answered, the instance
//!   takes no more and is ending (the guest's post-response work, its store's teardown). A
//!   node short of capacity may wait for such claims instead of refusing work it will have
//!   room for in a moment.

/// A request's claims, released on drop. The defaults suit a holder with nothing to split.
pub trait Claims: Send + 'static {
    /// Splits off the part of the claim an instance needs (e.g. its slot and linear memory),
    /// if there is one to split.
    fn split_instance(&mut self) -> Option<Box<dyn Claims>> {
        None
    }

    /// What is held is only waiting for its instance to end.
    fn ending(&mut self) {}
}

impl Claims for () {}

impl<A: Claims, B: Claims> Claims for (A, B) {
    fn split_instance(&mut self) -> Option<Box<dyn Claims>> {
        match (self.0.split_instance(), self.1.split_instance()) {
            (None, None) => None,
            (Some(a), None) => Some(a),
            (None, Some(b)) => Some(b),
            (Some(a), Some(b)) => Some(Box::new((a, b))),
        }
    }

    fn ending(&mut self) {
        self.0.ending();
        self.1.ending();
    }
}

impl Claims for Box<dyn Claims> {
    fn split_instance(&mut self) -> Option<Box<dyn Claims>> {
        (**self).split_instance()
    }

    fn ending(&mut self) {
        (**self).ending();
    }
}
