#!/bin/sh
# Builds target/{{name}}.wasm, a wasi:http component, from src/lib.rs: a cdylib for wasm32-wasip2
# built by Debian's rustc-web, which builds the standard library from source (build-std, hence
# RUSTC_BOOTSTRAP=1) and links with wasm-component-ld and the wasi:http/proxy adapter (build.rs).
# rustup's toolchain is never used: /usr/bin/cargo is called by its path. `skiff build` runs this (skiff.toml).
# Needs (Debian 12): apt-get install rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc
set -eu
cd "$(dirname "$0")"

missing() { # missing TOOL HOW: says which toolchain piece is absent and how to get it, then fails
    echo "missing toolchain: $1 ($2)" >&2
    exit 127
}
APT="apt-get install rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc"
# Where Debian's rustc-web toolchain is installed (/usr; WASM_RUST_PREFIX overrides it).
PREFIX=${WASM_RUST_PREFIX:-/usr}
HOST=$(uname -m)-unknown-linux-gnu
[ -x "$PREFIX/bin/rustc" ] || missing "rustc-web ($PREFIX/bin/rustc)" "$APT"
[ -x "$PREFIX/bin/cargo" ] || missing "cargo-web ($PREFIX/bin/cargo)" "$APT"
[ -d "$PREFIX/lib/rustlib/src/rust/library" ] || missing "rust-web-src (the standard library's sources)" "$APT"
[ -x "$PREFIX/lib/rustlib/$HOST/bin/wasm-component-ld" ] || missing "wasm-component-ld (rust-web-llvm)" "$APT"
[ -e /usr/lib/wasm32-wasi/libc.a ] || missing "wasi-libc (/usr/lib/wasm32-wasi)" "$APT"

# This directory's own settings only: nothing from a host build's environment.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET RUSTUP_TOOLCHAIN RUSTC_WRAPPER
export RUSTC_BOOTSTRAP=1 RUSTC="$PREFIX/bin/rustc" CARGO_TARGET_DIR="$PWD/target"
"$PREFIX/bin/cargo" build --release --locked --target wasm32-wasip2
cp target/wasm32-wasip2/release/app.wasm target/{{name}}.wasm
echo "built target/{{name}}.wasm" >&2
