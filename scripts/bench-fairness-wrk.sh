#!/usr/bin/env bash
# Fairness with the flood in another process: a real `skiff server` (no controllers), user A
# floods LISTs of 200 ConfigMaps over 400 keep-alive connections with `wrk` (which, unlike
# client-go, does not wait out Retry-After), user B GETs one ConfigMap over one connection; prints
# A's rate and 429s and B's latency percentiles for each --max-requests-inflight given (0 = off,
# `default` = the flag left out: the server's default, the machine's cores).
#
# Usage: scripts/bench-fairness-wrk.sh SKIFF [INFLIGHT...]   (needs wrk and kubectl)
# Example: scripts/bench-fairness-wrk.sh target/release/skiff 0 default 4 16 100
set -euo pipefail
skiff=$1; shift
for inflight in "${@:-0 4}"; do
  dir=$(mktemp -d /var/tmp/skiff-fairness.XXXXXX)
  printf 'tokenA,alice,u1,"bench"\ntokenB,bob,u2,"bench"\n' > "$dir/tokens.csv"
  bound=(--max-requests-inflight "$inflight")
  [ "$inflight" = default ] && bound=()
  "$skiff" server --data-dir "$dir/data" --listen 127.0.0.1:0 --token-auth-file "$dir/tokens.csv" \
    "${bound[@]}" --no-controllers --no-scheduler \
    --ready-file "$dir/ready.json" > "$dir/server.log" 2>&1 &
  until [ -s "$dir/ready.json" ]; do sleep 0.2; done
  pid=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['pid'])" "$dir/ready.json")
  url=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['apiServer'])" "$dir/ready.json")
  export KUBECONFIG=$dir/data/admin.kubeconfig
  kubectl create clusterrolebinding bench-view --clusterrole view --group bench > /dev/null
  for i in $(seq 0 199); do
    echo "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"cm-$i\"},\"data\":{\"k\":\"v$i\"}}"
  done | kubectl create -f - > /dev/null
  wrk -t1 -c400 -d14s -H "Authorization: Bearer tokenA" \
    "$url/api/v1/namespaces/default/configmaps" > "$dir/flood.txt" 2>&1 &
  flood=$!
  sleep 2 # the flood ramps up before B starts measuring
  wrk -t1 -c1 -d10s --latency -H "Authorization: Bearer tokenB" \
    "$url/api/v1/namespaces/default/configmaps/cm-7" > "$dir/steady.txt" 2>&1
  wait "$flood"
  echo "== --max-requests-inflight $inflight"
  grep -E "Requests/sec|Non-2xx" "$dir/flood.txt" | sed 's/^/A (flood): /'
  grep -E " (50|90|99)%|Requests/sec" "$dir/steady.txt" | sed 's/^/B (steady GET): /'
  kill -TERM "$pid"
  while kill -0 "$pid" 2> /dev/null; do sleep 0.1; done
  rm -rf "$dir"
done
