#!/usr/bin/env bash
# Times `evalr score` and `evalr compare` (release build) on MMLU-sized result folders made by
# benches/score_bench.py; prints a Markdown table row per measurement (wall time, max RSS).
# Usage: benches/score.sh [REPEAT]   (REPEAT x 14,042 rows per run, default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
repeat="${1:-1}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 benches/score_bench.py "$work" "$repeat"
cargo build --release --quiet
bin=target/release/evalr
rows=$((14042 * repeat))
measure() {
  local label="$1"; shift
  # best of 3 wall times; max resident set size of the last run
  local best=""
  for _ in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null
    read -r wall rss < "$work/time"
    if [[ -z "$best" ]] || awk "BEGIN{exit !($wall < $best)}"; then best="$wall"; fi
  done
  echo "| $label | $rows | ${best} s | $((rss / 1024)) MiB |"
}
echo "| command | rows per run | wall (best of 3) | max RSS |"
echo "|---|---:|---:|---:|"
measure "evalr score (summary, report, parquet, chart)" "$bin" score "$work/A"
measure "evalr compare A B (10,000 bootstrap resamples)" "$bin" compare "$work/A" "$work/B"
