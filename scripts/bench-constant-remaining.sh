#!/usr/bin/env bash
# Benchmark of a quota that is not binding (issue 23): a chat-completions server that answers
# every request at once and sends a constant `x-ratelimit-remaining-requests: 100` (no limit,
# no reset header), as gateways and proxies in front of OpenAI-compatible servers do. The
# server is the test suite's (`examples/mock_openai_server.rs --constant-remaining 100`,
# release build) on 127.0.0.1; it answers "A" to everything.
#
# Side by side, taken in turn (A B C A B C ...), each RUNS times, whole process under
# /usr/bin/time:
#   evalr (EVALR, default: this tree's release build, remote path only) and, when EVALR_BEFORE
#   is set, another evalr (e.g. the build before the fix): `zero_shot_letters`, azure:gpt-4o,
#   --max-in-flight 8 (the default), no cache;
#   lm-evaluation-harness (LM_EVAL, default `lm_eval` on PATH; `pip install "lm-eval[api]"`):
#   its `local-chat-completions` model on /v1/chat/completions, num_concurrent=8, a
#   zero-shot generate_until task written here from MMLU's own generative template (question,
#   the four choices as "A. ...", "Answer:"; until "\n", max_gen_toks 1) over the same rows,
#   read from local parquet files (no hub access).
# Rows: ROWS=545 (high_school_psychology, the default) or ROWS=14042 (the 57 subjects).
# MMLU_HF: the MMLU test split laid out like the hub's cais/mmlu (<subject>/test-*.parquet
# and all/test-*.parquet), for lm-eval. Prints a Markdown table (medians, min-max) and each
# evalr run's quota mode and learned pace from run.json.
#
# Usage: ROWS=545 RUNS=5 MMLU_HF=/path/to/cais/mmlu [EVALR_BEFORE=/path/evalr] \
#        scripts/bench-constant-remaining.sh
# CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-545}
RUNS=${RUNS:-5}
PORT=${PORT:-18996}
MMLU_HF=${MMLU_HF:?set MMLU_HF to a folder laid out like the hub repository cais/mmlu}
LM_EVAL=${LM_EVAL:-lm_eval}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet --no-default-features --example mock_openai_server --bin evalr
EVALR=${EVALR:-$TARGET/release/evalr}
SERVER=$TARGET/release/examples/mock_openai_server
case $ROWS in
545) DATASET=mmlu_high_school_psychology_test PARQUET=$MMLU_HF/high_school_psychology ;;
14042) DATASET=datasets PARQUET=$MMLU_HF/all ;;
*) echo "ROWS is 545 or 14042" >&2; exit 2 ;;
esac

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$SERVER" --port "$PORT" --constant-remaining 100 >/dev/null 2>&1 &
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 0.1
done

mkdir -p "$WORK/tasks"
cat >"$WORK/tasks/bench_mmlu.yaml" <<YAML
task: bench_mmlu_generative
dataset_path: parquet
dataset_kwargs:
  data_files:
    test: $(ls "$PARQUET"/test-*.parquet)
test_split: test
output_type: generate_until
doc_to_text: "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"
doc_to_target: "{{['A', 'B', 'C', 'D'][answer]}}"
generation_kwargs:
  until: ["\n"]
  max_gen_toks: 1
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
YAML

export AZURE_OPENAI_ENDPOINT=http://127.0.0.1:$PORT AZURE_OPENAI_API_KEY=test-key
export OPENAI_API_KEY=test-key HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1
evalr_run=(run --program zero_shot_letters --dataset "$DATASET" --model azure:gpt-4o --no-cache
    --quiet --results-dir)
lm_eval_run=("$LM_EVAL" --model local-chat-completions --tasks bench_mmlu_generative
    --include_path "$WORK/tasks" --apply_chat_template --batch_size 1
    --model_args "model=gpt-4o,base_url=http://127.0.0.1:$PORT/v1/chat/completions,num_concurrent=8,max_retries=3,tokenized_requests=False"
    --output_path)
CASES="after lm_eval"
[ -n "${EVALR_BEFORE:-}" ] && CASES="before $CASES"
for run in $(seq "$RUNS"); do
    for case in $CASES; do
        out=$WORK/$case.$run
        case $case in
        before) cmd=("$EVALR_BEFORE" "${evalr_run[@]}" "$out") ;;
        after) cmd=("$EVALR" "${evalr_run[@]}" "$out") ;;
        lm_eval) cmd=("${lm_eval_run[@]}" "$out") ;;
        esac
        /usr/bin/time -f "%e %U %S %M" -o "$out.time" "${cmd[@]}" >"$out.log" 2>&1 ||
            { cat "$out.log" >&2; exit 1; }
    done
done

python3 - "$WORK" "$ROWS" "$RUNS" "$(cut -d' ' -f1-3 /proc/loadavg)" $CASES <<'PY'
import json, re, statistics, sys
work, rows, runs, load = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
labels = {"before": "evalr (EVALR_BEFORE)", "after": "evalr", "lm_eval": "lm-evaluation-harness"}
print("| client | rows | wall, median (min-max) | rows/s (median) | CPU, median | peak RSS | quota (run.json) / serving rate |")
print("|---|---:|---:|---:|---:|---:|---|")
for case in sys.argv[5:]:
    times = [list(map(float, open(f"{work}/{case}.{r}.time").read().split())) for r in range(1, runs + 1)]
    wall = [t[0] for t in times]
    cpu = statistics.median(t[1] + t[2] for t in times)
    rss = statistics.median(t[3] for t in times) / 1024
    quota = "-"
    if case == "lm_eval":
        # Its own progress bar: the rate of the phase that sends the requests.
        rates = [float(m) for r in range(1, runs + 1) for m in re.findall(
            r"Requesting API: 100%[^\n\r]*?([0-9.]+)it/s", open(f"{work}/{case}.{r}.log").read())[-1:]]
        quota = f"serving {statistics.median(rates):.0f} rows/s while requesting (median)" if rates else "-"
    else:
        q = json.load(open(f"{work}/{case}.1/run.json")).get("quota", [{}])[0]
        events = [e for e in q.get("events", []) if e.get("kind") == "binding"]
        learned = q.get("learned_rpm")
        quota = f"mode {q.get('mode')}, learned " + (f"{learned:.0f} RPM" if learned else "no pace") + (
            f", requests not binding at {events[0]['at_s']:.2f} s" if events and not events[0]["binding"] else "")
    med = statistics.median(wall)
    print(f"| {labels[case]} | {rows} | {med:.2f} s ({min(wall):.2f}-{max(wall):.2f}) | "
          f"{rows / med:.0f} | {cpu:.2f} s | {rss:.0f} MiB | {quota} |")
print(f"\n{runs} runs each, in turn; load average at the end {load}")
PY
