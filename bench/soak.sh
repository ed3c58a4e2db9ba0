#!/usr/bin/env bash
# soak.sh — agentd under mixed traffic and rotating faults for a long stretch
# (a benchmark, not a test).
#
# Builds agentd + fake_upstream in release mode into bench/.build (as run.sh
# does), starts both on loopback ephemeral ports, and runs bench/soak/driver.py
# for SOAK_DURATION_S: mixed POST /v1/agent traffic from a bounded pool of
# client threads (plain and slow questions, every tool, model markers,
# conversations and two runs on one at once, Idempotency-Key replays / reuse /
# duplicates in flight, bad input, client disconnects, probes), while a fault is
# injected into the fake every SOAK_FAULT_EVERY_S (LLM 429 with retry-after,
# 500, 529, resets, slow answers, hangs, malformed bodies, permanent 400; tool
# API errors, resets, hangs, slow and malformed answers; readiness probe 503).
# agentd's and the fake's RSS and open descriptors are sampled every
# SOAK_SAMPLE_S. At the end agentd gets SIGTERM and must exit 0.
#
# Prints a summary and writes it to bench/results/soak.txt (with the samples
# in soak.samples.tsv). bench/README.md says how to read it.
#
# Targets: agentd's RSS grows < 5 % from the end of the warm-up to the end of
# the load; its descriptors other than established client/upstream connections
# stay flat after the warm-up (max - min <= SOAK_FD_SLACK); no crash (alive
# until stopped, exit status 0 on SIGTERM).
#
# Usage: bench/soak.sh            (10 minutes by default)
#        SOAK_DURATION_S=90 bench/soak.sh
# Environment (all optional):
#   SOAK_DURATION_S=600     length of the load, 30..86400 s
#   SOAK_WARMUP_S=          default: one full fault rotation (16 faults x SOAK_FAULT_EVERY_S
#                           = 80 s) or 10 % of the duration if longer, at most a third of it
#   SOAK_RSS_WINDOW_S=20    RSS at warm-up end / at the end = median of the samples
#                           in the window that ends there (at most half the warm-up)
#   SOAK_CONCURRENCY=48     client threads (each has at most 2 requests in flight)
#   SOAK_RATE=50            scenarios started per second, all clients together
#   SOAK_SAMPLE_S=2         sampling period
#   SOAK_FAULT_EVERY_S=5    a new fault this often ...
#   SOAK_FAULT_MS=1500      ... lasting this long
#   SOAK_FD_SLACK=16        allowed max - min of the flat descriptor count
#   SOAK_LOG_LEVEL=info     agentd's log level (the log is summarised at the end)
#   SOAK_SEED=1             seed of the traffic mix
#   BENCH_SKIP_BUILD=1      use the binaries already in bench/.build
#   BENCH_AGENTD_BIN=path   soak this agentd binary instead
#   BENCH_RESULTS_DIR=dir   write results there instead of bench/results
#   SOAK_KEEP_DIR=1         keep the temp dir (agentd's log, ...) even on success;
#                           it is always kept when the run fails or misses a target
#   AGENTD_*                passed to agentd, over the soak's own settings
#
# Exit status: 0 targets met, 1 a target missed, 2 setup failure.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$HERE/.build
RESULTS=${BENCH_RESULTS_DIR:-$HERE/results}
DRIVER=$HERE/soak/driver.py

DURATION_S=${SOAK_DURATION_S:-600}
WARMUP_S=${SOAK_WARMUP_S:-}
RSS_WINDOW_S=${SOAK_RSS_WINDOW_S:-20}
CONCURRENCY=${SOAK_CONCURRENCY:-48}
RATE=${SOAK_RATE:-50}
SAMPLE_S=${SOAK_SAMPLE_S:-2}
FAULT_EVERY_S=${SOAK_FAULT_EVERY_S:-5}
FAULT_MS=${SOAK_FAULT_MS:-1500}
FD_SLACK=${SOAK_FD_SLACK:-16}
LOG_LEVEL=${SOAK_LOG_LEVEL:-info}
SEED=${SOAK_SEED:-1}
RSS_TARGET_PCT=5
STARTUP_TIMEOUT_S=10
# agentd's shutdown below takes at most delay + grace (0.5 s + 5 s).
STOP_TIMEOUT_S=30

