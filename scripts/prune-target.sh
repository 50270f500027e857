#!/usr/bin/env bash
# Frees the disk a reused target directory gathers: of the test and bench executables in
# TARGET/debug/deps, only the newest build of each keeps its file (older ones, left by earlier
# sources or features, are never run again), and incremental caches untouched for an hour go
# (a crate whose sources are unchanged is not rebuilt without them; a changed one compiles whole).
# CI reuses the machine's target directory; without this it grows by every run's relinked tests.
set -euo pipefail
target="${1:-${CARGO_TARGET_DIR:-target}}"
deps="$target/debug/deps"
[ -d "$deps" ] || exit 0
# Executables are the files named NAME-HASH with no extension; group by NAME, newest first.
find "$deps" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[^/.]+-[0-9a-f]{16}' \
  -printf '%T@ %p\n' | sort -rn | awk '{
    path = $2; name = path; sub(/-[0-9a-f]{16}$/, "", name)
    if (seen[name]++) print path
  }' | xargs -r rm -f
find "$target/debug/incremental" -mindepth 1 -maxdepth 1 -mmin +60 -exec rm -rf {} + 2>/dev/null || true
# A full run relinks every test executable (about 25 GB) beside the previous ones before the
# next prune: when the disk cannot hold that twice, drop all of them and the incremental caches.
need_kb=$((40 * 1024 * 1024))
free_kb=$(df -Pk "$target" | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt "$need_kb" ]; then
  echo "prune-target: $((free_kb / 1024 / 1024)) GiB free under $target; removing its test executables and incremental caches"
  find "$deps" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[^/.]+-[0-9a-f]{16}' -delete
  rm -rf "$target/debug/incremental"
fi
