#!/usr/bin/env bash
# stream.sh — streamed runs ("stream": true) against an upstream that streams slowly (a benchmark,
# not a test):
#   (1) time to the first text.delta next to the time to a plain (non-streaming) answer, when the
#       model takes BENCH_STREAM_DELTA_MS per 8-byte delta and the plain answer the same total;
#   (2) BENCH_STREAM_RUNS (2000) concurrent runs, plain then streamed, each against a fresh agentd:
#       errors, and agentd's peak memory per run.
# Prints key=value lines, also written to bench/results/stream.txt (the client's lines for each
# row: ok, errors, first_delta_* and total_* in ms; for (2) also agentd's resident memory at the
# start and its peak, the peak's growth per run, and the CPU seconds agentd and the fake used).
#
# Usage: bench/stream.sh
# Settings: BENCH_STREAM_DELTA_MS (50), BENCH_STREAM_RUNS (2000), BENCH_STREAM_TTFT_RUNS (20),
#           BENCH_SKIP_BUILD=1 (use bench/.build as it is), BENCH_KEEP_DIR=1 (keep the logs).
# Exit status: 0 = done, no errors and streamed memory per run within 1.5 x plain; 1 = a target
# missed; 2 = setup failure.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$HERE/.build
WORK=$(mktemp -d)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

DELTA_MS=${BENCH_STREAM_DELTA_MS:-50}
RUNS=${BENCH_STREAM_RUNS:-2000}
TTFT_RUNS=${BENCH_STREAM_TTFT_RUNS:-20}
check_int BENCH_STREAM_DELTA_MS "$DELTA_MS" 1 10000
check_int BENCH_STREAM_RUNS "$RUNS" 1 20000
check_int BENCH_STREAM_TTFT_RUNS "$TTFT_RUNS" 1 1000
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((RUNS * 3 + 500)) ] || die "open-file limit $(ulimit -n) is below $((RUNS * 3 + 500))"

