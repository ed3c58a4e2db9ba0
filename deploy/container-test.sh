#!/usr/bin/env bash
# container-test.sh — proves the Dockerfile builds and the image serves, on a
# machine without a Docker engine or a registry:
#   1. makes docker.io/library/debian:bookworm-slim locally from debootstrap
#      (minbase, the Debian mirror apt already uses; rootfs tarball cached),
#   2. builds agentd:test with `buildah bud --isolation chroot`,
#   3. checks the image's configuration (non-root, entrypoint, healthcheck) and
#      its files (only agentd, its shared libraries, CA certificates and account
#      files: no shell, compiler or curl), and reports its size,
#   4. runs the image's agentd (host network) against build/fake_upstream and
#      probes /health/live, /health/ready and POST /v1/agent from the host,
#   5. sends SIGTERM and checks the drain: readiness 503 while live stays 200,
#      then a clean exit.
# Cleans up every container and process it started. Exit status 0 only when
# every check passed; the last line is "N passed, M failed".
#
# Environment: FAKE_UPSTREAM (default build/fake_upstream, built if missing),
# AGENTD_TEST_PORT (first port tried for agentd, default 18080),
# CONTAINER_TEST_CACHE (default .cache/container-test), REBUILD_BASE=1 (redo the base image).

# Go templates and in-container shell snippets are single-quoted on purpose.
# shellcheck disable=SC2016
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CONTAINER_TEST_CACHE:-$ROOT/.cache/container-test}
BASE_IMAGE=docker.io/library/debian:bookworm-slim
IMAGE=localhost/agentd:test
ROOTFS_TAR=$CACHE/debian-bookworm-minbase.tar
WORK=$(mktemp -d)
T0=$(date +%s%N)
PASS=0
FAIL=0
CONTAINERS=()
FAKE_PID=
RUN_PID=

elapsed() { printf '%6.1fs' "$(($(date +%s%N) - T0))e-9"; }
step() { echo "[$(elapsed)] ==> $*"; }
info() { echo "[$(elapsed)]     $*"; }
ok() {
    PASS=$((PASS + 1))
    info "ok: $*"
}
bad() {
    FAIL=$((FAIL + 1))
    info "FAIL: $*"
}
die() {
    bad "$*"
    exit 1
}

# descendants PID: every live descendant of PID, deepest last.
descendants() {
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}

