#!/usr/bin/env bash
# Benchmark of the quota limiter (issue 16) against Microsoft's Azure OpenAI API Simulator
# (microsoft/aoai-api-simulator, Python/FastAPI), installed offline from its source at a pinned
# commit with its pinned Python requirements from PyPI, in "generate" mode, one chat deployment
# with a tokens-per-minute limit. The simulator counts requests over 10 s (ceil(TPM/1000) of
# them) and tokens (max_tokens of each request) over 60 s, sliding windows, and sends
# x-ratelimit-remaining-requests/-tokens on its answers and retry-after on its 429s.
#
# Runs `evalr run` (release, remote path only, --max-in-flight 8) over ROWS anatomy rows:
#   (a) evalr before issue 16 (main at BASELINE, built from git): no quota told, a fixed
#       number in flight, backing off on 429s only;
#   (b) this evalr, no quota told: the limiter learns it from the simulator's headers;
#   (c) this evalr, the quota told (--rpm, --tpm).
# Each case gets a fresh simulator (empty windows). The simulator's own access log counts the
# requests and 429s (evalr's summary.json is printed beside it). Prints a Markdown table.
#
# Usage: scripts/bench-quota.sh [TPM] [ROWS]
# CASES: which of before, learned, told to run (default all three). EVALR_BIN: use this evalr
# instead of building the tree's.
# AOAI_SIMULATOR_SRC: a git clone (or bare repository) of microsoft/aoai-api-simulator holding
# the pinned commit. PYTHON: the simulator wants Python >= 3.12 (default: python3.12).
# CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
TPM=${1:-6000}
ROWS=${2:-40}
COMMIT=4ed91fbba78a8319f13f88b7f8fb0ec46911cee4
# main just before the quota learning merged (e81b1ba).
BASELINE=b00d3986794f559f105751fa91b6ae0bde07abdb
SRC=${AOAI_SIMULATOR_SRC:?set AOAI_SIMULATOR_SRC to a clone of microsoft/aoai-api-simulator}
PYTHON=${PYTHON:-python3.12}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/evalr/aoai-api-simulator-$COMMIT
PORT=${PORT:-18995}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}

if [ ! -x "$CACHE/venv/bin/uvicorn" ]; then
    rm -rf "$CACHE" && mkdir -p "$CACHE/src"
    # Only the simulator's own folder: the repository's test audio files are large and may be
    # absent from a partial clone.
    git --git-dir="$(git -C "$SRC" rev-parse --git-dir 2>/dev/null || echo "$SRC")" \
        archive --prefix=src/aoai-api-simulator/ "$COMMIT:src/aoai-api-simulator" | tar -x -C "$CACHE/src"
    "$PYTHON" -m venv "$CACHE/venv"
    # azure-monitor-opentelemetry 1.3.0 imports pkg_resources, which a Python 3.12 venv lacks
    # and setuptools 81 removed.
    "$CACHE/venv/bin/pip" install --quiet --disable-pip-version-check \
        -r "$CACHE/src/src/aoai-api-simulator/requirements.txt" "setuptools<81"
fi
# tiktoken would download cl100k_base on first use: give it the copy tiktoken-rs ships
# (the same file), under the name tiktoken's cache uses (sha1 of the download URL).
TIKTOKEN_CACHE_DIR=$CACHE/tiktoken_cache
mkdir -p "$TIKTOKEN_CACHE_DIR"
if [ ! -s "$TIKTOKEN_CACHE_DIR/9b5ad71b2ce5302211f9c61530b329a4922fc6a4" ]; then
    cp "$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tiktoken-rs-*/assets | tail -1)/cl100k_base.tiktoken" \
        "$TIKTOKEN_CACHE_DIR/9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
fi

CASES=${CASES:-before learned told}
if [ -z "${EVALR_BIN:-}" ]; then
    cargo build --release --quiet --no-default-features --bin evalr
fi
BIN=${EVALR_BIN:-$TARGET/release/evalr}
# The baseline, from git into its own folder and target (its sources differ from the tree's).
BASE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/evalr/bench-baseline-$BASELINE
if [[ " $CASES " == *" before "* ]] && [ ! -x "$BASE_DIR/target/release/evalr" ]; then
    mkdir -p "$BASE_DIR/src"
    git archive "$BASELINE" | tar -x -C "$BASE_DIR/src"
    (cd "$BASE_DIR/src" && CARGO_TARGET_DIR="$BASE_DIR/target" \
        cargo build --release --quiet --no-default-features --bin evalr)
    rm -rf "$BASE_DIR/src"
