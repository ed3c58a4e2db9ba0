#!/usr/bin/env bash
# run.sh — agentd's throughput/latency/memory benchmarks (a benchmark, not a test).
#
# Builds agentd + fake_upstream in release mode into bench/.build, starts them
# on loopback ephemeral ports, drives them with wrk (bench/wrk/post.lua), stops
# everything and prints a results table. Machine-readable results go to
# bench/results/<benchmark>.txt, the table to bench/results/summary.txt.
# bench/README.md says what each benchmark measures and how to read it.
#
# Usage: bench/run.sh [a] [b] [d] [e]    (no argument = a, b and d)
#   a  one-LLM-call runs per second through agentd, next to the same load on
#      the fake's /v1/messages hit directly (plus agentd at log level info)
#   b  2000 concurrent in-flight runs against an upstream that answers after
#      1 s, with targets; before it the same load on the fake directly (the
#      floor; it also warms the fake up), after it a staggered-start run
#      (diagnostic, see README.md)
#   d  the blip: wrk keeps 250 runs in flight (default settings, upstream answers
#      after 100 ms); at 5 s every LLM request reaching the fake for 0.25 s is reset
#      (bench/blip/driver.py). Targets: >= 99.5 % of runs succeed, none failed
#      fast by the breaker, the upstream rate 1 s after the blip >= 95 % of before
#   e  the front next to nginx (Debian's nginx-light, installed by this script
#      with apt-get when missing) on a free loopback port, same wrk settings, in
#      one run: GET /health/live keep-alive rate (nginx returns the same body;
#      target >= 0.5 x nginx), and one-LLM-call runs/s against nginx serving
#      the fixed Messages reply of the fake, as agentd's upstream too (target
#      >= 0.4 x nginx POST /v1/messages); rounds alternate, medians compared
#
# Environment (all optional):
#   BENCH_A_DURATION_S=10  BENCH_A_CONNECTIONS=64
#   BENCH_B_DURATION_S=15  BENCH_B_CONNECTIONS=2000  BENCH_B_DELAY_MS=1000
#   BENCH_B_STAGGERED=1    0 = skip the staggered-start diagnostic run
#   BENCH_D_CONNECTIONS=250  BENCH_D_DURATION_S=12  BENCH_D_AT_S=5  BENCH_D_BLIP_MS=250
#   BENCH_D_DELAY_MS=100   the fake's answer delay in (d): calls really in flight, and the
#                          upstream rate set by the loop, not by the CPU left on the machine
#   BENCH_A_INFO=1         0 = skip the log-level-info row of (a)
#   BENCH_E_DURATION_S=10  BENCH_E_CONNECTIONS=64  BENCH_E_ROUNDS=3
#   BENCH_NGINX_BIN=path   the nginx binary for (e) (default: nginx on PATH, else /usr/sbin/nginx)
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
# Exit status: 0 when every run completed and b_inflight and d_blip (and (e), when run)
# met their targets, 1 when a target was missed, 2 on a setup failure.
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
D_CONNECTIONS=${BENCH_D_CONNECTIONS:-250}
D_DURATION_S=${BENCH_D_DURATION_S:-12}
D_AT_S=${BENCH_D_AT_S:-5}
D_BLIP_MS=${BENCH_D_BLIP_MS:-250}
D_DELAY_MS=${BENCH_D_DELAY_MS:-100}
D_SUMMARY=
A_INFO=${BENCH_A_INFO:-1}
E_DURATION_S=${BENCH_E_DURATION_S:-10}
E_CONNECTIONS=${BENCH_E_CONNECTIONS:-64}
E_ROUNDS=${BENCH_E_ROUNDS:-3}
# Targets of (e): agentd's rate as a share of nginx's.
E_TARGET_LIVE=0.5
E_TARGET_RUNS=0.4
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
NGINX_PID=

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


