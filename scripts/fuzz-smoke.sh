#!/usr/bin/env bash
# Fuzz smoke test: builds every cargo-fuzz target in fuzz/ on stable Rust (no sanitizer, so no
# nightly) and runs each for a short fixed time over a temporary copy of its corpus
# (fuzz/corpus/<target>/, never written to). Exits non-zero if any target crashes (a panic, a
# failed assertion, a hang past the timeout), after printing the crashing input in base64; the
# input is also kept in fuzz/artifacts/<target>/ (ignored by git). See fuzz/README.md.
#
#   SPARK_FUZZ_SECONDS     seconds per target (default 15)
#   SPARK_FUZZ_TARGET_DIR  where the instrumented build goes (default fuzz/target)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${SPARK_FUZZ_SECONDS:-15}"
target_dir="${SPARK_FUZZ_TARGET_DIR:-$PWD/target}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 1
fi

# Inputs over these lengths teach a smoke run nothing new; artifact uploads are fsynced.
max_len() {
    case "$1" in
        artifact_upload) echo 1024 ;;
        trace) echo 4096 ;;
        *) echo 8192 ;;
    esac
}

# Scratch space: the corpus copies, and TMPDIR for what the targets write (artifact_upload's
# store). On tmpfs when there is one: the store fsyncs every artifact.
scratch_root=/dev/shm
[ -d "$scratch_root" ] && [ -w "$scratch_root" ] || scratch_root="${TMPDIR:-/tmp}"
work="$(mktemp -d "$scratch_root/spark-fuzz-smoke.XXXXXX")"
trap 'rm -rf "$work"' EXIT

fuzz=(cargo fuzz)
opts=(--sanitizer none --target-dir "$target_dir")

start=$SECONDS
"${fuzz[@]}" build "${opts[@]}"
echo "fuzz build: $((SECONDS - start)) s"

failed=()
for target in $("${fuzz[@]}" list); do
    mkdir -p "$work/corpus/$target" "$work/tmp/$target"
    cp -R "corpus/$target/." "$work/corpus/$target/"
    log="$work/$target.log"
    marker="$work/$target.started"
    touch "$marker"
    if TMPDIR="$work/tmp/$target" "${fuzz[@]}" run "${opts[@]}" "$target" "$work/corpus/$target" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        runs="$(grep -o 'Done [0-9]* runs' "$log" | tail -n 1 || true)"
        echo "fuzz $target: ok (${runs:-no summary}, ${seconds} s)"
    else
        failed+=("$target")
        echo "fuzz $target: FAILED; the end of its log:"
        tail -n 40 "$log"
        find "artifacts/$target" -type f -newer "$marker" 2>/dev/null | while read -r input; do
            echo "crashing input $input (base64): $(base64 -w 0 "$input")"
        done
    fi
done

echo "fuzz smoke: $((SECONDS - start)) s in all"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke: crashes in ${failed[*]}" >&2
    exit 1
fi
