#!/bin/sh
# run.sh — runs each libFuzzer target of tests/fuzz/ in turn (one fuzzing
# process at a time) for a bounded time, seeded from corpus/<target>/ and
# dict/, writing new inputs and findings to a fresh temporary directory,
# never to the repository.
#
# Usage: tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 60; targets default to all five
#   FUZZ_OUT=DIR        write there instead of a new mktemp directory
# Builds the targets first when tests/fuzz/.build/ lacks them.
# Exit status: 0 when no target found anything, 1 when one crashed, leaked,
# timed out or ran out of memory (its reproducer path is printed), 2 on usage.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-60}
case $secs in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
    ;;
esac
if [ $# -gt 0 ]; then shift; fi
targets=${*:-request anthropic calculator tools log stream}

# Longest input the fuzzer may generate: enough to cross every length cap the
# parser has (calculator: 1000 bytes; web_search: 1000-byte URLs; log: its
# 4096-byte line) while keeping executions fast. The targets themselves cap at
# what the daemon accepts.
max_len() {
    case $1 in
    request) echo 4096 ;;
    anthropic) echo 8192 ;;
    calculator) echo 1200 ;;
    tools) echo 8192 ;;
    log) echo 8192 ;;
    stream) echo 8192 ;;
    *) return 1 ;;
    esac
}

for t in $targets; do
    if ! max_len "$t" >/dev/null; then
        echo "run: unknown target '$t' (request anthropic calculator tools log stream)" >&2
        exit 2
    fi
    [ -x "$here/.build/fuzz_$t" ] || "$here/build.sh"
done

out=${FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/agentd-fuzz.XXXXXX")}
mkdir -p "$out"
echo "run: ${secs}s per target, output in $out"

failed=""
for t in $targets; do
    dir="$out/$t"
    mkdir -p "$dir/corpus"
    cat "$here/dict/json.dict" "$here/dict/$t.dict" >"$dir/dict"
    log="$dir/fuzz.log"
    echo "run: fuzz_$t (-max_len=$(max_len "$t"))"
    # The first corpus directory receives new inputs; the seeds are only read.
    # timeout(1) is a backstop in case the process outlives -max_total_time.
    rc=0
    timeout -k 10 $((secs + 120)) "$here/.build/fuzz_$t" \
        -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
        -dict="$dir/dict" -artifact_prefix="$dir/" -print_final_stats=1 \
        "$dir/corpus" "$here/corpus/$t" >"$log" 2>&1 || rc=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
    echo "  rc=$rc execs=${execs:-?} exec/s=${speed:-?} peak_rss_mb=${rss:-?}"
    echo "  ${done_line:-(no DONE line)}"
    if [ "$rc" -ne 0 ]; then
        failed="$failed $t"
        echo "  FINDING: see $log" >&2
        for a in "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* "$dir"/slow-unit-*; do
            [ -e "$a" ] && echo "  reproducer: $a" >&2
        done
        grep -m 3 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|property violated' \
            "$log" >&2 || true
    fi
done

if [ -n "$failed" ]; then
    echo "run: findings in:$failed (logs and reproducers under $out)" >&2
    exit 1
fi
echo "run: no findings (new corpus inputs under $out/<target>/corpus)"
