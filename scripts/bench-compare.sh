#!/usr/bin/env bash
# Runs `skiff bench api`, `skiff bench scheduler` and `skiff bench pods` for two builds of skiff,
# alternating them in one run (the machines are shared and noisy: compare side by side), and
# appends every table each one prints to OUT.md under a heading naming the build.
#
# Usage: scripts/bench-compare.sh BEFORE_SKIFF AFTER_SKIFF OUT.md [ROUNDS]
# Both builds need the benchmarks (`make bench`, i.e. `cargo build --release -p skiff --features bench`).
# Example: scripts/bench-compare.sh /tmp/before/skiff target/release/skiff /tmp/compare.md 2
set -euo pipefail
before=$1 after=$2 out=$3 rounds=${4:-2}
dir=$(mktemp -d /var/tmp/skiff-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
run() { # label binary args...
  local label=$1 bin=$2; shift 2
  echo "## $label: skiff bench $* ($(date -u +%FT%TZ))" >> "$out"
  "$bin" bench "$@" --append "$out" 2>>"$dir/log" || echo "(failed: see the run's stderr)" >> "$out"
}
for round in $(seq 1 "$rounds"); do
  for side in before after; do
    bin=$before; [ "$side" = after ] && bin=$after
    run "$side round $round" "$bin" api --dir "$dir" --seconds 3 --pods 5000 --watchers 500
    run "$side round $round" "$bin" scheduler --nodes 500 --pods 5000 --replicas 500
    run "$side round $round" "$bin" pods --dir "$dir" --pods 50 --idle 1000 --rounds 3 --seconds 3
  done
done
echo "wrote $out"
