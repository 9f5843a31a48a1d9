//! Integration tests of `spark-nn`, one module per topic. They use the real model (fetched by
//! `scripts/fetch-model.sh`), the `classify` guest (built by `make guests`), and, when present,
//! ONNX Runtime (`scripts/fetch-ort.sh`) and Mesa's lavapipe (`scripts/setup-lavapipe.sh`).
//! With `SPARK_NN_REQUIRE_ACCEL=1` (set by CI after those scripts) the accelerated branch must
//! really run on `ort-webgpu`; without it, a machine lacking ONNX Runtime or Vulkan tests the
//! CPU branch and says what it could not test. The fallback scenarios that each need a process
//! of their own run the `spark` binary (`spark nn classify`): `spark-cli`'s `tests/nn_probe.rs`.
//! Sample images, the slow model and the failing backend come from `spark-testkit`'s `nn`.

mod discovery;
mod guest;
mod limits;
mod routing;
mod selection;
mod support;
mod validation;
