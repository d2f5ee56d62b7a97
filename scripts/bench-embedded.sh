#!/usr/bin/env bash
# The embedded model against llama.cpp itself (issue 16): the same 135 MMLU anatomy prompts
# scored by `evalr run --model local` (program zero_shot_letters, no cache) and by
# llama-cpp-python (benches/llama_cpp_peer.py: the prompts evalr recorded, rendered with
# llama.cpp's own chat-template function and evaluated with the KV prefix kept, as
# `Llama.generate` does, and the same log-softmax over the vocabulary per row). Same model,
# context (8192), batch (2048/512) and threads. The commands are taken in turn (A B peer, A B
# peer, ...) so that a change in the machine's load hits all of them; each whole process is
# timed with /usr/bin/time (wall and CPU), and each one's scoring loop alone too: rows 2..135
# over the time between the first and the last row's end (evalr's `finished_at` times, the
# peer's clock), which leaves out loading the model and starting the process.
#
# Usage: scripts/bench-embedded.sh EVALR_BINARY [EVALR_BINARY_2] [RUNS] [THREADS]
# e.g. a portable build and a native one (scripts/setup.sh; see docs/embedded-model.md).
# PEER_PYTHON: the Python whose llama-cpp-python is the peer (default python3). Build it for
# this CPU without AMX, which crashes llama.cpp here (see docs/embedded-model.md):
#   CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=ON ... -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF" \
#     pip install --no-binary llama-cpp-python llama-cpp-python
# PEER_FLASH_ATTN=1: the peer with flash attention (llama-cpp-python's default is off; evalr
# leaves llama.cpp's own default, auto, which turns it on for the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
A=$(realpath "$1")
B=""
[ $# -ge 2 ] && [ -x "$2" ] && B=$(realpath "$2") && shift
RUNS=${2:-3}
THREADS=${3:-2}
PEER_PYTHON=${PEER_PYTHON:-python3}
PEER_FLAGS=()
[ "${PEER_FLASH_ATTN:-0}" = 1 ] && PEER_FLAGS+=(--flash-attn)
MODEL=${EVALR_MODEL_DIR:-$HOME/.cache/evalr/models}/gemma-3-270m-q4_k_m.gguf
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

evalr_run() { # binary, tag, i
    rm -rf "$WORK/$2.$3"
    /usr/bin/time -f "%e %U %S" -o "$WORK/$2.$3.time" "$1" run --program zero_shot_letters \
        --dataset mmlu_anatomy_test --model local --threads "$THREADS" --no-cache --quiet \
        --results-dir "$WORK/$2.$3" >/dev/null
}
peer_run() { # i
    /usr/bin/time -f "%e %U %S" -o "$WORK/peer.$1.time" "$PEER_PYTHON" benches/llama_cpp_peer.py \
        "$MODEL" "$WORK/a.0" "$THREADS" "${PEER_FLAGS[@]}" >"$WORK/peer.$1.json"
}
evalr_run "$A" a 0 # the prompts the peer replays, and a warm page cache
for i in $(seq "$RUNS"); do
    evalr_run "$A" a "$i"
    [ -n "$B" ] && evalr_run "$B" b "$i"
    peer_run "$i"
done
uptime

python3 - "$WORK" "$RUNS" "$A" "$B" <<'PY'
import glob, json, statistics, sys
from datetime import datetime
work, runs, a, b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def times(tag):  # (wall, cpu) per run
    out = []
    for i in range(1, runs + 1):
        wall, user, system = map(float, open(f"{work}/{tag}.{i}.time").read().split())
        out.append((wall, user + system))
    return out
def evalr_loop(tag, i):  # rows 2..n per second between the first and the last row's end
    ends = []
    for path in glob.glob(f"{work}/{tag}.{i}/**/outputs.jsonl", recursive=True):
        for line in open(path):
            ends.append(datetime.fromisoformat(json.loads(line)["finished_at"].replace("Z", "+00:00")))
    ends.sort()
    return (len(ends) - 1) / (ends[-1] - ends[0]).total_seconds()
peer = [json.load(open(f"{work}/peer.{i}.json")) for i in range(1, runs + 1)]
rows = peer[0]["rows"]
med = statistics.median
print(f"{rows} rows, median of {runs} runs each, taken in turn\n")
print("| what | wall | CPU (user+sys) | rows/s, whole process | rows/s, scoring loop | loop vs llama.cpp |")
print("|---|---:|---:|---:|---:|---:|")
p_loop = med(x["rows_per_s_after_first"] for x in peer)
for tag, binary in [("a", a), ("b", b)]:
    if not binary:
        continue
    t = times(tag)
    w, c = med(x[0] for x in t), med(x[1] for x in t)
    loop = med(evalr_loop(tag, i) for i in range(1, runs + 1))
    print(f"| evalr `{binary}` | {w:.2f} s | {c:.2f} s | {rows / w:.2f} | {loop:.2f} | {loop / p_loop:.2f} |")
t = times("peer")
w, c = med(x[0] for x in t), med(x[1] for x in t)
fa = ", flash attention" if peer[0].get("flash_attn") else ""
print(f"| llama-cpp-python, {peer[0]['threads']} threads{fa} | {w:.2f} s | {c:.2f} s | {rows / w:.2f} | {p_loop:.2f} | 1.00 |")
tps = med(x["decoded_tokens_per_s"] for x in peer)
print(f"\nllama-cpp-python decoded {peer[0]['decoded_tokens']} of {peer[0]['prompt_tokens']} prompt tokens "
      f"({tps:.0f}/s over its whole loop); its argmax agrees with evalr's choice on "
      f"{peer[0]['agrees_with_evalr']} of {rows} rows.")
print(f"llama.cpp in llama-cpp-python: {peer[0]['system']}")
PY
