#!/usr/bin/env python3
"""Judge rows with azure-ai-evaluation's own evaluators, for comparison with `evalr judge`.

Reads evalr's judge rows (`<run>/judge/<metric>/rows.jsonl`: query, response, context,
ground_truth), runs the official evaluator of each metric through `azure.ai.evaluation.evaluate`
against an Azure OpenAI endpoint (a local test server works: any key, http://127.0.0.1), and
prints one JSON object (or writes it to --out, as evaluate() prints its own progress to
stdout): per metric the rows' fields (by judged row id) and evaluate()'s metrics.

    python3 scripts/azure-judges.py --endpoint http://127.0.0.1:PORT --key test-key \
        --deployment gpt-4o --metric coherence=RUN/judge/coherence/rows.jsonl [--metric ...] \
        [--threshold 3] [--text-answers] [--out FILE]

--text-answers loads each evaluator's own .prompty with its `response_format` removed, so the
evaluator reads a free-text answer with its own parser (S-tags, first digit) as the package's
earlier judges asked for; the prompt text is otherwise the package's, untouched.
Exit code 2 when azure-ai-evaluation is not installed.
"""

import argparse
import json
import pathlib
import sys
import tempfile


def plain(value):
    """JSON-able: NaN (azure's missing score) becomes null, anything else odd a string."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "item"):  # numpy scalars from pandas
        return plain(value.item())
    return str(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--deployment", default="gpt-4o")
    parser.add_argument("--metric", action="append", required=True, help="NAME=ROWS.jsonl")
    parser.add_argument("--threshold", type=int, default=3)
    parser.add_argument("--text-answers", action="store_true")
    parser.add_argument("--out", help="write the JSON here (evaluate() prints to stdout)")
    args = parser.parse_args()
    try:
        import azure.ai.evaluation as ev
        from azure.ai.evaluation._legacy.prompty import AsyncPrompty
    except ImportError as error:
        print(f"azure-ai-evaluation is not installed ({error}): pip install azure-ai-evaluation",
              file=sys.stderr)
        return 2

    classes = {
        "coherence": ev.CoherenceEvaluator,
        "fluency": ev.FluencyEvaluator,
        "groundedness": ev.GroundednessEvaluator,
        "relevance": ev.RelevanceEvaluator,
        "retrieval": ev.RetrievalEvaluator,
        "similarity": ev.SimilarityEvaluator,
    }
    inputs = {
        "coherence": ["query", "response"],
        "fluency": ["response"],
        "groundedness": ["query", "response", "context"],
        "relevance": ["query", "response"],
        "retrieval": ["query", "context"],
        "similarity": ["query", "response", "ground_truth"],
    }
    config = ev.AzureOpenAIModelConfiguration(
        azure_endpoint=args.endpoint,
        api_key=args.key,
        azure_deployment=args.deployment,
        api_version="2024-10-21",
    )
    out = {}
    work = pathlib.Path(tempfile.mkdtemp(prefix="azure-judges-"))
    for spec in args.metric:
        name, rows_path = spec.split("=", 1)
        evaluator = classes[name](config, threshold=args.threshold)
        rows = [json.loads(line) for line in open(rows_path) if line.strip()]
        if name == "groundedness" and any(row.get("query") for row in rows):
            # The evaluator switches to its with-query prompt on the first call that has a
            # query; evaluate() runs rows on threads, so rows that start before the switch
            # would be judged without their query. Switch before any row runs.
            evaluator._ensure_query_prompty_loaded()
        if args.text_answers:
            # The same prompt, without JSON mode: the evaluator's own text parser reads the answer.
            evaluator._prompty_model_runner.flow._model.parameters.pop("response_format", None)
        data = work / f"{name}.jsonl"
        with open(data, "w") as f:
            for row in rows:
                f.write(json.dumps({"judged_id": row["judged_id"],
                                    **{k: row.get(k, "") for k in inputs[name]}}) + "\n")
        result = ev.evaluate(
            data=str(data),
            evaluators={name: evaluator},
            evaluator_config={name: {"column_mapping": {k: "${data.%s}" % k for k in inputs[name]}}},
        )
        per_row = {}
        for row in result["rows"]:
            fields = {k[len(f"outputs.{name}."):]: v for k, v in row.items()
                      if k.startswith(f"outputs.{name}.")}
            per_row[row["inputs.judged_id"]] = fields
        out[name] = {"rows": per_row, "metrics": result["metrics"]}
    text = json.dumps(plain(out), allow_nan=False)
    if args.out:
        pathlib.Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
