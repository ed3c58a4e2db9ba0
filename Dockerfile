# agentd container image: a build stage compiles a stripped release binary, the
# runtime stage carries only the shared libraries it links against, CA
# certificates and a fixed non-root user. deploy/container-test.sh builds and
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
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Tests are not built here (no Check in the image): CI runs them on the host.
# Only the agentd target is built; --version proves the stripped binary links.
RUN meson setup /tmp/build --buildtype=release -Dtests=false \
    && ninja -C /tmp/build agentd \
    && strip --strip-unneeded -o /usr/local/bin/agentd /tmp/build/agentd \
    && /usr/local/bin/agentd --version

FROM debian:bookworm-slim

LABEL org.opencontainers.image.title="agentd" \
      org.opencontainers.image.description="LLM agent runs (Anthropic Messages API + tools) behind an HTTP API" \
      org.opencontainers.image.licenses="MIT"

# Runtime libraries only: no compiler, no shell tools beyond the base image, no
# curl binary (libcurl4 does not pull it in). The fixed uid/gid 10001 is what
# deploy/deployment.yaml's runAsUser/fsGroup expect.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libmicrohttpd12 libcurl4 libjansson4 libssl3 libhiredis0.14 ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && groupadd --gid 10001 agentd \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/agentd \
        --shell /usr/sbin/nologin agentd \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/agentd /var/lib/agentd/notes

COPY --from=build /usr/local/bin/agentd /usr/local/bin/agentd

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
