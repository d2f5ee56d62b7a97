#!/usr/bin/env bash
# The HTML pages on a full MMLU run: makes two result folders of 14,042 rows (five-shot
# chain-of-thought, two calls a row with their messages, a judge folder; benches/html_bench.py),
# times `evalr score` (which writes report.html) and `evalr compare --out`, reports the page
# sizes, then opens each page in headless Chromium (examples/html_timing.rs) for the first
# contentful paint, the time until the row list is ready, a filter, the first search, opening
# a row and the JavaScript heap. Usage: benches/html.sh [REPEAT]
set -euo pipefail
cd "$(dirname "$0")/.."
repeat="${1:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 benches/html_bench.py "$work"
cargo build --release --quiet --bin evalr --example html_timing
bin=target/release/evalr
timing=target/release/examples/html_timing
echo "outputs.jsonl: A $(du -h "$work/A/outputs.jsonl" | cut -f1), B $(du -h "$work/B/outputs.jsonl" | cut -f1)"
/usr/bin/time -f "evalr score A: %e s wall, %M KiB max RSS" "$bin" score "$work/A" >/dev/null
/usr/bin/time -f "evalr compare A B --out: %e s wall, %M KiB max RSS" "$bin" compare "$work/A" "$work/B" --out "$work/cmp" >/dev/null
echo "report.html: $(stat -c %s "$work/A/report.html") bytes; report.md: $(stat -c %s "$work/A/report.md") bytes"
echo "compare.html: $(stat -c %s "$work/cmp/compare.html") bytes"
"$timing" "$work/A/report.html" "$repeat"
"$timing" "$work/cmp/compare.html" "$repeat"
