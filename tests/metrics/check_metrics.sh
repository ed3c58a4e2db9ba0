#!/bin/sh
# check_metrics.sh — validates a Prometheus text exposition with `promtool check metrics`
# (parse errors and lint problems such as a counter without _total both fail).
#
# Usage: check_metrics.sh URL|FILE|-
#   URL   http(s)://host:port/metrics of a running agentd; the Content-Type must be
#         text/plain with version=0.0.4
#   FILE  a saved exposition (e.g. `test_metrics --dump > m.txt`); - reads stdin
# Exit: 0 valid; 1 problems found; 2 usage or fetch error; 77 promtool missing (meson: skip).
# promtool ships in the Debian package `prometheus` (apt-get install prometheus).
set -u

if [ $# -ne 1 ]; then
    echo "usage: $0 URL|FILE|-" >&2
    exit 2
fi
if ! command -v promtool >/dev/null 2>&1; then
    echo "check_metrics: promtool not found (apt-get install prometheus)" >&2
    exit 77
fi

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
body="$tmp/body"

case "$1" in
http://* | https://*)
    # Bounded: a hanging daemon must not hang the check.
    if ! curl -fsS --max-time 10 -D "$tmp/headers" -o "$body" "$1"; then
        echo "check_metrics: cannot fetch $1" >&2
        exit 2
    fi
    ctype=$(tr -d '\r' <"$tmp/headers" | grep -i '^content-type:' | tail -n 1)
    case "$ctype" in
    *text/plain*version=0.0.4*) ;;
    *)
        echo "check_metrics: unexpected ${ctype:-missing Content-Type} (want text/plain; version=0.0.4)" >&2
        exit 1
        ;;
    esac
    ;;
-) cat >"$body" || exit 2 ;;
*)
    if [ ! -r "$1" ]; then
        echo "check_metrics: cannot read $1" >&2
        exit 2
    fi
    cp "$1" "$body" || exit 2
    ;;
esac

if [ ! -s "$body" ]; then
    echo "check_metrics: empty exposition" >&2
    exit 1
fi
# The format requires every line, the last included, to end with a newline.
if [ "$(tail -c 1 "$body" | od -An -c | tr -d ' ')" != '\n' ]; then
    echo "check_metrics: exposition does not end with a newline" >&2
    exit 1
fi
if ! promtool check metrics <"$body"; then
    echo "check_metrics: promtool found problems" >&2
    exit 1
fi
echo "check_metrics: $(grep -c '^# TYPE ' "$body") families, $(grep -vc '^#' "$body") samples: OK"
