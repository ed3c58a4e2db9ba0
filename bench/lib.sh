# lib.sh — what the bench scripts share: argument checks, the release build into bench/.build,
# bounded polling, the port agentd listens on, CPU and arithmetic helpers, reading /metrics
# dumps, and a private redis-server. Sourced by run.sh, soak.sh, redis.sh and durable.sh, which
# define BUILD, ROOT, WORK, STARTUP_TIMEOUT_S and STOP_TIMEOUT_S before calling these.
# shellcheck shell=bash

# die MESSAGE: a setup failure (exit 2), named after the script; log MESSAGE: progress. A script
# that needs more (soak.sh keeps its logs on failure) defines its own before sourcing this.
if ! declare -F die >/dev/null; then
    die() {
        echo "$(basename "$0"): $*" >&2
        exit 2
    }
fi
if ! declare -F log >/dev/null; then
    log() { echo "== $*" >&2; }
fi

# cleanup_redis_work: the EXIT trap of the Redis benches: stops the private redis-server and
# removes $WORK (kept with BENCH_KEEP_DIR=1).
cleanup_redis_work() {
    stop_redis
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "${BENCH_KEEP_DIR:-0}" = 1 ]; then
            echo "logs kept in $WORK" >&2
        else
            rm -rf "$WORK"
        fi
    fi
}

check_int() { # NAME VALUE MIN MAX
    if ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -lt "$3" ] || [ "$2" -gt "$4" ]; then
        die "$1: expected an integer $3..$4, got '$2'"
    fi
}

# build: agentd and fake_upstream, release, into $BUILD (BENCH_SKIP_BUILD=1: only checks them).
build() { build_targets agentd fake_upstream; }

# build_targets TARGET...: the same for these ninja targets (e.g. bench/bench_bucket_cost).
build_targets() {
    local t
    if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
        for t in "$@"; do
            [ -x "$BUILD/$t" ] || die "BENCH_SKIP_BUILD=1 but $BUILD has no $t"
        done
        return
    fi
    log "building (release) into $BUILD"
    if [ ! -f "$BUILD/build.ninja" ]; then
        meson setup "$BUILD" "$ROOT" --buildtype=release -Dtests=false >"$WORK/meson.log" 2>&1 ||
            { cat "$WORK/meson.log" >&2; die "meson setup failed"; }
    fi
    ninja -C "$BUILD" "$@" >"$WORK/ninja.log" 2>&1 ||
        { tail -50 "$WORK/ninja.log" >&2; die "build failed"; }
}

wait_until() {
    local tries=$(($1 * 20))
    shift
    while [ "$tries" -gt 0 ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
        tries=$((tries - 1))
    done
    return 1
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

alive() { kill -0 "$1" 2>/dev/null; }

listen_port_of() {
    ss -Hltnp 2>/dev/null | awk -v p="pid=$1," 'index($0, p) { n = split($4, a, ":"); print a[n]; exit }'
}

find_agentd_port() {
    AGENTD_PORT=$(listen_port_of "$AGENTD_PID")
    [ -n "$AGENTD_PORT" ]
}

get() { awk -F= -v k="$1" '$1 == k { print substr($0, length(k) + 2); exit }' "$2"; }

# tree_desc ROOT: "git <short rev>", plus " (dirty)" when tracked files differ from it.
tree_desc() {
    echo "git $(git -C "$1" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
        [ -n "$(git -C "$1" status --porcelain --untracked-files=no 2>/dev/null)" ] && echo ' (dirty)')"
}


sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }

# ratio A B FORMAT: A / B printed with FORMAT (0 when B is 0).
ratio() { awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN { printf f, b ? a / b : 0 }'; }

# The median of the numbers on stdin, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# cpu_s PID [children]: CPU seconds (user + system) used so far by PID, or by
# its waited-for children. Fields after the ")" that closes the command name:
# utime is the 12th, stime the 13th, cutime the 14th, cstime the 15th.
cpu_s() {
    local first=12
    [ "${2:-}" = children ] && first=14
    sed 's/^.*) //' "/proc/$1/stat" |
        awk -v t="$(getconf CLK_TCK)" -v f="$first" '{ printf "%.2f", ($f + $(f + 1)) / t }'
}

# metric FILE NAME{LABELS}: a sample's value from a /metrics dump (0 when absent).
metric() {
    awk -v k="$2" '$1 == k { v = $2 } END { print v + 0 }' "$1"
}

# metric_sum FILE NAME: the sum of every sample of NAME, whatever its labels.
metric_sum() {
    awk -v k="$2" 'index($1, k "{") == 1 || $1 == k { s += $2 } END { print s + 0 }' "$1"
}

# ---- a private redis-server (redis.sh, durable.sh): REDIS_PID, REDIS_PORT ------------------

port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

# redis_cmd ARGS...: one command to the private server (bounded by redis-cli's own timeout).
redis_cmd() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# Sets REDIS_PID and REDIS_PORT. redis-server cannot take an ephemeral port, so a
# random free one is tried; a few attempts in case another process takes it first.
# No persistence; its files in $WORK/redis.
start_redis() {
    local attempt
    mkdir -p "$WORK/redis"
    for attempt in 1 2 3 4 5; do
        REDIS_PORT=$((20000 + RANDOM % 30000))
        port_in_use "$REDIS_PORT" && continue
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
            --save '' --appendonly no --dir "$WORK/redis" --logfile "$WORK/redis/redis.log" \
            --daemonize no >/dev/null 2>&1 &
        REDIS_PID=$!
        if wait_until "$STARTUP_TIMEOUT_S" redis_ping; then
            log "redis-server pid $REDIS_PID on 127.0.0.1:$REDIS_PORT (attempt $attempt)"
            return 0
        fi
        stop_redis
    done
    tail -5 "$WORK/redis/redis.log" >&2 2>/dev/null || true
    die "redis-server did not start"
}

# SIGTERM to the redis-server started above (by PID), bounded, then SIGKILL.
stop_redis() {
    [ -n "${REDIS_PID:-}" ] || return 0
    local tries=$((STOP_TIMEOUT_S * 20))
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    while alive "$REDIS_PID" && [ "$tries" -gt 0 ]; do
        sleep 0.05
        tries=$((tries - 1))
    done
    alive "$REDIS_PID" && kill -KILL "$REDIS_PID" 2>/dev/null
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
}
