//! WASI 0.3 HTTP components (`wasi:http/handler@0.3.0`): instances that serve several requests
//! at once, within a per-module bound.
//!
//! A WASI 0.2 handler is a synchronous call: one instance, one request. A 0.3 handler is an
//! async function of the component model, so one instance can have several calls in flight,
//! each suspended on its own I/O. [`SharedInstance`] is such an instance: it takes requests
//! while it serves fewer than `limits.max_concurrent_per_instance` and has taken fewer than
//! `limits.max_requests_per_instance` over its life (both 1: a fresh instance per request, as
//! for 0.2). By default it takes none once it has gone idle, so no state survives from one
//! burst of requests to the next and requests one at a time each get a fresh instance. A
//! module may let an idle instance wait `limits.instance_idle_timeout` for its next request
//! (as `wasmtime serve` does): then it holds only its own claims (its slot and memory on the
//! node) while it waits, and ends when the wait runs out, its life is used up, or a newer
//! instance has taken its place as the one requests join.
//!
//! What each request holds is held by its [`LiveRequest`] guard, from the moment an instance
//! takes it until its response body ends (or the response is never made): its admission slots
//! and node capacity (`hold`, see [`Claims`]), its in-flight count, its share of the
//! instance's CPU. The part of a claim that an instance needs (its slot and linear memory on
//! the node) is the instance's: the request that opens it hands it over, and it is released
//! when the store is gone; requests that join give theirs back at once, so sixteen requests
//! on one instance reserve one instance's memory and sixteen requests' host memory. Once an
//! instance takes no more requests and has none left, what it and its last request still
//! hold is marked as ending ([`Claims::ending`]): on its way back. A client that goes away
//! drops the guard; the instance then stops at once if nobody else is on it (a call cannot be
//! cancelled alone in Wasmtime 48, so with others on it the abandoned call runs on, within the
//! instance's limits, until the instance ends). The last request to end normally lends its
//! slots to the instance for whatever the guest still does after the response (post-return
//! work), as a 0.2 guest task keeps them.
//!
//! Limits of a shared instance (see [`crate::budget::Budget::shared`]): linear memory is the
//! instance's (`limits.memory`, as for 0.2); host memory is bounded by `limits.host_memory`
//! times the requests on it; each request is charged an equal share of the CPU the instance
//! uses while it is on it, and the instance stops when any request's share passes
//! `limits.cpu_time`; the wall clock runs to the latest request's deadline. Each request has its
//! own deadline besides: its response (504) and its body are cut at it, and an instance with a
//! request that timed out takes no more. A request whose outbound calls are traced
//! (`trace_outbound`) gets an instance of its own: outbound requests can only be attributed to
//! the request whose instance makes them.
//!
//! The decision worth knowing: the worker loop is Spark's, not `wasmtime-wasi-http`'s
//! `ProxyHandler` (which `wasmtime serve` uses). That handler spawns its own tasks, reuses
//! instances across idle periods and has no hook to meter CPU or host memory per poll; here the
//! instance runs as one task on the module's executor, wrapped like every other guest
//! ([`crate::budget::Metered`]), with its epoch callback, pacer and limits.

use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use futures::task::AtomicWaker;
use tokio::sync::{mpsc, oneshot, watch};
use wasmtime::component::Accessor;
use wasmtime::{AsContextMut, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{Prepared, Proxy};
use wasmtime_wasi_http::p3::bindings::Service;

use crate::budget::{Budget, CpuShare};
use crate::claims::Claims;
use crate::error::InvokeError;
use crate::host::Host;
use crate::loader::Prepared as Code;
use crate::stats::{InFlight, ModuleStats};

/// How many requests an instance takes, and how long it waits for one once idle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// At once.
    pub(crate) concurrent: u32,
    /// Over its life.
    pub(crate) life: u32,
    /// Idle (zero: it takes none once idle).
    pub(crate) idle_timeout: Duration,
}

/// What a request asks of the instance that takes it.
pub(crate) struct Job {
    pub(crate) request: wasmtime_wasi_http::handler::Request,
    /// Where the response (or why there is none) goes.
    pub(crate) respond: futures::channel::oneshot::Sender<
        Result<wasmtime_wasi_http::handler::Response, wasmtime::Error>,
    >,
    /// Resolves (with an error) when the caller stops waiting for the response.
    pub(crate) caller: oneshot::Receiver<()>,
}

