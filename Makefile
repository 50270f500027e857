# The two commands a newcomer needs: `make up` runs a one-process cluster with a sample to try,
# `make test` installs what the tests need and runs every test. `.ci/run` calls `make test`.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: up test deps build

## Build skiff and run API server, registry and node in one process on ./.skiff.
up:
	$(CARGO) run -p skiff -- up --data-dir .skiff

build:
	$(CARGO) build -p skiff

## Install test tools (system packages, Python clients, kubectl 1.37), then run all tests.
test: deps build
	$(CARGO) nextest run --workspace --no-fail-fast --profile ci

deps:
	./scripts/install-test-deps.sh
