#!/usr/bin/env bash
# rss_after_burst.sh — does agentd give memory back after a burst? (a benchmark, not a test)
#
# Starts the fake upstream (answers after 1 s) and agentd on loopback, drives 2000 concurrent
# runs for 8 s with wrk, then stays idle and prints agentd's resident memory at start, right
# after the burst and after 15 s idle (agentd trims its heap when idle; see src/main.c).
#
# Usage: bench/rss_after_burst.sh [AGENTD_BIN]   (default: bench/.build/agentd, built if missing)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$HERE/.build
AGENTD=${1:-$BUILD/agentd}
if [ ! -x "$BUILD/fake_upstream" ] || [ ! -x "$AGENTD" ]; then
    [ -d "$BUILD" ] || meson setup "$BUILD" "$ROOT" --buildtype=release -Dtests=false >/dev/null
    ninja -C "$BUILD" agentd fake_upstream >/dev/null
fi
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
FAKE_PORT=$(free_port)
AGENTD_PORT=$(free_port)
WORK=$(mktemp -d)
trap 'kill $AP $FP 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BUILD/fake_upstream" --listen "127.0.0.1:$FAKE_PORT" --quiet --delay-ms 1000 >"$WORK/fake.log" 2>&1 &
FP=$!
AGENTD_LISTEN=127.0.0.1:$AGENTD_PORT ANTHROPIC_BASE_URL=http://127.0.0.1:$FAKE_PORT \
    ANTHROPIC_API_KEY=bench-placeholder AGENTD_SHUTDOWN_DELAY_MS=0 AGENTD_LOG_LEVEL=warn \
    AGENTD_MAX_INFLIGHT=8192 AGENTD_LLM_RATE=100000 AGENTD_LLM_BURST=100000 \
    AGENTD_NOTES_DIR="$WORK" "$AGENTD" 2>"$WORK/agentd.log" &
AP=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$AGENTD_PORT/health/live" >/dev/null && break
    sleep 0.05
done
echo '{"input":"hello"}' >"$WORK/body.json"
rss() { awk '/VmRSS/ {printf "%.1f MB", $2 / 1024}' "/proc/$AP/status"; }
echo "agentd RSS at start:          $(rss)"
wrk -t2 -c2000 -d8s -s "$HERE/wrk/post.lua" "http://127.0.0.1:$AGENTD_PORT/v1/agent" -- \
    "$WORK/body.json" Content-Type:application/json >"$WORK/wrk.txt" 2>&1
echo "wrk: $(grep -E "requests in|Non-2xx|Socket errors" "$WORK/wrk.txt" | tr -s " " | paste -sd";")"
echo "agentd RSS after the burst:   $(rss) (peak $(awk '/VmHWM/ {printf "%.1f MB", $2 / 1024}' "/proc/$AP/status"))"
sleep 15
echo "agentd RSS after 15 s idle:   $(rss)"
