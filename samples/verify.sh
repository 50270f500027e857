#!/usr/bin/env bash
# Runs every committed guest under the reference runtime (`wasmtime` 48 CLI) and checks that it
# behaves as README.md says. Skips (exit 0, with a message) when wasmtime or curl is missing.
#
# Usage: samples/verify.sh        (WASMTIME=/path/to/wasmtime to pick a binary)
set -uo pipefail

cd "$(dirname "$0")"
WASMTIME=${WASMTIME:-$(command -v wasmtime || echo "${CARGO_HOME:-$HOME/.cargo}/bin/wasmtime")}
if [ ! -x "$WASMTIME" ] || ! command -v curl >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1; then
    echo "SKIP samples/verify.sh: needs wasmtime (cargo install wasmtime-cli), curl and python3"
    exit 0
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

FAILS=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; FAILS=$((FAILS + 1)); }
check() { # check NAME COMMAND...: passes when the command succeeds
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
serve() { # serve PORT ARGS...: starts `wasmtime serve` and waits until it accepts connections
    local port=$1
    shift
    "$WASMTIME" serve --addr "127.0.0.1:$port" "$@" >"$TMP/serve-$port.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
        sleep 0.1
    done
    echo "wasmtime serve on $port did not start:"
    cat "$TMP/serve-$port.log"
    return 1
}
run() { # run OUT ARGS...: wasmtime run, stdout to OUT, stderr to OUT.err; returns the exit code
    local out=$1
    shift
    "$WASMTIME" run "$@" >"$out" 2>"$out.err"
}
has() { grep -qxF -- "$2" "$1"; }

# hello-http
P1=$(free_port)
serve "$P1" hello-http/hello-http.wasm
check "hello-http GET /" test "$(curl -s "http://127.0.0.1:$P1/")" = "Hello from Skiff!"
check "hello-http /status/418" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P1/status/418")" = 418
check "hello-http /nope is 404" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P1/nope")" = 404
curl -s -X POST -H 'x-test: yes' --data-binary 'body!' "http://127.0.0.1:$P1/echo?q=1" >"$TMP/echo"
check "hello-http /echo" bash -c "head -1 '$TMP/echo' | grep -qx 'POST /echo?q=1' && grep -qx 'x-test: yes' '$TMP/echo' && tail -1 '$TMP/echo' | grep -qx 'body!'"
P2=$(free_port)
serve "$P2" hello-http/hello-http-v2.wasm
check "hello-http-v2 GET /" test "$(curl -s "http://127.0.0.1:$P2/")" = "Hello from Skiff v2!"

# frontend (env from -S cli; outgoing calls with -S http)
P6=$(free_port)
serve "$P6" -S cli -S http --env POD_NAME=fe-1 frontend/frontend.wasm
check "frontend GET /x" test "$(curl -s "http://127.0.0.1:$P6/x")" = "fe-1 /x"
check "frontend /call" test "$(curl -s "http://127.0.0.1:$P6/call?url=http%3A%2F%2F127.0.0.1%3A$P1%2F")" = "$(printf 'upstream: 200\nHello from Skiff!')"
check "frontend /call refused is 502" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P6/call?url=http%3A%2F%2F127.0.0.1%3A1%2F")" = 502

# hello-c-http
P5=$(free_port)
serve "$P5" hello-c/hello-c-http.wasm
check "hello-c-http GET /" test "$(curl -s "http://127.0.0.1:$P5/")" = "Hello from C on Skiff!"
check "hello-c-http /x is 404" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P5/x")" = 404

# env-reader
mkdir -p "$TMP/config/sub" "$TMP/secret"
echo blue >"$TMP/config/color"
printf 'a=1\nb=2\n' >"$TMP/config/sub/app.properties"
echo s3cr3t >"$TMP/secret/password"
run "$TMP/env" --env B=2 --env A=1 --dir "$TMP/config::/config" --dir "$TMP/secret::/secret" env-reader/env-reader.wasm
check "env-reader exits 0" test $? = 0
check "env-reader output" bash -c "diff -u - '$TMP/env' <<'EOF'
A=1
B=2
/config/color: blue
/config/sub/app.properties: a=1\\nb=2
/secret/password: s3cr3t
EOF"

# hello-c
run "$TMP/c" --env NAME=Skiff hello-c/hello-c.wasm x "y z"
check "hello-c exits 0" test $? = 0
check "hello-c output" bash -c "has() { grep -qxF -- \"\$2\" \"\$1\"; }; has '$TMP/c' 'Hello from C on Skiff' && has '$TMP/c' 'arg[1]=x' && has '$TMP/c' 'arg[2]=y z' && has '$TMP/c' 'NAME=Skiff'"

# fileserver: puller (generated page, then a URL), server
mkdir -p "$TMP/data"
run "$TMP/pull" -S http --dir "$TMP/data::/data" fileserver/puller.wasm
check "puller (generated) exits 0" test $? = 0
check "puller wrote the generated page" grep -q 'Hello from the Skiff fileserver sample!' "$TMP/data/index.html"
P3=$(free_port)
serve "$P3" -S cli --dir "$TMP/data::/data" fileserver/server.wasm
check "server GET /" bash -c "curl -s 'http://127.0.0.1:$P3/' | grep -q 'Hello from the Skiff fileserver sample!'"
check "server missing file is 404" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P3/missing.txt")" = 404
check "server refuses .." test "$(curl -s --path-as-is -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P3/../etc/passwd")" = 400
run "$TMP/pull2" -S http --env "SOURCE_URL=http://127.0.0.1:$P1/" --dir "$TMP/data::/data" fileserver/puller.wasm
check "puller (SOURCE_URL) exits 0" test $? = 0
check "server serves the pulled file" test "$(curl -s "http://127.0.0.1:$P3/index.html")" = "Hello from Skiff!"
run "$TMP/pull3" -S http --env "SOURCE_URL=http://127.0.0.1:$P1/nope" --dir "$TMP/data::/data" fileserver/puller.wasm
check "puller fails on 404" test $? = 1

