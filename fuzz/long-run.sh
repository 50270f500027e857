#!/bin/bash
# Long coverage-guided fuzz runs (libFuzzer through cargo-bolero), one target at a time.
#
#   fuzz/long-run.sh SECONDS [TARGET...]        # default: every target
#   FUZZ_MERGE=1 fuzz/long-run.sh ...           # then merge what added coverage into the corpus
#
# Needs `cargo install cargo-bolero` and a C++ compiler. Builds the `fuzz` profile (dev with
# opt-level 1 and the workspace's opt-level 3 overrides; overflow checks and debug assertions on)
# with libFuzzer's coverage instrumentation into its own target directory (FUZZ_TARGET_DIR), so
# the ordinary builds are untouched. Each target starts from a scratch copy of its committed
# corpus (FUZZ_WORK/corpus/TARGET) and runs under `nice -n 19`; crashes go to
# FUZZ_WORK/crashes/TARGET. Prints one Markdown table row per target (see RELIABILITY.md).
# FUZZ_EXE=PATH runs an already built target binary instead (no rebuild while sources change).
set -u
cd "$(dirname "$0")/.."
secs=${1:?usage: fuzz/long-run.sh SECONDS [TARGET...]}
shift
all="json_body:body yaml_body:body protobuf_body:body json_patch:patch merge_patch:patch
strategic_merge_patch:patch server_side_apply:patch label_selector:selectors
field_selector:selectors quantity:quantity cron:cron digest:registry reference:registry
manifest:registry wasm_bytes:wasm wasm_mutated:wasm"
work=${FUZZ_WORK:-/tmp/skiff-fuzz}
target_dir=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/fuzz}
# The profile cargo-bolero builds by default, unless the workspace defines it.
export CARGO_PROFILE_FUZZ_INHERITS=${CARGO_PROFILE_FUZZ_INHERITS:-dev}
export CARGO_PROFILE_FUZZ_OPT_LEVEL=${CARGO_PROFILE_FUZZ_OPT_LEVEL:-1}
export CARGO_PROFILE_FUZZ_INCREMENTAL=false
mkdir -p "$work/logs"

bolero() {
    if [ -n "${FUZZ_EXE:-}" ]; then
        # What cargo-bolero runs: the test binary, told the target and libFuzzer's arguments.
        local corpus=$2 crashes=$4 args=""
        shift 4
        while [ $# -gt 1 ]; do
            case $1 in
            -T) args="$args -max_total_time=${2%s}"; shift 2 ;;
            --engine-args=*) args="$args ${1#--engine-args=}"; shift ;;
            *) echo "bolero: unexpected $1" >&2; return 2 ;;
            esac
        done
        mkdir -p "$corpus" "$crashes"
        BOLERO_TEST_NAME=$1 BOLERO_LIBTEST_HARNESS=1 \
            BOLERO_LIBFUZZER_ARGS="$corpus $crashes -artifact_prefix=$crashes/ -timeout=10$args" \
            nice -n 19 "$FUZZ_EXE" "$1" --exact --nocapture --quiet --test-threads 1
        return
    fi
    nice -n 19 cargo bolero test -p skiff-fuzz --profile fuzz --sanitizer NONE \
        --target-dir "$target_dir" "$@"
}

stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

echo "| target | duration | executions | exec/s | corpus before → after (new) | peak RSS | result |"
echo "|---|---|---|---|---|---|---|"
for pair in ${*:-$all}; do
    name=${pair%%:*}
    module=$(printf '%s\n' $all | sed -n "s/^$name://p")
    [ -n "$module" ] || { echo "unknown target $name" >&2; exit 2; }
    committed=fuzz/tests/it/__fuzz__/$name/corpus
    corpus=$work/corpus/$name
    crashes=$work/crashes/$name
    if [ ! -d "$corpus" ]; then mkdir -p "$corpus" && cp "$committed"/* "$corpus"/; fi
    before=$(ls "$corpus" | wc -l)
    log=$work/logs/$name.$(date -u +%Y%m%dT%H%M%S).log
    { echo "start $(date -u +%FT%TZ) load: $(uptime)"; } >"$log"
    start=$(date +%s)
    bolero --corpus-dir "$corpus" --crashes-dir "$crashes" -T "${secs}s" \
        --engine-args=-print_final_stats=1 "$module::${name}_target" >>"$log" 2>&1
    rc=$?
    wall=$(($(date +%s) - start))
    { echo "end $(date -u +%FT%TZ) rc=$rc wall=${wall}s load: $(uptime)"; } >>"$log"
    # libFuzzer's own count and time (the wall time also includes building the target).
    secs_run=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    execs=$(stat number_of_executed_units "$log")
    rate=$(stat average_exec_per_sec "$log")
    rss=$(stat peak_rss_mb "$log")
    after=$(ls "$corpus" | wc -l)
    if [ "$rc" = 0 ]; then result="no crash"; else result="**rc $rc**: see $log, $crashes"; fi
    if [ "$rc" = 0 ] && [ "${FUZZ_MERGE:-0}" = 1 ]; then
        # libFuzzer -merge=1 of the committed and the scratch corpus into an empty directory
        # keeps a small set with all their coverage; what in it is new joins the committed corpus.
        merged=$(mktemp -d) && added=0
        bolero --corpus-dir "$merged" --crashes-dir "$crashes" \
            "--engine-args=-merge=1 $committed $corpus" "$module::${name}_target" >>"$log" 2>&1
        known=$(sha1sum "$committed"/* | cut -d' ' -f1)
        for f in "$merged"/*; do
            sum=$(sha1sum "$f" | cut -d' ' -f1)
            if ! grep -qx "$sum" <<<"$known"; then cp "$f" "$committed/$sum" && added=$((added + 1)); fi
        done
        rm -rf "$merged"
        result="$result; $added merged into the corpus"
    fi
    echo "| \`$name\` | ${secs_run:-?} s | ${execs:-?} | ${rate:-?} | $before → $after (+$((after - before))) | ${rss:-?} MB | $result |"
done
