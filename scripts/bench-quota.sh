#!/usr/bin/env bash
# Benchmark of the quota limiter (issue 16) against Microsoft's Azure OpenAI API Simulator
# (microsoft/aoai-api-simulator, Python/FastAPI), installed offline from its source at a pinned
# commit with its pinned Python requirements from PyPI, in "generate" mode, one chat deployment
# with a tokens-per-minute limit. The simulator counts requests over 10 s (ceil(TPM/1000) of
# them) and tokens (max_tokens of each request) over 60 s, sliding windows.
#
# Runs `evalr run` (release, remote path only) over ROWS anatomy rows twice:
#   (a) no quota told: the limiter learns it from the simulator's x-ratelimit-remaining-* headers;
#   (b) the quota told (--rpm, --tpm).
# and prints a Markdown table: requests, 429s, wall time against the quota bound.
#
# Usage: scripts/bench-quota.sh [TPM] [ROWS]
# The simulator's source: AOAI_SIMULATOR_SRC, a git clone (or bare repository) of
# microsoft/aoai-api-simulator containing the pinned commit.
set -euo pipefail
cd "$(dirname "$0")/.."
TPM=${1:-60000}
ROWS=${2:-135}
COMMIT=4ed91fbba78a8319f13f88b7f8fb0ec46911cee4
SRC=${AOAI_SIMULATOR_SRC:?set AOAI_SIMULATOR_SRC to a clone of microsoft/aoai-api-simulator}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/evalr/aoai-api-simulator-$COMMIT
PORT=${PORT:-18995}

if [ ! -d "$CACHE/venv" ]; then
    mkdir -p "$CACHE/src"
    git --git-dir="$(git -C "$SRC" rev-parse --git-dir 2>/dev/null || echo "$SRC")" \
        archive "$COMMIT" src/aoai-api-simulator/src src/aoai-api-simulator/requirements.txt | tar -x -C "$CACHE/src"
    python3 -m venv "$CACHE/venv"
    "$CACHE/venv/bin/pip" install --quiet --disable-pip-version-check \
        -r "$CACHE/src/src/aoai-api-simulator/requirements.txt"
fi
# tiktoken would download cl100k_base on first use: give it the copy tiktoken-rs ships
# (the same file), under the name tiktoken's cache uses (sha1 of the download URL).
TIKTOKEN_CACHE_DIR=$CACHE/tiktoken_cache
mkdir -p "$TIKTOKEN_CACHE_DIR"
if [ ! -s "$TIKTOKEN_CACHE_DIR/9b5ad71b2ce5302211f9c61530b329a4922fc6a4" ]; then
    cp "$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tiktoken-rs-*/assets | tail -1)/cl100k_base.tiktoken" \
        "$TIKTOKEN_CACHE_DIR/9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
fi

cargo build --release --quiet --no-default-features --bin evalr
BIN=$PWD/target/release/evalr
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Two deployments of one model: `warmup` (unlimited) builds the simulator's lorem tables
# (~15 s of CPU on first use), `gpt-4o` carries the quota under test.
cat >"$WORK/deployments.json" <<JSON
{"gpt-4o": {"model": "gpt-3.5-turbo", "tokensPerMinute": $TPM},
 "warmup": {"model": "gpt-3.5-turbo", "tokensPerMinute": 100000000}}
JSON
start_simulator() {
    (cd "$CACHE/src/src/aoai-api-simulator/src" &&
        TIKTOKEN_CACHE_DIR=$TIKTOKEN_CACHE_DIR SIMULATOR_MODE=generate SIMULATOR_API_KEY=test-key \
        OPENAI_DEPLOYMENT_CONFIG_PATH=$WORK/deployments.json LOG_LEVEL=WARNING \
        exec "$CACHE/venv/bin/uvicorn" aoai_api_simulator.main:app --port "$PORT" --log-level warning) \
        >"$WORK/simulator.log" 2>&1 &
    SIM_PID=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
        sleep 0.2
    done
    curl -s -o /dev/null -H "api-key: test-key" -H "content-type: application/json" \
        -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":5}' \
        "http://127.0.0.1:$PORT/openai/deployments/warmup/chat/completions?api-version=2024-10-21"
}

export AZURE_OPENAI_ENDPOINT=http://127.0.0.1:$PORT AZURE_OPENAI_API_KEY=test-key
measure() { # name, extra args...: a fresh simulator (empty windows), then evalr under /usr/bin/time
    local name=$1; shift
    start_simulator
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/$name.time" \
        "$BIN" run --program zero_shot_letters --dataset mmlu_anatomy_test --limit "$ROWS" \
        --model azure:gpt-4o --no-cache --quiet --max-retries 30 --results-dir "$WORK/$name" "$@" \
        >/dev/null
    kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true
    cat "$WORK/$name.time"
}
RPM=$(( (TPM + 999) / 1000 * 6 ))
read -r WALL_A _ _ _ < <(measure learned --max-in-flight 8)
read -r WALL_B _ _ _ < <(measure told --max-in-flight 8 --rpm "$RPM" --tpm "$TPM")
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$WORK" "$TPM" "$RPM" "$WALL_A" "$WALL_B" "$LOAD" <<'PY'
import json, sys
work, tpm, rpm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
walls = {"learned": float(sys.argv[4]), "told": float(sys.argv[5])}
load = sys.argv[6]
per_10s = -(-tpm // 1000)
for name, label in [("learned", "no quota told"), ("told", f"told --rpm {rpm} --tpm {tpm}")]:
    s = json.load(open(f"{work}/{name}/summary.json"))
    run = json.load(open(f"{work}/{name}/run.json"))
    requests, limited = s["retries"]["requests"], s["retries"]["rate_limited"]
    admitted = requests - limited
    tokens = sum(q["samples"] and sum(x["tokens"] for x in q["samples"]) for q in run.get("quota", []))
    # The requests window binds (each request costs max_tokens, a few tokens, over 60 s):
    # the bound is the admitted requests at ceil(TPM/1000) per 10 s.
    bound = admitted / per_10s * 10
    wall = walls[name]
    learned = [q.get("learned_rpm") for q in run.get("quota", [])]
    print(f"| {tpm:,} TPM, {label} | {s['rows']['outputs']} rows, {requests} requests | "
          f"429s: {limited} ({100*limited/max(requests,1):.1f}%) | {wall:.1f} s (bound {bound:.1f} s, "
          f"{100*(wall/bound-1):+.1f}%) | learned {', '.join(f'{x:.0f}/min' for x in learned if x)} | load {load} |")
PY
