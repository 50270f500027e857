#!/usr/bin/env bash
# The cost of the engine's usage accounting per request: hello through the node endpoint
# (`skiff bench pods`' throughput part: wrk against /pods/bench/warm-0/8080/) with accounting on
# and off (`SKIFF_USAGE_ACCOUNTING=off` in the node's environment, read once at its start),
# alternated round by round in one run so the noise of a shared machine falls on both sides.
# Prints each round and the medians with their ratio.
#
# Usage: scripts/bench-usage-accounting.sh [SKIFF] [ROUNDS] [SECONDS] [SKIFF_OFF] [OFF_ACCOUNTING]
# SKIFF needs the benchmarks: `cargo build --release -p skiff --features bench`. With SKIFF_OFF,
# the "off" side runs that binary instead — built with
# `--features bench,skiff-telemetry/compiled-out`, it also has the trace hooks compiled out, so
# the ratio is the cost of accounting and of the tracing-off instrumentation together.
# OFF_ACCOUNTING=on keeps accounting on for the "off" side too: with SKIFF_OFF, the ratio is then
# the cost of the tracing-off instrumentation alone.
set -euo pipefail
skiff=${1:-target/release/skiff} rounds=${2:-5} seconds=${3:-5} skiff_off=${4:-${1:-target/release/skiff}} off_accounting=${5:-off}
dir=$(mktemp -d /var/tmp/skiff-bench-usage.XXXXXX)
trap 'rm -rf "$dir"' EXIT
on=() off=()
rate() { # accounting(on|off) binary: one round's req/s
  SKIFF_USAGE_ACCOUNTING=$1 "$2" bench pods --dir "$dir" --pods 1 --idle 0 --rounds 1 \
    --seconds "$seconds" --wasmtime /nonexistent 2>>"$dir/log" |
    sed -n 's/^round 1: skiff node endpoint \([0-9]*\) req\/s.*/\1/p'
}
for round in $(seq 1 "$rounds"); do
  a=$(rate on "$skiff"); b=$(rate "$off_accounting" "$skiff_off")
  [ -n "$a" ] && [ -n "$b" ] || { cat "$dir/log" >&2; echo "a run failed" >&2; exit 1; }
  echo "round $round: accounting on $a req/s, off $b req/s"
  on+=("$a"); off+=("$b")
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
m_on=$(median "${on[@]}"); m_off=$(median "${off[@]}")
echo "median: on $m_on req/s, off $m_off req/s, on/off $(awk -v a="$m_on" -v b="$m_off" 'BEGIN {printf "%.3f", a/b}')"
