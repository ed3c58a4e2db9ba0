#!/usr/bin/env bash
# rss_per_run.sh — agentd's memory per run in flight, and at idle (a benchmark, not a test).
#
# Starts the fake upstream and agentd on loopback, records agentd's idle memory, then opens N
# client connections (wrk -cN, bench/wrk/hold.lua): each runs one quick agent request, then one
# whose LLM answer the fake holds for RSS_DELAY_MS (default 5000). While the N runs are held it
# prints (RSS in flight - RSS idle) / runs in flight (agentd_runs_in_flight from /metrics). VmRSS is split into RssAnon (agentd's own heap, stacks, buffers) and RssFile (pages
# of the binary and its shared libraries, shared with every other process that maps them).
#
# Usage: bench/rss_per_run.sh [AGENTD_BIN]   (default: bench/.build/agentd, built if missing)
#   RSS_RUNS=2000  RSS_DELAY_MS=5000  RSS_AGENTD_ENV="NAME=VALUE ..." (more agentd settings)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$HERE/.build
AGENTD=${1:-$BUILD/agentd}
RUNS=${RSS_RUNS:-2000}
DELAY_MS=${RSS_DELAY_MS:-5000}
EXTRA=()
read -r -a EXTRA <<<"${RSS_AGENTD_ENV:-}"
if [ ! -x "$BUILD/fake_upstream" ] || [ ! -x "$AGENTD" ]; then
    [ -d "$BUILD" ] || meson setup "$BUILD" "$ROOT" --buildtype=release -Dtests=false >/dev/null
    ninja -C "$BUILD" agentd fake_upstream >/dev/null
fi
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 2; }
if ! [[ $RUNS =~ ^[0-9]+$ ]] || [ "$RUNS" -lt 2 ] || [ "$RUNS" -gt 8000 ]; then
    echo "RSS_RUNS: 2..8000" >&2
    exit 2
fi
if ! [[ $DELAY_MS =~ ^[0-9]+$ ]] || [ "$DELAY_MS" -lt 3000 ] || [ "$DELAY_MS" -gt 20000 ]; then
    echo "RSS_DELAY_MS: 3000..20000" >&2
    exit 2
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
FAKE_PORT=$(free_port)
AGENTD_PORT=$(free_port)
WORK=$(mktemp -d)
AP=
FP=
WP=
trap 'kill $WP $AP $FP 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BUILD/fake_upstream" --listen "127.0.0.1:$FAKE_PORT" --quiet >"$WORK/fake.log" 2>&1 &
FP=$!
env AGENTD_LISTEN="127.0.0.1:$AGENTD_PORT" ANTHROPIC_BASE_URL="http://127.0.0.1:$FAKE_PORT" \
    ANTHROPIC_API_KEY=bench-placeholder AGENTD_SHUTDOWN_DELAY_MS=0 AGENTD_LOG_LEVEL=warn \
    AGENTD_MAX_INFLIGHT=8192 AGENTD_LLM_RATE=100000 AGENTD_LLM_BURST=100000 \
    AGENTD_NOTES_DIR="$WORK" ${EXTRA[@]+"${EXTRA[@]}"} "$AGENTD" 2>"$WORK/agentd.log" &
AP=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$AGENTD_PORT/health/live" >/dev/null && break
    sleep 0.05
done
kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$AP/status"; }
in_flight() {
    curl -sf "http://127.0.0.1:$AGENTD_PORT/metrics" | awk '$1 == "agentd_runs_in_flight" { print $2 }'
}
sleep 1
idle_rss=$(kb VmRSS) idle_anon=$(kb RssAnon) idle_file=$(kb RssFile)
# The held runs are sampled before their answers (DELAY_MS away); wrk's end cancels them.
hold_s=$((DELAY_MS / 1000 - 1))
wrk -t2 -c"$RUNS" -d"${hold_s}s" --timeout "$((DELAY_MS / 1000 + 5))s" -s "$HERE/wrk/hold.lua" \
    "http://127.0.0.1:$AGENTD_PORT/v1/agent" -- "$DELAY_MS" "$((RUNS / 2))" >"$WORK/wrk.txt" 2>&1 &
WP=$!
n=0
for _ in $(seq 1 $((hold_s * 10))); do
    sleep 0.1
    n=$(in_flight)
    [ "${n:-0}" -ge "$RUNS" ] && break
done
sleep 0.5
n=$(in_flight)
rss=$(kb VmRSS) anon=$(kb RssAnon) file=$(kb RssFile) threads=$(kb Threads)
wait "$WP" || true
WP=
echo "agentd $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)"
printf 'idle:       VmRSS %6d kB = RssAnon %6d kB + RssFile %6d kB\n' "$idle_rss" "$idle_anon" "$idle_file"
printf 'in flight:  VmRSS %6d kB = RssAnon %6d kB + RssFile %6d kB, %s runs, %s threads\n' \
    "$rss" "$anon" "$file" "$n" "$threads"
echo "wrk: $(grep -E "requests in|Non-2xx|Socket errors" "$WORK/wrk.txt" | tr -s " " | paste -sd";")"
[ "${n:-0}" -gt 0 ] || { echo "no run in flight (see $WORK)" >&2; exit 1; }
awk -v a="$rss" -v b="$idle_rss" -v n="$n" 'BEGIN { printf "per run in flight: %.1f kB (VmRSS delta / runs)\n", (a - b) / n }'
