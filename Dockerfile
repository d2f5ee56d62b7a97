# evalr as a container: the image AzureML command jobs run (azureml/environment.yml builds
# it), also usable with `docker run`.
#
# Stage 1 builds the release binary. The default build embeds llama.cpp (the local model
# backend), which needs cmake and a C/C++ toolchain, and clang/libclang for its bindings.
FROM rust:1-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin evalr \
    && strip target/release/evalr \
    && cp target/release/evalr /usr/local/bin/evalr

# Stage 2: the runtime, just the binary and what it links to (libgomp for llama.cpp's
# OpenMP threads, CA certificates for HTTPS to Azure).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --shell /bin/bash evalr
COPY --from=builder /usr/local/bin/evalr /usr/local/bin/evalr
USER evalr
WORKDIR /home/evalr
ENTRYPOINT ["evalr"]
CMD ["--help"]
