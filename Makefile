# The two set-up commands of the README are `make run` and `make test`; CI runs `make ci`.

.PHONY: run test lint ci setup

# Toolchain targets in rust-toolchain.toml are not auto-installed on every machine.
setup:
	rustup target add wasm32-wasip2

## Serve config/gateway.toml (in-memory defaults; nothing else needed).
run: setup
	cargo run --release -p gateway -- run --config config/gateway.toml

## All tests: unit tests, plugin SDK tests, end-to-end tests against the real binary.
test: setup
	cargo test --workspace

## Formatting and lints, for the host and the wasm32-wasip2 plugins.
lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip2 --target-dir target/wasm \
		-p plugin-sdk -p request-transformer -p response-transformer \
		-p jwt-auth -p key-auth -p acl -p rate-limit -p ip-restriction -p cors \
		-p test-misbehave -p test-fs-reader -p test-tagger -- -D warnings

ci: lint test
