#!/usr/bin/env bash
# redis.sh — what the Redis-shared limiter costs (a benchmark, not a test).
#
# Starts a private redis-server on a free loopback port (no persistence, its
# own temp dir), then
#   1. bench_bucket_cost against it: the cost of one limiter token, local
#      bucket_reserve() next to one EVALSHA round trip (p50/p99/mean µs) and
#      pipelined EVALSHA throughput (bench/bucket_cost.c);
#   2. bench/run.sh scenario (a) (one-LLM-call runs/s, without the info-logging
#      row) REPEATS times in each mode, alternating: "local" without
#      AGENTD_REDIS_URL, "redis" with it pointing at that redis-server. Each
#      run gets a fresh agentd and fake; the order flips every repeat.
# Prints one line per run, the medians, and the relative cost of the shared
# mode against the target (at most 15 % of (a)). Stops redis-server by PID.
#
# Usage: bench/redis.sh
# Environment (all optional):
#   BENCH_REDIS_REPEATS=3  runs per mode (1..5)
#   BENCH_A_DURATION_S=10  BENCH_A_CONNECTIONS=64   passed on to run.sh
#   BENCH_SKIP_BUILD=1     use the binaries already in bench/.build
#   BENCH_RESULTS_DIR=dir  write redis.txt there instead of bench/results
#   BENCH_KEEP_DIR=1       keep the temp dir (redis log, each run's results and /metrics)
# Output: stdout, and the same in bench/results/redis.txt (overwritten).
# Exit status: 0 target met, 1 target missed, 2 setup failure.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$HERE/.build
RESULTS=${BENCH_RESULTS_DIR:-$HERE/results}
REPEATS=${BENCH_REDIS_REPEATS:-3}
TARGET_PCT=15
STARTUP_TIMEOUT_S=10
STOP_TIMEOUT_S=10
# A whole run.sh a takes about 30 s; none may take longer than this.
RUN_TIMEOUT_S=120
WORK=
REDIS_PID=
REDIS_PORT=

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

trap cleanup_redis_work EXIT
trap 'exit 130' INT TERM

