#!/usr/bin/env bash
# durable.sh — what durable runs cost (a benchmark, not a test).
#
# Starts a private redis-server on a free loopback port (no persistence, its
# own temp dir), then
#   1. bench_checkpoint_cost against it: checkpoint_encode() time and bytes for
#      run states of 1 to 20 steps, and the round trip of the EVALSHA that
#      writes each to Redis (bench/checkpoint_cost.c);
#   2. bench/run.sh scenario (b) (2000 connections, an upstream that answers
#      after 1 s; without the staggered diagnostic row) REPEATS times in each
#      of three modes, in rotating order, each run with a fresh agentd, fake and
#      an emptied Redis:
#        local    no AGENTD_REDIS_URL, no Idempotency-Key
#        redis    AGENTD_REDIS_URL, no Idempotency-Key (the shared limiter and
#                 budget settlement only)
#        durable  AGENTD_REDIS_URL and a distinct Idempotency-Key on every
#                 request (BENCH_IDEM_KEYS=1): every run claims its key,
#                 checkpoints each step and stores its answer in Redis
# Prints one line per run, the medians, and the cost of durable runs against
# local (target: at most 20 % fewer runs/s), plus durable against redis (the
# durable part alone). Stops redis-server by PID.
#
# Usage: bench/durable.sh
# Environment (all optional):
#   BENCH_DURABLE_REPEATS=3  runs per mode (1..5); a run takes about 40 s
#   BENCH_B_DURATION_S=15  BENCH_B_CONNECTIONS=2000  BENCH_B_DELAY_MS=1000   passed on to run.sh
#   BENCH_DURABLE_AGENTD_ENV="NAME=VALUE ..."  more agentd settings in every mode (e.g.
#                          AGENTD_REDIS_TIMEOUT_MS=1000; no spaces in values)
#   BENCH_SKIP_BUILD=1     use the binaries already in bench/.build
#   BENCH_RESULTS_DIR=dir  write durable.txt there instead of bench/results
#   BENCH_KEEP_DIR=1       keep the temp dir (redis log, each run's results, /metrics, commandstats)
# Output: stdout, and the same in bench/results/durable.txt (overwritten).
# Exit status: 0 target met, 1 target missed, 2 setup failure.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$HERE/.build
RESULTS=${BENCH_RESULTS_DIR:-$HERE/results}
REPEATS=${BENCH_DURABLE_REPEATS:-3}
TARGET_PCT=20
STARTUP_TIMEOUT_S=10
STOP_TIMEOUT_S=10
# A whole run.sh b (two 15 s loads, starts and stops) takes about 40 s; none may take longer.
RUN_TIMEOUT_S=150
MODES=(local redis durable)
ROW_FMT='%-6s %7s %8s %8s %8s %6s %9s %8s %8s %8s %11s %7s %7s %6s %6s %8s %8s %10s %9s\n'
# More agentd settings for every mode (BENCH_DURABLE_AGENTD_ENV="NAME=VALUE ...").
EXTRA_ENV=${BENCH_DURABLE_AGENTD_ENV:-}
WORK=
REDIS_PID=
REDIS_PORT=

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

trap cleanup_redis_work EXIT
trap 'exit 130' INT TERM

# cmdstat FILE COMMAND FIELD: a field (calls, usec, failed_calls) of INFO commandstats.
cmdstat() {
    awk -F'[:,=]' -v c="cmdstat_$2" -v f="$3" \
        '$1 == c { for (i = 2; i < NF; i += 2) if ($i == f) v = $(i + 1) } END { print v + 0 }' "$1"
}

