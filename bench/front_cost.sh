#!/usr/bin/env bash
# front_cost.sh — agentd's instructions per request, counted by valgrind's callgrind (a
# benchmark, not a test). Unlike req/s on a shared machine, instruction counts repeat to within
# a percent or so from run to run, so they show what a change to the front saved.
#
# Starts the fake upstream (no delay) and agentd under `valgrind --tool=callgrind` on loopback,
# warms both up, then for each load zeroes agentd's counters (a callgrind_control -d dump), sends N
# requests one after another over one keep-alive connection (bench/front_cost.py), dumps the
# counters (callgrind_control -d) and prints the instructions (Ir) per request. Every thread of
# agentd is counted (the HTTP threads, the workers, the idle ticks of main meanwhile). The dumps
# stay in bench/results/callgrind/ for callgrind_annotate.
#
# Usage: bench/front_cost.sh            (BENCH_SKIP_BUILD=1, BENCH_AGENTD_BIN=path as run.sh)
#   FRONT_COST_N_LIVE=2000   GET /health/live requests
#   FRONT_COST_N_RUNS=300    POST /v1/agent one-LLM-call runs
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$HERE/.build
RESULTS=${BENCH_RESULTS_DIR:-$HERE/results}
STARTUP_TIMEOUT_S=60
STOP_TIMEOUT_S=30
N_LIVE=${FRONT_COST_N_LIVE:-2000}
N_RUNS=${FRONT_COST_N_RUNS:-300}
API_KEY=sk-ant-bench-0123456789
WORK=
FAKE_PID=
AGENTD_PID=

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

cleanup() {
    local p
    for p in $AGENTD_PID $FAKE_PID; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $AGENTD_PID $FAKE_PID; do wait "$p" 2>/dev/null || true; done
    [ -z "$WORK" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in valgrind callgrind_control python3 curl ss meson ninja; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
check_int FRONT_COST_N_LIVE "$N_LIVE" 1 1000000
check_int FRONT_COST_N_RUNS "$N_RUNS" 1 100000
WORK=$(mktemp -d /tmp/agentd-cost.XXXXXX)
OUT=$RESULTS/callgrind
mkdir -p "$OUT"
rm -f "$OUT"/callgrind.out.*
build
AGENTD=${BENCH_AGENTD_BIN:-$BUILD/agentd}

"$BUILD/fake_upstream" --listen 127.0.0.1:0 --port-file "$WORK/fake.port" --api-key "$API_KEY" \
    --quiet >"$WORK/fake.log" 2>&1 &
FAKE_PID=$!
wait_until "$STARTUP_TIMEOUT_S" test -s "$WORK/fake.port" || die "fake_upstream did not start"
FAKE_PORT=$(cat "$WORK/fake.port")
mkdir -p "$WORK/notes"
env -i PATH="$PATH" AGENTD_LISTEN=127.0.0.1:0 ANTHROPIC_BASE_URL="http://127.0.0.1:$FAKE_PORT" \
    ANTHROPIC_API_KEY="$API_KEY" AGENTD_NOTES_DIR="$WORK/notes" AGENTD_LOG_LEVEL=warn \
    AGENTD_LLM_RATE=100000 AGENTD_LLM_BURST=100000 AGENTD_SHUTDOWN_DELAY_MS=0 \
    valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file="$OUT/callgrind.out.%p" "$AGENTD" \
    >"$WORK/agentd.log" 2>&1 &
AGENTD_PID=$!
wait_until "$STARTUP_TIMEOUT_S" find_agentd_port || { tail "$WORK/agentd.log" >&2; die "agentd did not start"; }
wait_until "$STARTUP_TIMEOUT_S" http_ok "http://127.0.0.1:$AGENTD_PORT/health/live" ||
    die "agentd is not answering"
printf '{"input":"hello"}' >"$WORK/agent.json"

# callgrind_dump NAME: dumps agentd's counters (which zeroes them) to $OUT/callgrind.out.NAME.
callgrind_dump() {
    local before dump
    before=$(find "$OUT" -name "callgrind.out.$AGENTD_PID.*" | wc -l)
    callgrind_control -d "$1" "$AGENTD_PID" >/dev/null 2>&1
    wait_until 30 test "$(find "$OUT" -name "callgrind.out.$AGENTD_PID.*" | wc -l)" -gt "$before" ||
        die "$1: no callgrind dump"
    dump=$(find "$OUT" -name "callgrind.out.$AGENTD_PID.*" | head -1) # each one is moved at once
    mv "$dump" "$OUT/callgrind.out.$1"
}

# measure NAME N PATH [BODY]: prints NAME, N and Ir per request.
measure() {
    local name=$1 n=$2 path=$3 after body=()
    [ $# -ge 4 ] && body=("$4")
    python3 "$HERE/front_cost.py" "$AGENTD_PORT" "$path" 200 ${body[@]+"${body[@]}"} ||
        die "$name: warm-up failed"
    # A dump also zeroes the counters: what the next dump holds is the load alone.
    callgrind_dump "$name.warmup"
    python3 "$HERE/front_cost.py" "$AGENTD_PORT" "$path" "$n" ${body[@]+"${body[@]}"} ||
        die "$name: load failed"
    callgrind_dump "$name"
    after=$(awk '/^(summary|totals):/ { print $2; exit }' "$OUT/callgrind.out.$name")
    printf '%-12s %8d %12s %10s\n' "$name" "$n" "$after" "$(ratio "$after" "$n" '%.0f')"
}

{
    echo "agentd instructions per request under callgrind ($AGENTD, tree $(tree_desc "$ROOT"), $(date -u +%Y-%m-%dT%H:%MZ))"
    printf '%-12s %8s %12s %10s\n' load requests Ir_total Ir_per_rq
    measure live "$N_LIVE" /health/live
    measure run "$N_RUNS" /v1/agent "$WORK/agent.json"
} | tee "$RESULTS/front_cost.txt"
