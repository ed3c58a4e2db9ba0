#!/usr/bin/env bash
# run.sh — agentd's throughput/latency/memory benchmarks (a benchmark, not a test).
#
# Builds agentd + fake_upstream in release mode into bench/.build, starts them
# on loopback ephemeral ports, drives them with wrk (bench/wrk/post.lua), stops
# everything and prints a results table. Machine-readable results go to
# bench/results/<benchmark>.txt, the table to bench/results/summary.txt.
# bench/README.md says what each benchmark measures and how to read it.
#
# Usage: bench/run.sh [a] [b]        (no argument = both)
#   a  one-LLM-call runs per second through agentd, next to the same load on
#      the fake's /v1/messages hit directly (plus agentd at log level info)
#   b  2000 concurrent in-flight runs against an upstream that answers after
#      1 s, with targets; before it the same load on the fake directly (the
#      floor; it also warms the fake up), after it a staggered-start run
#      (diagnostic, see README.md)
#
# Environment (all optional):
#   BENCH_A_DURATION_S=10  BENCH_A_CONNECTIONS=64
#   BENCH_B_DURATION_S=15  BENCH_B_CONNECTIONS=2000  BENCH_B_DELAY_MS=1000
#   BENCH_B_STAGGERED=1    0 = skip the staggered-start diagnostic run
#   BENCH_A_INFO=1         0 = skip the log-level-info row of (a)
#   BENCH_SKIP_BUILD=1     use the binaries already in bench/.build
#   BENCH_AGENTD_BIN=path  measure this agentd binary instead (A/B of a patch)
#   BENCH_AGENTD_ENV="NAME=VALUE ..."  more environment for every agentd started
#                          (e.g. AGENTD_REDIS_URL=redis://127.0.0.1:6380/0; no spaces in values)
#   BENCH_SAVE_METRICS=1   after each agentd row, save its /metrics to <row>.metrics
#   BENCH_IDEM_KEYS=1      every request to agentd's /v1/agent carries its own Idempotency-Key
#                          (bench/wrk/post.lua); with AGENTD_REDIS_URL in BENCH_AGENTD_ENV each
#                          run is durable (bench/durable.sh). The sanity check then also sends a
#                          keyed request twice: the second must be its replay
#   BENCH_RESULTS_DIR=dir  write results there instead of bench/results
#   BENCH_KEEP_DIR=1       keep the temp dir (daemon logs, wrk output)
#
# Exit status: 0 when every run completed and b_inflight met its targets,
# 1 when a target was missed, 2 on a setup failure.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$HERE/.build
RESULTS=${BENCH_RESULTS_DIR:-$HERE/results}
LUA=$HERE/wrk/post.lua

A_DURATION_S=${BENCH_A_DURATION_S:-10}
A_CONNECTIONS=${BENCH_A_CONNECTIONS:-64}
B_DURATION_S=${BENCH_B_DURATION_S:-15}
B_CONNECTIONS=${BENCH_B_CONNECTIONS:-2000}
B_DELAY_MS=${BENCH_B_DELAY_MS:-1000}
B_STAGGERED=${BENCH_B_STAGGERED:-1}
A_INFO=${BENCH_A_INFO:-1}
IDEM_KEYS=${BENCH_IDEM_KEYS:-0}
# Set per agentd load below (post.lua reads it); never inherited.
unset BENCH_IDEM_PREFIX
# Makes the Idempotency-Keys of this run.sh unlike those of any other.
RUN_NONCE=$(date +%s)-$$-$RANDOM
AGENTD_ENV=()
read -r -a AGENTD_ENV <<<"${BENCH_AGENTD_ENV:-}"
WRK_THREADS=2
WARMUP_S=2
# Every load is bounded: no single wrk run may exceed this.
MAX_DURATION_S=20
WRK_TIMEOUT_S=10
STARTUP_TIMEOUT_S=10
STOP_TIMEOUT_S=15
# Targets of b_inflight.
B_TARGET_P99_MS=1500
B_TARGET_HWM_KB=$((200 * 1024))

