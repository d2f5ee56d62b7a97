#!/usr/bin/env bash
# The Medprompt ladder on the embedded model (issue 12): each rung through `evalr run` on the
# same rows, with requests and wall time per row, and the position bias of the answers
# before and after the choice-shuffle ensemble. Prints a Markdown table for BENCHMARKS.md.
#
#   scripts/bench-medprompt.sh [ROWS] [COT_ROWS] [POOL_COT_ROWS] [THREADS]
#
# ROWS (default 60): stratified sample of the MMLU test split for the select-only rungs;
# COT_ROWS (default 8): the first rows of that sample for the chain-of-thought rungs (each
# CoT row generates up to 400 tokens per repeat). The example pool is a 40-row sample of a
# different seed; the zero-shot CoT run over its first POOL_COT_ROWS (default 20) rows feeds
# few_shot_cot and medprompt (their correct rows are the examples).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-60}
COT_ROWS=${2:-8}
POOL_COT_ROWS=${3:-20}
THREADS=${4:-1}
BIN=${EVALR:-target/debug/evalr}
# BENCH_DIR keeps the runs (to inspect them, or to tabulate a partial ladder).
WORK=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$WORK"
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$WORK"' EXIT
COMMON=(--model local --threads "$THREADS" --no-cache --quiet)

# The rows: a stratified sample of the test split, and a pool sample of another seed with the
# rows' ids removed, written as datasets so every rung reads the same file.
python3 - "$WORK" "$ROWS" <<'PY'
import json, random, sys, glob, collections
work, n = sys.argv[1], int(sys.argv[2])
rows = [json.loads(l) for f in sorted(glob.glob("datasets/mmlu_*_test.jsonl")) for l in open(f)]
def stratified(rows, n, seed):
    by = collections.defaultdict(list)
    for r in rows: by[r["subject"]].append(r)
    rng = random.Random(seed); out = []
    for s in sorted(by):
        k = max(1, round(n * len(by[s]) / len(rows)))
        out += rng.sample(by[s], min(k, len(by[s])))
    rng.shuffle(out)
    return out[:n]
test = stratified(rows, n, 2026)
ids = {r["id"] for r in test}
pool = stratified([r for r in rows if r["id"] not in ids], 40, 7)
open(f"{work}/rows.jsonl", "w").writelines(json.dumps(r) + "\n" for r in test)
open(f"{work}/pool.jsonl", "w").writelines(json.dumps(r) + "\n" for r in pool)
PY
head -n "$COT_ROWS" "$WORK/rows.jsonl" > "$WORK/cot_rows.jsonl"
head -n "$POOL_COT_ROWS" "$WORK/pool.jsonl" > "$WORK/cot_pool.jsonl"

rung() { # name, dataset, extra args...
  local name=$1 dataset=$2; shift 2
  local start end
  start=$(date +%s.%N)
  $BIN run --dataset "$WORK/$dataset.jsonl" --results-dir "$WORK/runs/$name" "${COMMON[@]}" "$@" >/dev/null
  end=$(date +%s.%N)
  echo "$name $dataset $(python3 -c "print($end - $start)")" >> "$WORK/times"
  echo "done $name: $(tail -1 "$WORK/times")" >&2
}

rung zero_shot rows --program zero_shot_letters
rung zero_shot_shuffled rows --program zero_shot_letters --repeats 5 --shuffle plain-hunt
rung few_shot rows --program few_shot --examples "$WORK/pool.jsonl"
rung knn_few_shot rows --program knn_few_shot --examples "$WORK/pool.jsonl"
rung zero_shot_cot cot_rows --program zero_shot_cot
rung cot_pool cot_pool --program zero_shot_cot
rung few_shot_cot cot_rows --program few_shot_cot --examples "$WORK/runs/cot_pool" --examples-where correct --pick knn
rung medprompt cot_rows --program medprompt --examples "$WORK/runs/cot_pool" --examples-where correct

python3 - "$WORK" <<'PY'
import json, sys, collections
work = sys.argv[1]
times = {l.split()[0]: (l.split()[1], float(l.split()[2])) for l in open(f"{work}/times")}
print("| rung | rows | accuracy | answers A/B/C/D (% of rows) | correct A/B/C/D | requests/row | s/row |")
print("|---|---|---|---|---|---|---|")
for name, (dataset, secs) in times.items():
    recs = [json.loads(l) for l in open(f"{work}/runs/{name}/outputs.jsonl")]
    n = len(recs)
    answers = collections.Counter(r["answer"]["index"] for r in recs if r.get("answer"))
    truth = collections.Counter(r["row"]["correct_answer"] for r in recs)
    correct = sum(r["outcome"] == "correct" for r in recs)
    requests = sum(c["attempts"] for r in recs for c in r["calls"])
    fmt = lambda c: "/".join(f"{100 * c[i] / n:.0f}" for i in range(4))
    print(f"| {name} | {n} | {100 * correct / n:.1f}% | {fmt(answers)} | {fmt(truth)} | {requests / n:.1f} | {secs / n:.2f} |")
print()
print("Inside the ensembles: the position each repeat picked (shown order), and how often a row's repeats all agreed.")
print()
print("| rung | repeats | picked position A/B/C/D (% of repeats) | rows with unanimous repeats |")
print("|---|---|---|---|")
for name in times:
    recs = [json.loads(l) for l in open(f"{work}/runs/{name}/outputs.jsonl")]
    reps = [rep for r in recs if r.get("ensemble") for rep in r["ensemble"]["repeats"]]
    if not reps:
        continue
    shown = collections.Counter(rep["chosen"] for rep in reps if rep["chosen"] is not None)
    unanimous = sum(len({rep["answer"] for rep in r["ensemble"]["repeats"]}) == 1 for r in recs)
    print(f"| {name} | {len(reps)} | {'/'.join(f'{100 * shown[i] / len(reps):.0f}' for i in range(4))} | {unanimous} of {len(recs)} |")
PY
echo
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; $(date -u +%Y-%m-%d)"
