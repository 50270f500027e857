#!/bin/sh
# Builds target/{{name}}.wasm, a wasi:http component, from src/*.c: C bindings for wit/ from
# `wit-bindgen c`, compiled by clang-22 for wasm32-wasip2 and linked by wasm-component-ld with the
# wasi:http/proxy adapter. `skiff build` runs this (skiff.toml, [component.build] command).
# Needs (Debian 12): apt-get install clang-22 lld-22 libclang-rt-22-dev-wasm32 wasi-libc rust-web-llvm
# and `cargo install --locked wit-bindgen-cli@0.57.1`.
set -eu
cd "$(dirname "$0")"

missing() { # missing TOOL HOW: says which toolchain piece is absent and how to get it, then fails
    echo "missing toolchain: $1 ($2)" >&2
    exit 127
}
APT="apt-get install clang-22 lld-22 libclang-rt-22-dev-wasm32 wasi-libc rust-web-llvm"
WASI_LIBC=/usr/lib/wasm32-wasi
command -v clang-22 >/dev/null 2>&1 || missing clang-22 "$APT"
[ -x /usr/lib/llvm-22/bin/wasm-ld ] || command -v wasm-ld-22 >/dev/null 2>&1 || missing "wasm-ld-22 (lld-22)" "$APT"
[ -e /usr/lib/llvm-22/lib/clang/22/lib/wasi/libclang_rt.builtins-wasm32.a ] ||
    missing "libclang-rt-22-dev-wasm32 (compiler-rt for wasm32)" "$APT"
[ -e "$WASI_LIBC/libc.a" ] && [ -e "$WASI_LIBC/crt1-reactor.o" ] || missing "wasi-libc ($WASI_LIBC)" "$APT"
# wasm-component-ld turns clang's wasm32-wasip2 output into a component; Debian ships it in rust-web-llvm.
COMPONENT_LD_DIR=/usr/lib/rustlib/$(uname -m)-unknown-linux-gnu/bin
command -v wasm-component-ld >/dev/null 2>&1 || [ -x "$COMPONENT_LD_DIR/wasm-component-ld" ] ||
    missing "wasm-component-ld (rust-web-llvm)" "$APT, or cargo install --locked wasm-component-ld"
PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH:$COMPONENT_LD_DIR"
command -v wit-bindgen >/dev/null 2>&1 || missing wit-bindgen "cargo install --locked wit-bindgen-cli@0.57.1"

GEN=target/bindings
rm -rf "$GEN"
mkdir -p "$GEN"
wit-bindgen c wit --world app --out-dir "$GEN" >/dev/null
clang-22 --target=wasm32-wasip2 -Os -Wall -Wextra -mexec-model=reactor \
    -isystem /usr/include/wasm32-wasi -L"$WASI_LIBC" -nostartfiles "$WASI_LIBC/crt1-reactor.o" \
    -I"$GEN" -Wl,--wasi-adapter=proxy -Wl,--strip-all \
    -o target/{{name}}.wasm src/*.c "$GEN/app.c" "$GEN/app_component_type.o"
echo "built target/{{name}}.wasm" >&2
