#!/usr/bin/env bash
# The HTML pages on a full MMLU run (issue 14). Two real `evalr run`s over the 14,042 rows of
# datasets/ with a five-shot chain-of-thought program (benches/html/few_shot_cot.prompty: two
# calls a row, gen then select, each call's messages recorded) against the simulated model of
# examples/html_bench_server.rs on 127.0.0.1 (two seeds: two "models"), a coherence judge over
# run A (a third server answering as the judge), then:
#   - the time of `evalr score A` (which writes report.html) and `evalr compare A B --out`;
#   - the sizes of outputs.jsonl, report.md, report.html and compare.html;
#   - each page opened REPEAT times in headless Chromium (examples/html_timing.rs): first
#     contentful paint, the moment the row list is ready, main-thread long tasks while loading,
#     a subject filter, an outcome filter, the first search, opening a row, the JS heap.
# Usage: benches/html/run.sh [REPEAT] [OUT_DIR]
#   OUT_DIR (default: a temporary folder, removed at the end) keeps the result folders, the
#   pages, the timings (JSON) and a screenshot of each page; keep it out of git.
# Honours CARGO_TARGET_DIR, and BIN_DIR (use the binaries there, build nothing). Ports 18971-18973 must be free.
set -euo pipefail
cd "$(dirname "$0")/../.."
repeat="${1:-3}"
if [ -n "${2:-}" ]; then
  work="$2"
  mkdir -p "$work"
  trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
else
  work="$(mktemp -d)"
  trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
fi
if [ -n "${BIN_DIR:-}" ]; then
  # Binaries built before (evalr, html_bench_server, html_timing), e.g. while the shared target
  # folder is busy with other builds.
  cp "$BIN_DIR/evalr" "$BIN_DIR/html_bench_server" "$BIN_DIR/html_timing" "$work/"
else
  target="${CARGO_TARGET_DIR:-target}"
  # The remote path only (no llama.cpp build); the examples need no model.
  cargo build --release --quiet --no-default-features --bin evalr \
    --example html_bench_server --example html_timing
  # A copy: another worktree building into the same target folder would replace the binary.
  cp "$target/release/evalr" "$target/release/examples/html_bench_server" \
    "$target/release/examples/html_timing" "$work/"
fi
bin="$work/evalr"
export AZURE_OPENAI_API_KEY=test-key

"$work/html_bench_server" --port 18971 --seed 1 --skill 0.80 2>"$work/server-a.log" &
"$work/html_bench_server" --port 18972 --seed 2 --skill 0.82 2>"$work/server-b.log" &
"$work/html_bench_server" --port 18973 --seed 3 --judge 2>"$work/server-judge.log" &
for port in 18971 18972 18973; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB; $(chromium --version 2>/dev/null || true)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run() { # NAME PORT: one full run, timed
  AZURE_OPENAI_ENDPOINT="http://127.0.0.1:$2" /usr/bin/time -f "evalr run $1: %e s wall, %U+%S s CPU, %M KiB max RSS" \
    "$bin" run --program benches/html/few_shot_cot.prompty --dataset datasets \
      --model azure:gpt-4o-mini --no-cache --quiet --max-in-flight 32 --results-dir "$work/$1" >/dev/null
}
run A 18971
run B 18972
AZURE_OPENAI_ENDPOINT="http://127.0.0.1:18973" /usr/bin/time -f "evalr judge A coherence: %e s wall, %M KiB max RSS" \
  "$bin" judge "$work/A" --metric coherence --judge-model azure:gpt-4o --no-cache --quiet --max-in-flight 32 >/dev/null
/usr/bin/time -f "evalr score A: %e s wall, %M KiB max RSS" "$bin" score "$work/A" >/dev/null
/usr/bin/time -f "evalr compare A B --out: %e s wall, %M KiB max RSS" \
  "$bin" compare "$work/A" "$work/B" --out "$work/cmp" >/dev/null || true  # exit 3: B differs
python3 - "$work" <<'PY'
import json, os, sys
w = sys.argv[1]
s = json.load(open(f"{w}/A/summary.json"))
rows = s["rows"]["outputs"]
calls = sum(1 for line in open(f"{w}/A/outputs.jsonl") for _ in json.loads(line)["calls"])
size = lambda p: os.path.getsize(f"{w}/{p}")
print(f"run A: {rows} rows, {calls} calls; accuracy {s['accuracy']['micro']['value']:.4f}")
for p in ["A/outputs.jsonl", "A/judge/coherence/outputs.jsonl", "A/report.md", "A/report.html", "cmp/compare.html"]:
    print(f"{p}: {size(p):,} bytes ({size(p) / 2**20:.1f} MiB), {size(p) / rows:,.0f} bytes/row")
c = json.load(open(f"{w}/cmp/compare.json"))
pair = c["pairs"][0]
f = pair["flipped"]
print(f"compare: accuracy A {pair['accuracy_a']['value']:.4f}, B {pair['accuracy_b']['value']:.4f}; "
      f"flipped rows on compare.html: {len(f['right_to_wrong'])} right->wrong, {len(f['wrong_to_right'])} wrong->right")
PY
echo "load after runs: $(cut -d' ' -f1-3 /proc/loadavg)"
"$work/html_timing" "$work/A/report.html" "$repeat" "$work/report.png" | tee "$work/report-timing.json"
"$work/html_timing" "$work/cmp/compare.html" "$repeat" "$work/compare.png" | tee "$work/compare-timing.json"
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
