#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library Spark loads at run time (`ort` with load-dynamic):
# the one in the npm package onnxruntime-node 1.30.0, which has the WebGPU execution
# provider (the PyPI `onnxruntime` wheel's library is CPU-only). Installed with
# --ignore-scripts: nothing of the package runs. Pinned: the tarball and the library by
# SHA-256. Idempotent.
#
#   SPARK_NN_CACHE   cache directory (default ~/.cache/spark-nn)
#   -> $SPARK_NN_CACHE/ort/libonnxruntime.so.1
set -euo pipefail

VERSION=1.30.0
TGZ_SHA256=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
case "$(uname -m)" in
    x86_64) ARCH=x64; LIB_SHA256=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23 ;;
    aarch64) ARCH=arm64; LIB_SHA256=1f549d46250b005580b597f4164984aaf75b3bcb9f3aeb07c7f8a8fe60b23c76 ;;
    *) echo "onnxruntime: no library for $(uname -m) in onnxruntime-node; Spark will use tract only"; exit 0 ;;
esac

cache="${SPARK_NN_CACHE:-$HOME/.cache/spark-nn}"
lib="$cache/ort/libonnxruntime.so.1"

if [ -f "$lib" ] && echo "$LIB_SHA256  $lib" | sha256sum -c --quiet - 2>/dev/null; then
    echo "onnxruntime: $lib (cached, sha256 ok)"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent --ignore-scripts "onnxruntime-node@$VERSION" >/dev/null)
tgz="$tmp/onnxruntime-node-$VERSION.tgz"
echo "$TGZ_SHA256  $tgz" | sha256sum -c --quiet -
member="package/bin/napi-v6/linux/$ARCH/libonnxruntime.so.1"
tar -xzf "$tgz" -C "$tmp" "$member"
echo "$LIB_SHA256  $tmp/$member" | sha256sum -c --quiet -
mkdir -p "$(dirname "$lib")"
mv "$tmp/$member" "$lib.part" && mv "$lib.part" "$lib"
echo "onnxruntime: $lib (from npm onnxruntime-node $VERSION, sha256 ok)"