/// One WASI 0.3 instance and the requests it serves.
pub(crate) struct SharedInstance {
    /// The code it runs (a module on new code opens new instances).
    pub(crate) code: Arc<Code>,
    /// Requests at once.
    concurrent: u32,
    /// Requests over its life.
    life: u32,
    /// How long it waits for a request once idle (zero: it takes none once idle).
    idle_timeout: Duration,
    state: Mutex<State>,
    jobs: mpsc::UnboundedSender<Job>,
    /// Wakes the worker when a request ends (it may be time to stop).
    waker: AtomicWaker,
    pub(crate) budget: Arc<Budget>,
    /// Why the instance stopped, set before its store is dropped (so a body cut short by the
    /// store's end is known as a failure, not a complete body).
    failure: OnceLock<InvokeError>,
    /// `true` once the worker has ended.
    ended: watch::Sender<bool>,
    stats: Arc<ModuleStats>,
}

#[derive(Default)]
struct State {
    /// Requests taken over the instance's life.
    accepted: u32,
    /// Requests taken whose response is not done.
    live: u32,
    /// Takes no more requests (idle once, its life used up, or a request failed on it).
    closed: bool,
    /// No longer the instance new requests join: it ends once idle.
    retired: bool,
    /// Since when it has waited, idle, for a request.
    idle_since: Option<Instant>,
    /// Stop now: the last request ended without anyone wanting what the instance still does.
    stop: bool,
    /// The last request's slots and CPU share, kept while the guest finishes its work.
    tail: Vec<(Box<dyn Claims>, CpuShare)>,
    /// The instance's own claims (its slot and memory on the node), kept until it ends.
    claims: Option<Box<dyn Claims>>,
}

impl SharedInstance {
    /// A new instance (its worker not yet started) taking requests within `bounds` and
    /// holding `claims` until it ends; the receiver is the worker's.
    pub(crate) fn new(
        code: Arc<Code>,
        bounds: Bounds,
        budget: Arc<Budget>,
        stats: Arc<ModuleStats>,
        claims: Option<Box<dyn Claims>>,
    ) -> (Arc<SharedInstance>, mpsc::UnboundedReceiver<Job>) {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let instance = Arc::new(SharedInstance {
            code,
            concurrent: bounds.concurrent.max(1),
            life: bounds.life.max(1),
            idle_timeout: bounds.idle_timeout,
            state: Mutex::new(State {
                claims,
                ..State::default()
            }),
            jobs,
            waker: AtomicWaker::new(),
            budget,
            failure: OnceLock::new(),
            ended: watch::channel(false).0,
            stats,
        });
        (instance, receiver)
    }

    /// Takes a request if the instance still takes any (`Err` gives `hold` back): its place,
    /// its slots and its CPU share are held by the guard.
    pub(crate) fn join(
        self: &Arc<Self>,
        hold: Box<dyn Claims>,
    ) -> Result<LiveRequest, Box<dyn Claims>> {
        let (share, shared) = {
            let mut state = self.state.lock().expect("instance lock");
            if state.closed
                || state.accepted >= self.life
                || state.live >= self.concurrent
                || self.failure.get().is_some()
            {
                return Err(hold);
            }
            state.accepted += 1;
            state.live += 1;
            state.idle_since = None;
            if state.accepted >= self.life {
                state.closed = true;
            }
            // The instance's clock runs to its latest request's deadline.
            self.budget.restart();
            (self.budget.join_share(), state.live > 1)
        };
        if shared {
            self.stats.shared_request();
        }
        Ok(LiveRequest {
            instance: self.clone(),
            share: Some(share),
            hold: Some(hold),
            in_flight: Some(self.stats.started()),
            outcome: None,
            deadline: self.budget.deadline(),
        })
    }

    /// Hands a request to the worker; `Err` if the worker is gone.
    pub(crate) fn submit(&self, job: Job) -> Result<(), InvokeError> {
        self.jobs.send(job).map_err(|_| self.gone())
    }

    /// Why the instance failed, if it did.
    pub(crate) fn failure(&self) -> Option<InvokeError> {
        self.failure.get().cloned()
    }

    fn gone(&self) -> InvokeError {
        self.failure().unwrap_or_else(|| {
            InvokeError::Trap("the instance serving the request ended before answering".into())
        })
    }

