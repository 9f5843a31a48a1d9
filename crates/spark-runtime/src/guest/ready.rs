//! Instances made ahead of requests (the "instances ready" warmth level): made on the module's
//! current code, each used for exactly one request, those on code the module has left replaced
//! first.

use std::sync::Arc;

use super::{GuestModule, ReadyInstance, ReadyProxy, instantiate, instantiate_p3};
use crate::budget::Metered;
use crate::critical_first::Start;
use crate::error::InvokeError;
use crate::loader::{Entry, Prepared};

impl GuestModule {
    /// Instantiates up to `count` instances ahead of requests (the "instances ready" warmth
    /// level); each serves exactly one request, so isolation is unchanged. Returns how many are
    /// ready now (fewer when the node's ready-instance headroom is used up). Only HTTP
    /// components have ready instances.
    pub async fn prewarm(&self, count: usize) -> Result<usize, InvokeError> {
        let code = self.code();
        if let Entry::Command(_) = &code.entry {
            return Ok(0);
        }
        while self.current_ready_count(&code) < count {
            let slot = match self.inner.ready_slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                // Full: an instance on code the module has left makes room for one on its code.
                Err(_) if self.drop_one_stale(&code) => continue,
                Err(_) => break,
            };
            let budget = self.budget(&code);
            let mut store = self.new_store(&code, budget.clone());
            let (entry, stats) = (code.entry.clone(), self.inner.stats.clone());
            let made = self
                .spawn_for(
                    Start::Prewarm,
                    Metered::new(
                        async move {
                            let proxy = match &entry {
                                Entry::Http(pre) => {
                                    ReadyProxy::P2(instantiate(pre, &mut store, &stats).await?)
                                }
                                Entry::HttpP3(pre) => {
                                    ReadyProxy::P3(instantiate_p3(pre, &mut store, &stats).await?)
                                }
                                Entry::Command(_) => {
                                    unreachable!("commands have no ready instances")
                                }
                            };
                            Ok::<_, InvokeError>((store, proxy))
                        },
                        budget.clone(),
                        self.inner.stats.clone(),
                    ),
                )
                .await
                .map_err(|join| InvokeError::Trap(format!("prewarm task failed: {join}")))??;
            let (store, proxy) = made;
            self.inner
                .ready
                .lock()
                .expect("ready lock")
                .push(ReadyInstance {
                    store,
                    proxy,
                    budget,
                    code: code.clone(),
                    _slot: slot,
                });
        }
        Ok(self.current_ready_count(&code))
    }

    pub(super) fn current_ready_count(&self, code: &Arc<Prepared>) -> usize {
        let ready = self.inner.ready.lock().expect("ready lock");
        ready.iter().filter(|r| Arc::ptr_eq(&r.code, code)).count()
    }

    /// Drops one ready instance made on other code than `code`; whether there was one.
    pub(super) fn drop_one_stale(&self, code: &Arc<Prepared>) -> bool {
        let mut ready = self.inner.ready.lock().expect("ready lock");
        match ready.iter().position(|r| !Arc::ptr_eq(&r.code, code)) {
            Some(at) => {
                ready.remove(at);
                true
            }
            None => false,
        }
    }

    /// Instances ready to take a request that were made from the module's current code (after
    /// a tier swap, until the old ones are replaced, fewer than [`GuestModule::ready_count`]).
    pub fn ready_on_current_code(&self) -> usize {
        self.current_ready_count(&self.code())
    }

    /// Instances ready to take a request.
    pub fn ready_count(&self) -> usize {
        self.inner.ready.lock().expect("ready lock").len()
    }

    /// Drops ready instances beyond `keep` (memory goes back to the pool).
    pub fn trim_ready(&self, keep: usize) {
        let code = self.code();
        let mut ready = self.inner.ready.lock().expect("ready lock");
        // Those on old code go first.
        while ready.len() > keep {
            match ready.iter().position(|r| !Arc::ptr_eq(&r.code, &code)) {
                Some(at) => drop(ready.remove(at)),
                None => ready.truncate(keep),
            }
        }
    }

    /// A ready instance, those on the current code first (instances on the old code still
    /// serve correctly: a request runs on whichever code its instance was made from).
    pub(super) fn take_ready(&self) -> Option<ReadyInstance> {
        let code = self.code();
        let mut ready = self.inner.ready.lock().expect("ready lock");
        match ready.iter().rposition(|r| Arc::ptr_eq(&r.code, &code)) {
            Some(at) => Some(ready.swap_remove(at)),
            None => ready.pop(),
        }
    }
}