fi
BASE_BIN=$BASE_DIR/target/release/evalr

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Two deployments of one model: `warmup` (unlimited) builds the simulator's lorem tables
# (~15 s of CPU on first use), `gpt-4o` carries the quota under test.
cat >"$WORK/deployments.json" <<JSON
{"gpt-4o": {"model": "gpt-3.5-turbo", "tokensPerMinute": $TPM},
 "warmup": {"model": "gpt-3.5-turbo", "tokensPerMinute": 100000000}}
JSON
start_simulator() { # log file
    (cd "$CACHE/src/src/aoai-api-simulator/src" &&
        TIKTOKEN_CACHE_DIR=$TIKTOKEN_CACHE_DIR SIMULATOR_MODE=generate SIMULATOR_API_KEY=test-key \
        OPENAI_DEPLOYMENT_CONFIG_PATH=$WORK/deployments.json LOG_LEVEL=WARNING \
        exec "$CACHE/venv/bin/uvicorn" aoai_api_simulator.main:app --host 127.0.0.1 --port "$PORT" \
        --log-level info) >"$1" 2>&1 &
    SIM_PID=$!
    for _ in $(seq 150); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
        sleep 0.2
    done
    curl -s -o /dev/null -H "api-key: test-key" -H "content-type: application/json" \
        -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":5}' \
        "http://127.0.0.1:$PORT/openai/deployments/warmup/chat/completions?api-version=2024-10-21"
}

export AZURE_OPENAI_ENDPOINT=http://127.0.0.1:$PORT AZURE_OPENAI_API_KEY=test-key
measure() { # name, binary, extra args...: a fresh simulator, then evalr under /usr/bin/time
    local name=$1 bin=$2; shift 2
    start_simulator "$WORK/$name.simulator.log"
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/$name.time" \
        "$bin" run --program zero_shot_letters --dataset mmlu_anatomy_test --limit "$ROWS" \
        --model azure:gpt-4o --no-cache --quiet --max-retries 30 --results-dir "$WORK/$name" "$@" \
        >"$WORK/$name.out" 2>&1 || { cat "$WORK/$name.out" >&2; exit 1; }
    kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true
}
RPM=$(( (TPM + 999) / 1000 * 6 ))
for case in $CASES; do
    case $case in
    before) measure before "$BASE_BIN" --max-in-flight 8 ;;
    learned) measure learned "$BIN" --max-in-flight 8 ;;
    told) measure told "$BIN" --max-in-flight 8 --rpm "$RPM" --tpm "$TPM" ;;
    esac
done
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$WORK" "$TPM" "$RPM" "$LOAD" $CASES <<'PY'
import json, re, sys
work, tpm, rpm, load = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cases = sys.argv[5:]
print(f"| case | rows | requests (simulator) | 429s (simulator) | 429s (evalr) | wall | quota bound | wall / bound | CPU | learned pace |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for name, label in [("before", "before issue 16, no quota told"),
                    ("learned", "no quota told (learned)"),
                    ("told", f"told --rpm {rpm} --tpm {tpm}")]:
    if name not in cases:
        continue
    s = json.load(open(f"{work}/{name}/summary.json"))
    run = json.load(open(f"{work}/{name}/run.json"))
    wall, user, system, _ = open(f"{work}/{name}.time").read().split()
    wall, cpu = float(wall), float(user) + float(system)
    # uvicorn's access log: '... "POST /openai/deployments/gpt-4o/chat/completions?... HTTP/1.1" 429'
    codes = re.findall(r'POST /openai/deployments/gpt-4o/chat/completions\S* HTTP/1.1" (\d{3})',
                       open(f"{work}/{name}.simulator.log").read())
    sent, limited = len(codes), codes.count("429")
    admitted = sent - limited
    # The bound: the admitted requests at the deployment's request rate (6 per 1,000 TPM a
    # minute, enforced as ceil(TPM/1000) per 10 s); each request costs its max_tokens (1 for a
    # letter select), so the token window never binds here.
    bound = admitted / rpm * 60
    learned = [(q.get("learned_rpm"), q.get("request_window_s"), q.get("token_window_s"))
               for q in run.get("quota", [])]
    pace = ", ".join(
        f"{rpm:.1f} RPM" + "".join(f", {name} window {w:.1f} s"
                                   for name, w in (("request", rw), ("token", tw)) if w)
        for rpm, rw, tw in learned if rpm) or "-"
    print(f"| {label} | {s['rows']['outputs']} | {sent} | {limited} ({100*limited/max(sent,1):.1f}%) | "
          f"{s['retries']['rate_limited']} | {wall:.1f} s | {bound:.1f} s | {wall/bound:.3f} | {cpu:.2f} s | {pace} |")
print(f"\nTPM {tpm:,} ({rpm} RPM), load average at the end {load}")
PY
