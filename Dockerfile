# syntax=docker/dockerfile:1
# panka-controller's image: built with the workspace's locked dependencies, run on distroless
# (glibc, OpenSSL 3 for libgit2's HTTPS, CA certificates; no shell, no package manager) as the
# non-root user 65532. The chart (charts/panka) runs it with a read-only root filesystem.
#
#   docker build -t panka-controller:0.1.0 .
#
# Nothing in CI builds this file: no container engine runs on the project's machines.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# git2 links the system OpenSSL (found with pkg-config); libgit2 and libssh2 are built from
# their bundled sources. zlib is linked statically: the runtime image has no libz.so.1.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
ENV LIBZ_SYS_STATIC=1 CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p panka-controller \
    && cp target/release/panka-controller /usr/local/bin/panka-controller
# Fail the build if the binary needs a shared library the runtime image lacks.
RUN ldd /usr/local/bin/panka-controller \
    && ! ldd /usr/local/bin/panka-controller \
        | grep -vE 'linux-vdso|ld-linux|lib(c|m|dl|rt|pthread|util|gcc_s|ssl|crypto)\.so'

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="panka-controller" \
      org.opencontainers.image.description="Keeps AWS deployments equal to a deployment git repository or panka custom resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/panka" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /usr/local/bin/panka-controller /usr/local/bin/panka-controller
# OpenSSL (libgit2's HTTPS) finds the CA bundle here even without Debian's openssl package.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# The distroless `nonroot` user, numerically, so Kubernetes can verify runAsNonRoot.
USER 65532:65532
# /metrics, /healthz, /readyz (PANKA_METRICS_ADDR=0.0.0.0:9090; the chart sets it).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/panka-controller"]
