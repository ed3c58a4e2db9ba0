#!/bin/sh
# build.sh — compiles every libFuzzer target of tests/fuzz/ with clang,
# ASan and UBSan (UBSan findings abort) into tests/fuzz/.build/, plus a
# replay_<target> binary per target (same instrumentation, no libFuzzer) for
# re-running a corpus or a reproducer outside libFuzzer.
#
# Usage: tests/fuzz/build.sh            (from anywhere; CC=clang-15 to pick a clang)
# Exit status: non-zero when any compilation fails.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$here/.build"
cc=${CC:-clang}
mkdir -p "$out"

# Only the modules each parser needs (the same sources that make up the core
# library in meson.build), so a target links without sockets or curl.
srcs_for() {
    case $1 in
    request) echo "src/server/request.c src/engine/agent_request.c src/core/text.c" ;;
    anthropic) echo "src/llm/anthropic.c src/llm/ratelimit_headers.c src/core/text.c src/core/clock.c" ;;
    calculator) echo "src/tools/calculator.c src/tools/tool_result.c" ;;
    tools) echo "src/tools/web_search.c src/tools/weather.c src/tools/tool_input.c
        src/tools/tool_result.c src/tools/urlenc.c src/resilience/backoff.c src/core/text.c
        src/core/clock.c" ;;
    log) echo "src/obs/log.c src/core/text.c" ;;
    stream) echo "src/llm/anthropic_stream.c src/llm/sse.c src/llm/anthropic.c src/core/text.c" ;;
    esac
}

cflags="-std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer
  -fsanitize=address,undefined -fno-sanitize-recover=undefined -I$root/include -I$here
  $(pkg-config --cflags jansson)"
libs="$(pkg-config --libs jansson libcrypto) -lm"

for t in ${FUZZ_TARGETS:-request anthropic calculator tools log stream}; do
    paths=""
    for s in $(srcs_for "$t"); do
        paths="$paths $root/$s"
    done
    echo "build: fuzz_$t"
    # shellcheck disable=SC2086 # word splitting of the flag lists is intended
    $cc $cflags -fsanitize=fuzzer -o "$out/fuzz_$t" "$here/fuzz_$t.c" $paths $libs
    # shellcheck disable=SC2086
    $cc $cflags -o "$out/replay_$t" "$here/fuzz_$t.c" "$here/replay_main.c" $paths $libs
done
echo "build: done, binaries in $out"
