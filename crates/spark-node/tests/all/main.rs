//! Integration tests of a node: real guests built from `guests/`, a real node on 127.0.0.1,
//! real HTTP. One binary, one module per topic (as Wasmtime's `tests/all`).

mod admission;
mod aot_cache;
mod bad_components;
mod dashboard;
mod density;
mod faults;
mod foreign;
mod jobs;
mod metrics;
mod nn;
mod nn_limits;
mod orchestrator;
mod outbound;
mod releases;
mod serving;
mod shutdown;
mod spin;
mod tiering;
mod traces;
mod upstream;
mod warmth;
mod wasi_p3;
