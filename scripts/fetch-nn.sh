#!/usr/bin/env bash
# Everything the inference (wasi-nn) tests need, for CI and `make test`: the real model, the
# ONNX Runtime library with the WebGPU provider, and Mesa's lavapipe (software Vulkan).
# Each step is pinned and idempotent. Prints the environment the tests read.
#
#   SPARK_NN_CACHE   cache directory (default ~/.cache/spark-nn)
#   SPARK_NN_NO_GPU=1   skip lavapipe (the accelerated tests then report it and pass on CPU)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/fetch-model.sh"
bash "$here/fetch-ort.sh"
if [ "${SPARK_NN_NO_GPU:-}" != 1 ]; then
    bash "$here/setup-lavapipe.sh"
fi
