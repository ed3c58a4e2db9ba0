#!/usr/bin/env bash
# Installs the Debian packages agentd needs to build, test and benchmark,
# skipping what is already there. Safe to run repeatedly.
set -euo pipefail
pkgs=(meson ninja-build pkg-config gcc libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev
      libssl-dev libhiredis-dev check curl python3 python3-jsonschema python3-yaml)
[ "${1:-}" = "--test" ] && pkgs+=(redis-server wrk prometheus nghttp2-proxy openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm (the OpenAPI linter, the OTLP decoder): Debian's packages only when no node and npm
# are on PATH, as a node package from elsewhere carries its own npm.
if [ "${1:-}" = "--test" ] && { ! command -v node >/dev/null || ! command -v npm >/dev/null; }; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
