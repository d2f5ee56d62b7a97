#!/usr/bin/env bash
# Makes the committed datasets/mmlu_<subject>_test.jsonl (57 files, 14,042 rows) with
# `evalr datasets fetch` itself, against a local Hugging Face hub mirror (the test mirror,
# examples/hf_mirror.rs) serving tests/fixtures/hf (a copy of ../shared/data/mmlu/hf), the MMLU test split laid out
# like the hub repository cais/mmlu. Uses a throw-away HF_HOME, so the real cache is untouched.
#
#   scripts/fetch-mmlu.sh [DATASETS_DIR]      (default: datasets)
#   MMLU_HF_DIR=/path/to/hf scripts/fetch-mmlu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
data="${MMLU_HF_DIR:-tests/fixtures/hf}"
out="${1:-datasets}"

cargo build --quiet --bin evalr --example hf_mirror

work="$(mktemp -d)"
mirror_pid=""
cleanup() {
    if [ -n "$mirror_pid" ]; then kill "$mirror_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

./target/debug/examples/hf_mirror "$data" 127.0.0.1:0 > "$work/endpoint" &
mirror_pid=$!
for _ in $(seq 100); do
    [ -s "$work/endpoint" ] && break
    sleep 0.05
done
endpoint="$(head -n 1 "$work/endpoint")"
echo "mirror of $data at $endpoint" >&2

HF_HOME="$work/hf-home" HF_ENDPOINT="$endpoint" \
    ./target/debug/evalr datasets fetch cais/mmlu --subject all --split test --datasets-dir "$out"