# stop_tree PID: SIGTERM to PID and its descendants, SIGKILL after 10 s.
stop_tree() {
    local pid=$1 pids
    [ -n "$pid" ] || return 0
    pids="$pid $(descendants "$pid")"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? c
    stop_tree "$RUN_PID"
    stop_tree "$FAKE_PID"
    for c in "${CONTAINERS[@]}"; do
        buildah rm "$c" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
    echo "[$(elapsed)] ==> done: $PASS passed, $FAIL failed"
    echo "$PASS passed, $FAIL failed"
    [ "$rc" -ne 0 ] || [ "$FAIL" -eq 0 ] || exit 1
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools -------------------------------------------------------------------
step "tools: buildah, debootstrap, curl"
missing=()
for p in buildah debootstrap curl; do
    command -v "$p" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    info "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
info "$(buildah --version)"

# ---- base image --------------------------------------------------------------
# mirror_for SUITE: the first URI apt uses for SUITE (deb822 .sources, then one-line lists).
mirror_for() {
    local suite=$1 f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk -v RS= -v s="$suite" '
            /(^|\n)Enabled:[ \t]*no/ { next }
            {
                n = split($0, l, "\n"); u = ""; hit = 0
                for (i = 1; i <= n; i++) {
                    if (l[i] ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", l[i]); split(l[i], w, /[ \t]+/); u = w[1] }
                    if (l[i] ~ /^Suites:/) { m = split(l[i], w, /[ \t]+/); for (j = 2; j <= m; j++) if (w[j] == s) hit = 1 }
                }
                if (hit && u != "") { print u; exit }
            }' "$f")
        [ -n "$uri" ] && echo "$uri" && return 0
    done
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        sed -E 's/\[[^]]*\]//' | awk -v s="$suite" '$1 == "deb" && $3 == s { print $2; exit }')
    [ -n "$uri" ] && echo "$uri"
}

make_rootfs_tar() {
    local mirror security rootfs=$CACHE/rootfs.tmp
    mirror=$(mirror_for bookworm || true)
    security=$(mirror_for bookworm-security || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    security=${security:-${mirror%/debian}/debian-security}
    info "debootstrap --variant=minbase bookworm from $mirror"
    rm -rf "$rootfs"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 || {
        tail -20 "$WORK/debootstrap.log"
        die "debootstrap failed"
    }
    # What the official -slim image does on top of minbase: apt sources with
    # updates and security, no docs/man/locales, no apt caches, no daemons started.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    printf 'Acquire::Languages "none";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    printf 'APT::AutoRemove::SuggestsImportant "false";\n' \
        >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "${rootfs:?}"/usr/share/{man,info,locale,lintian}/* "${rootfs:?}"/var/cache/apt/*.bin \
        "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/lib/apt/lists/* \
        "${rootfs:?}"/var/log/*.log "${rootfs:?}"/dev/* "${rootfs:?}"/proc/* "${rootfs:?}"/sys/* \
        "${rootfs:?}"/tmp/* "${rootfs:?}"/run/*
    : >"$rootfs/etc/machine-id"
    tar --numeric-owner --xattrs -C "$rootfs" -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$rootfs"
}

step "base image $BASE_IMAGE"
if [ "${REBUILD_BASE:-0}" != 1 ] && buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    info "already in local storage (REBUILD_BASE=1 redoes it)"
else
    if [ "${REBUILD_BASE:-0}" = 1 ] || [ ! -s "$ROOTFS_TAR" ]; then
        make_rootfs_tar
    else
        info "rootfs tarball cached: $ROOTFS_TAR"
    fi
    base=$(buildah from scratch)
    CONTAINERS+=("$base")
    buildah add --quiet "$base" "$ROOTFS_TAR" / >/dev/null # a local tar is extracted
    buildah config --cmd /bin/bash --os linux --arch "$(dpkg --print-architecture)" \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$base"
    buildah commit --quiet --rm "$base" "$BASE_IMAGE" >/dev/null
    CONTAINERS=()
fi
info "$(buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$BASE_IMAGE")"

# ---- image -------------------------------------------------------------------
step "buildah bud --isolation chroot -t agentd:test (layers cached)"
if ! buildah bud --isolation chroot --layers --force-rm --pull=never --format docker -t "$IMAGE" \
    -f "$ROOT/Dockerfile" "$ROOT" >"$WORK/bud.log" 2>&1; then
    tail -40 "$WORK/bud.log"
    die "image build failed"
fi
grep -E '^(\[[0-9]+/[0-9]+\] )?STEP|^COMMIT|^--> Using cache' "$WORK/bud.log" | cut -c1-100 |
    sed 's/^/            /'
ok "image built"

SIZE=$(buildah images --format '{{.Size}}' "$IMAGE")
BASE_SIZE=$(buildah images --format '{{.Size}}' "$BASE_IMAGE")
info "image size: $SIZE (base debian:bookworm-slim: $BASE_SIZE)"

step "image configuration"
cfg() { buildah inspect --type image --format "$1" "$IMAGE"; }
expect_cfg() { # NAME TEMPLATE WANTED
    local got
    got=$(cfg "$2")
    if [ "$got" = "$3" ]; then ok "$1 = $got"; else bad "$1 = '$got', wanted '$3'"; fi
}
expect_cfg "user" '{{.Docker.Config.User}}' "10001:10001"
expect_cfg "entrypoint" '{{.Docker.Config.Entrypoint}}' "[/usr/local/bin/agentd]"
expect_cfg "stop signal" '{{.Docker.Config.StopSignal}}' "SIGTERM"
expect_cfg "healthcheck" '{{.Docker.Config.Healthcheck.Test}}' \
    "[CMD /usr/local/bin/agentd probe live]"
expect_cfg "exposed ports" '{{range $p, $v := .Docker.Config.ExposedPorts}}{{$p}} {{end}}' "8080/tcp "
expect_cfg "volumes" '{{range $p, $v := .Docker.Config.Volumes}}{{$p}} {{end}}' \
    "/var/lib/agentd/notes "

ctr=$(buildah from --pull=never --name "agentd-ct-inspect-$$" "$IMAGE")
CONTAINERS+=("$ctr")
if buildah run --isolation chroot "$ctr" -- /usr/local/bin/agentd --version >"$WORK/ver" 2>&1; then
    ok "agentd --version in the image: $(cat "$WORK/ver")"
else
    bad "agentd --version in the image: $(cat "$WORK/ver")"
fi
# The image has no shell to look with: its files are read from the host through buildah mount,
# in a container nothing ran in (buildah run adds /etc/hosts, resolv.conf and hostname).
ctr=$(buildah from --pull=never --name "agentd-ct-files-$$" "$IMAGE")
CONTAINERS+=("$ctr")
mnt=$(buildah mount "$ctr" 2>"$WORK/mount.err") || die "buildah mount: $(cat "$WORK/mount.err")"
found=
for d in usr/local/sbin usr/local/bin usr/sbin usr/bin sbin bin; do
    for t in sh bash dash gcc cc c99 ld make meson ninja curl wget apt-get dpkg; do
        if [ -e "$mnt/$d/$t" ] || [ -L "$mnt/$d/$t" ]; then found="$found /$d/$t"; fi
    done
done
if [ -z "$found" ]; then ok "no shell, compiler, build tool, package manager or curl in the image"; else
    bad "tools in the image:$found"
fi
# Every file is agentd, a shared library it links, the CA bundle or an account file.
extra=$(cd "$mnt" && find . \( -type f -o -type l \) -printf '%P\n' | grep -Ev \
    '^(usr/local/bin/agentd|(usr/)?lib(64|/x86_64-linux-gnu|/aarch64-linux-gnu)?/[^/]+\.so[.0-9]*|etc/ssl/certs/ca-certificates\.crt|etc/(passwd|group|nsswitch\.conf))$' ||
    true)
nfiles=$(cd "$mnt" && find . \( -type f -o -type l \) | wc -l)
if [ -z "$extra" ]; then ok "only agentd, its libraries, CA certificates and account files ($nfiles files)"; else
    bad "unexpected files in the image: $(echo "$extra" | head -20 | tr '\n' ' ')"
fi
owner=$(stat -c '%u:%g %a' "$mnt/var/lib/agentd/notes" 2>&1) || true
if [ "$owner" = "10001:10001 750" ]; then ok "notes dir owned by 10001:10001 (mode 750)"; else
    bad "notes dir: $owner"
fi
buildah umount "$ctr" >/dev/null 2>&1 || true

# ---- run against the fake upstream -------------------------------------------
step "fake upstream on the host"
FAKE=${FAKE_UPSTREAM:-$ROOT/build/fake_upstream}
if [ ! -x "$FAKE" ]; then
    info "building $FAKE"
    [ -d "$ROOT/build" ] || meson setup "$ROOT/build" >/dev/null
    ninja -C "$ROOT/build" fake_upstream >/dev/null
fi
"$FAKE" --listen 127.0.0.1:0 --port-file "$WORK/fake.port" --quiet >"$WORK/fake.log" 2>&1 &
FAKE_PID=$!
for _ in $(seq 100); do
    [ -s "$WORK/fake.port" ] && break
    sleep 0.05
done
[ -s "$WORK/fake.port" ] || die "fake upstream did not start: $(cat "$WORK/fake.log")"
UP=http://127.0.0.1:$(cat "$WORK/fake.port")
info "fake upstream on $UP"

# A port nobody answers on (curl exit 7 = connection refused).
PORT=${AGENTD_TEST_PORT:-18080}
for _ in $(seq 20); do
    rc=0
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$PORT/" || rc=$?
    [ "$rc" -eq 7 ] && break
    PORT=$((PORT + 1))
done
BASE=http://127.0.0.1:$PORT

step "agentd from the image: buildah run --isolation chroot --network host (port $PORT)"
ctr=$(buildah from --pull=never --name "agentd-ct-run-$$" "$IMAGE")
CONTAINERS+=("$ctr")
buildah config \
    --env AGENTD_LISTEN="127.0.0.1:$PORT" \
    --env ANTHROPIC_BASE_URL="$UP" \
    --env ANTHROPIC_API_KEY=container-test-key \
    --env AGENTD_SEARCH_URL="$UP" \
    --env AGENTD_WEATHER_GEOCODING_URL="$UP" \
    --env AGENTD_WEATHER_FORECAST_URL="$UP" \
    --env AGENTD_WORKERS=2 \
    --env AGENTD_LOG_FORMAT=text \
    --env AGENTD_SHUTDOWN_DELAY_MS=2000 \
    --env AGENTD_SHUTDOWN_GRACE_MS=5000 \
    "$ctr"
buildah run --isolation chroot --network host "$ctr" -- /usr/local/bin/agentd \
    >"$WORK/agentd.log" 2>&1 &
RUN_PID=$!
R0=$(date +%s%N)

code_of() { curl -s -o "$WORK/body" -w '%{http_code}' -m "${2:-5}" "$BASE$1" || true; }
up=0
for _ in $(seq 150); do
    [ "$(code_of /health/live 1)" = 200 ] && up=1 && break
    kill -0 "$RUN_PID" 2>/dev/null || break
    sleep 0.1
done
[ "$up" = 1 ] || die "agentd did not come up; its log: $(tail -20 "$WORK/agentd.log")"
info "agentd answering $((($(date +%s%N) - R0) / 1000000)) ms after buildah run"

step "probe GET /health/live"
code=$(code_of /health/live)
if [ "$code" = 200 ] && grep -q '"status":"ok"' "$WORK/body"; then ok "live: $code $(cat "$WORK/body")"; else
    bad "live: $code $(cat "$WORK/body")"
fi

step "probe GET /health/ready (up to 15 s for the first background check)"
for _ in $(seq 150); do
    code=$(code_of /health/ready)
    [ "$code" = 200 ] && break
    sleep 0.1
done
if [ "$code" = 200 ]; then ok "ready: $code $(cut -c1-300 "$WORK/body")"; else
    bad "ready: $code $(cut -c1-300 "$WORK/body")"
fi

step "probe POST /v1/agent \"What's 15 * 23?\""
cat >"$WORK/req.json" <<'EOF'
{"input":"What's 15 * 23?"}
EOF
code=$(curl -s -o "$WORK/body" -w '%{http_code}' -m 30 -H 'Content-Type: application/json' \
    --data-binary @"$WORK/req.json" "$BASE/v1/agent" || true)
if [ "$code" = 200 ] && grep -q '345' "$WORK/body"; then ok "agent: $code $(cut -c1-300 "$WORK/body")"; else
    bad "agent: $code $(cut -c1-300 "$WORK/body")"
fi

step "HEALTHCHECK command inside the running container: agentd probe live|ready"
# A second process in the same container, as the engine would run it: the
# probe finds the port through the container's AGENTD_LISTEN.
for what in live ready; do
    rc=0
    buildah run --isolation chroot --network host "$ctr" -- /usr/local/bin/agentd probe "$what" \
        >"$WORK/probe.out" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then ok "agentd probe $what: exit 0"; else
        bad "agentd probe $what: exit $rc $(cat "$WORK/probe.out")"
    fi
done

# ---- drain on SIGTERM ---------------------------------------------------------
step "SIGTERM: readiness 503 during AGENTD_SHUTDOWN_DELAY_MS=2000, live 200, then exit 0"
AGENTD_PID=
for p in $(descendants "$RUN_PID"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = agentd ] && AGENTD_PID=$p
done
[ -n "$AGENTD_PID" ] || die "agentd process not found under buildah run ($RUN_PID)"
kill -TERM "$AGENTD_PID"
S0=$(date +%s%N)
code=000
for _ in $(seq 15); do
    code=$(code_of /health/ready 1)
    [ "$code" = 503 ] && grep -q '"shutdown":{"status":"fail"' "$WORK/body" && break
    sleep 0.1
done
drain=$(grep -o '"shutdown":{[^}]*}' "$WORK/body" || true)
live=$(code_of /health/live 1)
# The shutdown check, not some other failing check, must be what turned it 503.
if [ "$code" = 503 ] && [ -n "$drain" ] && [[ "$drain" == *'"status":"fail"'* ]]; then
    ok "ready after SIGTERM: $code $drain"
else
    bad "ready after SIGTERM: $code ${drain:-$(cut -c1-300 "$WORK/body")}"
fi
if [ "$live" = 200 ]; then ok "live while draining: $live"; else bad "live while draining: $live"; fi
rc=0
for _ in $(seq 300); do
    kill -0 "$RUN_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$RUN_PID" 2>/dev/null; then
    bad "agentd still running 30 s after SIGTERM"
else
    wait "$RUN_PID" || rc=$?
    RUN_PID=
    ms=$((($(date +%s%N) - S0) / 1000000))
    if [ "$rc" -eq 0 ]; then ok "exited 0, ${ms} ms after SIGTERM"; else
        bad "exit status $rc, ${ms} ms after SIGTERM"
    fi
fi
if [ "$FAIL" -ne 0 ]; then
    echo "--- agentd log (last 30 lines):"
    tail -30 "$WORK/agentd.log"
fi