    /// Records why the instance stops (the first reason wins) before its store goes.
    pub(crate) fn fail(&self, error: InvokeError) {
        let _ = self.failure.set(error);
    }

    /// Waits for the worker to end, then says why the request got no response.
    pub(crate) async fn outcome(&self) -> InvokeError {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|ended| *ended).await;
        self.failure().unwrap_or(InvokeError::NoResponse)
    }

    /// The worker ended (its store is gone): what the instance held is released.
    pub(crate) fn finished(&self) {
        let mut state = self.state.lock().expect("instance lock");
        state.closed = true;
        let tail = std::mem::take(&mut state.tail);
        let claims = state.claims.take();
        drop(state);
        drop((tail, claims));
        self.ended.send_replace(true);
    }

    /// No more requests on this instance (one of them timed out or failed).
    fn poison(&self) {
        self.state.lock().expect("instance lock").closed = true;
    }

    /// A newer instance is the one requests join: this one ends once idle (at once if it is).
    pub(crate) fn retire(&self) {
        let mut state = self.state.lock().expect("instance lock");
        state.retired = true;
        if state.live == 0 {
            self.close_idle(&mut state);
        }
        drop(state);
        self.waker.wake();
    }

    /// An idle instance takes no more requests: what it holds is on its way back.
    fn close_idle(&self, state: &mut State) {
        state.closed = true;
        state.idle_since = None;
        if let Some(claims) = &mut state.claims {
            claims.ending();
        }
    }

    /// When an instance waiting idle for requests stops waiting.
    fn idle_until(&self) -> Option<Instant> {
        let state = self.state.lock().expect("instance lock");
        match (state.closed, state.idle_since) {
            (false, Some(since)) => Some(since + self.idle_timeout),
            _ => None,
        }
    }

    /// The idle wait ran out: close unless a request came meanwhile.
    fn idle_timed_out(&self) {
        let mut state = self.state.lock().expect("instance lock");
        if state.live == 0 && !state.closed {
            self.close_idle(&mut state);
        }
    }

    /// A request's response is done (`normal`) or it was abandoned or failed. The last one
    /// to end normally leaves its slots and CPU share to the instance's remaining work; after
    /// any other last end the instance stops at once.
    fn left(&self, normal: bool, hold: Option<Box<dyn Claims>>, share: Option<CpuShare>) {
        let mut state = self.state.lock().expect("instance lock");
        state.live -= 1;
        let idle = state.live == 0;
        let mut released = None;
        // An instance allowed to wait for its next request does, holding only its own claims.
        let waits = idle
            && normal
            && !self.idle_timeout.is_zero()
            && !state.closed
            && !state.retired
            && self.failure.get().is_none();
        if waits {
            state.idle_since = Some(Instant::now());
            // Its clock runs from now: the idle wait is shorter than a request's timeout.
            self.budget.restart();
        } else if idle {
            // It takes no more requests and has none: all it holds is on its way back.
            state.stop |= !normal;
            self.close_idle(&mut state);
        }
        match (idle && normal && !waits, hold, share) {
            (true, Some(mut hold), Some(share)) => {
                hold.ending();
                state.tail.push((hold, share));
            }
            (_, hold, share) => {
                if let Some(share) = &share {
                    self.budget.leave_share(share);
                }
                released = Some(hold);
            }
        }
        drop(state);
        drop(released);
        self.waker.wake();
    }

    /// Whether the worker may end: every request done; `Some(true)` to stop at once.
    fn done(&self) -> Option<bool> {
        let state = self.state.lock().expect("instance lock");
        (state.closed && state.live == 0).then_some(state.stop)
    }
}

/// A request an instance took, until its response is done: its slots, its in-flight count,
/// its CPU share. Dropped without [`LiveRequest::finish`], the request was abandoned.
pub(crate) struct LiveRequest {
    pub(crate) instance: Arc<SharedInstance>,
    share: Option<CpuShare>,
    hold: Option<Box<dyn Claims>>,
    in_flight: Option<InFlight>,
    outcome: Option<Result<(), InvokeError>>,
    /// When this request must be done (its response and its body).
    pub(crate) deadline: Instant,
}

impl LiveRequest {
    /// The request's share of its instance's CPU so far.
    pub(crate) fn cpu(&self) -> Option<CpuShare> {
        self.share.clone()
    }