# start_agentd NAME LOG_LEVEL [LLM_BASE_URL]: sets AGENTD_PID, AGENTD_PORT. Talks to the fake
# at FAKE_PORT (the LLM API at LLM_BASE_URL when given).
start_agentd() {
    local name=$1 level=$2 llm=${3:-http://127.0.0.1:$FAKE_PORT}
    mkdir -p "$WORK/notes"
    # The LLM limiter must not be what is measured; the admission limit must
    # stay above the 2000 connections of benchmark b.
    env -i PATH="$PATH" \
        AGENTD_LISTEN=127.0.0.1:0 \
        ANTHROPIC_BASE_URL="$llm" \
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
# table row. MEASURED (agentd, fake or nginx) is the process whose memory and
# CPU per request are reported (for nginx: its master and workers; memory: the
# master's); the CPU of the others (when running) is recorded too. Extra wrk-script settings come from the environment (BENCH_STAGGER_*).
run_wrk() {
    local name=$1 desc=$2 what=$3 conns=$4 dur=$5 url=$6 body=$7
    shift 7
    check_int "$name duration" "$dur" 1 "$MAX_DURATION_S"
    local cmd=(wrk "-t$WRK_THREADS" "-c$conns" "-d${dur}s" --timeout "${WRK_TIMEOUT_S}s" --latency
        -s "$LUA" "$url" -- "$body" "$@")
    local envs=()
    [ "$what" = agentd ] && [ "$IDEM_KEYS" = 1 ] && envs=(BENCH_IDEM_PREFIX="bench-$RUN_NONCE-$name")
    [ "$body" = - ] && envs=(BENCH_WRK_LIGHT=1) # a GET: status from wrk's own count (post.lua)
    local out=$WORK/$name.wrk res=$RESULTS/$name.txt
    local measured=$FAKE_PID
    [ "$what" = agentd ] && measured=$AGENTD_PID
    [ "$what" = nginx ] && measured=$NGINX_PID
    log "$name: $(shell_words "${cmd[@]}")"
    rm -f "$WORK/$name.rss"
    sample_rss "$measured" $((dur + 2)) "$WORK/$name.rss" &
    local sampler=$!
    local a0=0 f0 w0 h0 a1=0 f1 w1 h1 n0=0 n1=0
    [ -n "$AGENTD_PID" ] && a0=$(cpu_s "$AGENTD_PID")
    [ -n "$NGINX_PID" ] && n0=$(cpu_tree_s "$NGINX_PID")
    f0=$(cpu_s "$FAKE_PID")
    w0=$(cpu_s "$$" children)
    h0=$(host_busy_s)
    env ${envs[@]+"${envs[@]}"} BENCH_LATENCY_FILE="$RESULTS/$name.latency.tsv" "${cmd[@]}" >"$out" 2>&1 ||
        { cat "$out" >&2; die "wrk failed"; }
    [ -n "$AGENTD_PID" ] && a1=$(cpu_s "$AGENTD_PID")
    [ -n "$NGINX_PID" ] && n1=$(cpu_tree_s "$NGINX_PID")
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
    if [ -n "$NGINX_PID" ] && ! alive "$NGINX_PID"; then
        die "$name: nginx (pid $NGINX_PID) died during the run"
    fi
    sed -n '1,/^--- machine-readable/p' "$out" | sed '$d' >&2

    local requests cpu_a cpu_f cpu_w cpu_h cpu_m cpu_n cpu_other
    requests=$(get requests "$out")
    cpu_a=$(sub "$a1" "$a0")
    cpu_n=$(sub "$n1" "$n0")
    cpu_f=$(sub "$f1" "$f0")
    cpu_w=$(sub "$w1" "$w0")
    cpu_h=$(sub "$h1" "$h0")
    cpu_m=$cpu_f
    [ "$what" = agentd ] && cpu_m=$cpu_a
    [ "$what" = nginx ] && cpu_m=$cpu_n
    # Everything else on the machine: other users' builds and tests show up here
    # (give or take a few hundredths of a second of accounting granularity).
    cpu_other=$(awk -v h="$cpu_h" -v a="$cpu_a" -v f="$cpu_f" -v w="$cpu_w" -v n="$cpu_n" \
        'BEGIN { printf "%.2f", h - a - f - w - n }')
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
        [ -n "$NGINX_PID" ] && echo "nginx_cpu_s=$cpu_n"
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
    [ "$body" = - ] && envs=(BENCH_WRK_LIGHT=1)
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

# (d): agentd with its default breaker and retry settings (the LLM limiter raised as for every
# row) under wrk, while bench/blip/driver.py resets every LLM request for D_BLIP_MS at D_AT_S and
# samples the upstream's request rate; figures and targets in bench/results/d_blip.txt.
bench_d() {
    local kv=$WORK/d_blip.kv res=$RESULTS/d_blip.txt ctl opens verdict=ok agent_url
    local ctl_cmd=(python3 "$HERE/blip/driver.py" --at-s "$D_AT_S" --blip-ms "$D_BLIP_MS"
        --duration-s "$D_DURATION_S")
    start_fake fake_d --delay-ms "$D_DELAY_MS"
    start_agentd agentd_d warn
    agent_url="http://127.0.0.1:$AGENTD_PORT/v1/agent"
    sanity_agentd
    warmup "$agent_url" "$WORK/agent.json"
    log "d_blip: $(shell_words "${ctl_cmd[@]}") beside wrk (fake --delay-ms $D_DELAY_MS)"
    "${ctl_cmd[@]}" --fake-port "$FAKE_PORT" --kv-out "$kv" >"$WORK/d_blip.ctl" 2>&1 &
    ctl=$! # not in PIDS: it ends by itself within D_DURATION_S (or when the fake is gone)
    run_wrk d_blip "POST /v1/agent, $D_CONNECTIONS connections, upstream answers after ${D_DELAY_MS} ms, every LLM request reset for ${D_BLIP_MS} ms at ${D_AT_S} s" \
        agentd "$D_CONNECTIONS" "$D_DURATION_S" "$agent_url" "$WORK/agent.json"
    wait "$ctl" || { cat "$WORK/d_blip.ctl" >&2; die "d_blip: the blip driver failed"; }
    curl -fsS --max-time 10 -o "$WORK/d_blip.metrics" "http://127.0.0.1:$AGENTD_PORT/metrics" ||
        die "d_blip: could not read agentd's /metrics"
    opens=$(metric "$WORK/d_blip.metrics" \
        'agentd_breaker_transitions_total{dependency="anthropic",to="open"}')
    local requests ok circuit pct after
    requests=$(get requests "$res")
    ok=$(get status_2xx "$res")
    circuit=$(get status_503_circuit "$res")
    pct=$(ratio "$((ok * 100))" "$requests" %.2f)
    after=$(get upstream_rate_after_pct_of_before "$kv")
    if ! awk -v p="$pct" 'BEGIN { exit !(p >= 99.5) }'; then
        verdict=missed
        echo "TARGET MISSED: $pct % of runs succeeded (target >= 99.5 %)" >&2
    fi
    if [ "$circuit" -ne 0 ]; then
        verdict=missed
        echo "TARGET MISSED: $circuit runs failed fast by the breaker (target 0)" >&2
    fi
    if ! awk -v p="$after" 'BEGIN { exit !(p >= 95) }'; then
        verdict=missed
        echo "TARGET MISSED: upstream rate 1 s after the blip $after % of before (target >= 95 %)" >&2
    fi
    {
        echo "blip_command=$(shell_words "${ctl_cmd[@]}")"
        cat "$kv"
        echo "success_pct=$pct"
        echo "breaker_opens=$opens"
        echo "target_success_pct_min=99.5"
        echo "target_fast_failures=0"
        echo "target_upstream_rate_after_pct_min=95"
        echo "targets=$verdict"
    } >>"$res"
    D_SUMMARY="d_blip targets (>= 99.5 % ok, 0 failed fast, upstream 1 s after >= 95 % of before): $pct % ok, $circuit failed fast, upstream $(
        get upstream_per_s_1s_after_blip "$kv")/s 1 s after vs $(
        get upstream_per_s_3s_before_blip "$kv")/s before ($after %), breaker opened $opens times: $verdict"
    [ "$verdict" = ok ] || MISSED=1
    stop "$AGENTD_PID"
    AGENTD_PID=
    stop "$FAKE_PID"
}

# ---- (e): the front next to nginx ------------------------------------------------------

# cpu_tree_s PID: CPU seconds of PID and its children still running (nginx's master and workers).
cpu_tree_s() {
    local total p
    total=$(cpu_s "$1")
    for p in $(pgrep -P "$1" || true); do
        total=$(awk -v a="$total" -v b="$(cpu_s "$p" 2>/dev/null || echo 0)" 'BEGIN { printf "%.2f", a + b }')
    done
    echo "$total"
}

# Debian's nginx-light, installed when missing (run.sh e is its only user).
nginx_bin() {
    local bin=${BENCH_NGINX_BIN:-}
    [ -n "$bin" ] || bin=$(command -v nginx || echo /usr/sbin/nginx)
    if [ ! -x "$bin" ] && [ -z "${BENCH_NGINX_BIN:-}" ]; then
        local sudo=
        [ "$(id -u)" -ne 0 ] && sudo=sudo
        log "installing nginx-light (Debian) for benchmark e"
        $sudo apt-get update -qq >&2 || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light >&2 ||
            die "cannot install nginx-light"
    fi
    [ -x "$bin" ] || die "nginx not found ($bin)"
    echo "$bin"
}

# start_nginx REPLY_FILE: sets NGINX_PID, NGINX_PORT. A master and one worker per CPU, no access
# log, keep-alive without a request limit; GET /health/live answers agentd's body, POST
# /v1/messages the fixed Messages reply in REPLY_FILE. A random free port, a few attempts in case
# another process takes it first.
start_nginx() {
    local reply=$1 dir=$WORK/nginx attempt bin
    bin=$(nginx_bin)
    # nginx reads \ and $ in a quoted string as escapes and variables: the reply must have none.
    grep -q "[\\\\\$']" "$reply" && die "the fixed reply has characters nginx would expand: $reply"
    mkdir -p "$dir"
    for attempt in 1 2 3 4 5; do
        NGINX_PORT=$((20000 + RANDOM % 30000))
        port_in_use "$NGINX_PORT" && continue
        cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $(nproc);
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location = /health/live {
            default_type "application/json; charset=utf-8";
            return 200 '{"status":"ok"}';
        }
        location = /v1/messages {
            default_type application/json;
            return 200 '$(cat "$reply")';
        }
    }
}
EOF
        "$bin" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" >>"$dir/stdout.log" 2>&1 &
        NGINX_PID=$!
        PIDS+=("$NGINX_PID")
        if wait_until "$STARTUP_TIMEOUT_S" http_ok "http://127.0.0.1:$NGINX_PORT/health/live"; then
            log "nginx pid $NGINX_PID on 127.0.0.1:$NGINX_PORT (attempt $attempt)"
            return 0
        fi
        stop "$NGINX_PID"
        NGINX_PID=
    done
    tail -5 "$dir/error.log" >&2 2>/dev/null || true
    die "nginx did not start"
}