API_KEY=sk-ant-bench-0123456789
WORK=
FAKE_PID=
AGENTD_PID=
KEEP=${SOAK_KEEP_DIR:-0}

die() {
    echo "soak.sh: $*" >&2
    KEEP=1
    exit 2
}

log() { echo "== $*" >&2; }
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

# Stops only the processes this script started, by pid.
cleanup() {
    local rc=$? p
    for p in $AGENTD_PID $FAKE_PID; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in $AGENTD_PID $FAKE_PID; do
        wait "$p" 2>/dev/null || true
    done
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$KEEP" = 1 ] || [ "$rc" -ne 0 ]; then
            echo "soak.sh: logs kept in $WORK" >&2
        else
            rm -rf "$WORK"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# ---- setup (as run.sh) ---------------------------------------------------------------


# wait_until SECONDS COMMAND...: polls COMMAND every 50 ms, bounded.





start_fake() {
    "$BUILD/fake_upstream" --listen 127.0.0.1:0 --port-file "$WORK/fake.port" --api-key "$API_KEY" \
        --quiet >"$WORK/fake.log" 2>&1 &
    FAKE_PID=$!
    wait_until "$STARTUP_TIMEOUT_S" test -s "$WORK/fake.port" || die "fake_upstream did not start"
    FAKE_PORT=$(cat "$WORK/fake.port")
    wait_until "$STARTUP_TIMEOUT_S" http_ok "http://127.0.0.1:$FAKE_PORT/_admin/health" ||
        die "fake_upstream is not answering"
}

# The soak's settings: short breaker open time, attempt timeouts and retry-after
# caps, so that each fault's effects end within a few seconds (the driver's
# FAULT_SETTLE_MS); limits that stay out of the way; bounded stores small enough
# to be full by the end of the warm-up, so that growth after it is not a cache
# filling up. AGENTD_* variables from the environment override them.
agentd_env() {
    local url="http://127.0.0.1:$FAKE_PORT"
    cat <<EOF
AGENTD_LISTEN=127.0.0.1:0
ANTHROPIC_BASE_URL=$url
ANTHROPIC_API_KEY=$API_KEY
AGENTD_WEATHER_GEOCODING_URL=$url
AGENTD_WEATHER_FORECAST_URL=$url
AGENTD_SEARCH_URL=$url
AGENTD_NOTES_DIR=$WORK/notes
AGENTD_LOG_LEVEL=$LOG_LEVEL
AGENTD_LLM_RATE=100000
AGENTD_LLM_BURST=100000
AGENTD_TOOL_RATE=100000
AGENTD_TOOL_BURST=100000
AGENTD_LLM_TIMEOUT_MS=3000
AGENTD_TOOL_TIMEOUT_MS=2000
AGENTD_RETRY_INITIAL_MS=100
AGENTD_RETRY_MAX_DELAY_MS=1000
AGENTD_RETRY_AFTER_CAP_MS=1000
AGENTD_BREAKER_OPEN_MS=1000
AGENTD_READY_INTERVAL_MS=1000
AGENTD_NOTES_MIN_FREE_BYTES=0
AGENTD_CONVERSATIONS_MAX=48
AGENTD_CONVERSATION_MAX_MESSAGES=8
AGENTD_IDEMPOTENCY_MAX=128
AGENTD_SHUTDOWN_DELAY_MS=500
AGENTD_SHUTDOWN_GRACE_MS=5000
EOF
    env | grep '^AGENTD_' || true
}

start_agentd() {
    mkdir -p "$WORK/notes"
    local vars=()
    mapfile -t vars < <(agentd_env)
    printf '%s\n' "${vars[@]}" >"$WORK/agentd.env"
    env -i PATH="$PATH" "${vars[@]}" "${BENCH_AGENTD_BIN:-$BUILD/agentd}" >"$WORK/agentd.log" 2>&1 &
    AGENTD_PID=$!
    wait_until "$STARTUP_TIMEOUT_S" find_agentd_port ||
        { tail -5 "$WORK/agentd.log" >&2; die "agentd did not start listening"; }
    find_agentd_port
    wait_until "$STARTUP_TIMEOUT_S" http_ok "http://127.0.0.1:$AGENTD_PORT/health/live" ||
        die "agentd is not answering"
}

# The soak must exercise what it claims: one run with two tools, checked by hand.
sanity() {
    local body
    body=$(curl -sS --max-time 10 -H 'Content-Type: application/json' \
        -d '{"input":"What is the weather in Paris and what is 15 * 23?"}' \
        "http://127.0.0.1:$AGENTD_PORT/v1/agent") || die "sanity request to agentd failed"
    [[ $body == *'"stop_reason":"end_turn"'* && $body == *'345'* && $body == *'Paris'* ]] ||
        die "agentd did not answer the two-tool sanity run: $body"
}

# get KEY FILE: value of KEY=... in a results file.

# ---- the summary ---------------------------------------------------------------------

log_summary() { # AGENTD_LOG
    local f=$1
    echo "agentd log: $(wc -l <"$f") lines; by level:" \
        "$(grep -o '"level":"[a-z]*"' "$f" | sed 's/.*:"\(.*\)"/\1/' | sort | uniq -c |
            awk '{ printf "%s%s %s", sep, $2, $1; sep = ", " }')"
    echo "warn/error lines by message (first 12):"
    grep '"level":"\(warn\|error\)"' "$f" | sed -n 's/.*"msg":"\([^"]*\)".*/\1/p' | sort |
        uniq -c | sort -rn | head -12 | sed 's/^/  /'
    if grep -q '"msg":"http request"' "$f"; then
        echo "POST /v1/agent answers as agentd logged them (0 = none: the client had gone):"
        grep '"msg":"http request"' "$f" | grep '"path":"/v1/agent"' |
            sed -n 's/.*"status":\([0-9]*\).*/\1/p' | sort | uniq -c |
            awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " } END { print "" }' | sed 's/^/  /'
    fi
}

