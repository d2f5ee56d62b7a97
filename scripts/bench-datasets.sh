#!/usr/bin/env bash
# Dataset benchmarks (figures go to BENCHMARKS.md, section "Datasets"):
#  1. convert throughput, rows/s: the whole MMLU test split (the `all` parquet, 14,042 rows)
#     to JSONL, and that JSONL back through the reader/writer (JSONL -> JSONL);
#  2. flat memory: peak RSS of reading (`datasets show NAME --row LAST`, which streams every
#     row) and of converting a generated 100,000-row and 1,000,000-row JSONL file.
# Needs /usr/bin/time (GNU time) and awk. Uses a release build.
#
#   scripts/bench-datasets.sh [RUNS]     (default 5 runs per figure; the median is reported)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
data="${MMLU_HF_DIR:-../shared/data/mmlu/hf}"
all_parquet="$data/cais/mmlu/all/test-00000-of-00001.parquet"

cargo build --quiet --release --bin evalr
evalr="$PWD/target/release/evalr"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run CMD... `runs` times; prints "median_wall_seconds median_max_rss_kib" (wall time
# includes process start-up)
measure() {
    : > "$work/times"
    for _ in $(seq "$runs"); do
        local start end
        start=$EPOCHREALTIME
        /usr/bin/time -f "%M" -o "$work/time1" "$@" > /dev/null
        end=$EPOCHREALTIME
        echo "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }') $(cat "$work/time1")" >> "$work/times"
    done
    echo "$(cut -d' ' -f1 < "$work/times" | median) $(cut -d' ' -f2 < "$work/times" | median)"
}

rate() { awk -v rows="$1" -v secs="$2" 'BEGIN { if (secs <= 0) secs = 0.005; printf "%.0f", rows / secs }'; }

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u +%Y-%m-%d)"
echo

read -r secs rss < <(measure "$evalr" datasets convert "$all_parquet" --out "$work/mmlu_all_test.jsonl")
echo "| convert MMLU all parquet -> JSONL (14,042 rows) | $secs s | $(rate 14042 "$secs") rows/s | $rss KiB |"
read -r secs rss < <(measure "$evalr" datasets convert "$work/mmlu_all_test.jsonl" --out "$work/copy.jsonl")
echo "| convert MMLU JSONL -> JSONL (14,042 rows) | $secs s | $(rate 14042 "$secs") rows/s | $rss KiB |"

# Generated datasets: the MMLU rows repeated with fresh ids.
generate() {
    awk -v n="$1" '
        { line[NR] = $0 }
        END {
            for (i = 0; i < n; i++) {
                row = line[(i % NR) + 1]
                # every line starts {"id":"...","dataset": ...; swap the id (no regex: fast)
                print "{\"id\":\"gen/" i substr(row, index(row, "\",\"dataset\""))
            }
        }' "$work/mmlu_all_test.jsonl" > "$2"
}
for rows in 100000 1000000; do
    generate "$rows" "$work/gen_$rows.jsonl"
    size=$(du -m "$work/gen_$rows.jsonl" | cut -f1)
    read -r secs rss < <(measure "$evalr" datasets show "$work/gen_$rows.jsonl" --row $((rows - 1)))
    echo "| read (show --row last) $rows rows, $size MB | $secs s | $(rate "$rows" "$secs") rows/s | $rss KiB |"
    read -r secs rss < <(measure "$evalr" datasets convert "$work/gen_$rows.jsonl" --out "$work/out.jsonl")
    echo "| convert JSONL -> JSONL $rows rows, $size MB | $secs s | $(rate "$rows" "$secs") rows/s | $rss KiB |"
    rm -f "$work/out.jsonl"
done