# e_ratio ROW_AGENTD ROW_NGINX: the median over the rounds of agentd's req/s over nginx's.
e_ratio() {
    local r
    for ((r = 1; r <= E_ROUNDS; r++)); do
        ratio "$(get rps "$RESULTS/${1}_r$r.txt")" "$(get rps "$RESULTS/${2}_r$r.txt")" '%.3f'
        echo
    done | median
}

e_median_rps() { # ROW
    local r
    for ((r = 1; r <= E_ROUNDS; r++)); do get rps "$RESULTS/${1}_r$r.txt"; done | median
}

# e_load ROUND PAIR WHO: one measured row of (e).
e_load() {
    local r=$1 hdrs=("x-api-key: $API_KEY" "anthropic-version: 2023-06-01")
    case $2-$3 in
    live-agentd)
        run_wrk "e_agentd_live_r$r" "GET /health/live (keep-alive), agentd" agentd \
            "$E_CONNECTIONS" "$E_DURATION_S" "http://127.0.0.1:$AGENTD_PORT/health/live" - ;;
    live-nginx)
        run_wrk "e_nginx_live_r$r" "GET /health/live (keep-alive), nginx answering agentd's body" \
            nginx "$E_CONNECTIONS" "$E_DURATION_S" "http://127.0.0.1:$NGINX_PORT/health/live" - ;;
    runs-agentd)
        run_wrk "e_agentd_runs_r$r" "POST /v1/agent, one LLM call answered by nginx's fixed reply" \
            agentd "$E_CONNECTIONS" "$E_DURATION_S" "http://127.0.0.1:$AGENTD_PORT/v1/agent" \
            "$WORK/agent.json" ;;
    runs-nginx)
        run_wrk "e_nginx_msgs_r$r" "POST /v1/messages with agentd's LLM body, nginx's fixed reply" \
            nginx "$E_CONNECTIONS" "$E_DURATION_S" "http://127.0.0.1:$NGINX_PORT/v1/messages" \
            "$LLM_BODY" "${hdrs[@]}" ;;
    esac
}

