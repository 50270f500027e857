#!/bin/sh
# Builds target/{{name}}.wasm, a wasi:http component, from app.py with componentize-py, which
# generates the Python bindings of wit/ (world `app`) and bundles a CPython interpreter.
# `skiff build` runs this (skiff.toml, [component.build] command).
# Needs: pip install componentize-py==0.25.1 (any 0.25.x works; it must be on PATH).
set -eu
cd "$(dirname "$0")"

missing() { # missing TOOL HOW: says which toolchain piece is absent and how to get it, then fails
    echo "missing toolchain: $1 ($2)" >&2
    exit 127
}
command -v componentize-py >/dev/null 2>&1 ||
    missing componentize-py "pip install componentize-py==0.25.1, then put its bin directory on PATH"

mkdir -p target
componentize-py -d wit -w app componentize app -o target/{{name}}.wasm
echo "built target/{{name}}.wasm" >&2
