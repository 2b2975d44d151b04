# efen with the CPU ONNX Runtime library, for docker-compose.yml.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
# curl: the compose healthcheck asks /readyz with it.
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/efen
COPY config config
COPY pipelines pipelines
COPY models models
COPY scripts scripts
# The ONNX Runtime library from its wheel, unpacked where efen looks for it (.efen/onnxruntime).
RUN python3 -m pip download --no-deps --only-binary=:all: -d /tmp/wheel onnxruntime==1.32.0 --break-system-packages \
    && mkdir -p .efen/onnxruntime && python3 -m zipfile -e /tmp/wheel/*.whl .efen/onnxruntime && rm -rf /tmp/wheel
COPY --from=build /src/target/release/efen /usr/local/bin/efen
ENTRYPOINT ["efen"]