API_KEY=sk-ant-bench-0123456789
WORK=
PIDS=()
ROWS=()
MISSED=0
FAKE_PID=
AGENTD_PID=

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "${BENCH_KEEP_DIR:-0}" = 1 ]; then
            echo "logs kept in $WORK" >&2
        else
            rm -rf "$WORK"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# ---- setup ---------------------------------------------------------------------------


# 2000 client sockets + 2000 upstream sockets need far more than the usual 1024.
raise_nofile() {
    local need=$((B_CONNECTIONS * 2 + 512))
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] ||
        die "open-file limit $(ulimit -n) < $need (raise the hard limit: ulimit -Hn)"
}

# wait_until SECONDS COMMAND...: polls COMMAND every 50 ms, bounded.



# start_fake NAME [ARGS...]: sets FAKE_PID, FAKE_PORT.
start_fake() {
    local name=$1
    shift
    rm -f "$WORK/$name.port"
    "$BUILD/fake_upstream" --listen 127.0.0.1:0 --port-file "$WORK/$name.port" --api-key "$API_KEY" \
        --quiet "$@" >"$WORK/$name.log" 2>&1 &
    FAKE_PID=$!
    PIDS+=("$FAKE_PID")
    wait_until "$STARTUP_TIMEOUT_S" test -s "$WORK/$name.port" || die "fake_upstream did not start"
    FAKE_PORT=$(cat "$WORK/$name.port")
    wait_until "$STARTUP_TIMEOUT_S" http_ok "http://127.0.0.1:$FAKE_PORT/_admin/health" ||
        die "fake_upstream is not answering"
}

# The fake keeps a (bounded) log of every request; empty it between runs so
# its memory does not grow with the number of benchmarks.
clear_fake_log() {
    curl -fsS -o /dev/null --max-time 10 -X DELETE "http://127.0.0.1:$FAKE_PORT/_admin/requests" ||
        true
}

# The listening port of PID as reported by ss (agentd logs its port only at info level).


# start_agentd NAME LOG_LEVEL: sets AGENTD_PID, AGENTD_PORT. Talks to the fake at FAKE_PORT.
start_agentd() {
    local name=$1 level=$2
    mkdir -p "$WORK/notes"
    # The LLM limiter must not be what is measured; the admission limit must
    # stay above the 2000 connections of benchmark b.
    env -i PATH="$PATH" \
        AGENTD_LISTEN=127.0.0.1:0 \
        ANTHROPIC_BASE_URL="http://127.0.0.1:$FAKE_PORT" \
        ANTHROPIC_API_KEY="$API_KEY" \
        AGENTD_WEATHER_GEOCODING_URL="http://127.0.0.1:$FAKE_PORT" \
        AGENTD_WEATHER_FORECAST_URL="http://127.0.0.1:$FAKE_PORT" \
        AGENTD_NOTES_DIR="$WORK/notes" \
        AGENTD_MAX_INFLIGHT=8192 \
        AGENTD_LLM_RATE=100000 \
        AGENTD_LLM_BURST=100000 \
        AGENTD_LOG_LEVEL="$level" \
        ${AGENTD_ENV[@]+"${AGENTD_ENV[@]}"} \
        "${BENCH_AGENTD_BIN:-$BUILD/agentd}" >"$WORK/$name.log" 2>&1 &
    AGENTD_PID=$!
    PIDS+=("$AGENTD_PID")
    wait_until "$STARTUP_TIMEOUT_S" find_agentd_port ||
        { tail -5 "$WORK/$name.log" >&2; die "agentd did not start listening"; }
    find_agentd_port
    wait_until "$STARTUP_TIMEOUT_S" http_ok "http://127.0.0.1:$AGENTD_PORT/health/live" ||
        die "agentd is not answering"
}