# run_a MODE REPEAT: one bench/run.sh a; prints a result line and records runs/s.
run_a() {
    local mode=$1 i=$2
    local dir=$WORK/run_${mode}_$i envs=() r0 r1 rc=0
    [ "$mode" = redis ] && envs=(BENCH_AGENTD_ENV="AGENTD_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0")
    mkdir -p "$dir"
    r0=$(cpu_s "$REDIS_PID")
    # run.sh's own temp dir (daemon logs) is never kept: results and /metrics land in $dir.
    env ${envs[@]+"${envs[@]}"} BENCH_SKIP_BUILD=1 BENCH_A_INFO=0 BENCH_SAVE_METRICS=1 BENCH_KEEP_DIR=0 \
        BENCH_RESULTS_DIR="$dir" timeout -k 5 "$RUN_TIMEOUT_S" "$HERE/run.sh" a \
        >"$dir/run.log" 2>&1 || rc=$?
    r1=$(cpu_s "$REDIS_PID")
    if [ "$rc" -ne 0 ]; then
        tail -20 "$dir/run.log" >&2
        die "run.sh a ($mode, repeat $i) failed with status $rc"
    fi
    local f=$dir/a_agentd_log_warn.txt m=$dir/a_agentd_log_warn.metrics
    local req rps cmds attempts timeouts shared redis_us=- foreign cpu_rel
    req=$(get requests "$f")
    rps=$(get rps "$f")
    # Counters cover agentd's whole life (sanity request and warm-up included): per attempt,
    # not per measured request.
    cmds=$(metric_sum "$m" agentd_redis_commands_total)
    attempts=$(metric_sum "$m" agentd_llm_attempts_total)
    timeouts=$(($(metric "$m" 'agentd_redis_commands_total{result="timeout"}') + \
        $(metric "$m" 'agentd_redis_commands_total{result="disconnected"}') + \
        $(metric "$m" 'agentd_redis_commands_total{result="error"}')))
    shared=$(metric "$m" 'agentd_redis_mode{mode="shared"}')
    if [ "$mode" = redis ] && [ "$shared" != 1 ]; then
        die "run $i: agentd was not in shared mode at the end of the run (see $m)"
    fi
    # redis-server works for agentd only (its commands: sanity, warm-up and load alike), so its
    # CPU over the whole run.sh divided by agentd's commands is its CPU per command.
    [ "$mode" = redis ] && redis_us=$(ratio "$(sub "$r1" "$r0")e6" "$cmds" %.1f)
    # CPU of processes outside the benchmark during the load: run.sh's other_s counts
    # redis-server too, so its share (per command x runs) is taken out.
    foreign=$(awk -v o="$(get other_processes_cpu_s "$f")" -v r="$redis_us" -v n="$req" \
        'BEGIN { printf "%.2f", o - (r == "-" ? 0 : r * n / 1e6) }')
    # The benchmark's CPU per run (agentd + fake + wrk + redis-server) in units of the fake's CPU
    # per run: the fake does the same work per run in both modes, so this ratio does not move
    # with the speed of the (shared, virtual) machine the way runs/s does.
    cpu_rel=$(awk -v a="$(get agentd_cpu_s "$f")" -v fk="$(get fake_cpu_s "$f")" \
        -v w="$(get wrk_cpu_s "$f")" -v n="$req" -v r="$redis_us" -v c="$cmds" -v t="$attempts" \
        'BEGIN { rr = (r == "-" || t == 0) ? 0 : r * c / t / 1e6 * n
                 printf "%.3f", (fk > 0) ? (a + fk + w + rr) / fk : 0 }')
    printf '%-6s %6s %9s %7s %7s %9s %9s %9s %9s %8s %8s %10s %9s %8s\n' "$i" "$mode" "$rps" \
        "$(get lat_p50_ms "$f")" "$(get lat_p99_ms "$f")" "$(get measured_cpu_us_per_req "$f")" \
        "$redis_us" \
        "$(ratio "$(get host_busy_cpu_s "$f")e6" "$req" %.1f)" \
        "$(ratio "$cmds" "$attempts" %.3f)" \
        "$(ratio "$(metric "$m" agentd_redis_command_duration_seconds_sum)e3" \
            "$(metric "$m" agentd_redis_command_duration_seconds_count)" %.3f)" \
        "$timeouts" "$(get rps "$dir/a_fake_direct.txt")" "$foreign" "$cpu_rel"
    echo "$rps" >>"$WORK/rps_$mode"
    echo "$cpu_rel" >>"$WORK/cpu_$mode"
}

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
    check_int BENCH_REDIS_REPEATS "$REPEATS" 1 5
    WORK=$(mktemp -d /tmp/agentd-bench-redis.XXXXXX)
    mkdir -p "$RESULTS"
    build_targets agentd fake_upstream bench/bench_bucket_cost
    start_redis
    {
        echo "# bench/redis.sh $(date -u +%Y-%m-%dT%H:%M:%SZ), $(tree_desc "$ROOT"), $(nproc) CPUs shared by every process below, kernel $(uname -r)"
        echo "# $(redis-server --version)"
        echo
        echo "## cost of one limiter token: bench_bucket_cost --redis 127.0.0.1:$REDIS_PORT"
        timeout -k 5 120 "$BUILD/bench/bench_bucket_cost" --redis "127.0.0.1:$REDIS_PORT" ||
            die "bench_bucket_cost failed"
        echo
        echo "## bench/run.sh a (wrk -t2 -c${BENCH_A_CONNECTIONS:-64} -d${BENCH_A_DURATION_S:-10}s, one LLM call per run), alternating"
        echo "## redis = BENCH_AGENTD_ENV=AGENTD_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
        echo "## agentd_us: agentd CPU per run during the load; redis_us: redis-server CPU per command"
        echo "## (over the whole run.sh); host_us: CPU of the whole machine per run during the load"
        echo "## ($(nproc) CPUs busy = $(nproc)e6 / runs/s); from agentd's /metrics after the load:"
        echo "## cmds/att = Redis commands per LLM attempt, rtt_ms = mean Redis command time seen by"
        echo "## agentd, failed = commands timed out, disconnected or in error; fake_req/s = the fake"
        echo "## alone (row a_fake_direct of the same run.sh); foreign_s = CPU seconds of processes"
        echo "## outside the benchmark during the load (noise); cpu/fake = CPU per run of agentd + fake +"
        echo "## wrk + redis-server over the fake's CPU per run (independent of the machine's speed)"
        printf '%-6s %6s %9s %7s %7s %9s %9s %9s %9s %8s %8s %10s %9s %8s\n' repeat mode runs/s \
            p50_ms p99_ms agentd_us redis_us host_us cmds/att rtt_ms failed fake_req/s foreign_s \
            cpu/fake
        local i mode modes
        for ((i = 1; i <= REPEATS; i++)); do
            modes=(local redis)
            [ $((i % 2)) = 0 ] && modes=(redis local)
            for mode in "${modes[@]}"; do
                log "repeat $i: run.sh a, $mode"
                run_a "$mode" "$i"
            done
        done
        local off on cost verdict
        off=$(median <"$WORK/rps_local")
        on=$(median <"$WORK/rps_redis")
        cost=$(awk -v a="$off" -v b="$on" 'BEGIN { printf "%.1f", (a - b) * 100 / a }')
        verdict=met
        awk -v c="$cost" -v t="$TARGET_PCT" 'BEGIN { exit !(c <= t) }' || verdict=MISSED
        echo
        echo "median runs/s: local $off, redis $on"
        echo "cost of the shared limiter: $cost % of (a) runs/s (target <= $TARGET_PCT %): $verdict"
        local c_off c_on
        c_off=$(median <"$WORK/cpu_local")
        c_on=$(median <"$WORK/cpu_redis")
        echo "median cpu/fake: local $c_off, redis $c_on: on a CPU-bound machine the shared mode costs" \
            "$(awk -v a="$c_off" -v b="$c_on" 'BEGIN { printf "%.1f", (1 - a / b) * 100 }') % of runs/s" \
            "(cross-check of the figure above, less sensitive to the machine's speed)"
    } | tee "$RESULTS/redis.txt"
    stop_redis
    grep -q ': met$' "$RESULTS/redis.txt"
}

main "$@"