summary() { # KV CRASH_NOTE STOP_RC
    local kv=$1 crash=$2 stop_rc=$3
    local growth fd_min fd_max fd_span rss_ok fd_ok crash_ok verdict=met
    growth=$(get agentd_rss_growth_pct "$kv")
    fd_min=$(get agentd_fds_other_min_after_warmup "$kv")
    fd_max=$(get agentd_fds_other_max_after_warmup "$kv")
    rss_ok=missed fd_ok=missed crash_ok=missed
    if [ -n "$growth" ] && awk -v g="$growth" -v t="$RSS_TARGET_PCT" 'BEGIN { exit !(g < t) }'; then
        rss_ok=met
    fi
    fd_span=
    if [ -n "$fd_min" ] && [ -n "$fd_max" ]; then
        fd_span=$((fd_max - fd_min))
        [ "$fd_span" -le "$FD_SLACK" ] && fd_ok=met
    fi
    [ -z "$crash" ] && crash_ok=met
    [ "$rss_ok" = met ] && [ "$fd_ok" = met ] && [ "$crash_ok" = met ] || verdict=MISSED
    # shellcheck disable=SC2016 # an awk program
    local mb='{ printf "%.1f MB", $1 / 1024 }'
    echo "agentd soak — $(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git -C "$ROOT" rev-parse --short HEAD \
        2>/dev/null || echo unknown)$([ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] &&
        echo ' (dirty)'), $(nproc) CPUs"
    echo "duration:      $(get duration_s "$kv") s of load (warm-up $(get warmup_s "$kv") s)," \
        "$(get concurrency "$kv") clients, $(get rate_per_s "$kv") scenarios/s," \
        "a fault every $(get fault_every_s "$kv") s for $(get fault_ms "$kv") ms" \
        "($(get faults_injected "$kv") injected)"
    if [ "${DURATION_S}" -lt 600 ]; then
        echo "SHORT RUN:     SOAK_DURATION_S=$DURATION_S (the soak proper is 600 s or more)"
    fi
    echo "cpu:           agentd $(get agentd_cpu_s "$kv") s, fake $(get fake_cpu_s "$kv") s," \
        "load generator $(get driver_cpu_s "$kv") s (of $(($(nproc) * DURATION_S)) s on $(nproc) CPUs)"
    echo "requests:      $(get exchanges "$kv") exchanges in $(get scenarios "$kv") scenarios," \
        "max $(get max_in_flight "$kv") in flight; 200 latency p50 $(get ok_latency_p50_ms "$kv") ms," \
        "p99 $(get ok_latency_p99_ms "$kv") ms"
    echo "by status (as the clients saw them):"
    grep '^status\[' "$kv" | sed 's/^status\[\(.*\)\]=\(.*\)$/\2 \1/' |
        awk '{ n = $1; $1 = ""; printf "  %7d %s\n", n, substr($0, 2) }'
    echo "anomalies:     $(get anomalies "$kv") (answers no injected fault explains or that break" \
        "a documented rule; fault-type 5xx with no fault active nearby:" \
        "$(get fault_explained_outside_faults "$kv"))"
    grep '^anomaly\[' "$kv" | sed 's/^anomaly\[\(.*\)\]=\(.*\)$/  \2 x \1/' || true
    grep '^anomaly_example_' "$kv" | head -8 | sed 's/^[^=]*=/    e.g. /' || true
    echo "agentd RSS:    $(get agentd_rss_first_kb "$kv" | awk "$mb") at start," \
        "$(get agentd_rss_warmup_kb "$kv" | awk "$mb") at warm-up end," \
        "$(get agentd_rss_end_kb "$kv" | awk "$mb") at the end: growth ${growth:-?} %" \
        "(target < $RSS_TARGET_PCT %: $rss_ok); after warm-up" \
        "$(get agentd_rss_kb_min_after_warmup "$kv" | awk "$mb")..$(get \
            agentd_rss_kb_max_after_warmup "$kv" | awk "$mb")," \
        "trend $(get agentd_rss_slope_kb_per_min_after_warmup "$kv") kB/min"
    echo "agentd fds:    after warm-up all $(get agentd_fds_min_after_warmup \
        "$kv")..$(get agentd_fds_max_after_warmup "$kv"); without established client/upstream" \
        "connections $fd_min..$fd_max: span ${fd_span:-?} (target <= $FD_SLACK: $fd_ok);" \
        "drained $(get agentd_fds_drained "$kv") (client $(get agentd_sock_client_drained "$kv")," \
        "upstream idle $(get agentd_sock_upstream_drained "$kv")," \
        "CLOSE_WAIT $(get agentd_close_wait_drained "$kv"))"
    echo "fake:          RSS $(get fake_rss_first_kb "$kv" | awk "$mb") at start," \
        "$(get fake_rss_kb_min_after_warmup "$kv" | awk "$mb")..$(get fake_rss_kb_max_after_warmup \
            "$kv" | awk "$mb") after warm-up; fds $(get fake_fds_min_after_warmup \
        "$kv")..$(get fake_fds_max_after_warmup "$kv")"
    echo "crashes:       ${crash:-none: agentd alive until stopped, exit status $stop_rc on SIGTERM}" \
        "($crash_ok)"
    log_summary "$WORK/agentd.log"
    echo "targets (RSS growth < $RSS_TARGET_PCT %, fds flat within $FD_SLACK, no crash): $verdict"
    [ "$verdict" = met ]
}

