//! The WASI 0.3 request path of a module (`wasi:http/handler@0.3.0`): a request joins an
//! instance that takes more (see `concurrent`) or opens a new one, and each request keeps its
//! own deadline, CPU share and host-memory account on the shared instance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;
use wasmtime::Store;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode as P3ErrorCode;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};

use super::{
    CpuOf, GuestModule, InvocationCpu, InvocationInfo, ReadyProxy, classify, deadline_passes,
    record_instantiation,
};
use crate::body::{Owner, ResponseBody};
use crate::budget::Metered;
use crate::claims::Claims;
use crate::concurrent::{Bounds, Job, SharedInstance};
use crate::critical_first::Start;
use crate::error::InvokeError;
use crate::host::Host;
use crate::loader::Prepared;
use crate::outbound::TraceOutbound;
use crate::stats::ModuleStats;

impl GuestModule {
    /// Serves one request with a WASI 0.3 component: on the instance new requests join if it
    /// takes them, else on a new one (see `concurrent`). `hold` is kept until the request's
    /// response is done (its body read to its end, or dropped), but for the part an instance
    /// needs: handed to the instance this request opens, or given back on joining one.
    pub(super) async fn handle_p3<B>(
        &self,
        code: Arc<Prepared>,
        request: http::Request<B>,
        tracer: Option<TraceOutbound>,
        hold: impl Claims,
    ) -> Result<http::Response<ResponseBody>, InvokeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        use http_body_util::BodyExt;
        let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
        let limits = &self.inner.limits;
        let bounds = Bounds {
            concurrent: limits.max_concurrent_per_instance.max(1),
            life: limits.max_requests_per_instance.max(1),
            idle_timeout: limits.instance_idle_timeout,
        };
        // Outbound requests are traced per instance: a traced request gets one of its own.
        let shared = bounds.life > 1 && tracer.is_none();
        let mut hold: Box<dyn Claims> = Box::new(hold);
        let instance_claims = hold.split_instance();
        let open = match shared {
            true => self.inner.open.lock().expect("open lock").clone(),
            false => None,
        };
        let (joined, hold) = match open.filter(|open| Arc::ptr_eq(&open.code, &code)) {
            Some(instance) => match instance.join(hold) {
                Ok(live) => (Some(live), None),
                Err(back) => (None, Some(back)),
            },
            None => (None, Some(hold)),
        };
        let (mut live, info) = match joined {
            Some(live) => {
                // The instance holds its own.
                drop(instance_claims);
                let info = InvocationInfo {
                    instantiate: Duration::ZERO,
                    ready_instance: true,
                };
                (live, info)
            }
            None => {
                let bounds = match shared {
                    true => bounds,
                    false => Bounds {
                        concurrent: 1,
                        life: 1,
                        idle_timeout: Duration::ZERO,
                    },
                };
                let (instance, ready_instance) =
                    self.open_instance(&code, bounds, tracer, instance_claims);
                let hold = hold.expect("not joined: the slots are still ours");
                let Ok(live) = instance.join(hold) else {
                    unreachable!("a new instance takes its first request")
                };
                if shared {
                    let replaced = self.inner.open.lock().expect("open lock").replace(instance);
                    if let Some(replaced) = replaced {
                        replaced.retire();
                    }
                }
                let info = InvocationInfo {
                    instantiate: Duration::ZERO,
                    ready_instance,
                };
                (live, info)
            }
        };
        let instance = live.instance.clone();
        let (respond, response) = futures::channel::oneshot::channel();
        let (_waiting, caller) = oneshot::channel();
        if let Err(e) = instance.submit(Job {
            request,
            respond,
            caller,
        }) {
            live.finish(Err(e.clone()));
            return Err(e);
        }
        let deadline = tokio::time::Instant::from_std(live.deadline);
        let outcome = match tokio::time::timeout_at(deadline, response).await {
            Err(_) => Err(InvokeError::Timeout(instance.budget.timeout)),
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(error))) => Err(p3_failure(&instance, &error)),
            Ok(Err(_)) => Err(instance.outcome().await),
        };
        match outcome {
            Ok(response) => {
                let info = InvocationInfo {
                    instantiate: match info.ready_instance {
                        true => Duration::ZERO,
                        false => instance.budget.instantiate_time(),
                    },
                    ..info
                };
                let cpu = InvocationCpu(CpuOf::Share(live.cpu().unwrap_or_default()));
                self.accept_response(response, info, cpu, Owner::Request(live))
            }
            Err(e) => {
                tracing::warn!(module = %self.id(), kind = e.kind(), error = %e, "invocation failed");
                live.finish(Err(e.clone()));
                Err(e)
            }
        }
    }

    /// A new WASI 0.3 instance taking requests within `bounds` (a ready one if there is one),
    /// its worker started on the module's executor; and whether it was made ahead of time.
    fn open_instance(
        &self,
        code: &Arc<Prepared>,
        bounds: Bounds,
        tracer: Option<TraceOutbound>,
        claims: Option<Box<dyn Claims>>,
    ) -> (Arc<SharedInstance>, bool) {
        let (mut store, budget, service, code) = match self.take_ready() {
            Some(mut ready) => {
                ready.budget.restart();
                ready.store.set_epoch_deadline(1);
                let service = match ready.proxy {
                    ReadyProxy::P3(service) => Some(service),
                    ReadyProxy::P2(_) => None,
                };
                (ready.store, ready.budget, service, ready.code)
            }
            None => {
                let budget = self.budget(code);
                (
                    self.new_store(code, budget.clone()),
                    budget,
                    None,
                    code.clone(),
                )
            }
        };
        let ready = service.is_some();
        store.data_mut().hooks.tracer = tracer;
        let stats = self.inner.stats.clone();
        let (instance, jobs) = SharedInstance::new(code, bounds, budget, stats.clone(), claims);
        let run = crate::concurrent::run(instance.clone(), store, service, jobs);
        let worker = instance.clone();
        let module = self.inner.id.clone();
        // Detached: the worker ends by itself (its requests done, its deadline, a failure).
        drop(self.spawn_for(Start::Invocation, async move {
            let _open = stats.instance_opened();
            let budget = worker.budget.clone();
            let outcome = {
                let mut metered = std::pin::pin!(Metered::new(run, budget.clone(), stats));
                tokio::select! {
                    outcome = &mut metered => outcome,
                    () = deadline_passes(&budget) => {
                        budget.record(InvokeError::Timeout(budget.timeout));
                        let e = budget.verdict().unwrap_or(InvokeError::Timeout(budget.timeout));
                        // Before the store (dropped with `metered`) ends the bodies it feeds.
                        worker.fail(e.clone());
                        Err(e)
                    }
                }
            };
            if let Err(e) = &outcome {
                tracing::warn!(%module, kind = e.kind(), error = %e, "WASI 0.3 instance stopped");
            }
            worker.finished();
        }));
        (instance, ready)
    }
}

/// Why a WASI 0.3 request got an error instead of a response: the guest's error code, or its
/// instance's failure.
fn p3_failure(instance: &SharedInstance, error: &wasmtime::Error) -> InvokeError {
    if let Some(code) = error.downcast_ref::<P3ErrorCode>() {
        return InvokeError::GuestError(format!("{code:?}"));
    }
    instance
        .budget
        .verdict()
        .or_else(|| instance.failure())
        .unwrap_or_else(|| InvokeError::Trap(format!("{error:#}")))
}

/// Instantiates a WASI 0.3 service in `store`, recording the time and the instance's memory.
pub(crate) async fn instantiate_p3(
    pre: &ServicePre<Host>,
    store: &mut Store<Host>,
    stats: &ModuleStats,
) -> Result<Service, InvokeError> {
    let started = Instant::now();
    let service = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| classify(e, store))?;
    record_instantiation(store, stats, started);
    Ok(service)
}
