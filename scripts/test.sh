#!/usr/bin/env bash
# Builds agentd and runs every test suite (unit, contract, integration), then
# the same suites once more under AddressSanitizer + UndefinedBehaviorSanitizer and once under
# ThreadSanitizer, validates the Kubernetes manifests and lints docs/openapi.yaml. --no-asan skips both sanitizer runs.
# Installs missing Debian packages first. Usage: scripts/test.sh [--no-asan]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
meson setup build-test --buildtype=debugoptimized --wipe >/dev/null 2>&1 \
  || meson setup build-test --buildtype=debugoptimized >/dev/null
meson test -C build-test --print-errorlogs --num-processes 2
runs=(build-test)
# Kubernetes manifests against the Kubernetes schemas, and the rendered kustomization.
scripts/validate-manifests.sh
# agentd's OpenAPI description linted by Redocly CLI (pinned, installed under .cache/). The
# integration tests validated every answer against it above (contract_responses).
scripts/lint-openapi.sh
if [ "${1:-}" != "--no-asan" ]; then
  meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug \
    --wipe >/dev/null 2>&1 \
    || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug >/dev/null
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    CK_TIMEOUT_MULTIPLIER=3 \
    meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 3
  runs+=(build-asan)
  # ThreadSanitizer: the same suites once more, for data races between the HTTP threads, the
  # workers, the I/O pool and the readiness checker.
  meson setup build-tsan -Db_sanitize=thread -Db_lundef=false --buildtype=debug \
    --wipe >/dev/null 2>&1 \
    || meson setup build-tsan -Db_sanitize=thread -Db_lundef=false --buildtype=debug >/dev/null
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 CK_TIMEOUT_MULTIPLIER=4 \
    meson test -C build-tsan --print-errorlogs --num-processes 2 --timeout-multiplier 3
  runs+=(build-tsan)
fi
# One closing line over every meson test run above.
python3 - "${runs[@]}" <<'PY'
import json, os, sys
passed = failed = skipped = 0
for d in sys.argv[1:]:
    log = os.path.join(d, "meson-logs", "testlog.json")
    if not os.path.exists(log):
        continue
    for line in open(log):
        r = json.loads(line).get("result")
        if r == "OK":
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
PY
