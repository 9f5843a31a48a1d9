#!/usr/bin/env bash
# Fetches the real model used by the wasi-nn tests, benchmark B6 and the `classify` guest:
# PP-OCR's text-orientation classifier (MobileNetV3, 585 KB), shipped in the PyPI package
# rapidocr-onnxruntime 1.4.4 (Apache-2.0). Pinned: the wheel and the model by SHA-256.
# Idempotent: a cached, verified model is kept. Never committed to the repository.
#
#   SPARK_NN_CACHE   cache directory (default ~/.cache/spark-nn)
#   -> $SPARK_NN_CACHE/models/ch_ppocr_mobile_v2.0_cls_infer.onnx
set -euo pipefail

VERSION=1.4.4
WHEEL=rapidocr_onnxruntime-$VERSION-py3-none-any.whl
WHEEL_SHA256=971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf
MEMBER=rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx
MODEL_SHA256=e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c

cache="${SPARK_NN_CACHE:-$HOME/.cache/spark-nn}"
model="$cache/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"

if [ -f "$model" ] && echo "$MODEL_SHA256  $model" | sha256sum -c --quiet - 2>/dev/null; then
    echo "model: $model (cached, sha256 ok)"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "rapidocr-onnxruntime==$VERSION --hash=sha256:$WHEEL_SHA256" > "$tmp/req.txt"
python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    -r "$tmp/req.txt" -d "$tmp"
echo "$WHEEL_SHA256  $tmp/$WHEEL" | sha256sum -c --quiet -
python3 - "$tmp/$WHEEL" "$MEMBER" "$tmp/model.onnx" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[3], "wb") as out:
    out.write(z.read(sys.argv[2]))
PY
echo "$MODEL_SHA256  $tmp/model.onnx" | sha256sum -c --quiet -
mkdir -p "$(dirname "$model")"
mv "$tmp/model.onnx" "$model.part" && mv "$model.part" "$model"
echo "model: $model (fetched from rapidocr-onnxruntime $VERSION, sha256 ok)"
