# lib.sh — what the bench scripts share: argument checks, the release build into bench/.build,
# bounded polling and the port agentd listens on. Sourced by run.sh and soak.sh, which define
# die, log, BUILD, ROOT, WORK and STARTUP_TIMEOUT_S before calling these.
# shellcheck shell=bash

check_int() { # NAME VALUE MIN MAX
    if ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -lt "$3" ] || [ "$2" -gt "$4" ]; then
        die "$1: expected an integer $3..$4, got '$2'"
    fi
}

build() {
    if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
        if [ ! -x "$BUILD/agentd" ] || [ ! -x "$BUILD/fake_upstream" ]; then
            die "BENCH_SKIP_BUILD=1 but $BUILD has no binaries"
        fi
        return
    fi
    log "building (release) into $BUILD"
    if [ ! -f "$BUILD/build.ninja" ]; then
        meson setup "$BUILD" "$ROOT" --buildtype=release -Dtests=false >"$WORK/meson.log" 2>&1 ||
            { cat "$WORK/meson.log" >&2; die "meson setup failed"; }
    fi
    ninja -C "$BUILD" agentd fake_upstream >"$WORK/ninja.log" 2>&1 ||
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

