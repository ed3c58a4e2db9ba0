# agentd container image: a build stage compiles a stripped release binary and
# assembles a root with only that binary, the shared libraries it links
# against (collected with ldd), CA certificates and a fixed non-root user; the
# runtime stage is that root on `scratch`. deploy/container-test.sh builds and
# smoke-tests it without a Docker engine (buildah, chroot isolation).
#
# Build: buildah bud --format docker -t agentd:test .   (or: docker build -t agentd .)
# --format docker keeps HEALTHCHECK, which the OCI image format has no field for.

FROM debian:bookworm-slim AS build

# -dev packages match meson.build's dependency() calls; libc6-dev is listed
# because gcc only recommends it and recommends are off.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        meson ninja-build pkg-config gcc libc6-dev binutils \
        libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libssl-dev libhiredis-dev \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Tests are not built here (no Check in the image): CI runs them on the host.
# Only the agentd target is built; --version proves the stripped binary links.
RUN meson setup /tmp/build --buildtype=release -Dtests=false \
    && ninja -C /tmp/build agentd \
    && strip --strip-unneeded -o /usr/local/bin/agentd /tmp/build/agentd \
    && /usr/local/bin/agentd --version

# The runtime root, assembled here: agentd, every shared library ldd says it
# loads (the dynamic loader included, at the path the binary names), the CA
# bundle libcurl's OpenSSL build reads, and the account of uid/gid 10001. No
# shell, no package manager, no other file: nothing else runs in the image.
# The loader is glibc's own: it resolves hosts through the built-in files and
# dns sources (nsswitch.conf), and needs no other configuration.
RUN set -eu; R=/rootfs; \
    mkdir -p $R/usr/local/bin $R/etc/ssl/certs $R/tmp $R/var/lib/agentd /state/notes; \
    cp /usr/local/bin/agentd $R/usr/local/bin/agentd; \
    libs=$(ldd /usr/local/bin/agentd | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); \
    [ -n "$libs" ]; \
    for lib in $libs; do cp -L --parents "$lib" $R; done; \
    cp /etc/ssl/certs/ca-certificates.crt $R/etc/ssl/certs/; \
    printf 'root:x:0:0:root:/:/nonexistent\nagentd:x:10001:10001::/var/lib/agentd:/nonexistent\n' \
        >$R/etc/passwd; \
    printf 'root:x:0:\nagentd:x:10001:\n' >$R/etc/group; \
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >$R/etc/nsswitch.conf; \
    chmod 1777 $R/tmp; \
    chmod 0750 /state/notes; \
    chroot $R /usr/local/bin/agentd --version

FROM scratch

LABEL org.opencontainers.image.title="agentd" \
      org.opencontainers.image.description="LLM agent runs (Anthropic Messages API + tools) behind an HTTP API" \
      org.opencontainers.image.licenses="MIT"

# The fixed uid/gid 10001 is what deploy/deployment.yaml's runAsUser/fsGroup
# expect; the notes directory is theirs (mode 0750).
COPY --from=build /rootfs/ /
COPY --from=build --chown=10001:10001 /state/ /var/lib/agentd/

ENV AGENTD_LISTEN=0.0.0.0:8080 \
    AGENTD_NOTES_DIR=/var/lib/agentd/notes

# Numeric so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/agentd
VOLUME ["/var/lib/agentd/notes"]
EXPOSE 8080

# agentd drains on SIGTERM (readiness 503, keeps serving
# AGENTD_SHUTDOWN_DELAY_MS, then finishes runs for up to AGENTD_SHUTDOWN_GRACE_MS).
STOPSIGNAL SIGTERM
# Liveness only: readiness depends on the LLM API, and an outage there must not
# get containers restarted by an engine that acts on health status.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/agentd", "probe", "live"]

ENTRYPOINT ["/usr/local/bin/agentd"]