# run_b MODE REPEAT: one bench/run.sh b; prints a result line and records the medians' inputs.
run_b() {
    local mode=$1 i=$2
    local dir=$WORK/run_${mode}_$i envs=() words=$EXTRA_ENV r0 r1 rc=0
    [ "$mode" = local ] || words="AGENTD_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0${words:+ $words}"
    [ -n "$words" ] && envs=(BENCH_AGENTD_ENV="$words")
    [ "$mode" = durable ] && envs+=(BENCH_IDEM_KEYS=1)
    mkdir -p "$dir"
    # Every run meets the same Redis: empty, its counters at zero.
    if ! redis_cmd flushall >/dev/null || ! redis_cmd config resetstat >/dev/null; then
        die "could not reset redis-server"
    fi
    r0=$(cpu_s "$REDIS_PID")
    # run.sh's own temp dir (daemon logs) is never kept: results and /metrics land in $dir.
    env ${envs[@]+"${envs[@]}"} BENCH_SKIP_BUILD=1 BENCH_B_STAGGERED=0 BENCH_SAVE_METRICS=1 \
        BENCH_KEEP_DIR=0 BENCH_RESULTS_DIR="$dir" timeout -k 5 "$RUN_TIMEOUT_S" "$HERE/run.sh" b \
        >"$dir/run.log" 2>&1 || rc=$?
    r1=$(cpu_s "$REDIS_PID")
    redis_cmd info commandstats | tr -d '\r' >"$dir/commandstats.txt"
    # 1 = a b_inflight target missed: still a measurement (the line shows it); 2 = broken.
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
        tail -20 "$dir/run.log" >&2
        die "run.sh b ($mode, repeat $i) failed with status $rc"
    fi
    local f=$dir/b_inflight.txt m=$dir/b_inflight.metrics
    local req ok rps cmds done_cmds attempts failed end ckpt durable=- evalsha redis_us=- redis_s
    local foreign bench_us slow
    req=$(get requests "$f")
    ok=$(get status_2xx "$f")
    rps=$(get rps "$f")
    # Counters cover agentd's whole life: the sanity requests and the load, including the runs
    # still in flight when wrk stopped (cancelled, never answered): per LLM attempt, not per
    # measured request.
    cmds=$(metric_sum "$m" agentd_redis_commands_total)
    attempts=$(metric_sum "$m" agentd_llm_attempts_total)
    failed=$(($(metric "$m" 'agentd_redis_commands_total{result="timeout"}') + \
        $(metric "$m" 'agentd_redis_commands_total{result="disconnected"}') + \
        $(metric "$m" 'agentd_redis_commands_total{result="error"}')))
    end=off
    [ "$(metric "$m" 'agentd_redis_mode{mode="shared"}')" = 1 ] && end=shared
    [ "$(metric "$m" 'agentd_redis_mode{mode="degraded"}')" = 1 ] && end=degraded
    ckpt=$(metric "$m" 'agentd_durable_runs_total{event="checkpoint"}')
    if [ "$mode" != local ] && [ "$(metric "$m" 'agentd_redis_commands_total{result="ok"}')" = 0 ]; then
        die "run $i ($mode): agentd never used Redis (see $m)"
    fi
    if [ "$mode" = durable ]; then
        # Every request had its own key and none was answered as a replay. A run that found the
        # link down claimed its key locally and was not durable: that shows as fewer checkpoints.
        if [ "$(get idem_replayed "$f")" != 0 ] || [ "$(get idem_keys_sent "$f")" -lt "$req" ] ||
            [ "$ckpt" = 0 ] || [ "$(metric "$m" 'agentd_durable_runs_total{event="too_large"}')" != 0 ]; then
            die "run $i: the keyed runs were not measured as intended (see $f, $m)"
        fi
        # Each durable run of (b) writes one checkpoint (after its one LLM answer).
        durable=$(awk -v c="$ckpt" -v n="$ok" 'BEGIN { v = n ? c * 100 / n : 0; printf "%.1f", (v > 100) ? 100 : v }')
        echo "$durable" >>"$WORK/durable_pct"
    elif [ "$ckpt" != 0 ]; then
        die "run $i ($mode): $ckpt checkpoints without Idempotency-Keys"
    fi
    # Redis' count: EVALSHA (plus EVAL after a NOSCRIPT) per LLM attempt.
    evalsha=$(($(cmdstat "$dir/commandstats.txt" evalsha calls) + \
        $(cmdstat "$dir/commandstats.txt" eval calls)))
    # Completed commands that took over 50 ms (the default AGENTD_REDIS_TIMEOUT_MS).
    done_cmds=$(metric "$m" agentd_redis_command_duration_seconds_count)
    slow=$(awk -v n="$done_cmds" -v b="$(metric "$m" 'agentd_redis_command_duration_seconds_bucket{le="0.05"}')" \
        'BEGIN { printf "%.2f", n ? (n - b) * 100 / n : 0 }')
    redis_s=$(sub "$r1" "$r0")
    # redis-server works for this agentd only, mostly during b_inflight: its CPU over the whole
    # run.sh per answered run.
    [ "$mode" != local ] && redis_us=$(ratio "${redis_s}e6" "$ok" %.1f)
    # CPU of processes outside the benchmark during the load (run.sh's other_s counts
    # redis-server too; here it is taken out). The fuzzers at nice 19 fill the idle CPU.
    foreign=$(awk -v o="$(get other_processes_cpu_s "$f")" -v r="$redis_s" \
        'BEGIN { printf "%.2f", o - r }')
    # The benchmark's CPU per answered run during the load: agentd + fake + wrk + redis-server.
    bench_us=$(awk -v a="$(get agentd_cpu_s "$f")" -v fk="$(get fake_cpu_s "$f")" \
        -v w="$(get wrk_cpu_s "$f")" -v r="$redis_s" -v n="$ok" \
        'BEGIN { printf "%.1f", n ? (a + fk + w + r) * 1e6 / n : 0 }')
    # shellcheck disable=SC2059
    printf "$ROW_FMT" "$i" "$mode" "$rps" "$(get lat_p50_ms "$f")" "$(get lat_p99_ms "$f")" \
        "$(($(get non_2xx "$f") + $(get socket_errors "$f")))" \
        "$(get measured_cpu_us_per_req "$f")" "$redis_us" "$bench_us" \
        "$(ratio "$cmds" "$attempts" %.3f)" "$(ratio "$evalsha" "$attempts" %.3f)" \
        "$(ratio "$(metric "$m" agentd_redis_command_duration_seconds_sum)e3" "$done_cmds" %.3f)" \
        "$slow" "$failed" "$(metric "$m" agentd_redis_reconnects_total)" "$end" "$durable" \
        "$(get rps "$dir/b_fake_direct.txt")" "$foreign"
    echo "$rps" >>"$WORK/rps_$mode"
    echo "$bench_us" >>"$WORK/cpu_$mode"
    get lat_p99_ms "$f" >>"$WORK/p99_$mode"
}

