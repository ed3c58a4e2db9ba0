#!/bin/sh
# check-rules.sh — validates agentd's Prometheus alerting rules: `promtool check rules` on
# agentd-rules.yml (syntax, PromQL, templates), then `promtool test rules` on
# agentd-rules.test.yml (each alert fires on a synthetic series and stays quiet below it).
# Exit: 0 ok; 1 a check failed; 77 promtool missing (meson: skip).
# promtool ships in the Debian package `prometheus` (apt-get install prometheus).
set -u

dir=$(cd "$(dirname "$0")" && pwd) || exit 1
if ! command -v promtool >/dev/null 2>&1; then
    echo "check-rules: promtool not found (apt-get install prometheus)" >&2
    exit 77
fi
cd "$dir" || exit 1
promtool check rules agentd-rules.yml || exit 1
promtool test rules agentd-rules.test.yml || exit 1
