#!/usr/bin/env bash
# Builds agentd and runs it on its embedded default: the bundled fake
# upstream plays the Anthropic API, Open-Meteo and SearXNG on 127.0.0.1:8081,
# agentd listens on 127.0.0.1:8080. No API key needed. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -d build ] || meson setup build --buildtype=release >/dev/null
ninja -C build agentd fake_upstream >/dev/null
mkdir -p run/notes
FAKE_PORT=${FAKE_PORT:-8081}
build/fake_upstream --listen "127.0.0.1:${FAKE_PORT}" --quiet &
fake=$!
trap 'kill $fake 2>/dev/null; wait $fake 2>/dev/null' EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:${FAKE_PORT}/_admin/health" >/dev/null && break; sleep 0.1; done
up="http://127.0.0.1:${FAKE_PORT}"
cat <<TXT
agentd on http://127.0.0.1:8080 (fake upstream on ${up}). Try:

  curl -s http://127.0.0.1:8080/v1/agent -H 'Content-Type: application/json' \\
       -d '{"input":"What is the weather in Paris and what is 15 * 23?"}'

Ctrl-C to stop.
TXT
# The fake wants some key, like the real API; it accepts any.
ANTHROPIC_API_KEY=${ANTHROPIC_API_KEY:-local-fake-key} \
AGENTD_LISTEN=${AGENTD_LISTEN:-127.0.0.1:8080} \
ANTHROPIC_BASE_URL=${ANTHROPIC_BASE_URL:-$up} \
AGENTD_SEARCH_URL=${AGENTD_SEARCH_URL:-$up} \
AGENTD_WEATHER_GEOCODING_URL=${AGENTD_WEATHER_GEOCODING_URL:-$up} \
AGENTD_WEATHER_FORECAST_URL=${AGENTD_WEATHER_FORECAST_URL:-$up} \
AGENTD_NOTES_DIR=${AGENTD_NOTES_DIR:-$PWD/run/notes} \
AGENTD_LOG_FORMAT=${AGENTD_LOG_FORMAT:-text} \
AGENTD_SHUTDOWN_DELAY_MS=${AGENTD_SHUTDOWN_DELAY_MS:-0} \
  build/agentd
