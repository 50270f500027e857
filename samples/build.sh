#!/usr/bin/env bash
# Rebuilds every wasm guest under samples/ from source, then validates them and refreshes the
# WORLD.txt files (imports/exports of each guest).
#
# Works on a fresh Debian 12 machine that can reach Debian apt and crates.io: it installs the
# Debian packages it needs (Debian's rustc-web toolchain builds the Rust std for wasm from
# rust-web-src; rustup is not used) and `wasm-tools` (cargo install) when they are missing.
#
# Usage: samples/build.sh [--no-install]
# Env:   JOBS (cargo/make parallelism, default 2)
set -euo pipefail

cd "$(dirname "$0")"
HERE=$PWD
JOBS=${JOBS:-2}
INSTALL=1
[ "${1:-}" = "--no-install" ] && INSTALL=0

APT_PACKAGES=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc
    clang-14 lld-14 libclang-rt-14-dev-wasm32 clang-22 libclang-rt-22-dev-wasm32)
WASM_TOOLS_VERSION=1.263.0
WIT_BINDGEN_VERSION=0.57.1
COMPONENT_LD=/usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/wasm-component-ld
WASM_LD=/usr/bin/wasm-ld-22
WASI_LIB=/usr/lib/wasm32-wasi

log() { printf '==> %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------------
if [ "$INSTALL" = 1 ]; then
    missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        SUDO=""
        [ "$(id -u)" = 0 ] || SUDO=sudo
        log "apt-get install ${missing[*]}"
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cargo_install() { # cargo_install BINARY CRATE VERSION: installs a host tool unless present
    command -v "$1" >/dev/null 2>&1 && return 0
    [ "$INSTALL" = 1 ] || { echo "$1 not found (run without --no-install)" >&2; exit 1; }
    log "cargo install $2 $3"
    if (cd / && command -v cargo >/dev/null 2>&1 && cargo --version >/dev/null 2>&1); then
        (cd / && cargo install --locked -j "$JOBS" "$2@$3")
    else
        (cd / && RUSTC=/usr/bin/rustc /usr/bin/cargo install --locked -j "$JOBS" "$2@$3")
    fi
}
cargo_install wasm-tools wasm-tools "$WASM_TOOLS_VERSION"
cargo_install wit-bindgen wit-bindgen-cli "$WIT_BINDGEN_VERSION"
for f in /usr/bin/rustc /usr/bin/cargo "$COMPONENT_LD" "$WASM_LD" "$WASI_LIB/crt1-command.o" /usr/bin/clang-14 /usr/bin/clang-22; do
    [ -e "$f" ] || { echo "missing $f (install: ${APT_PACKAGES[*]})" >&2; exit 1; }
done

# --- Rust guests --------------------------------------------------------------------------------
# Debian's toolchain, never rustup's: it can build std for wasm32-wasip1/-wasip2 (build-std).
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET RUSTUP_TOOLCHAIN
export RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc
CARGO=/usr/bin/cargo
REMAP="--remap-path-prefix=$HERE=samples --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}/registry/src=crates"
BASE_FLAGS="-C link-self-contained=no -L $WASI_LIB $REMAP"

# wasm32-wasip2 cdylibs: wasi:http components (hello-http and spin-http use the proxy adapter from
# their build.rs; the fileserver's server and the frontend use the default adapter so they may
# import filesystem/cli)
# and the fileserver's puller, a command that exports wasi:cli/run itself (see its source for why).
P2_TARGET="$HERE/target/wasip2"
p2_build() {
    RUSTFLAGS="$BASE_FLAGS" CARGO_TARGET_DIR="$P2_TARGET" \
        "$CARGO" build --release --locked -j "$JOBS" --target wasm32-wasip2 "$@"
}
P2_OUT="$P2_TARGET/wasm32-wasip2/release"
log "hello-http v2 (wasm32-wasip2, proxy adapter)"
p2_build -p hello-http --features v2
cp "$P2_OUT/hello_http.wasm" hello-http/hello-http-v2.wasm
log "hello-http, spin-http, frontend, load, fileserver server and puller (wasm32-wasip2)"
p2_build -p hello-http -p spin-http -p abuse-http -p frontend -p server -p puller -p load \
    -p counter-frontend -p counter-backend
cp "$P2_OUT/hello_http.wasm" hello-http/hello-http.wasm
cp "$P2_OUT/spin_http.wasm" testdata/spin-http.wasm
cp "$P2_OUT/abuse_http.wasm" testdata/abuse-http.wasm
cp "$P2_OUT/frontend.wasm" frontend/frontend.wasm
cp "$P2_OUT/load.wasm" load/load.wasm
cp "$P2_OUT/server.wasm" fileserver/server.wasm
cp "$P2_OUT/puller.wasm" fileserver/puller.wasm
# The counter sample: wasi:http components importing wasi:config (frontend) and wasi:keyvalue
# (backend), bindings from counter/wit by wit-bindgen.
cp "$P2_OUT/counter_frontend.wasm" counter/frontend.wasm
cp "$P2_OUT/counter_backend.wasm" counter/backend.wasm

# wasi:cli/command components: wasm32-wasip1 binaries linked by wasm-component-ld (the command
# adapter), so preopened directories work with Debian's wasi-libc.
log "command components (wasm32-wasip1 + wasm-component-ld)"
CMD_TARGET="$HERE/target/component"
RUSTFLAGS="$BASE_FLAGS -C linker=$COMPONENT_LD -C link-arg=--wasm-ld-path=$WASM_LD" \
    CARGO_TARGET_DIR="$CMD_TARGET" \
    "$CARGO" build --release --locked -j "$JOBS" --target wasm32-wasip1 \
    -p env-reader -p testdata-commands
CMD_OUT="$CMD_TARGET/wasm32-wasip1/release"
cp "$CMD_OUT/env-reader.wasm" env-reader/env-reader.wasm
for t in spin oom trap exit3-component escape sleep bad-import recurse log-flood request-loop; do
    cp "$CMD_OUT/$t.wasm" "testdata/$t.wasm"
done

# --- C guests (preview-1 command modules) ---------------------------------------------------------
log "hello-c and testdata/exit3 (clang-14, wasm32-wasi preview-1 command modules)"
cc_p1() { clang-14 --target=wasm32-wasi -Os -Wall -Wextra -Werror -Wl,--strip-all "$@"; }
cc_p1 -o hello-c/hello-c.wasm hello-c/hello.c
cc_p1 -o testdata/exit3.wasm testdata/exit3.c

# wasi:http/proxy component in C: bindings from `wit-bindgen c` for hello-c/wit (WASI 0.2.12),
# clang-22 for wasm32-wasip2 (reactor) linked by wasm-component-ld with the proxy adapter.
log "hello-c-http (wit-bindgen c + clang-22, wasi:http/proxy component)"
C_GEN="$HERE/target/hello-c-http-bindings"
rm -rf "$C_GEN"
wit-bindgen c hello-c/wit --world hello-c-http --out-dir "$C_GEN" >/dev/null
PATH="$(dirname "$COMPONENT_LD"):$PATH" clang-22 --target=wasm32-wasip2 -Os -Wall -Wextra -Werror \
    -mexec-model=reactor -isystem /usr/include/wasm32-wasi -L"$WASI_LIB" -nostartfiles \
    "$WASI_LIB/crt1-reactor.o" -I"$C_GEN" -Wl,--wasi-adapter=proxy -Wl,--strip-all \
    -o hello-c/hello-c-http.wasm hello-c/http.c "$C_GEN/hello_c_http.c" "$C_GEN/hello_c_http_component_type.o"

# --- WAT guests (hostile tables: core modules written by hand) ------------------------------------
log "testdata/table-grow and huge-table (wasm-tools parse)"
for t in table-grow huge-table; do
    wasm-tools parse "testdata/$t.wat" -o "testdata/$t.wasm"
done

# --- data files -----------------------------------------------------------------------------------
printf 'this is not wasm\n' > testdata/not-wasm.wasm

# --- validate and describe ------------------------------------------------------------------------
describe() { # describe FILE: imports/exports of a component (WIT) or a core module
    local f=$1
    if [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = "0061736d01000000" ]; then
        echo "# $(basename "$f"): core wasm module (WASI preview 1)"
        wasm-tools print "$f" | grep -E '^\s*\((import|export) ' | sed -E 's/^\s+//; s/ \(func \(;[0-9]+;\) \(type [0-9]+\)/ (func/'
    else
        echo "# $(basename "$f"): component"
        wasm-tools component wit "$f"
    fi
    echo
}
log "validating and writing WORLD.txt"
ALL=(hello-http/hello-http.wasm hello-http/hello-http-v2.wasm frontend/frontend.wasm load/load.wasm env-reader/env-reader.wasm
    counter/frontend.wasm counter/backend.wasm
    fileserver/puller.wasm fileserver/server.wasm hello-c/hello-c.wasm hello-c/hello-c-http.wasm
    testdata/spin.wasm testdata/spin-http.wasm testdata/oom.wasm testdata/trap.wasm
    testdata/exit3.wasm testdata/exit3-component.wasm testdata/escape.wasm testdata/sleep.wasm testdata/bad-import.wasm
    testdata/recurse.wasm testdata/log-flood.wasm testdata/request-loop.wasm testdata/abuse-http.wasm
    testdata/table-grow.wasm testdata/huge-table.wasm)
for f in "${ALL[@]}"; do
    chmod 644 "$f"
    wasm-tools validate --features all "$f"
done
for dir in hello-http frontend load env-reader fileserver hello-c testdata counter; do
    {
        echo "# Imports and exports of the guests in samples/$dir (generated by build.sh; do not edit)."
        echo
        for f in "${ALL[@]}"; do
            case "$f" in "$dir"/*) describe "$f" ;; esac
        done
        if [ "$dir" = testdata ]; then
            echo "# not-wasm.wasm: not wasm (a text file)"
        fi
    } > "$dir/WORLD.txt"
done
ls -l "${ALL[@]}" testdata/not-wasm.wasm
log "done"