# testdata
timeout 3 "$WASMTIME" run testdata/spin.wasm >"$TMP/spin" 2>&1
check "spin runs until killed" test $? = 124
check "spin prints its line" has "$TMP/spin" "spin: started"
P4=$(free_port)
serve "$P4" testdata/spin-http.wasm
check "spin-http / is 200" test "$(curl -s "http://127.0.0.1:$P4/")" = ok
curl -s -m 2 "http://127.0.0.1:$P4/spin" >/dev/null
check "spin-http /spin never answers" test $? = 28
run "$TMP/trap" testdata/trap.wasm
check "trap traps" test $? = 134
check "trap prints first" has "$TMP/trap" "trap: about to trap"
check "trap says unreachable" grep -q 'unreachable' "$TMP/trap.err"
run "$TMP/exit3" testdata/exit3.wasm
check "exit3 exits 3" test $? = 3
check "exit3 stderr" has "$TMP/exit3.err" "exit3: exiting with code 3"
run "$TMP/exit3c" -S cli-exit-with-code testdata/exit3-component.wasm
check "exit3-component exits 3" test $? = 3
run "$TMP/bad" testdata/bad-import.wasm
check "bad-import fails" test $? != 0
check "bad-import names the import" grep -q 'acme:missing/thing@0.1.0' "$TMP/bad.err"
run "$TMP/notwasm" testdata/not-wasm.wasm
check "not-wasm fails" test $? != 0
mkdir -p "$TMP/escdata"
run "$TMP/esc" --dir "$TMP/escdata::/data" testdata/escape.wasm
check "escape exits 0" test $? = 0
check "escape is denied everything" bash -c "diff -u - '$TMP/esc' <<'EOF'
DENIED /etc/passwd
DENIED /data/../../etc/passwd
DENIED /proc/self/environ
EOF"
run "$TMP/sleep" testdata/sleep.wasm 1
check "sleep 1 exits 0" test $? = 0
check "sleep output" bash -c "printf 'started\ndone\n' | diff -u - '$TMP/sleep'"
run "$TMP/oom" -W max-memory-size=67108864 testdata/oom.wasm
check "oom fails at the limit" test $? != 0
check "oom reports progress" has "$TMP/oom" "oom: allocated 48 MiB"
check "oom stops below the limit" bash -c "! grep -q 'oom: allocated 64 MiB' '$TMP/oom'"

if [ "$FAILS" -gt 0 ]; then
    echo "$FAILS check(s) failed"
    exit 1
fi
echo "all checks passed"
