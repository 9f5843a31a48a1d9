//! A plain WASI 0.3 HTTP component (`wasi:http/handler@0.3.0`, component-model async),
//! built from the `wasip3` crate with no framework: what Spark serves beside WASI 0.2 guests.
//!
//! Routes (the path, whatever route prefix the manifest gives it):
//! - `/` (or anything unknown): a greeting.
//! - `/echo`: the request body streamed back chunk by chunk as it arrives.
//! - `/count`: reads the whole request body, then says how many bytes it had (or answers
//!   with the host's error code if the body failed, e.g. past the module's limit).
//! - `/big?bytes=N`: N bytes (default 4 MiB) streamed in 64 KiB chunks.
//! - `/sleep?ms=N`: waits N ms on the host's clock (an await, not a spin), then says which
//!   instance served it and how many requests that instance had in flight at once: the test
//!   of concurrency within one instance.
//! - `/stall`: sends its headers and a first chunk, then never finishes its body (it waits on
//!   the host's clock, forever).
//! - `/spin`: burns CPU forever.
//! - `/hoard?n=N`: makes N header maps of 64 KiB each in the host and holds them (host
//!   memory the guest makes the host allocate).
//! - `/grow?mb=N`: allocates and touches N MiB of linear memory (1 MiB at a time).
//! - `/trap`: panics.
//! - `/version`: the `VERSION` environment variable (rollouts tell versions apart by it).
//!
//! The instance's state (its id, requests in flight, the peak) is in globals on purpose: one
//! WASI 0.3 instance may serve several requests at once, and this is how a guest sees it.

use std::cell::Cell;

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::wit_bindgen::StreamResult;
use wasip3::{wit_future, wit_stream};

// wit-bindgen renamed `spawn` to `spawn_local` between the release candidate's bindings and
// 0.3.0's; the `rc` feature is the `http-p3-rc` build of this file.
#[cfg(feature = "rc")]
use wasip3::wit_bindgen::spawn as spawn_local;
#[cfg(not(feature = "rc"))]
use wasip3::wit_bindgen::spawn_local;

wasip3::http::service::export!(Service);

struct Service;

const CHUNK: usize = 64 * 1024;

thread_local! {
    static INSTANCE: Cell<u64> = const { Cell::new(0) };
    static IN_FLIGHT: Cell<u32> = const { Cell::new(0) };
    static PEAK: Cell<u32> = const { Cell::new(0) };
    static SERVED: Cell<u32> = const { Cell::new(0) };
}

/// Counts a request in flight in this instance while it lives.
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        let now = IN_FLIGHT.get() + 1;
        IN_FLIGHT.set(now);
        PEAK.set(PEAK.get().max(now));
        SERVED.set(SERVED.get() + 1);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.set(IN_FLIGHT.get() - 1);
    }
}

fn instance_id() -> u64 {
    if INSTANCE.get() == 0 {
        INSTANCE.set(wasip3::random::random::get_random_u64() | 1);
    }
    INSTANCE.get()
}

