# efen with the CPU ONNX Runtime library (docs/deploy.md).
#
#   docker build -t efen:local .                  # compiles efen in the `build` stage (rust image)
#   docker build --target prebuilt -t efen:local .  # takes a binary built outside (.efen/dist/)
#
# The base images are build arguments, so a local tag can stand in where no registry is reachable
# (scripts/container-test.sh builds --target prebuilt on a debootstrapped Debian with podman).
# The runtime base must be the Debian release the binary was built on (its glibc).
ARG BUILD_BASE=rust:1.95-bookworm
ARG RUNTIME_BASE=debian:bookworm-slim
ARG ORT_VERSION=1.32.0

# The binary, compiled from the context.
FROM ${BUILD_BASE} AS build
# CharLS (JPEG-LS) is C++ built with cmake.
RUN apt-get update && apt-get install -y --no-install-recommends cmake g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
    && install -D target/release/efen /dist/efen && strip --strip-debug /dist/efen

# The ONNX Runtime library from its wheel. pip only downloads (the wheel is a zip we unpack
# ourselves; nothing is installed into any Python, so PEP 668 does not apply); only the library
# itself is kept, not the Python bindings. Behind a TLS-inspecting proxy, pass its CA bundle:
# --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt
FROM ${RUNTIME_BASE} AS ort
ARG ORT_VERSION
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
    && python3 -m pip download --no-cache-dir --disable-pip-version-check --no-deps --only-binary=:all: \
        -d /tmp/wheel "onnxruntime==${ORT_VERSION}" \
    && python3 -m zipfile -e /tmp/wheel/*.whl /tmp/ort \
    && install -D -m 0644 "/tmp/ort/onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}" \
        "/dist/lib/libonnxruntime.so.${ORT_VERSION}" \
    && rm -rf /tmp/wheel /tmp/ort

# The trust store: STOW-RS to an https destination verifies against it (reqwest with the system's
# roots). Only the bundle goes into the image, not the package and its openssl (15 MB).
FROM ${RUNTIME_BASE} AS certs
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Everything but the binary and the library: the same for both ways in.
FROM ${RUNTIME_BASE} AS base
ARG ORT_VERSION
# A site CA: mount a bundle over this file, or name one with SSL_CERT_FILE.
COPY --from=certs /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it and volumes can be chowned.
RUN groupadd --gid 10001 efen \
    && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin efen \
    && mkdir -p /data/drop /data/state /data/out && chown -R 10001:10001 /data
COPY config /opt/efen/config
COPY pipelines /opt/efen/pipelines
COPY models /opt/efen/models
COPY deploy/container/healthcheck /usr/local/bin/efen-healthcheck
# The project root is /opt/efen (where config/ is), whatever the working folder; the writable
# paths are under /data (mount volumes there); the library is named by ORT_DYLIB_PATH.
ENV EFEN_CONFIG=/opt/efen/config/default.toml \
    EFEN_PATHS__STATE_DIR=/data/state \
    EFEN_PATHS__OUT_DIR=/data/out \
    EFEN_HTTP__LISTEN=0.0.0.0:8080 \
    ORT_DYLIB_PATH=/opt/efen/lib/libonnxruntime.so.${ORT_VERSION}
WORKDIR /data
USER 10001:10001
EXPOSE 8080 11112
# Liveness; the compose file and Kubernetes ask /readyz for readiness. The start period covers
# loading a large model.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["efen-healthcheck", "/healthz"]
# SIGTERM drains the cases in flight (up to 30 s more while the store is down): give it 60 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["efen"]
CMD ["watch", "/data/drop"]

# A binary built outside (CI builds it once for the tests), with the library that scripts/setup.sh
# unpacked: scripts/container-test.sh copies both into .efen/dist/.
FROM base AS prebuilt
ARG ORT_VERSION
COPY .efen/dist/efen /usr/local/bin/efen
COPY .efen/dist/lib/libonnxruntime.so.${ORT_VERSION} /opt/efen/lib/

# The default target: both from the stages above.
FROM base AS runtime
ARG ORT_VERSION
COPY --from=ort /dist/lib/ /opt/efen/lib/
COPY --from=build /dist/efen /usr/local/bin/efen