    /// How the request ended; a failure keeps its instance from taking more requests.
    pub(crate) fn finish(&mut self, outcome: Result<(), InvokeError>) {
        if outcome.is_err() {
            self.instance.poison();
        }
        self.outcome.get_or_insert(outcome);
    }
}

impl Drop for LiveRequest {
    fn drop(&mut self) {
        let outcome = self.outcome.take();
        if let Some(in_flight) = self.in_flight.take() {
            match &outcome {
                Some(outcome) => in_flight.finish(outcome.as_ref().map(|_| ())),
                // Abandoned: counted as cancelled.
                None => drop(in_flight),
            }
        }
        let normal = matches!(outcome, Some(Ok(())));
        self.instance
            .left(normal, self.hold.take(), self.share.take());
    }
}

/// Runs the instance: instantiates it (unless `ready` is one made ahead), then serves the
/// requests it is given until it is done. The caller meters, times and supervises the run.
pub(crate) async fn run(
    instance: Arc<SharedInstance>,
    mut store: Store<Host>,
    ready: Option<Service>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) -> Result<(), InvokeError> {
    let service = match ready {
        Some(service) => service,
        None => {
            let crate::loader::Entry::HttpP3(pre) = &instance.code.entry else {
                return Err(InvokeError::BadRequest(
                    "not a WASI 0.3 HTTP component".into(),
                ));
            };
            crate::guest::instantiate_p3(pre, &mut store, &instance.stats).await?
        }
    };
    let proxy = Proxy::P3(service);
    let served = store
        .run_concurrent(async |accessor| serve(accessor, &proxy, &instance, &mut jobs).await)
        .await;
    let outcome = match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) | Err(e) => Err(crate::guest::classify(e, &store)),
    };
    if let Err(e) = &outcome {
        // Before the store (and with it the bodies it feeds) is dropped.
        instance.fail(e.clone());
    }
    outcome
}

/// The worker loop inside the store's event loop: start each request as it comes, and end
/// when the instance is done (at once if nobody wants what it still does, else when the guest
/// has no work left).
async fn serve(
    accessor: &Accessor<Host>,
    proxy: &Proxy,
    instance: &SharedInstance,
    jobs: &mut mpsc::UnboundedReceiver<Job>,
) -> wasmtime::Result<()> {
    let Proxy::P3(service) = proxy else {
        unreachable!("only WASI 0.3 instances are shared")
    };
    let func = *service.wasi_http_handler().func_handle().func();
    let mut running = FuturesUnordered::new();
    let mut idle_wait = std::pin::pin!(tokio::time::sleep_until(tokio::time::Instant::now()));
    std::future::poll_fn(|cx| {
        instance.waker.register(cx.waker());
        loop {
            // Requests that answered (or whose caller left) first.
            while let Poll::Ready(Some(result)) = running.poll_next_unpin(cx) {
                let _: bool = result?;
            }
            if accessor.poll_ready_for_concurrent_call(func, cx).is_ready()
                && let Poll::Ready(Some(job)) = jobs.poll_recv(cx)
            {
                let Job {
                    request,
                    respond,
                    caller,
                } = job;
                let prepared = accessor.with(|mut store| {
                    Prepared::new(
                        store.as_context_mut(),
                        proxy,
                        request,
                        <Host as WasiHttpView>::http,
                        respond,
                    )
                });
                running.push(async move {
                    let prepared = prepared?;
                    prepared
                        .run(accessor, async {
                            let _ = caller.await;
                        })
                        .await
                });
                continue;
            }
            if !running.is_empty() {
                return Poll::Pending;
            }
            return match instance.done() {
                Some(true) => Poll::Ready(Ok(())),
                Some(false) if accessor.poll_no_interesting_tasks(cx).is_ready() => {
                    Poll::Ready(Ok(()))
                }
                Some(false) => Poll::Pending,
                None => {
                    // Idle and waiting for a request: until the wait runs out.
                    if let Some(until) = instance.idle_until() {
                        let until = tokio::time::Instant::from_std(until);
                        if idle_wait.deadline() != until {
                            idle_wait.as_mut().reset(until);
                        }
                        if idle_wait.as_mut().poll(cx).is_ready() {
                            instance.idle_timed_out();
                            continue;
                        }
                    }
                    Poll::Pending
                }
            };
        }
    })
    .await
}
