# The two commands a newcomer needs: `make up` runs a one-process cluster with a sample to try,
# `make test` installs what the tests need and runs every test. `.ci/run` calls `make test`.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: up test test-etcd deps build lint bench

## Build skiff and run API server, registry and node in one process on ./.skiff.
up:
	$(CARGO) run -p skiff -- up --data-dir .skiff

build:
	$(CARGO) build -p skiff

## Install test tools (system packages, Python clients, kubectl 1.37), check formatting, lints and
## docs, then run all tests (the tidy test checks every .rs opens with `//!`).
test: deps lint build
	status=0; $(CARGO) nextest run --workspace --no-fail-fast --profile ci || status=$$?; \
	$(MAKE) --no-print-directory test-etcd || status=1; exit $$status

## The end-to-end tests that exercise the store, again with every server on its own test etcd
## (SKIFF_TEST_STORE=etcd, skiff server/up --etcd-servers): CRUD, watch, 410 and apply through
## kubectl, kube-rs and Python; restart and SIGKILL; CRDs; Secrets encrypted at rest; RBAC;
## ServiceAccount tokens; Helm; storage objects; the controllers, leader election, services and
## node pods. About 3.5 minutes here (2 cores); the whole suite on etcd would double CI time.
ETCD_E2E := api_errors api_kube_rs api_kubectl api_python api_restart serial_api_crash \
	crd_kubectl crd_python encryption rbac_tenants sa_tokens helm storage_api \
	controllers_deployment controllers_leader controllers_statefulset services node_pods
test-etcd: build
	SKIFF_TEST_STORE=etcd $(CARGO) nextest run -p skiff-tests --no-fail-fast --profile ci \
		$(addprefix --test ,$(ETCD_E2E))

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
