//! Test support shared by every crate's integration tests: real guest components built from
//! `guests/`, real nodes listening on 127.0.0.1, a real nats-server (or a JetStream cluster of
//! three, also what `spark bench fleet` runs) for the fleet tests, a small HTTP client, and an
//! OTLP receiver for the tracing tests.
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
mod nats_cluster;
pub mod nn;
mod node;
mod otlp;

pub use client::{ClientError, Reply, get, post, request, request_with};
pub use guests::{guest, guests_dir};
pub use nats::{NatsServer, nats_server_bin};
pub use nats_cluster::{NatsCluster, NatsClusterError, NatsClusterOptions};
pub use node::TestNode;
pub use otlp::{OtlpReceiver, ReceivedSpan};

/// How often [`eventually`] and [`wait_until`] look again.
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Polls `check` until it holds or `within` passes (looking once more at the deadline);
/// whether it held. For state a node reaches on its own: gauges settling, modes switching.
pub async fn eventually(within: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    check()
}

/// [`eventually`] for a check that must itself wait (an HTTP request, a NATS read): polls
/// until it holds, and panics naming `what` if it does not within `within`.
pub async fn wait_until<F, Fut>(within: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    assert!(
        check().await,
        "timed out after {within:?} waiting for: {what}"
    );
}

/// Runs a command to its end: whether it succeeded, and its stdout followed by its stderr
/// (what a person at a terminal would read).
pub fn run_command(command: &mut std::process::Command) -> (bool, String) {
    let output = command.output().expect("starting the command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The value of one series (`name{labels}` exactly as exposed) in a Prometheus text page.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