main() {
    local tool
    case ${1:-} in
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    "") ;;
    *) die "no arguments expected (settings are SOAK_* environment variables; see --help)" ;;
    esac
    for tool in python3 curl ss meson ninja awk timeout; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done
    check_int SOAK_DURATION_S "$DURATION_S" 30 86400
    check_int SOAK_FAULT_EVERY_S "$FAULT_EVERY_S" 1 600
    if [ -z "$WARMUP_S" ]; then
        # The baseline must have seen every fault once: each leaves the heap at
        # its own high-water mark (e.g. the most runs in flight at once).
        local rotation
        rotation=$(($(python3 "$DRIVER" --rotation-length) * FAULT_EVERY_S))
        WARMUP_S=$((DURATION_S / 10 > rotation ? DURATION_S / 10 : rotation))
        if [ "$WARMUP_S" -gt $((DURATION_S / 3)) ]; then WARMUP_S=$((DURATION_S / 3)); fi
    fi
    check_int SOAK_WARMUP_S "$WARMUP_S" 1 $((DURATION_S - 10))
    check_int SOAK_RSS_WINDOW_S "$RSS_WINDOW_S" 1 3600
    check_int SOAK_CONCURRENCY "$CONCURRENCY" 1 256
    check_int SOAK_RATE "$RATE" 1 1000
    check_int SOAK_SAMPLE_S "$SAMPLE_S" 1 60
    check_int SOAK_FAULT_MS "$FAULT_MS" 100 $((FAULT_EVERY_S * 1000))
    check_int SOAK_FD_SLACK "$FD_SLACK" 0 100000
    check_int SOAK_SEED "$SEED" 0 1000000
    WORK=$(mktemp -d /tmp/agentd-soak.XXXXXX)
    mkdir -p "$RESULTS"
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    build
    start_fake
    start_agentd
    sanity
    log "soak: ${DURATION_S} s (warm-up ${WARMUP_S} s), agentd pid $AGENTD_PID port $AGENTD_PORT," \
        "fake pid $FAKE_PID port $FAKE_PORT; work dir $WORK"

    # The driver is bounded by its own clock; timeout(1) bounds it again.
    local drc=0
    timeout --kill-after=10 $((DURATION_S + 90)) python3 "$DRIVER" \
        --agentd-port "$AGENTD_PORT" --agentd-pid "$AGENTD_PID" \
        --fake-port "$FAKE_PORT" --fake-pid "$FAKE_PID" \
        --duration-s "$DURATION_S" --warmup-s "$WARMUP_S" --rss-window-s "$RSS_WINDOW_S" \
        --concurrency "$CONCURRENCY" --rate "$RATE" --sample-s "$SAMPLE_S" \
        --fault-every-s "$FAULT_EVERY_S" --fault-ms "$FAULT_MS" --seed "$SEED" \
        --max-body-bytes "${AGENTD_MAX_BODY_BYTES:-1048576}" --out "$WORK" || drc=$?
    [ -s "$WORK/results.kv" ] || die "the driver failed (status $drc) without results"

    # Crash check: agentd must still be running, then stop on SIGTERM with status 0.
    local crash='' stop_rc=''
    if ! alive "$AGENTD_PID"; then
        wait "$AGENTD_PID" && stop_rc=0 || stop_rc=$?
        crash="agentd died during the soak (wait status $stop_rc)"
    else
        kill -TERM "$AGENTD_PID"
        local tries=$((STOP_TIMEOUT_S * 20))
        while alive "$AGENTD_PID" && [ "$tries" -gt 0 ]; do
            sleep 0.05
            tries=$((tries - 1))
        done
        if alive "$AGENTD_PID"; then
            kill -KILL "$AGENTD_PID" 2>/dev/null || true
            crash="agentd ignored SIGTERM for ${STOP_TIMEOUT_S} s (killed)"
        fi
        wait "$AGENTD_PID" && stop_rc=0 || stop_rc=$?
        [ -z "$crash" ] && [ "$stop_rc" -ne 0 ] && crash="agentd exited $stop_rc on SIGTERM"
    fi
    AGENTD_PID=
    [ "$drc" -eq 3 ] && [ -z "$crash" ] && crash="$(get process_gone "$WORK/results.kv")"
    alive "$FAKE_PID" || crash="${crash:+$crash; }fake_upstream died during the soak"
    kill -TERM "$FAKE_PID" 2>/dev/null || true
    wait "$FAKE_PID" 2>/dev/null || true
    FAKE_PID=

    local rc=0
    summary "$WORK/results.kv" "$crash" "$stop_rc" >"$WORK/summary.txt" || rc=1
    {
        cat "$WORK/summary.txt"
        echo "--- machine-readable"
        echo "targets=$([ "$rc" = 0 ] && echo met || echo missed)"
        echo "crash=${crash:-none}"
        echo "sigterm_exit_status=$stop_rc"
        echo "work_dir=$WORK $([ "$rc" != 0 ] || [ "$KEEP" = 1 ] && echo kept || echo removed)"
        echo "target_rss_growth_pct_below=$RSS_TARGET_PCT"
        echo "target_fds_other_span_at_most=$FD_SLACK"
        cat "$WORK/results.kv"
    } >"$RESULTS/soak.txt"
    cp "$WORK/samples.tsv" "$RESULTS/soak.samples.tsv"
    cat "$WORK/summary.txt"
    echo "results: $RESULTS/soak.txt, samples: $RESULTS/soak.samples.tsv" >&2
    [ "$rc" = 0 ] || KEEP=1
    return "$rc"
}

main "$@"
