#!/usr/bin/env bash
# lint-openapi.sh — lints docs/openapi.yaml (agentd's own HTTP API) with Redocly CLI's
# recommended rules plus the ones in .redocly.yaml: structure, $refs, examples against their
# schemas, operation ids, security, and more. Warnings fail too.
#
# Usage: scripts/lint-openapi.sh [FILE]      (default: docs/openapi.yaml)
# Installs @redocly/cli, pinned, into .cache/lint-openapi/node_modules (no global install;
# reinstalled only when the pin changes); node and npm from Debian when missing.
# Exit status 0 only when the document has no problem.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FILE=${1:-$ROOT/docs/openapi.yaml}
CACHE=${LINT_OPENAPI_CACHE:-$ROOT/.cache/lint-openapi}
REDOCLY_VERSION=2.77.0

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "installing Debian packages: nodejs npm" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi

PKG="{\"name\":\"agentd-lint-openapi\",\"private\":true,\"dependencies\":{\"@redocly/cli\":\"$REDOCLY_VERSION\"}}"
mkdir -p "$CACHE"
if [ "$(cat "$CACHE/.installed" 2>/dev/null)" != "$PKG" ] || [ ! -x "$CACHE/node_modules/.bin/redocly" ]; then
    echo "npm install @redocly/cli@$REDOCLY_VERSION into $CACHE (first run only)" >&2
    printf '%s\n' "$PKG" >"$CACHE/package.json"
    log=$(mktemp)
    (cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error >"$log" 2>&1) || {
        cat "$log"
        rm -f "$log"
        exit 1
    }
    rm -f "$log"
    printf '%s' "$PKG" >"$CACHE/.installed"
fi

# No telemetry, no update check: CI is offline after the install.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
exec "$CACHE/node_modules/.bin/redocly" lint --config "$ROOT/.redocly.yaml" \
    --max-problems 100 --format stylish "$FILE"
