//! Test support shared by every crate's integration tests: real guest components built from
//! `guests/`, real nodes listening on 127.0.0.1, a real nats-server for the fleet tests, and a
//! small HTTP client.
//!
//! Guests are built once per test process with the same cargo command the README uses. Set
//! `SPARK_GUESTS_DIR` to a directory of prebuilt `.wasm` files to skip the build (CI does,
//! after building them once).
//!
//! [`nn`] finds the inference test material (the real model, ONNX Runtime) and says loudly
//! what it cannot test; `SPARK_NN_REQUIRE_ACCEL=1` (CI) turns a missing piece into a failure.
//! It also draws the sample images (and builds the slow model) that `spark-nn`'s tests, B6 and
//! `spark nn classify` use, so the node's `spark-nn` carries no test material.

mod client;
mod guests;
mod nats;
pub mod nn;
mod node;

pub use client::{ClientError, Reply, get, post, request, request_with};
pub use guests::{guest, guests_dir};
pub use nats::{NatsServer, nats_server_bin};
pub use node::TestNode;

/// Polls `check` every 20 ms until it holds or `within` passes; whether it held.
pub async fn eventually(within: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The value of one series (`name{labels}` exactly as exposed) in a Prometheus text page.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
