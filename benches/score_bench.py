"""Benchmark input for `evalr score` / `evalr compare`: two result folders over the whole
MMLU test split (14,042 rows), answers and probabilities drawn at random (seeded), in the
results format. Usage: python3 benches/score_bench.py OUT_DIR [REPEAT]
(REPEAT copies of the split, ids suffixed, to test larger runs)."""
import json
import os
import random
import sys

import pyarrow.parquet as pq

out = sys.argv[1]
repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 1
MMLU_ALL = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "hf", "cais", "mmlu", "all", "test-00000-of-00001.parquet")
table = pq.read_table(MMLU_ALL).to_pylist()
for name, skill, seed in (("A", 0.62, 1), ("B", 0.66, 2)):
    rng = random.Random(seed)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    n = 0
    with open(os.path.join(d, "outputs.jsonl"), "w") as f:
        for k in range(repeat):
            for i, r in enumerate(table):
                n += 1
                row = {"id": f"mmlu/{r['subject']}/test/{i}" + (f"#{k}" if k else ""), "dataset": "mmlu",
                       "subject": r["subject"], "question": r["question"], "choices": list(r["choices"]),
                       "correct_answer": int(r["answer"])}
                chosen = row["correct_answer"] if rng.random() < skill else rng.randrange(4)
                w = [rng.random() * 0.3 for _ in range(4)]
                w[chosen] += 0.5 + rng.random()
                probs = [x / sum(w) for x in w]
                lat = 150 + rng.random() * 500
                rec = {"id": row["id"], "row": row, "program": "zero_shot", "captures": {"answer": "ABCD"[chosen]},
                       "answer": {"capture": "answer", "option": "ABCD"[chosen], "index": chosen},
                       "outcome": "correct" if chosen == row["correct_answer"] else "wrong",
                       "calls": [{"capture": "answer", "kind": "select", "path": "logprobs", "options": list("ABCD"),
                                  "chosen": chosen, "option_probs": probs, "text": None,
                                  "usage": {"prompt_tokens": 120, "completion_tokens": 1}, "latency_ms": lat,
                                  "attempts": 1, "rate_limited": 0, "cached": False}],
                       "usage": {"prompt_tokens": 120, "completion_tokens": 1}, "latency_ms": lat + 1,
                       "attempts": 1, "rate_limited": 0, "model": f"azure:https://x.openai.azure.com/gpt-4o-mini",
                       "finished_at": "2026-11-20T11:00:00Z"}
                f.write(json.dumps(rec) + "\n")
    with open(os.path.join(d, "run.json"), "w") as f:
        json.dump({"run_id": name, "status": "finished", "model": {"identity": "azure:https://x.openai.azure.com/gpt-4o-mini",
                   "backend": "azure", "deployment": "gpt-4o-mini"},
                   "dataset": {"spec": "mmlu:test", "rows": n},
                   "started_at": "2026-11-20T10:00:00Z", "finished_at": "2026-11-20T11:00:00Z"}, f)