# stop PID: SIGTERM, bounded wait, then SIGKILL.
stop() {
    local pid=$1 tries=$((STOP_TIMEOUT_S * 20))
    if kill -TERM "$pid" 2>/dev/null; then
        while alive "$pid" && [ "$tries" -gt 0 ]; do
            sleep 0.05
            tries=$((tries - 1))
        done
        if alive "$pid"; then
            echo "run.sh: pid $pid ignored SIGTERM for ${STOP_TIMEOUT_S}s, killing" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    # Forget it, so cleanup never signals a recycled pid.
    local keep=() p
    for p in "${PIDS[@]}"; do
        [ "$p" = "$pid" ] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# ---- measuring -----------------------------------------------------------------------

# CPU seconds the whole machine spent busy so far (all processes, everyone's).
host_busy_s() {
    awk -v t="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / t }' \
        /proc/stat
}

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# sample_rss PID SECONDS OUT: one line per second (elapsed_s rss_kb threads fds), bounded.
sample_rss() {
    local pid=$1 n=$2 out=$3 i
    for ((i = 0; i < n; i++)); do
        alive "$pid" || break
        printf '%d %s %s %s\n' "$i" "$(status_kb "$pid" VmRSS)" "$(status_kb "$pid" Threads)" \
            "$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)" >>"$out"
        sleep 1
    done
}

# A benchmark must measure what it claims: one request by hand first, checked.
sanity_agentd() {
    local body
    body=$(curl -sS --max-time 10 -H 'Content-Type: application/json' \
        -d @"$WORK/agent.json" "http://127.0.0.1:$AGENTD_PORT/v1/agent") ||
        die "sanity request to agentd failed"
    [[ $body == *'"stop_reason":"end_turn"'* && $body == *'"llm_calls":1'* ]] ||
        die "agentd did not answer a one-call end_turn run: $body"
    [ "$IDEM_KEYS" = 1 ] || return 0
    # With keys: a keyed run, then the same request again, which must be its replay.
    local key="bench-$RUN_NONCE-sanity-$AGENTD_PORT" i first=
    for i in 1 2; do
        body=$(curl -sS --max-time 10 -D "$WORK/sanity.headers" -H 'Content-Type: application/json' \
            -H "Idempotency-Key: $key" -d @"$WORK/agent.json" \
            "http://127.0.0.1:$AGENTD_PORT/v1/agent") || die "keyed sanity request to agentd failed"
        if [ "$i" = 1 ]; then
            if [[ $body != *'"stop_reason":"end_turn"'* ]] ||
                grep -qi '^Idempotent-Replayed:' "$WORK/sanity.headers"; then
                die "agentd did not answer a keyed one-call run: $body"
            fi
            first=$body
        elif ! grep -qi '^Idempotent-Replayed: *true' "$WORK/sanity.headers" ||
            [ "$body" != "$first" ]; then
            die "agentd did not replay the keyed run: $body"
        fi
    done
}

sanity_fake() {
    local body
    body=$(curl -sS --max-time 10 -H 'Content-Type: application/json' -H "x-api-key: $API_KEY" \
        -H 'anthropic-version: 2023-06-01' -d @"${LLM_BODY_FILE:-$WORK/messages.json}" \
        "http://127.0.0.1:$FAKE_PORT/v1/messages") || die "sanity request to the fake failed"
    [[ $body == *'"stop_reason":"end_turn"'* ]] || die "the fake did not answer end_turn: $body"
}

# The words as a command line that can be pasted back into a shell.
shell_words() {
    local w words=()
    for w in "$@"; do
        if [[ $w =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then words+=("$w"); else words+=("'$w'"); fi
    done
    echo "${words[*]}"
}

# get KEY FILE: value of KEY=... in a results file.

# per_req CPU_S REQUESTS: microseconds of CPU per request.
per_req() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.1f", (n > 0) ? c * 1e6 / n : 0 }'; }

# run_wrk NAME DESCRIPTION MEASURED CONNS DURATION_S URL BODY [HEADER...]
# Runs one measured load against URL, writes bench/results/NAME.txt and adds a
# table row. MEASURED (agentd or fake) is the process whose memory and CPU per
# request are reported; the CPU of the other one (when running) is recorded
# too. Extra wrk-script settings come from the environment (BENCH_STAGGER_*).
run_wrk() {
    local name=$1 desc=$2 what=$3 conns=$4 dur=$5 url=$6 body=$7
    shift 7
    check_int "$name duration" "$dur" 1 "$MAX_DURATION_S"
    local cmd=(wrk "-t$WRK_THREADS" "-c$conns" "-d${dur}s" --timeout "${WRK_TIMEOUT_S}s" --latency
        -s "$LUA" "$url" -- "$body" "$@")
    local envs=()
    [ "$what" = agentd ] && [ "$IDEM_KEYS" = 1 ] && envs=(BENCH_IDEM_PREFIX="bench-$RUN_NONCE-$name")
    local out=$WORK/$name.wrk res=$RESULTS/$name.txt
    local measured=$FAKE_PID
    [ "$what" = agentd ] && measured=$AGENTD_PID
    log "$name: $(shell_words "${cmd[@]}")"
    rm -f "$WORK/$name.rss"
    sample_rss "$measured" $((dur + 2)) "$WORK/$name.rss" &
    local sampler=$!
    local a0=0 f0 w0 h0 a1=0 f1 w1 h1
    [ -n "$AGENTD_PID" ] && a0=$(cpu_s "$AGENTD_PID")
    f0=$(cpu_s "$FAKE_PID")
    w0=$(cpu_s "$$" children)
    h0=$(host_busy_s)
    env ${envs[@]+"${envs[@]}"} BENCH_LATENCY_FILE="$RESULTS/$name.latency.tsv" "${cmd[@]}" >"$out" 2>&1 ||
        { cat "$out" >&2; die "wrk failed"; }
    [ -n "$AGENTD_PID" ] && a1=$(cpu_s "$AGENTD_PID")
    f1=$(cpu_s "$FAKE_PID")
    w1=$(cpu_s "$$" children)
    h1=$(host_busy_s)
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    if [ "$what" = agentd ] && [ "${BENCH_SAVE_METRICS:-0}" = 1 ]; then
        curl -fsS --max-time 10 -o "$RESULTS/$name.metrics" \
            "http://127.0.0.1:$AGENTD_PORT/metrics" || die "$name: could not read agentd's /metrics"
    fi
    if [ -n "$AGENTD_PID" ] && ! alive "$AGENTD_PID"; then
        die "$name: agentd (pid $AGENTD_PID) died during the run"
    fi
    alive "$FAKE_PID" || die "$name: fake_upstream (pid $FAKE_PID) died during the run"
    sed -n '1,/^--- machine-readable/p' "$out" | sed '$d' >&2

    local requests cpu_a cpu_f cpu_w cpu_h cpu_m cpu_other
    requests=$(get requests "$out")
    cpu_a=$(sub "$a1" "$a0")
    cpu_f=$(sub "$f1" "$f0")
    cpu_w=$(sub "$w1" "$w0")
    cpu_h=$(sub "$h1" "$h0")
    cpu_m=$cpu_f
    [ "$what" = agentd ] && cpu_m=$cpu_a
    # Everything else on the machine: other users' builds and tests show up here
    # (give or take a few hundredths of a second of accounting granularity).
    cpu_other=$(awk -v h="$cpu_h" -v a="$cpu_a" -v f="$cpu_f" -v w="$cpu_w" \
        'BEGIN { printf "%.2f", h - a - f - w }')
    {
        echo "benchmark=$name"
        echo "description=$desc"
        echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "host_cpus=$(nproc)"
        echo "kernel=$(uname -r)"
        echo "git_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
        echo "agentd_bin=${BENCH_AGENTD_BIN:-$BUILD/agentd}"
        [ -n "${BENCH_AGENTD_ENV:-}" ] && echo "agentd_env=${BENCH_AGENTD_ENV}"
        [ ${#envs[@]} -gt 0 ] && echo "idempotency_keys=one per request, ${envs[0]#*=}-<thread>-<n>"
        echo "git_dirty=$([ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] && echo yes || echo no)"
        echo "command=$(shell_words "${cmd[@]}")"
        [ -n "${BENCH_STAGGER_MS:-}" ] &&
            echo "stagger=first ${BENCH_STAGGER_REQUESTS} requests per wrk thread wait random 0..${BENCH_STAGGER_MS} ms"
        sed -n '/^--- machine-readable/,$p' "$out" | sed 1d
        echo "measured_process=$what"
        echo "measured_cpu_s=$cpu_m"
        echo "measured_cpu_us_per_req=$(per_req "$cpu_m" "$requests")"
        echo "measured_vmrss_kb=$(status_kb "$measured" VmRSS)"
        echo "measured_vmhwm_kb=$(status_kb "$measured" VmHWM)"
        echo "measured_threads=$(status_kb "$measured" Threads)"
        echo "measured_peak_fds=$(awk 'BEGIN { m = 0 } $4 > m { m = $4 } END { print m }' \
            "$WORK/$name.rss" 2>/dev/null)"
        echo "agentd_cpu_s=$cpu_a"
        echo "fake_cpu_s=$cpu_f"
        echo "wrk_cpu_s=$cpu_w"
        echo "host_busy_cpu_s=$cpu_h"
        echo "host_capacity_cpu_s=$(awk -v d="$(get duration_s "$out")" -v n="$(nproc)" \
            'BEGIN { printf "%.2f", d * n }')"
        echo "other_processes_cpu_s=$cpu_other"
    } >"$res"
    cp "$WORK/$name.rss" "$RESULTS/$name.rss" 2>/dev/null || true
    ROWS+=("$name")
}

# ---- benchmarks ----------------------------------------------------------------------

warmup() { # URL BODY [HEADER...]
    local url=$1 body=$2 envs=()
    shift 2
    [[ $url == */v1/agent ]] && [ "$IDEM_KEYS" = 1 ] &&
        envs=(BENCH_IDEM_PREFIX="bench-$RUN_NONCE-warmup-$RANDOM")
    env ${envs[@]+"${envs[@]}"} wrk -t"$WRK_THREADS" -c"$A_CONNECTIONS" -d"${WARMUP_S}s" \
        -s "$LUA" "$url" -- "$body" "$@" >/dev/null
}

# Reads agentd's last request to the LLM API (system prompt, tool schemas,
# messages) back from the fake's request log, so that the direct run sends
# exactly the body agentd sends and the difference between the runs is agentd.
capture_llm_body() {
    local out=$WORK/llm_body.json
    if command -v jq >/dev/null &&
        curl -fsS --max-time 10 "http://127.0.0.1:$FAKE_PORT/_admin/requests?route=messages" |
        jq -ce '.[-1].body' >"$out" 2>/dev/null; then
        LLM_BODY=$out
    else
        echo "run.sh: jq missing or no logged request: the direct run sends a minimal body" >&2
        LLM_BODY=$WORK/messages.json
    fi
}

bench_a() {
    local hdrs=("x-api-key: $API_KEY" "anthropic-version: 2023-06-01")
    local fake_url agent_url level
    start_fake fake_a
    fake_url="http://127.0.0.1:$FAKE_PORT/v1/messages"
    sanity_fake
    local levels=(warn info)
    [ "$A_INFO" = 1 ] || levels=(warn)
    for level in "${levels[@]}"; do
        clear_fake_log
        start_agentd "agentd_a_$level" "$level"
        agent_url="http://127.0.0.1:$AGENTD_PORT/v1/agent"
        sanity_agentd
        if [ "$level" = warn ]; then
            # agentd idles meanwhile; its (tiny) CPU is recorded, not charged to the fake.
            capture_llm_body
            LLM_BODY_FILE=$LLM_BODY sanity_fake
            # Warm-ups are short and not recorded: they open the keep-alive connections.
            warmup "$fake_url" "$LLM_BODY" "${hdrs[@]}"
            clear_fake_log
            run_wrk a_fake_direct "fake /v1/messages hit directly with agentd's request body, no delay" \
                fake "$A_CONNECTIONS" "$A_DURATION_S" "$fake_url" "$LLM_BODY" "${hdrs[@]}"
            clear_fake_log
        fi
        warmup "$agent_url" "$WORK/agent.json"
        run_wrk "a_agentd_log_$level" "POST /v1/agent, one LLM call (end_turn), log level $level" \
            agentd "$A_CONNECTIONS" "$A_DURATION_S" "$agent_url" "$WORK/agent.json"
        stop "$AGENTD_PID"
        AGENTD_PID=
    done
    stop "$FAKE_PID"
}

check_targets() { # RESULTS_FILE
    local res=$1 errs p99 hwm verdict=ok
    errs=$(($(get non_2xx "$res") + $(get socket_errors "$res")))
    p99=$(get lat_p99_ms "$res")
    hwm=$(get measured_vmhwm_kb "$res")
    if [ "$errs" -ne 0 ]; then
        verdict=missed
        echo "TARGET MISSED: $errs non-2xx answers / socket errors (target 0)" >&2
    fi
    if ! awk -v p="$p99" -v t="$B_TARGET_P99_MS" 'BEGIN { exit !(p < t) }'; then
        verdict=missed
        echo "TARGET MISSED: p99 ${p99} ms (target < ${B_TARGET_P99_MS} ms)" >&2
    fi
    if [ "$hwm" -ge "$B_TARGET_HWM_KB" ]; then
        verdict=missed
        echo "TARGET MISSED: agentd VmHWM ${hwm} kB (target < ${B_TARGET_HWM_KB} kB)" >&2
    fi
    {
        echo "target_errors=0"
        echo "target_p99_ms_below=$B_TARGET_P99_MS"
        echo "target_vmhwm_kb_below=$B_TARGET_HWM_KB"
        echo "targets=$verdict"
    } >>"$res"
    [ "$verdict" = ok ] || MISSED=1
}

bench_b() {
    local hdrs=("x-api-key: $API_KEY" "anthropic-version: 2023-06-01")
    local per_thread=$(((B_CONNECTIONS + WRK_THREADS - 1) / WRK_THREADS))
    local agent_url
    start_fake fake_b --delay-ms "$B_DELAY_MS"
    # A fresh agentd, so its VmHWM is this benchmark's peak and nothing earlier.
    start_agentd agentd_b warn
    agent_url="http://127.0.0.1:$AGENTD_PORT/v1/agent"
    sanity_agentd
    # The floor: the same load on the fake alone (agentd idles meanwhile). It
    # always runs first, so that b_inflight meets a fake that has already
    # served 2000 connections (like a real, warm API) rather than paying the
    # fake's own cold start on the same 2 CPUs.
    capture_llm_body
    run_wrk b_fake_direct "fake /v1/messages hit directly with agentd's request body, $B_CONNECTIONS connections, answers after ${B_DELAY_MS} ms" \
        fake "$B_CONNECTIONS" "$B_DURATION_S" "http://127.0.0.1:$FAKE_PORT/v1/messages" \
        "$LLM_BODY" "${hdrs[@]}"
    clear_fake_log
    run_wrk b_inflight "POST /v1/agent, $B_CONNECTIONS connections, upstream answers after ${B_DELAY_MS} ms" \
        agentd "$B_CONNECTIONS" "$B_DURATION_S" "$agent_url" "$WORK/agent.json"
    check_targets "$RESULTS/b_inflight.txt"
    # warn/error lines explain non-2xx answers, if any (one warn at start-up is usual).
    echo "agentd warn/error lines during b_inflight: $(grep -c '"level":"\(warn\|error\)"' \
        "$WORK/agentd_b.log" || true)" >&2
    stop "$AGENTD_PID"
    AGENTD_PID=
    if [ "$B_STAGGERED" = 1 ]; then
        # Diagnostic: the same load, but each connection's first request starts
        # at a random point of the first second instead of all at t=0.
        clear_fake_log
        start_agentd agentd_b_staggered warn
        sanity_agentd
        BENCH_STAGGER_MS=$B_DELAY_MS BENCH_STAGGER_REQUESTS=$per_thread \
            run_wrk b_inflight_staggered "as b_inflight, first requests spread over ${B_DELAY_MS} ms" \
            agentd "$B_CONNECTIONS" "$B_DURATION_S" "http://127.0.0.1:$AGENTD_PORT/v1/agent" \
            "$WORK/agent.json"
        stop "$AGENTD_PID"
        AGENTD_PID=
    fi
    stop "$FAKE_PID"
}

print_table() {
    local name f
    printf '%-21s %8s %8s %9s %9s %9s %7s %7s %8s %7s %7s\n' benchmark requests req/s \
        p50_ms p99_ms max_ms non2xx sockerr cpu_us/rq hwm_MB other_s
    for name in "${ROWS[@]}"; do
        f=$RESULTS/$name.txt
        printf '%-21s %8s %8s %9s %9s %9s %7s %7s %8s %7s %7s\n' "$name" "$(get requests "$f")" \
            "$(get rps "$f")" "$(get lat_p50_ms "$f")" "$(get lat_p99_ms "$f")" \
            "$(get lat_max_ms "$f")" "$(get non_2xx "$f")" "$(get socket_errors "$f")" \
            "$(get measured_cpu_us_per_req "$f")" \
            "$(awk -v k="$(get measured_vmhwm_kb "$f")" 'BEGIN { printf "%.1f", k / 1024 }')" \
            "$(get other_processes_cpu_s "$f")"
    done
    echo
    echo "cpu_us/rq and hwm_MB: the fake's for *_fake_direct, agentd's otherwise (VmHWM = peak RSS)."
    echo "other_s: CPU seconds used meanwhile by processes outside the benchmark (noise)."
    echo "$(nproc) CPUs, shared by wrk, agentd and the fake."
    if [[ " ${ROWS[*]} " == *" b_inflight "* ]]; then
        echo "b_inflight targets (0 errors, p99 < ${B_TARGET_P99_MS} ms, VmHWM < $((B_TARGET_HWM_KB / 1024)) MB): $(get targets "$RESULTS/b_inflight.txt")"
    fi
    return 0
}

main() {
    local want_a=0 want_b=0 arg tool
    [ $# -eq 0 ] && want_a=1 && want_b=1
    for arg in "$@"; do
        case $arg in
        a) want_a=1 ;;
        b) want_b=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown benchmark '$arg' (expected a and/or b)" ;;
        esac
    done
    # jq is optional (see capture_llm_body).
    for tool in wrk curl ss meson ninja awk getconf; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done
    # Settings are checked before anything is built or started.
    check_int BENCH_A_DURATION_S "$A_DURATION_S" 1 "$MAX_DURATION_S"
    check_int BENCH_B_DURATION_S "$B_DURATION_S" 1 "$MAX_DURATION_S"
    check_int BENCH_A_CONNECTIONS "$A_CONNECTIONS" 1 10000
    check_int BENCH_B_CONNECTIONS "$B_CONNECTIONS" 1 8000
    check_int BENCH_B_DELAY_MS "$B_DELAY_MS" 0 5000
    check_int BENCH_A_INFO "$A_INFO" 0 1
    check_int BENCH_IDEM_KEYS "$IDEM_KEYS" 0 1
    local word
    for word in ${AGENTD_ENV[@]+"${AGENTD_ENV[@]}"}; do
        [[ $word =~ ^[A-Z_][A-Z0-9_]*= ]] || die "BENCH_AGENTD_ENV: expected NAME=VALUE words, got '$word'"
    done
    WORK=$(mktemp -d /tmp/agentd-bench.XXXXXX)
    mkdir -p "$RESULTS"
    printf '{"input":"hello"}' >"$WORK/agent.json"
    printf '{"model":"claude-sonnet-4-20250514","max_tokens":64,"messages":[{"role":"user","content":"hello"}]}' \
        >"$WORK/messages.json"
    raise_nofile
    build
    if [ "$want_a" = 1 ]; then bench_a; fi
    if [ "$want_b" = 1 ]; then bench_b; fi
    print_table | tee "$RESULTS/summary.txt"
    return "$MISSED"
}

main "$@"
