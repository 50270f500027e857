# The two commands a newcomer needs: `make up` runs a one-process cluster with a sample to try,
# `make test` installs what the tests need and runs every test. `.ci/run` calls `make test`.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: up test deps build lint bench

## Build skiff and run API server, registry and node in one process on ./.skiff.
up:
	$(CARGO) run -p skiff -- up --data-dir .skiff

build:
	$(CARGO) build -p skiff

## Install test tools (system packages, Python clients, kubectl 1.37), check formatting, lints and
## docs, then run all tests (the tidy test checks every .rs opens with `//!`).
test: deps lint build
	$(CARGO) nextest run --workspace --no-fail-fast --profile ci

deps:
	./scripts/install-test-deps.sh

## Fail on an unformatted file, a clippy warning or a rustdoc warning.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p skiff -p skiff-runtime --all-targets --all-features -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet

## Build skiff with its benchmarks (`skiff bench api|scheduler|pods|services`), release profile.
bench:
	$(CARGO) build --release -p skiff --features bench
	@echo "run: target/release/skiff bench --help (BENCHMARKS.md has the commands behind its figures)"
