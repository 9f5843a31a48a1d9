//! The orchestrator: watch the node, decide, apply, without restarting anything.
//!
//! [`probes`] read telemetry (CPU, memory pressure, network latency, battery) from a
//! configurable root; [`policy`] is a pure function from telemetry, per-module observations and
//! configuration to a [`policy::Plan`] (CPU shares, concurrency caps, warm-pool sizes, job
//! pacing, power mode; the predictor's warm budget and where inference may run) plus the
//! decisions that changed, typed ([`policy::Decision`]), with hysteresis carried in its state.
//! Applying a plan (the actuators) is the node's business; nothing here touches Wasmtime.

pub mod policy;
pub mod probes;
pub mod share;
