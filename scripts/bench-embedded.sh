#!/usr/bin/env bash
# The embedded model against llama.cpp itself (issue 16): the same 135 MMLU anatomy prompts
# scored by `evalr run --model local` (program zero_shot_letters, no cache) and by
# llama-cpp-python (benches/llama_cpp_peer.py: the prompts evalr recorded, rendered with
# llama.cpp's own chat-template function and evaluated with the KV prefix kept, as
# `Llama.generate` does). Both whole processes are timed with /usr/bin/time, taken in turn
# (A B A B ...) so that a change in the machine's load hits both; the peer also times its
# evaluation loop alone.
#
# Usage: scripts/bench-embedded.sh EVALR_BINARY [EVALR_BINARY_2] [RUNS] [THREADS]
# e.g. a portable build (llama.cpp for AVX2) and a native one (RUSTFLAGS="-C target-cpu=native",
# what scripts/setup.sh configures). llama-cpp-python: `pip install llama-cpp-python` builds
# llama.cpp from source for the machine's CPU (GGML_NATIVE).
set -euo pipefail
cd "$(dirname "$0")/.."
A=$(realpath "$1")
B=${2:+$(realpath "$2")}
RUNS=${3:-3}
THREADS=${4:-2}
MODEL=${EVALR_MODEL_DIR:-$HOME/.cache/evalr/models}/gemma-3-270m-q4_k_m.gguf
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

evalr_run() { # binary, tag, i: prints "wall cpu"
    rm -rf "$WORK/$2"
    /usr/bin/time -f "%e %U %S" -o "$WORK/$2.$3.time" "$1" run --program zero_shot_letters \
        --dataset mmlu_anatomy_test --model local --threads "$THREADS" --no-cache --quiet \
        --results-dir "$WORK/$2" >/dev/null
}
peer_run() { # i
    /usr/bin/time -f "%e %U %S" -o "$WORK/peer.$1.time" \
        python3 benches/llama_cpp_peer.py "$MODEL" "$WORK/a" "$THREADS" >"$WORK/peer.$1.json"
}
evalr_run "$A" a 0 # the prompts the peer replays, and a warm page cache
for i in $(seq "$RUNS"); do
    evalr_run "$A" a "$i"
    [ -n "$B" ] && evalr_run "$B" b "$i"
    peer_run "$i"
done

python3 - "$WORK" "$RUNS" "$A" "${B:-}" <<'PY'
import json, statistics, sys
work, runs, a, b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def walls(tag):
    return [float(open(f"{work}/{tag}.{i}.time").read().split()[0]) for i in range(1, runs + 1)]
peer = [json.load(open(f"{work}/peer.{i}.json")) for i in range(1, runs + 1)]
rows = peer[0]["rows"]
print(f"135 rows, median of {runs} whole-process runs each (load, prompts, scoring included)\n")
print("| what | wall (median) | rows/s | vs llama.cpp |")
print("|---|---:|---:|---:|")
p = statistics.median(walls("peer"))
for tag, binary in [("a", a), ("b", b)]:
    if not binary:
        continue
    w = statistics.median(walls(tag))
    print(f"| evalr `{binary}` | {w:.2f} s | {rows / w:.2f} | {p / w:.2f} |")
print(f"| llama-cpp-python {peer[0]['threads']} threads | {p:.2f} s | {rows / p:.2f} | 1.00 |")
inner = statistics.median(x["rows_per_s"] for x in peer)
tps = statistics.median(x["decoded_tokens_per_s"] for x in peer)
print(f"\nllama-cpp-python's evaluation loop alone: {inner:.2f} rows/s, {tps:.0f} decoded tokens/s; "
      f"its argmax agrees with evalr's choice on {peer[0]['agrees_with_evalr']} of {rows} rows.")
print(f"llama.cpp in llama-cpp-python: {peer[0]['system']}")
PY
