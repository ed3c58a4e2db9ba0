#!/usr/bin/env bash
# check-deploy-config.sh — the settings file deploy/configmap.yaml ships (its agentd.env key) must
# pass `agentd --check-config`: no bad value, no unknown name. The README's pre-deploy check,
# run by CI on every change.
# Usage: scripts/check-deploy-config.sh AGENTD_BIN [CONFIGMAP_YAML]
set -euo pipefail
BIN=$1
CM=${2:-$(dirname "$0")/../deploy/configmap.yaml}
FILE=$(mktemp)
trap 'rm -f "$FILE"' EXIT
# The block scalar under "agentd.env: |", its 4-space indent removed.
sed -n '/^  agentd.env: |$/,$p' "$CM" | tail -n +2 | sed 's/^    //' > "$FILE"
if ! grep -q '^AGENTD_' "$FILE"; then
    echo "no agentd.env settings found in $CM" >&2
    exit 1
fi
env -i PATH="$PATH" "$BIN" --check-config "$FILE" > /dev/null
echo "deploy/configmap.yaml agentd.env: configuration ok"
