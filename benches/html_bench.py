"""Benchmark input for the HTML pages: two result folders over the whole MMLU test split
(14,042 rows), each row a five-shot chain-of-thought program's two calls (gen, then select)
with the exact messages recorded, plus a coherence judge folder over run A. Answers,
explanations, probabilities, latencies are drawn at random (seeded); the prompts are the real
MMLU questions laid out as programs/few_shot.prompty lays them out, so the messages have
the size and repetition of a real five-shot run.
Usage: python3 benches/html_bench.py OUT_DIR"""
import json
import os
import random
import sys

import pyarrow.parquet as pq

out = sys.argv[1]
MMLU_ALL = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "hf", "cais", "mmlu",
                        "all", "test-00000-of-00001.parquet")
table = pq.read_table(MMLU_ALL).to_pylist()
LETTERS = "ABCD"
WORDS = ("the of a to is that this answer option because therefore first consider which "
         "value means not all so we can see follows from given question choice correct").split()

by_subject = {}
for i, r in enumerate(table):
    by_subject.setdefault(r["subject"], []).append(i)


def block(r, with_answer):
    text = r["question"] + "\n" + "".join(f"{LETTERS[k]}. {c}\n" for k, c in enumerate(r["choices"]))
    return text + (f"Answer: {LETTERS[int(r['answer'])]}\n\n" if with_answer else "")


def prompt(i):
    r = table[i]
    shots = [j for j in by_subject[r["subject"]] if j != i][:5]
    subject = r["subject"].replace("_", " ")
    head = f"The following are multiple choice questions about {subject}, each followed by the letter of its correct answer.\n\n"
    return head + "".join(block(table[j], True) for j in shots) + block(r, False)


def make(name, skill, seed, judge=False):
    rng = random.Random(seed)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    judge_rows = []
    with open(os.path.join(d, "outputs.jsonl"), "w") as f:
        for i, r in enumerate(table):
            rid = f"mmlu/{r['subject']}/test/{i}"
            row = {"id": rid, "dataset": "mmlu", "subject": r["subject"], "question": r["question"],
                   "choices": list(r["choices"]), "correct_answer": int(r["answer"])}
            chosen = row["correct_answer"] if rng.random() < skill else rng.randrange(4)
            w = [rng.random() * 0.3 for _ in range(4)]
            w[chosen] += 0.5 + rng.random()
            probs = [x / sum(w) for x in w]
            explanation = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(30, 90))) + "."
            user = prompt(i)
            m1 = [{"role": "user", "content": user}, {"role": "assistant", "content": "Let's think step by step. "}]
            m2 = [{"role": "user", "content": user},
                  {"role": "assistant", "content": "Let's think step by step. " + explanation + "\nAnswer: "}]
            l1, l2 = 400 + rng.random() * 1500, 150 + rng.random() * 300
            p_tokens = len(user) // 4
            calls = [
                {"capture": "explanation", "kind": "gen", "path": None, "options": None, "chosen": None,
                 "option_probs": None, "text": explanation,
                 "usage": {"prompt_tokens": p_tokens, "completion_tokens": len(explanation) // 4},
                 "latency_ms": l1, "attempts": 1, "rate_limited": 0, "cached": False, "messages": m1},
                {"capture": "answer", "kind": "select", "path": "logprobs", "options": list(LETTERS),
                 "chosen": chosen, "option_probs": probs, "text": None,
                 "usage": {"prompt_tokens": p_tokens + len(explanation) // 4, "completion_tokens": 1},
                 "latency_ms": l2, "attempts": 1, "rate_limited": 0, "cached": False, "messages": m2},
            ]
            usage = {"prompt_tokens": sum(c["usage"]["prompt_tokens"] for c in calls),
                     "completion_tokens": sum(c["usage"]["completion_tokens"] for c in calls)}
            rec = {"id": rid, "row": row, "program": "few_shot_cot",
                   "captures": {"explanation": explanation, "answer": LETTERS[chosen]},
                   "answer": {"capture": "answer", "option": LETTERS[chosen], "index": chosen},
                   "outcome": "correct" if chosen == row["correct_answer"] else "wrong",
                   "calls": calls, "usage": usage, "latency_ms": l1 + l2 + 2, "attempts": 2,
                   "rate_limited": 0, "model": "azure:https://x.openai.azure.com/gpt-4o-mini",
                   "finished_at": "2026-12-02T11:00:00Z"}
            f.write(json.dumps(rec) + "\n")
            if judge:
                judge_rows.append((rid, row, LETTERS[chosen], rng.randrange(1, 6)))
    with open(os.path.join(d, "run.json"), "w") as f:
        json.dump({"run_id": name, "status": "finished",
                   "program": {"name": "few_shot_cot", "sha256": "0" * 64},
                   "model": {"identity": "azure:https://x.openai.azure.com/gpt-4o-mini",
                             "backend": "azure", "deployment": "gpt-4o-mini"},
                   "dataset": {"spec": "mmlu:test", "rows": len(table), "sha256": "1" * 64},
                   "started_at": "2026-12-02T10:00:00Z", "finished_at": "2026-12-02T11:00:00Z"}, f)
    if judge:
        jd = os.path.join(d, "judge", "coherence")
        os.makedirs(jd, exist_ok=True)
        with open(os.path.join(jd, "outputs.jsonl"), "w") as f:
            for rid, row, answer, score in judge_rows:
                jrow = {"id": rid + "#coherence", "subject": row["subject"], "question": row["question"],
                        "choices": [], "metric": "coherence", "judged_id": rid, "response": answer}
                msg = [{"role": "user", "content": "Rate the coherence of the answer.\n" + row["question"]}]
                rec = {"id": jrow["id"], "row": jrow, "program": "coherence",
                       "captures": {"score": str(score), "reason": "The answer follows."},
                       "answer": {"capture": "score", "option": str(score), "index": score - 1},
                       "outcome": "unscored",
                       "calls": [{"capture": "score", "kind": "select", "path": "logprobs",
                                  "options": ["1", "2", "3", "4", "5"], "chosen": score - 1,
                                  "option_probs": None, "text": None,
                                  "usage": {"prompt_tokens": 300, "completion_tokens": 1},
                                  "latency_ms": 200.0, "attempts": 1, "rate_limited": 0, "cached": False,
                                  "messages": msg}],
                       "usage": {"prompt_tokens": 300, "completion_tokens": 1}, "latency_ms": 201.0,
                       "attempts": 1, "rate_limited": 0, "model": "azure:gpt-4o",
                       "finished_at": "2026-12-02T12:00:00Z"}
                f.write(json.dumps(rec) + "\n")
        with open(os.path.join(jd, "run.json"), "w") as f:
            json.dump({"run_id": name + "-coherence", "status": "finished"}, f)


make("A", 0.62, 1, judge=True)
make("B", 0.66, 2)
