# The two set-up commands of the README are `make run` and `make test`; CI (`.ci/run`) runs
# `make test`, then `make lint`, then `make bench-check` (`make ci` does the same by hand).

.PHONY: run test lint ci setup test-deps lint-deps bench-check

# Toolchain targets in rust-toolchain.toml are not auto-installed on every machine.
setup:
	rustup target add wasm32-wasip2

# What the end-to-end tests drive: Debian's redis-server (started and killed by the tests
# themselves) and PyJWT, the independent JOSE library that makes the test tokens.
test-deps:
	command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
	python3 -c "import jwt, cryptography" 2>/dev/null || \
		python3 -m pip install --quiet --disable-pip-version-check "pyjwt[crypto]==2.15.1"

## Serve config/gateway.toml (in-memory defaults; nothing else needed).
run: setup
	cargo run --release -p gateway -- run --config config/gateway.toml

## All tests: unit tests, plugin SDK tests, end-to-end tests against the real binary.
test: setup test-deps
	cargo test --workspace

## Formatting and lints, for the host and the wasm32-wasip2 plugins.
lint-deps:
	rustup component add rustfmt clippy

lint: setup lint-deps
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip2 --target-dir target/wasm \
		-p plugin-sdk -p request-transformer -p response-transformer \
		-p jwt-auth -p key-auth -p acl -p rate-limit -p ip-restriction -p cors \
		-p test-misbehave -p test-fs-reader -p test-tagger -p test-kv-probe -- -D warnings

## The benchmark end to end, one second per run (CI): `bench/run.sh` must install what it
## needs, run both proxies and print the table with a ratio for every scenario asked for.
BENCH_CHECK_SCENARIOS = none plugin h2
bench-check:
	mkdir -p target
	DURATION=1 ROUNDS=1 SCENARIOS="$(BENCH_CHECK_SCENARIOS)" BENCH_TIMEOUT_S=1200 \
		bench/run.sh > target/bench-check.md
	cat target/bench-check.md
	python3 bench/check_table.py target/bench-check.md $(BENCH_CHECK_SCENARIOS)

ci: test lint bench-check
