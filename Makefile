# The two set-up commands of the README are `make run` and `make test`; CI (`.ci/run`) runs
# `make test`, then `make lint`, then `make fuzz`, then `make tls-scan`, then `make bench-check`
# (`make ci` does the same by hand).

.PHONY: run test lint ci setup test-deps lint-deps bench-check fuzz fuzz-deps tls-scan

# The toolchain pinned in rust-toolchain.toml (with its components and targets) is not
# auto-installed everywhere: rustup refuses to when RUSTUP_AUTO_INSTALL=0, as on CI's machines,
# and then every cargo command fails. Install it explicitly, then the wasm target.
setup:
	rustup toolchain install --no-self-update
	rustup target add wasm32-wasip2

# What the end-to-end tests drive: Debian's redis-server (started and killed by the tests
# themselves), PyJWT (the independent JOSE library that makes the test tokens), grpcio and
# websockets (real gRPC and WebSocket clients and servers), curl and openssl (TLS clients),
# prometheus-client (the reference parser `/metrics` is checked with), opentelemetry-proto (the
# official OTLP protobuf classes the test collector decodes exported spans with).
# Debian's own python3 refuses `pip install` outside a venv (PEP 668); the pinned test clients
# then go in with --break-system-packages (they only add modules, nothing of Debian's changes).
# Not root (a CI runner's user): pip installs for the user, apt-get goes through sudo.
PIP = python3 -m pip install --quiet --disable-pip-version-check
pip_install = $(PIP) $(1) 2>/dev/null || $(PIP) --break-system-packages $(1) 2>/dev/null || \
	$(PIP) --user --break-system-packages $(1)
APT = $(shell [ "$$(id -u)" = 0 ] || ! command -v sudo >/dev/null || echo "sudo -n") apt-get
test-deps:
	command -v redis-server >/dev/null || { $(APT) update -qq && $(APT) install -y -qq redis-server; }
	command -v curl >/dev/null && command -v openssl >/dev/null || \
		{ $(APT) update -qq && $(APT) install -y -qq curl openssl; }
	python3 -m pip --version >/dev/null 2>&1 || \
		{ $(APT) update -qq && $(APT) install -y -qq python3-pip; }
	python3 -c "import jwt, cryptography" 2>/dev/null || $(call pip_install,"pyjwt[crypto]==2.15.1")
	python3 -c "import grpc" 2>/dev/null || $(call pip_install,"grpcio==1.85.1")
	python3 -c "import websockets" 2>/dev/null || $(call pip_install,"websockets==15.0.1")
	python3 -c "import prometheus_client" 2>/dev/null || $(call pip_install,"prometheus-client==0.26.0")
	python3 -c "import opentelemetry.proto.trace.v1.trace_pb2" 2>/dev/null || \
		$(call pip_install,"opentelemetry-proto==1.45.2")

## Serve config/gateway.toml (in-memory defaults; nothing else needed).
run: setup
	cargo run --release -p gateway -- run --config config/gateway.toml

## All tests: unit tests, plugin SDK tests, end-to-end tests against the real binary. Every
## test binary runs even when an earlier one failed, so one failure hides no other result.
test: setup test-deps
	cargo test --workspace --no-fail-fast

## Formatting and lints, for the host and the wasm32-wasip2 plugins.
lint-deps:
	rustup component add rustfmt clippy

lint: setup lint-deps
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip2 --target-dir target/wasm \
		-p plugin-sdk -p request-transformer -p response-transformer \
		-p jwt-auth -p key-auth -p mtls-auth -p acl -p rate-limit -p ip-restriction -p cors \
		-p test-misbehave -p test-fs-reader -p test-tagger -p test-kv-probe -p test-metrics-probe \
		-- -D warnings

## Every cargo-fuzz target (gateway/fuzz) for FUZZ_SECONDS, each from a scratch copy of its
## seed corpus (gateway/fuzz/corpus/TARGET is read, never grown; `cargo fuzz cmin` by hand).
## A crash, panic or timeout fails the run, after all targets ran; its input is saved in
## gateway/fuzz/artifacts/TARGET/. Nightly builds the fuzz targets (sanitizer, coverage); the
## built-in plugins are still built by the pinned toolchain (gateway/build.rs).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= path_normalize config_check request_action
FUZZ_TOOLCHAIN ?= nightly
FUZZ_TARGET_DIR ?= $(CURDIR)/target/fuzz
fuzz-deps:
	rustup toolchain list | grep -q '^$(FUZZ_TOOLCHAIN)' || \
		rustup toolchain install $(FUZZ_TOOLCHAIN) --profile minimal
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

fuzz: setup fuzz-deps
	@failed=""; \
	for target in $(FUZZ_TARGETS); do \
		scratch="$(FUZZ_TARGET_DIR)/corpus/$$target"; \
		rm -rf "$$scratch" && mkdir -p "$$scratch" || exit 1; \
		dict=""; [ -f gateway/fuzz/dicts/$$target.dict ] && dict="-dict=fuzz/dicts/$$target.dict"; \
		echo "+ cargo +$(FUZZ_TOOLCHAIN) fuzz run $$target ($(FUZZ_SECONDS) s)"; \
		( cd gateway && cargo +$(FUZZ_TOOLCHAIN) fuzz run --target-dir "$(FUZZ_TARGET_DIR)/build" \
			$$target "$$scratch" fuzz/corpus/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=25 -print_final_stats=1 $$dict ) \
			|| failed="$$failed $$target"; \
	done; \
	if [ -n "$$failed" ]; then \
		echo "fuzz: failed:$$failed (inputs in gateway/fuzz/artifacts/)"; exit 1; \
	fi

## The benchmark end to end, one second per run (CI): `bench/run.sh` must install what it
## needs, run both proxies and print the table with a ratio for every scenario asked for.
BENCH_CHECK_SCENARIOS = none metrics access-log plugin h2 tls
bench-check:
	mkdir -p target
	DURATION=1 ROUNDS=1 SCENARIOS="$(BENCH_CHECK_SCENARIOS)" BENCH_TIMEOUT_S=1200 \
		bench/run.sh > target/bench-check.md
	cat target/bench-check.md
	python3 bench/check_table.py target/bench-check.md $(BENCH_CHECK_SCENARIOS)

## testssl.sh (Debian) against a TLS listener of the real gateway: old protocols, weak suites,
## renegotiation and the known TLS vulnerabilities must all come out negative.
tls-scan:
	tests/tls/scan.sh

ci: test lint fuzz tls-scan bench-check