impl wasip3::exports::http::handler::Guest for Service {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let _in_flight = InFlight::enter();
        let target = request.get_path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let route = path.rsplit('/').next().unwrap_or("");
        match route {
            "echo" => Ok(echo(request)),
            "count" => count(request).await,
            "big" => Ok(streamed(param(query, "bytes").unwrap_or(4 << 20), false)),
            "stall" => Ok(streamed(CHUNK as u64, true)),
            "sleep" => {
                let ms = param(query, "ms").unwrap_or(100);
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                let text = format!(
                    "slept {ms} ms; instance={:016x} in_flight={} peak={} served={}\n",
                    instance_id(),
                    IN_FLIGHT.get(),
                    PEAK.get(),
                    SERVED.get()
                );
                Ok(text_response(text))
            }
            "spin" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "hoard" => {
                let n = param(query, "n").unwrap_or(1000);
                let value = vec![b'x'; CHUNK];
                let mut held = Vec::new();
                for _ in 0..n {
                    let fields = Fields::new();
                    if fields.append("x-hoard", &value).is_err() {
                        break;
                    }
                    held.push(fields);
                }
                Ok(text_response(format!("held {} header maps\n", held.len())))
            }
            "grow" => {
                let mb = param(query, "mb").unwrap_or(1);
                let blocks: Vec<Vec<u8>> = (0..mb).map(|i| vec![i as u8 | 1; 1 << 20]).collect();
                let total: u64 = blocks.iter().map(|block| u64::from(block[0])).sum();
                Ok(text_response(format!("grew {mb} MiB ({total})\n")))
            }
            "trap" => panic!("the guest was asked to trap"),
            "version" => {
                let version = wasip3::cli::environment::get_environment()
                    .into_iter()
                    .find(|(name, _)| name == "VERSION")
                    .map_or_else(|| "unset".to_owned(), |(_, value)| value);
                Ok(text_response(format!("{version}\n")))
            }
            _ => Ok(text_response(format!(
                "Hello from a WASI 0.3 component! instance={:016x}\n",
                instance_id()
            ))),
        }
    }
}

fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
}

fn headers(content_type: &str) -> Fields {
    let fields = Fields::new();
    let _ = fields.append("content-type", content_type.as_bytes());
    fields
}

/// A whole body known up front.
fn text_response(text: String) -> Response {
    let (mut body, contents) = wit_stream::new();
    let (_trailers, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers("text/plain"), Some(contents), trailers_rx);
    spawn_local(async move {
        body.write_all(text.into_bytes()).await;
    });
    response
}

/// `bytes` bytes in chunks; with `stall`, one chunk and then nothing, ever.
fn streamed(bytes: u64, stall: bool) -> Response {
    let (mut body, contents) = wit_stream::new();
    let (_trailers, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(
        headers("application/octet-stream"),
        Some(contents),
        trailers_rx,
    );
    spawn_local(async move {
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            let rest = body.write_all(vec![b'.'; n]).await;
            if !rest.is_empty() {
                return; // the client went away
            }
            left -= n as u64;
            if stall {
                // On the host's clock: a guest task may not wait on nothing at all
                // (wit-bindgen traps unless built with `inter-task-wakeup`).
                loop {
                    wasip3::clocks::monotonic_clock::wait_for(3_600 * 1_000_000_000).await;
                }
            }
        }
    });
    response
}

/// The request body back, chunk by chunk, as it arrives.
fn echo(request: Request) -> Response {
    let (_done, done_rx) = wit_future::new(|| Ok(()));
    let (mut incoming, _trailers) = Request::consume_body(request, done_rx);
    let (mut body, contents) = wit_stream::new();
    let (_trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(
        headers("application/octet-stream"),
        Some(contents),
        trailers_rx,
    );
    spawn_local(async move {
        loop {
            let (result, chunk) = incoming.read(Vec::with_capacity(CHUNK)).await;
            match result {
                StreamResult::Complete(_) if !chunk.is_empty() => {
                    if !body.write_all(chunk).await.is_empty() {
                        return;
                    }
                }
                StreamResult::Complete(_) => {}
                StreamResult::Dropped | StreamResult::Cancelled => return,
            }
        }
    });
    response
}

/// Reads the request body to its end, then answers with its length; a body that failed
/// (its trailers' future says why) is answered with that error.
async fn count(request: Request) -> Result<Response, ErrorCode> {
    let (_done, done_rx) = wit_future::new(|| Ok(()));
    let (mut incoming, trailers) = Request::consume_body(request, done_rx);
    let mut total = 0u64;
    loop {
        let (result, chunk) = incoming.read(Vec::with_capacity(CHUNK)).await;
        total += chunk.len() as u64;
        match result {
            StreamResult::Complete(_) => {}
            StreamResult::Dropped | StreamResult::Cancelled => break,
        }
    }
    trailers.await?;
    Ok(text_response(format!("read {total} bytes\n")))
}