# cost A B: how much lower B is than A, in % of A.
cost() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a ? (a - b) * 100 / a : 0 }'; }

main() {
    local tool
    case ${1:-} in
    "") ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "no arguments expected (see --help)" ;;
    esac
    for tool in redis-server redis-cli wrk curl ss meson ninja awk timeout; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done
    check_int BENCH_DURABLE_REPEATS "$REPEATS" 1 5
    WORK=$(mktemp -d /tmp/agentd-bench-durable.XXXXXX)
    mkdir -p "$RESULTS"
    build_targets agentd fake_upstream bench/bench_checkpoint_cost
    start_redis
    {
        echo "# bench/durable.sh $(date -u +%Y-%m-%dT%H:%M:%SZ), $(tree_desc "$ROOT"), $(nproc) CPUs shared by every process below, kernel $(uname -r)"
        echo "# $(redis-server --version)"
        echo
        echo "## cost of one checkpoint: bench_checkpoint_cost --redis 127.0.0.1:$REDIS_PORT"
        timeout -k 5 120 "$BUILD/bench/bench_checkpoint_cost" --redis "127.0.0.1:$REDIS_PORT" ||
            die "bench_checkpoint_cost failed"
        echo
        echo "## bench/run.sh b (wrk -t2 -c${BENCH_B_CONNECTIONS:-2000} -d${BENCH_B_DURATION_S:-15}s, upstream answers after ${BENCH_B_DELAY_MS:-1000} ms, one LLM call per run), rotating order"
        echo "## redis = BENCH_AGENTD_ENV=AGENTD_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0; durable = the same"
        echo "## and BENCH_IDEM_KEYS=1 (a distinct Idempotency-Key on every request); Redis emptied before each run"
        [ -z "$EXTRA_ENV" ] || echo "## every mode also with: $EXTRA_ENV"
        echo "## errors: non-2xx + socket errors; agentd_us: agentd CPU per run during the load;"
        echo "## redis_us: redis-server CPU over the whole run.sh per answered run; bench_us: CPU of agentd +"
        echo "## fake + wrk + redis-server per answered run. From agentd's /metrics after the load (its whole"
        echo "## life, including the runs cancelled when wrk stopped): cmds/att = Redis commands per LLM"
        echo "## attempt (evalsha/att: the same from Redis INFO commandstats, EVALSHA + EVAL), rtt_ms = mean"
        echo "## time of a completed command from the moment agentd queued it, >50ms% = share of completed"
        echo "## commands that took over 50 ms, failed = commands timed out, disconnected or in error,"
        echo "## reconn = connections made to Redis (2 = one per worker, never dropped), end = agentd's Redis"
        echo "## mode after the load, durable% = checkpointed answered runs (a run that found the link down"
        echo "## claimed its key locally and was not durable); fake_req/s = the fake alone (b_fake_direct of"
        echo "## the same run.sh); foreign_s = CPU seconds of processes outside the benchmark during the load"
        # shellcheck disable=SC2059
        printf "$ROW_FMT" repeat mode runs/s p50_ms p99_ms errors agentd_us redis_us bench_us cmds/att \
            evalsha/att rtt_ms '>50ms%' failed reconn end durable% fake_req/s foreign_s
        local i k mode
        for ((i = 1; i <= REPEATS; i++)); do
            # Each mode takes each place in the order once every three repeats.
            for k in 0 1 2; do
                mode=${MODES[$(((i - 1 + k) % 3))]}
                log "repeat $i: run.sh b, $mode"
                run_b "$mode" "$i"
            done
        done
        local l r d c_l c_r c_d p_l p_r p_d total verdict=met
        l=$(median <"$WORK/rps_local")
        r=$(median <"$WORK/rps_redis")
        d=$(median <"$WORK/rps_durable")
        c_l=$(median <"$WORK/cpu_local")
        c_r=$(median <"$WORK/cpu_redis")
        c_d=$(median <"$WORK/cpu_durable")
        p_l=$(median <"$WORK/p99_local")
        p_r=$(median <"$WORK/p99_redis")
        p_d=$(median <"$WORK/p99_durable")
        total=$(cost "$l" "$d")
        awk -v c="$total" -v t="$TARGET_PCT" 'BEGIN { exit !(c <= t) }' || verdict=MISSED
        echo
        echo "median runs/s: local $l, redis $r, durable $d"
        echo "median p99_ms: local $p_l, redis $p_r, durable $p_d"
        echo "median bench_us (CPU per run, all four processes): local $c_l, redis $c_r, durable $c_d"
        echo "redis vs local: $(cost "$l" "$r") % fewer runs/s; durable vs redis (the durable part): $(cost "$r" "$d") %"
        echo "median durable%: $(median <"$WORK/durable_pct") (answered keyed runs that were checkpointed;" \
            "less than 100 when Redis commands timed out and links dropped: see failed, reconn, end)"
        echo "durable runs: $total % fewer runs/s than local (target <= $TARGET_PCT %): $verdict"
    } | tee "$RESULTS/durable.txt"
    stop_redis
    grep -q ': met$' "$RESULTS/durable.txt"
}

main "$@"