FP="" AP=""
cleanup() {
    [ -n "$AP" ] && kill "$AP" 2>/dev/null || true
    [ -n "$FP" ] && kill "$FP" 2>/dev/null || true
    wait 2>/dev/null || true
    if [ "${BENCH_KEEP_DIR:-0}" = 1 ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

build_targets agentd fake_upstream bench/bench_stream_client
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
FAKE_PORT=$(free_port)
FAKE=http://127.0.0.1:$FAKE_PORT
"$BUILD/fake_upstream" --listen "127.0.0.1:$FAKE_PORT" --quiet >"$WORK/fake.log" 2>&1 &
FP=$!
wait_until 5 http_ok "$FAKE/_admin/stats" || die "fake_upstream did not start"

start_agentd() {
    AGENTD_PORT=$(free_port)
    AGENTD_LISTEN=127.0.0.1:$AGENTD_PORT ANTHROPIC_BASE_URL=$FAKE \
        ANTHROPIC_API_KEY=bench-placeholder AGENTD_SHUTDOWN_DELAY_MS=0 AGENTD_LOG_LEVEL=warn \
        AGENTD_MAX_INFLIGHT=8192 AGENTD_LLM_RATE=100000 AGENTD_LLM_BURST=100000 \
        AGENTD_NOTES_DIR="$WORK" "$BUILD/agentd" 2>>"$WORK/agentd.log" &
    AP=$!
    wait_until 5 http_ok "http://127.0.0.1:$AGENTD_PORT/health/live" || die "agentd did not start"
}
stop_agentd() {
    kill "$AP"
    wait "$AP" 2>/dev/null || true
    AP=""
}
fault() { curl -fsS -o /dev/null -d "$1" "$FAKE/_admin/faults"; }
clear_faults() { curl -fsS -o /dev/null -X DELETE "$FAKE/_admin/faults"; }
kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$AP/status"; }

# 150 bytes of plain words (no tool intent): the fake answers "You said: <input>", 160 bytes in
# 20 deltas of 8 bytes.
INPUT="Tell me about the old lighthouse keeper who lived alone on the rocky island and kept the lamp burning through every storm for forty long years ok"
OUT_BYTES=$((${#INPUT} + 10))
DELTAS=$(((OUT_BYTES + 7) / 8))
GEN_MS=$((DELTAS * DELTA_MS))
PLAIN="{\"input\":\"$INPUT\"}"
STREAM="{\"input\":\"$INPUT\",\"stream\":true}"
OUT=$WORK/out.txt
{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "tree=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "cpus=$(nproc)"
    echo "delta_ms=$DELTA_MS"
    echo "deltas=$DELTAS"
    echo "generation_ms=$GEN_MS"
} >"$OUT"

log "(1) first text.delta vs plain answer: $TTFT_RUNS runs each, ${DELTAS} deltas of ${DELTA_MS} ms"
start_agentd
URL=http://127.0.0.1:$AGENTD_PORT/v1/agent
fault "{\"route\":\"messages\",\"stream\":{\"delta_ms\":$DELTA_MS}}"
"$BUILD/bench/bench_stream_client" "$URL" "$TTFT_RUNS" stream "$STREAM" | sed 's/^/ttft_stream_/' >>"$OUT" || true
clear_faults
fault "{\"route\":\"messages\",\"delay_ms\":$GEN_MS}"
"$BUILD/bench/bench_stream_client" "$URL" "$TTFT_RUNS" plain "$PLAIN" | sed 's/^/ttft_plain_/' >>"$OUT" || true
clear_faults
stop_agentd

# (2) Memory: each mode against a fresh agentd; the upstream takes the same time either way.
for mode in plain stream; do
    log "(2) $RUNS concurrent $mode runs"
    start_agentd
    URL=http://127.0.0.1:$AGENTD_PORT/v1/agent
    if [ "$mode" = plain ]; then
        fault "{\"route\":\"messages\",\"delay_ms\":$GEN_MS}"
        body=$PLAIN
    else
        fault "{\"route\":\"messages\",\"stream\":{\"delta_ms\":$DELTA_MS}}"
        body=$STREAM
    fi
    rss0=$(kb VmRSS)
    cpu0=$(cpu_s "$AP")
    fcpu0=$(cpu_s "$FP")
    "$BUILD/bench/bench_stream_client" "$URL" "$RUNS" "$mode" "$body" | sed "s/^/burst_${mode}_/" >>"$OUT" || true
    hwm=$(kb VmHWM)
    cpu1=$(cpu_s "$AP")
    fcpu1=$(cpu_s "$FP")
    {
        echo "burst_${mode}_agentd_cpu_s=$(sub "$cpu1" "$cpu0")"
        echo "burst_${mode}_fake_cpu_s=$(sub "$fcpu1" "$fcpu0")"
        echo "burst_${mode}_rss_start_kb=$rss0"
        echo "burst_${mode}_hwm_kb=$hwm"
        echo "burst_${mode}_kb_per_run=$(awk -v a="$hwm" -v b="$rss0" -v n="$RUNS" 'BEGIN { printf "%.1f", (a - b) / n }')"
    } >>"$OUT"
    clear_faults
    stop_agentd
done

get() { awk -F= -v k="$1" '$1 == k { print substr($0, length(k) + 2); exit }' "$OUT"; }
plain_kb=$(get burst_plain_kb_per_run)
stream_kb=$(get burst_stream_kb_per_run)
echo "memory_ratio_stream_over_plain=$(awk -v a="$stream_kb" -v b="$plain_kb" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')" >>"$OUT"
mkdir -p "$HERE/results"
cp "$OUT" "$HERE/results/stream.txt"
cat "$OUT"
errors=$(( $(get burst_plain_errors) + $(get burst_stream_errors) + $(get ttft_stream_errors) + $(get ttft_plain_errors) ))
ok=$(awk -v a="$stream_kb" -v b="$plain_kb" 'BEGIN { print (a <= 1.5 * b) ? 1 : 0 }')
[ "$errors" -eq 0 ] && [ "$ok" -eq 1 ]
