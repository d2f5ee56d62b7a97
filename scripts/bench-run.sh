#!/usr/bin/env bash
# Benchmark of `evalr run` against the local chat-completions server (issue 3), all 14,042
# MMLU test rows (the 57 files in datasets/):
#   (a) no latency, no quota: rows/s and CPU ms per row;
#   (b) a quota of R requests/min with 100 ms latency: wall time against the bound 14,042/R
#       and the share of requests that got a 429;
#   (c) peak memory for 1/10 of the rows and for all of them (flat in the number of rows).
# Prints a Markdown table to paste into BENCHMARKS.md. Usage: scripts/bench-run.sh [RPM]
set -euo pipefail
cd "$(dirname "$0")/.."
RPM=${1:-12000}
PORT_A=18991
PORT_B=18992
cargo build --release --quiet --no-default-features --example mock_openai_server --bin evalr  # the remote path only: no llama.cpp build
BIN=target/release/evalr
SERVER=target/release/examples/mock_openai_server
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
export AZURE_OPENAI_API_KEY=test-key
ROWS=$(cat datasets/mmlu_*_test.jsonl | wc -l)

$SERVER --port $PORT_A >/dev/null 2>&1 &
$SERVER --port $PORT_B --rpm "$RPM" --latency-ms 100 >/dev/null 2>&1 &
sleep 1

measure() { # name, extra args...: runs evalr under /usr/bin/time, prints "wall user sys maxrss_kb"
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/$name.time" \
    $BIN run --program zero_shot_letters --dataset datasets --model azure:gpt-4o --no-cache --quiet \
      --results-dir "$WORK/$name" "$@" >/dev/null
  cat "$WORK/$name.time"
}

export AZURE_OPENAI_ENDPOINT=http://127.0.0.1:$PORT_A
read -r WALL_A USER_A SYS_A RSS_A < <(measure a --max-in-flight 64)
read -r WALL_C USER_C SYS_C RSS_C < <(measure c --max-in-flight 64 --limit $((ROWS / 10)))
export AZURE_OPENAI_ENDPOINT=http://127.0.0.1:$PORT_B
read -r WALL_B USER_B SYS_B RSS_B < <(measure b --max-in-flight 64 --rpm "$RPM")

python3 - "$WORK" "$ROWS" "$RPM" <<PY
import json, sys
work, rows, rpm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
wall_a, user_a, sys_a, rss_a = $WALL_A, $USER_A, $SYS_A, $RSS_A
wall_b, rss_b = $WALL_B, $RSS_B
wall_c, rss_c = $WALL_C, $RSS_C
sa = json.load(open(f"{work}/a/summary.json"))
sb = json.load(open(f"{work}/b/summary.json"))
bound = rows / rpm * 60
na, nb = sa["rows"]["outputs"], sb["rows"]["outputs"]
limited, requests = sb["retries"]["rate_limited"], sb["retries"]["requests"]
share = limited / max(requests, 1)
print(f"| (a) no latency | {na} rows in {wall_a:.1f} s | {na/wall_a:.0f} rows/s, {(user_a+sys_a)*1000/na:.2f} CPU ms/row | peak RSS {rss_a/1024:.0f} MiB |")
print(f"| (b) {rpm} RPM, 100 ms latency | {nb} rows in {wall_b:.1f} s (bound {bound:.1f} s, {100*(wall_b/bound-1):+.1f}%) | 429s: {limited} of {requests} requests ({100*share:.2f}%) | peak RSS {rss_b/1024:.0f} MiB |")
print(f"| (c) memory | {rows//10} rows: {rss_c/1024:.0f} MiB | {rows} rows: {rss_a/1024:.0f} MiB | ratio {rss_a/rss_c:.2f} |")
PY
