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

mod client;
mod guests;
mod nats;
pub mod nn;
mod node;

pub use client::{Reply, get, post, request, request_with};
pub use guests::{guest, guests_dir};
pub use nats::{NatsServer, nats_server_bin};
pub use node::TestNode;
