#!/usr/bin/env bash
# incident_replay.sh — replays a 429 incident against agentd (a benchmark, not a test).
#
# Steady open-loop traffic (default 20 req/s for 60 s, every request with
# timeout_ms 30000) while the fake LLM API answers 429 + retry-after for a
# 20 s stretch in the middle. Reports the share of requests that succeed, the
# upstream attempts per request during the stretch, p99 latency and the time
# from the end of the stretch to the first success, against the targets
# (>= 99 %, <= 1.3, <= 1.5 s). Evidence for a miss (agentd's log, the fake's
# request log, the figures as JSON) stays in the output directory.
#
# Usage: bench/incident_replay.sh
# Environment (all optional):
#   INCIDENT_BUILD=build           meson build dir holding agentd and fake_upstream
#   INCIDENT_RATE=20               requests per second
#   INCIDENT_DURATION_S=60         length of the traffic (bounded to 600)
#   INCIDENT_STRETCH_START_S=20    when the 429 stretch begins
#   INCIDENT_STRETCH_S=20          how long the fake answers 429
#   INCIDENT_RETRY_AFTER_MS=1000   retry-after-ms (and retry-after, rounded up) on each 429
#   INCIDENT_TIMEOUT_MS=30000      the requests' timeout_ms
#   INCIDENT_OUT=<temp dir>        where logs and results.json go (kept)
#   AGENTD_*                       passed through to agentd (to try other settings)
#
# Exit status: 0 targets met, 1 a target missed, 2 setup failure.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${INCIDENT_BUILD:-$ROOT/build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
RATE=${INCIDENT_RATE:-20}
DURATION_S=${INCIDENT_DURATION_S:-60}
STRETCH_START_S=${INCIDENT_STRETCH_START_S:-20}
STRETCH_S=${INCIDENT_STRETCH_S:-20}
RETRY_AFTER_MS=${INCIDENT_RETRY_AFTER_MS:-1000}
TIMEOUT_MS=${INCIDENT_TIMEOUT_MS:-30000}
OUT=${INCIDENT_OUT:-$(mktemp -d /tmp/incident-replay-XXXXXX)}
STARTUP_TIMEOUT_S=10
STOP_TIMEOUT_S=40

mkdir -p "$OUT"
for bin in agentd fake_upstream; do
    if [ ! -x "$BUILD/$bin" ]; then
        echo "incident_replay: $BUILD/$bin missing (meson setup $BUILD && ninja -C $BUILD)" >&2
        exit 2
    fi
done

FAKE_PID=
AGENTD_PID=
# Stops only the two processes this script started, by pid.
stop_all() {
    local pid
    for pid in $AGENTD_PID $FAKE_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $AGENTD_PID $FAKE_PID; do
        for _ in $(seq 1 $((STOP_TIMEOUT_S * 10))); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    AGENTD_PID=
    FAKE_PID=
}
trap stop_all EXIT

# wait_for FILE PATTERN: waits (bounded) until FILE contains PATTERN.
wait_for() {
    for _ in $(seq 1 $((STARTUP_TIMEOUT_S * 20))); do
        if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

"$BUILD/fake_upstream" --listen 127.0.0.1:0 --port-file "$OUT/fake.port" --quiet \
    >"$OUT/fake.log" 2>&1 &
FAKE_PID=$!
wait_for "$OUT/fake.port" '[0-9]' || { echo "incident_replay: the fake did not start" >&2; exit 2; }
FAKE_PORT=$(cat "$OUT/fake.port")
FAKE_URL=http://127.0.0.1:$FAKE_PORT

mkdir -p "$OUT/notes"
# Quiet readiness probes and info-level logs: "retry scheduled", "limiter refused",
# "retry budget exhausted" and "retry skipped" are the evidence for a missed target.
env AGENTD_LISTEN=127.0.0.1:0 \
    ANTHROPIC_BASE_URL="$FAKE_URL" ANTHROPIC_API_KEY=sk-ant-bench-0123456789 \
    AGENTD_WEATHER_GEOCODING_URL="$FAKE_URL" AGENTD_WEATHER_FORECAST_URL="$FAKE_URL" \
    AGENTD_NOTES_DIR="$OUT/notes" AGENTD_LOG_LEVEL="${AGENTD_LOG_LEVEL:-info}" \
    "$BUILD/agentd" >"$OUT/agentd.log" 2>&1 &
AGENTD_PID=$!
wait_for "$OUT/agentd.log" '"agentd started"' || {
    echo "incident_replay: agentd did not start; see $OUT/agentd.log" >&2
    exit 2
}
AGENTD_PORT=$(grep -m1 '"agentd started"' "$OUT/agentd.log" | sed -n 's/.*"port":\([0-9]*\).*/\1/p')

echo "incident replay: $RATE req/s for $DURATION_S s, 429 (retry-after ${RETRY_AFTER_MS} ms) from" \
    "${STRETCH_START_S} s for ${STRETCH_S} s, timeout_ms $TIMEOUT_MS; output in $OUT"
set +e
python3 "$HERE/incident/driver.py" --agentd-port "$AGENTD_PORT" --fake-port "$FAKE_PORT" \
    --rate "$RATE" --duration-s "$DURATION_S" --stretch-start-s "$STRETCH_START_S" \
    --stretch-s "$STRETCH_S" --retry-after-ms "$RETRY_AFTER_MS" --timeout-ms "$TIMEOUT_MS" \
    --json-out "$OUT/results.json" --fake-log-out "$OUT/fake_requests.json"
RC=$?
set -e
[ "$RC" -le 1 ] || { echo "incident_replay: the driver failed ($RC)" >&2; exit 2; }

# What agentd decided, by log message: the first place to look when a target is missed.
echo "agentd log (anthropic):"
for msg in "retry scheduled" "retry budget exhausted" "retry skipped: would pass deadline" \
    "limiter refused" "upstream attempt"; do
    printf '  %-36s %s\n' "$msg" "$(grep -c "\"msg\":\"$msg\"" "$OUT/agentd.log" || true)"
done
stop_all
exit "$RC"
