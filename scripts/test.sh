#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs what the tests need (scripts/setup.sh
# --test), then runs unit tests and the integration tests, which run the real evalr binary
# against servers they start on 127.0.0.1 (chat completions, Hugging Face hub, identity
# endpoint, MLflow) and against the embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# Console scripts pip installed (mlflow) may not be on PATH yet (pyenv shims, ~/.local/bin).
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$HOME/.local/bin:$PATH"
export PATH
export EVALR_REQUIRE_MODEL=1
# setup.sh --test installed chromium: the HTML report tests must run, not skip.
export EVALR_REQUIRE_BROWSER=1
# setup.sh --test installed buildah: the container tests must run, not skip.
export EVALR_REQUIRE_CONTAINER=1
cargo test --all-targets "$@"
