#!/usr/bin/env bash
# self_test.sh — shows scripts/check-layers.py has teeth: it runs the checker on
# the fixture trees beside this script and asserts exit codes and that each report
# names the right files (and only those). The fixtures are never built by meson;
# the `calls` fixture is compiled here with $CC into a temporary directory laid
# out like a meson build, so the nm-based call edges are exercised too.
#
# Usage: self_test.sh [PYTHON [CHECKER]]   (defaults: python3, ../../scripts/check-layers.py)
# Exit: 0 every case passed; 1 otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
python=${1:-python3}
checker=${2:-$here/../../scripts/check-layers.py}
cc=${CC:-cc}
failures=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# check NAME RC ARGS... : runs the checker, which must exit with RC.
check() {
    name=$1 want=$2 before=$failures
    shift 2
    "$python" "$checker" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out" "$tmp/err")
    if [ "$rc" -ne "$want" ]; then
        fail "exit $rc, want $want"
    fi
}
has() {     # the last output holds this exact text
    case $out in *"$1"*) ;; *) fail "report lacks: $1" ;; esac
}
lacks() {   # the last output never mentions this
    case $out in *"$1"*) fail "report mentions: $1" ;; esac
}
fail() {
    echo "FAIL $name: $1" >&2
    printf '%s\n' "$out" | sed 's/^/    | /' >&2
    failures=$((failures + 1))
}
ok() {       # the case passed if none of its assertions failed
    [ "$failures" -eq "$before" ] || return 0
    echo "ok   $name: $(printf '%s\n' "$out" | tail -n 1)"
}

check clean 0 "$here/clean"
has "layers: 5 files,"
has "0 circles, 0 violations"
lacks "warning"
ok

check cycle 1 "$here/cycle"
has "import circle: src/a/a.c -> src/b/b.c (includes agentd/b.h) -> src/a/a.c (agentd/b.h includes agentd/a.h)"
has "import circle of 3 files: src/d/d.c, src/d/e.c, src/d/f.c"
has "src/d/d.c -> src/d/e.c (includes agentd/e.h) -> src/d/f.c (includes agentd/f.h) -> src/d/d.c (includes agentd/d.h)"
lacks "src/c/c.c"
has "2 circles, 0 violations"
ok

check server 1 "$here/server"
has "server header: src/engine/run.c includes agentd/run.h -> agentd/req.h, owned by src/server/req.c"
has "server header: src/tools/t.c includes agentd/req.h, owned by src/server/req.c"
lacks "src/main.c"
lacks "src/server/http.c"
has "0 circles, 2 violations"
ok

check obs 1 "$here/obs"
has "obs layer: src/obs/metrics.c includes agentd/metrics.h -> agentd/app.h, owned by src/engine/app.c"
has "obs layer: src/obs/metrics.c includes agentd/metrics.h -> agentd/ids.h, a type-only header not in CORE_HEADERS"
lacks "vocab.h"
lacks "clock.h"
lacks "src/obs/log.c"
has "0 circles, 2 violations"
ok

# Includes alone run one way; the objects show b calling back into a.
check calls-includes-only 0 "$here/calls"
has "0 circles, 0 violations"
ok
build=$tmp/build
mkdir -p "$build/agentd.p" "$build/libagentd_core.a.p" "$build/tests/test_a.p"
if $cc -c -I"$here/calls/include" "$here/calls/src/a/a.c" -o "$build/agentd.p/src_a_a.c.o" &&
   $cc -c -I"$here/calls/include" "$here/calls/src/b/b.c" -o "$build/libagentd_core.a.p/src_b_b.c.o" &&
   # an object of some other program (a test) that also defines b_helper: never a node
   echo 'int b_helper(void) { return 2; }' | $cc -x c -c - -o "$build/tests/test_a.p/unit_b.c.o"
then
    check calls 1 "$here/calls" "$build"
    has "import circle: src/a/a.c -> src/b/b.c (includes agentd/b.h; calls b_helper) -> src/a/a.c (uses a_count; calls a_value)"
    lacks "unit_b"
    has "2 edges (2 objects), 1 circle, 0 violations"
    ok
else
    name=calls out="" before=$failures
    fail "$cc could not compile the calls fixture"
fi

check usage-no-args 2
ok
check usage-no-src 2 "$tmp"
has "no src/ directory"
ok
mkdir -p "$tmp/empty-build"
check usage-build-without-objects 2 "$here/clean" "$tmp/empty-build"
has "no object files"
ok

if [ "$failures" -ne 0 ]; then
    echo "layers self-test: $failures failed" >&2
    exit 1
fi
echo "layers self-test: all passed"
