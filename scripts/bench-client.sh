#!/usr/bin/env bash
# How light the client is (issue 16): the release build of `evalr run` (remote path only)
# against the test suite's chat-completions server (examples/mock_openai_server.rs, no
# latency, no quota) on 127.0.0.1, program zero_shot_letters, model azure:gpt-4o.
#   (a) start-up: time from spawning evalr to its first request reaching a server
#       (benches/first_request.py, median of RUNS), and the whole one-row run's CPU and peak
#       memory (median of RUNS, /usr/bin/time);
#   (b) CPU per row at 8 requests in flight: all 14,042 MMLU test rows, and the marginal cost
#       between 1,404 and 14,042 rows (start-up and scoring cancel out);
#   (c) memory: peak RSS of a run over BIG generated rows (the MMLU rows repeated with fresh
#       ids; the scorer and report writers at the end included), 8 in flight, and of
#       `evalr score` alone on its folder; the sizes of the files written.
# Usage: scripts/bench-client.sh [EVALR_BINARY] [BIG] [RUNS]
# Without EVALR_BINARY, builds the release binary (CARGO_TARGET_DIR is honoured). BIG=0 skips (c).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
BIG=${2:-1000000}
RUNS=${3:-9}
PORT=${PORT:-18993}
cargo build --release --quiet --no-default-features --example mock_openai_server
[ -n "${1:-}" ] || cargo build --release --quiet --no-default-features --bin evalr
BIN=$(realpath "${1:-$TARGET/release/evalr}")
SERVER=$TARGET/release/examples/mock_openai_server
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
export AZURE_OPENAI_API_KEY=test-key AZURE_OPENAI_ENDPOINT=http://127.0.0.1:$PORT
"$SERVER" --port "$PORT" >/dev/null 2>&1 &
sleep 1
COMMON=(--program zero_shot_letters --model azure:gpt-4o --no-cache --quiet --max-in-flight 8)

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
timed() { # name, args...: prints "wall cpu maxrss_kib" of one evalr run
    local name=$1; shift
    rm -rf "$WORK/$name"
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/$name.time" \
        "$BIN" run "${COMMON[@]}" --results-dir "$WORK/$name" "$@" >/dev/null
    awk '{ printf "%s %.3f %s\n", $1, $2 + $3, $4 }' "$WORK/$name.time"
}

echo "binary: $BIN"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC'); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
# (a)
FIRST=$(python3 benches/first_request.py "$BIN" "$RUNS" -- "${COMMON[@]}" \
    --dataset mmlu_anatomy_test --limit 1 | tail -1)
for i in $(seq "$RUNS"); do timed one --dataset mmlu_anatomy_test --limit 1; done >"$WORK/one.runs"
ONE_CPU=$(cut -d' ' -f2 "$WORK/one.runs" | median)
ONE_RSS=$(cut -d' ' -f3 "$WORK/one.runs" | median)
echo "| (a) start-up to the first request | $FIRST |"
echo "| (a) one-row run, whole process | CPU $ONE_CPU s, peak RSS $((ONE_RSS / 1024)) MiB (median of $RUNS) |"
# (b)
ROWS=$(cat datasets/mmlu_*_test.jsonl | wc -l)
read -r WALL_S CPU_S _ < <(timed small --dataset datasets --limit $((ROWS / 10)))
read -r WALL_L CPU_L RSS_L < <(timed large --dataset datasets)
python3 - "$ROWS" "$WALL_S" "$CPU_S" "$WALL_L" "$CPU_L" "$RSS_L" <<'PY'
import sys
rows, wall_s, cpu_s, wall_l, cpu_l, rss_l = sys.argv[1:]
rows = int(rows); small = rows // 10
cpu_s, cpu_l, wall_l = float(cpu_s), float(cpu_l), float(wall_l)
print(f"| (b) {rows:,} rows, 8 in flight | {wall_l:.1f} s, {rows / wall_l:,.0f} rows/s; CPU {cpu_l:.2f} s = "
      f"{cpu_l * 1000 / rows:.3f} ms/row; marginal ({small:,} to {rows:,} rows) "
      f"{(cpu_l - cpu_s) * 1000 / (rows - small):.3f} ms/row; peak RSS {int(rss_l) // 1024} MiB |")
PY
# (c)
if [ "$BIG" -gt 0 ]; then
    cat datasets/mmlu_*_test.jsonl >"$WORK/all.jsonl"
    awk -v n="$BIG" '
        { line[NR] = $0 }
        END {
            for (i = 0; i < n; i++) {
                row = line[(i % NR) + 1]
                print "{\"id\":\"gen/" i substr(row, index(row, "\",\"dataset\""))
            }
        }' "$WORK/all.jsonl" >"$WORK/big.jsonl"
    rm -f "$WORK/all.jsonl"
    read -r WALL_B CPU_B RSS_B < <(timed big --dataset "$WORK/big.jsonl")
    rm -f "$WORK/big.jsonl"
    DONE=$(wc -l <"$WORK/big/outputs.jsonl")
    echo "| (c) $BIG generated rows, 8 in flight | $DONE rows written in $WALL_B s, CPU $CPU_B s = $(awk -v c="$CPU_B" -v n="$DONE" 'BEGIN { printf "%.3f", c * 1000 / n }') ms/row; peak RSS $((RSS_B / 1024)) MiB |"
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/score.time" "$BIN" score "$WORK/big" >/dev/null
    read -r WALL_S USER_S SYS_S RSS_S <"$WORK/score.time"
    echo "| (c) \`evalr score\` alone on those rows | $WALL_S s, CPU $(awk -v u="$USER_S" -v s="$SYS_S" 'BEGIN { printf "%.2f", u + s }') s; peak RSS $((RSS_S / 1024)) MiB |"
    sizes=""
    for f in outputs.jsonl outputs.parquet report.html; do
        sizes="$sizes $f $(du -m "$WORK/big/$f" | cut -f1) MB;"
    done
    echo "| (c) files |$sizes |"
fi