bench_e() {
    local hdrs=("x-api-key: $API_KEY" "anthropic-version: 2023-06-01")
    command -v pgrep >/dev/null || die "pgrep is not installed (procps)"
    local r pair reply=$WORK/messages_reply.json
    # The fixed Messages reply: what the fake answers to the body agentd sends.
    start_fake fake_e
    start_agentd agentd_e_capture warn
    sanity_agentd
    capture_llm_body
    stop "$AGENTD_PID"
    AGENTD_PID=
    curl -fsS --max-time 10 -H 'Content-Type: application/json' -H "x-api-key: $API_KEY" \
        -H 'anthropic-version: 2023-06-01' -d @"$LLM_BODY" -o "$reply" \
        "http://127.0.0.1:$FAKE_PORT/v1/messages" || die "cannot read the fake's Messages reply"
    clear_fake_log
    start_nginx "$reply"
    # agentd's LLM API is nginx too: both rows of the runs pair serve the same fixed reply, and
    # the fake's own cost (a_fake_direct) is no part of agentd's figure.
    start_agentd agentd_e warn "http://127.0.0.1:$NGINX_PORT"
    sanity_agentd
    [ "$(curl -fsS --max-time 5 "http://127.0.0.1:$NGINX_PORT/health/live")" = \
        "$(curl -fsS --max-time 5 "http://127.0.0.1:$AGENTD_PORT/health/live")" ] ||
        die "nginx's /health/live body differs from agentd's"
    local saved=$A_CONNECTIONS
    A_CONNECTIONS=$E_CONNECTIONS # warmup() loads with A_CONNECTIONS
    warmup "http://127.0.0.1:$NGINX_PORT/health/live" -
    warmup "http://127.0.0.1:$AGENTD_PORT/health/live" -
    warmup "http://127.0.0.1:$NGINX_PORT/v1/messages" "$LLM_BODY" "${hdrs[@]}"
    warmup "http://127.0.0.1:$AGENTD_PORT/v1/agent" "$WORK/agent.json"
    A_CONNECTIONS=$saved
    # Rounds alternate which server goes first, so a burst of other work on the shared machine
    # does not always land on the same one.
    for ((r = 1; r <= E_ROUNDS; r++)); do
        for pair in live runs; do
            if [ $((r % 2)) = 1 ]; then
                e_load "$r" "$pair" agentd
                e_load "$r" "$pair" nginx
            else
                e_load "$r" "$pair" nginx
                e_load "$r" "$pair" agentd
            fi
        done
    done
    stop "$AGENTD_PID"
    AGENTD_PID=
    stop "$NGINX_PID"
    NGINX_PID=
    stop "$FAKE_PID"
    local live runs verdict=ok res=$RESULTS/e_summary.txt
    live=$(e_ratio e_agentd_live e_nginx_live)
    runs=$(e_ratio e_agentd_runs e_nginx_msgs)
    awk -v v="$live" -v t="$E_TARGET_LIVE" 'BEGIN { exit !(v >= t) }' || verdict=missed
    awk -v v="$runs" -v t="$E_TARGET_RUNS" 'BEGIN { exit !(v >= t) }' || verdict=missed
    {
        echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "git_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
        echo "rounds=$E_ROUNDS"
        echo "wrk=wrk -t$WRK_THREADS -c$E_CONNECTIONS -d${E_DURATION_S}s --timeout ${WRK_TIMEOUT_S}s (each row's command in e_*_r<round>.txt)"
        echo "agentd_live_rps_median=$(e_median_rps e_agentd_live)"
        echo "nginx_live_rps_median=$(e_median_rps e_nginx_live)"
        echo "agentd_runs_rps_median=$(e_median_rps e_agentd_runs)"
        echo "nginx_msgs_rps_median=$(e_median_rps e_nginx_msgs)"
        echo "live_ratio_median=$live"
        echo "runs_ratio_median=$runs"
        echo "target_live_ratio=$E_TARGET_LIVE"
        echo "target_runs_ratio=$E_TARGET_RUNS"
        echo "targets=$verdict"
    } >"$res"
    [ "$verdict" = ok ] || MISSED=1
}

print_table() {
    local name f
    if [ ${#ROWS[@]} -eq 0 ]; then # only (d), which has no wrk row
        [ -z "$D_SUMMARY" ] || echo "$D_SUMMARY"
        return 0
    fi
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
    echo "cpu_us/rq and hwm_MB: the fake's for *_fake_direct, nginx's for e_nginx_* (CPU of master and"
    echo "workers, memory of the master), agentd's otherwise (VmHWM = peak RSS)."
    echo "other_s: CPU seconds used meanwhile by processes outside the benchmark (noise)."
    echo "$(nproc) CPUs, shared by wrk, agentd and the fake."
    if [[ " ${ROWS[*]} " == *" b_inflight "* ]]; then
        echo "b_inflight targets (0 errors, p99 < ${B_TARGET_P99_MS} ms, VmHWM < $((B_TARGET_HWM_KB / 1024)) MB): $(get targets "$RESULTS/b_inflight.txt")"
    fi
    if [[ " ${ROWS[*]} " == *" e_agentd_live_r1 "* ]]; then
        local e=$RESULTS/e_summary.txt
        echo "e (median of $(get rounds "$e") rounds): /health/live agentd $(get agentd_live_rps_median "$e")/s, nginx $(get nginx_live_rps_median "$e")/s = $(get live_ratio_median "$e") x (target >= $E_TARGET_LIVE)"
        echo "  one-call runs agentd $(get agentd_runs_rps_median "$e")/s, nginx's fixed Messages reply $(get nginx_msgs_rps_median "$e")/s = $(get runs_ratio_median "$e") x (target >= $E_TARGET_RUNS): $(get targets "$e")"
    fi
    [ -z "$D_SUMMARY" ] || echo "$D_SUMMARY"
    return 0
}

main() {
    local want_a=0 want_b=0 want_d=0 want_e=0 arg tool
    [ $# -eq 0 ] && want_a=1 && want_b=1 && want_d=1
    for arg in "$@"; do
        case $arg in
        a) want_a=1 ;;
        b) want_b=1 ;;
        d) want_d=1 ;;
        e) want_e=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown benchmark '$arg' (expected a, b, d and/or e)" ;;
        esac
    done
    # jq is optional (see capture_llm_body).
    for tool in wrk curl ss meson ninja awk getconf python3; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done
    # Settings are checked before anything is built or started.
    check_int BENCH_A_DURATION_S "$A_DURATION_S" 1 "$MAX_DURATION_S"
    check_int BENCH_B_DURATION_S "$B_DURATION_S" 1 "$MAX_DURATION_S"
    check_int BENCH_A_CONNECTIONS "$A_CONNECTIONS" 1 10000
    check_int BENCH_B_CONNECTIONS "$B_CONNECTIONS" 1 8000
    check_int BENCH_B_DELAY_MS "$B_DELAY_MS" 0 5000
    check_int BENCH_D_CONNECTIONS "$D_CONNECTIONS" 1 2000
    check_int BENCH_D_DURATION_S "$D_DURATION_S" 8 "$MAX_DURATION_S"
    check_int BENCH_D_AT_S "$D_AT_S" 4 $((D_DURATION_S - 3))
    check_int BENCH_D_BLIP_MS "$D_BLIP_MS" 1 1000
    check_int BENCH_D_DELAY_MS "$D_DELAY_MS" 0 5000
    check_int BENCH_A_INFO "$A_INFO" 0 1
    check_int BENCH_IDEM_KEYS "$IDEM_KEYS" 0 1
    check_int BENCH_E_DURATION_S "$E_DURATION_S" 1 "$MAX_DURATION_S"
    check_int BENCH_E_CONNECTIONS "$E_CONNECTIONS" 1 10000
    check_int BENCH_E_ROUNDS "$E_ROUNDS" 1 9
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
    if [ "$want_d" = 1 ]; then bench_d; fi
    if [ "$want_e" = 1 ]; then bench_e; fi
    print_table | tee "$RESULTS/summary.txt"
    return "$MISSED"
}

main "$@"
