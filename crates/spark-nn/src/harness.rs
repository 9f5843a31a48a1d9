//! A minimal embedding that runs a `wasi:http` guest with `wasi:nn`: for this crate's tests,
//! the B6 benchmark and `spark nn` (the in-process probe). The node runs guests through `spark-runtime`; this
//! harness links the same interfaces the same way (WASI 0.2, `wasi:http`, [`add_to_linker`]).
//!
//! The decision worth knowing: each request gets a fresh store and a fresh [`NnInvocation`],
//! exactly as on a node, so what the tests observe (fall-through, limits, `spark:nn/info`) is
//! what a guest on a node sees. Outbound HTTP is refused.

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::config::NnLimits;
use crate::error::NnError;
use crate::host::{NnInvocation, add_to_linker};
use crate::service::NnService;

/// A compiled guest, ready to take requests.
pub struct Harness {
    engine: Engine,
    pre: ProxyPre<State>,
    service: NnService,
    limits: NnLimits,
}

/// A guest's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The headers as the guest set them.
    pub headers: http::HeaderMap,
    /// The whole body, read to its end.
    pub body: Bytes,
}

struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: NoOutbound,
    table: ResourceTable,
    nn: NnInvocation,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Refuses every outbound request (no scheme is supported).
struct NoOutbound;

impl WasiHttpHooks for NoOutbound {
    fn is_supported_scheme(&mut self, _scheme: &http::uri::Scheme) -> bool {
        false
    }
}

fn guest_err(e: impl Into<spark_error::BoxError>) -> NnError {
    NnError::Harness(e.into())
}

impl Harness {
    /// Compiles `wasm` and links it with WASI, `wasi:http`, `wasi:nn` and `spark:nn/info`.
    pub fn new(service: NnService, wasm: &Path, limits: NnLimits) -> Result<Harness, NnError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(guest_err)?;
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(guest_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(guest_err)?;
        add_to_linker(&mut linker, |s: &mut State| s.nn.view(&mut s.table)).map_err(guest_err)?;
        let component = Component::from_file(&engine, wasm)
            .map_err(|e| guest_err(spark_error::context(wasm.display().to_string(), e)))?;
        let pre = linker.instantiate_pre(&component).map_err(guest_err)?;
        let pre = ProxyPre::new(pre).map_err(guest_err)?;
        Ok(Harness {
            engine,
            pre,
            service,
            limits,
        })
    }

    /// The inference host the guest's `wasi:nn` calls go to.
    pub fn service(&self) -> &NnService {
        &self.service
    }

    /// Sends one request to a fresh instance and reads the whole answer.
    pub async fn request(&self, method: &str, path: &str, body: Vec<u8>) -> Result<Reply, NnError> {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://localhost{path}"))
            .header(http::header::HOST, "localhost")
            .body(
                Full::new(Bytes::from(body))
                    .map_err(|never| -> wasmtime_wasi_http::Error { match never {} }),
            )
            .map_err(guest_err)?;
        let state = State {
            wasi: WasiCtxBuilder::new().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            hooks: NoOutbound,
            table: ResourceTable::new(),
            nn: self.service.invocation("harness", self.limits),
        };
        let mut store = Store::new(&self.engine, state);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let mut http = store.data_mut().http();
        let request = http
            .new_incoming_request(Scheme::Http, request)
            .map_err(guest_err)?;
        let out = http.new_response_outparam(sender).map_err(guest_err)?;
        let pre = self.pre.clone();
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await
        });
        let response = match receiver.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => return Err(NnError::Guest(format!("guest error code {code:?}"))),
            Err(_) => {
                return Err(match task.await {
                    Ok(Err(e)) => guest_err(e),
                    Ok(Ok(())) => NnError::Guest("the guest set no response".into()),
                    Err(join) => guest_err(join),
                });
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(guest_err)?.to_bytes();
        if let Ok(Err(e)) = task.await {
            return Err(guest_err(e));
        }
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}
