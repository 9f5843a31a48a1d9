#!/usr/bin/env bash
# Builds the guests written in other languages (guests/foreign) with pinned toolchains from the
# package registries: hello-js with ComponentizeJS (npm, lockfile with integrity hashes) and
# hello-py with componentize-py (PyPI, wheel hash pinned), and the Spin app spin-py
# (guests/spin-py) with componentize-py and the PyPI spin-sdk (wheel hashes pinned). Idempotent:
# toolchains are cached and a component is rebuilt only when its source changed.
#
#   usage: scripts/build-foreign-guests.sh OUT_DIR
#   SPARK_FOREIGN_CACHE   toolchain cache (default ~/.cache/spark-foreign)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/guests/foreign"
out="${1:?usage: build-foreign-guests.sh OUT_DIR}"
cache="${SPARK_FOREIGN_CACHE:-$HOME/.cache/spark-foreign}"
mkdir -p "$out" "$cache"

# Rebuilds $1 from the listed inputs only when their hash changed.
stale() {
    local target="$1"; shift
    local sum
    sum="$(cat "$@" | sha256sum | cut -d' ' -f1)"
    if [ -f "$target" ] && [ "$(cat "$target.inputs" 2>/dev/null)" = "$sum" ]; then
        return 1
    fi
    echo "$sum" > "$target.inputs.new"
    return 0
}

wit_files=$(find "$src/wit" -name '*.wit' | sort)

# JavaScript: ComponentizeJS, exact versions from package-lock.json (the lockfile is copied into
# the cache last, so an interrupted install is redone).
js="$cache/js"
if ! cmp -s "$src/js/package-lock.json" "$js/package-lock.json"; then
    command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
    rm -rf "$js" && mkdir -p "$js/tmp"
    cp "$src/js/package.json" "$src/js/package-lock.json" "$js/tmp/"
    # `npm install` with the lockfile present installs its exact versions and checks their
    # integrity hashes (`npm ci` trips over the lockfile's optional per-platform packages).
    (cd "$js/tmp" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
    mv "$js/tmp/node_modules" "$js/" && cp "$src/js/package-lock.json" "$js/"
fi
if stale "$out/hello-js.wasm" "$src/js/hello.js" "$src/js/package-lock.json" $wit_files; then
    echo "building hello-js (ComponentizeJS)"
    "$js/node_modules/.bin/componentize-js" "$src/js/hello.js" --wit "$src/wit" \
        --world-name hello -o "$out/hello-js.wasm.part"
    mv "$out/hello-js.wasm.part" "$out/hello-js.wasm"
    mv "$out/hello-js.wasm.inputs.new" "$out/hello-js.wasm.inputs"
fi

# Python: componentize-py, wheel pinned by hash.
py="$cache/py"
if ! cmp -s "$src/py/requirements.txt" "$py/requirements.txt"; then
    rm -rf "$py"
    python3 -m venv "$py" 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv "$py"; }
    "$py/bin/pip" install --quiet --no-deps --only-binary=:all: --require-hashes -r "$src/py/requirements.txt"
    cp "$src/py/requirements.txt" "$py/requirements.txt"
fi
if stale "$out/hello-py.wasm" "$src/py/app.py" "$src/py/requirements.txt" $wit_files; then
    echo "building hello-py (componentize-py)"
    "$py/bin/componentize-py" -d "$src/wit" -w hello componentize -p "$src/py" app \
        -o "$out/hello-py.wasm.part"
    mv "$out/hello-py.wasm.part" "$out/hello-py.wasm"
    mv "$out/hello-py.wasm.inputs.new" "$out/hello-py.wasm.inputs"
fi

# The Spin app: its own virtualenv, as spin-sdk brings its WIT world with it.
spin_py="$cache/spin-py"
spin_src="$root/guests/spin-py"
if ! cmp -s "$spin_src/requirements.txt" "$spin_py/requirements.txt"; then
    rm -rf "$spin_py"
    python3 -m venv "$spin_py"
    "$spin_py/bin/pip" install --quiet --no-deps --only-binary=:all: --require-hashes -r "$spin_src/requirements.txt"
    cp "$spin_src/requirements.txt" "$spin_py/requirements.txt"
fi
if stale "$out/spin-py.wasm" "$spin_src/app.py" "$spin_src/requirements.txt"; then
    echo "building spin-py (componentize-py, spin-sdk)"
    site="$("$spin_py/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    (cd "$spin_src" && "$spin_py/bin/componentize-py" -w spin:up/http-trigger@4.1.0 \
        componentize -p . -p "$site" app -o "$out/spin-py.wasm.part")
    mv "$out/spin-py.wasm.part" "$out/spin-py.wasm"
    mv "$out/spin-py.wasm.inputs.new" "$out/spin-py.wasm.inputs"
fi
ls -la "$out/hello-js.wasm" "$out/hello-py.wasm" "$out/spin-py.wasm"
