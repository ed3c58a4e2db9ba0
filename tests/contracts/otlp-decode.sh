#!/usr/bin/env bash
# otlp-decode.sh — runs tests/contracts/otlp_decode.js (decodes OTLP/HTTP JSON trace export
# bodies with the official opentelemetry-proto definitions) after making sure what it loads is
# there: @opentelemetry/otlp-transformer, pinned to the last release that ships the protobufjs
# code generated from the opentelemetry-proto .proto files (build/src/generated/root.js), and
# protobufjs, pinned, installed into .cache/otlp-proto/node_modules (no global install;
# reinstalled only when a pin changes). node and npm come from Debian (scripts/deps.sh --test).
#
# Usage: tests/contracts/otlp-decode.sh BODIES.jsonl | --self-test
# Exit status 0 only when every body decodes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${OTLP_PROTO_CACHE:-$ROOT/.cache/otlp-proto}
TRANSFORMER_VERSION=0.216.0 # later releases generate no trace messages (0.217) or none at all
PROTOBUFJS_VERSION=8.0.1    # the version 0.216.0 itself depends on

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "otlp-decode.sh: node and npm are missing (scripts/deps.sh --test installs them)" >&2
    exit 1
fi

PKG="{\"name\":\"agentd-otlp-proto\",\"private\":true,\"dependencies\":{\"@opentelemetry/otlp-transformer\":\"$TRANSFORMER_VERSION\",\"protobufjs\":\"$PROTOBUFJS_VERSION\"}}"
ROOTJS=$CACHE/node_modules/@opentelemetry/otlp-transformer/build/src/generated/root.js
mkdir -p "$CACHE"
# Test runs of two build directories may start together: one installs, the other waits.
exec 9>"$CACHE/.lock"
flock 9
if [ "$(cat "$CACHE/.installed" 2>/dev/null)" != "$PKG" ] || [ ! -f "$ROOTJS" ]; then
    echo "npm install @opentelemetry/otlp-transformer@$TRANSFORMER_VERSION" \
        "protobufjs@$PROTOBUFJS_VERSION into $CACHE (first run only)" >&2
    printf '%s\n' "$PKG" >"$CACHE/package.json"
    log=$(mktemp)
    (cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error >"$log" 2>&1) || {
        cat "$log" >&2
        rm -f "$log"
        exit 1
    }
    rm -f "$log"
    printf '%s' "$PKG" >"$CACHE/.installed"
fi
exec 9>&-

export OTLP_PROTO_ROOT_JS=$ROOTJS OTLP_PROTO_PINS="@opentelemetry/otlp-transformer@$TRANSFORMER_VERSION protobufjs@$PROTOBUFJS_VERSION"
exec node "$ROOT/tests/contracts/otlp_decode.js" "$@"
