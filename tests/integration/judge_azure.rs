//! evalr's judged fields against azure-ai-evaluation's own evaluators (the PyPI package, run
//! by scripts/azure-judges.py), both pointed at the same local chat server playing the judge
//! (Azure OpenAI protocol, a fake key on 127.0.0.1): on the same rows, the same score, result,
//! reason and threshold per row, and the same mean and pass rate (`binary_aggregate`).
//! Fails when the package is missing, unless EVALR_SKIP_AZURE_EVALUATION=1.

use crate::common::openai_server;
use crate::common::runs;
use crate::common::runs::succeeds;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use openai_server::{AnswerStyle, ChatServer, ServerConfig};
use runs::{REPO, answer_key, azure_ai_evaluation_prompty_files, dataset_rows, evalr, read_jsonl};
use serde_json::{Value, json};

const ROWS: usize = 10;

fn package_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import azure.ai.evaluation"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("EVALR_SKIP_AZURE_EVALUATION").as_deref() == Ok("1") {
            eprintln!(
                "SKIPPED: azure-ai-evaluation is not importable and EVALR_SKIP_AZURE_EVALUATION=1"
            );
            return false;
        }
        panic!(
            "python3 cannot import azure.ai.evaluation: `pip install azure-ai-evaluation` (evalr's judges are checked against it), or set EVALR_SKIP_AZURE_EVALUATION=1 to skip"
        );
    }
    true
}

fn rows() -> Vec<Value> {
    dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(ROWS)
        .collect()
}

/// Row i's score: 1 2 3 4 5 1 2 3 4 5.
fn score_of(i: usize) -> u64 {
    (i % 5) as u64 + 1
}

/// A finished run over 10 anatomy rows that carry a `context` (for groundedness).
fn judged_run(dir: &Path) -> PathBuf {
    let rows = rows();
    let dataset = dir.join("anatomy_with_context.jsonl");
    let lines: Vec<String> = rows
        .iter()
        .map(|row| {
            let mut row = row.clone();
            let correct = row["choices"][row["correct_answer"].as_u64().unwrap() as usize].clone();
            row["context"] = json!(format!(
                "Anatomy notes: the answer to this item is {}.",
                correct.as_str().unwrap()
            ));
            row.to_string()
        })
        .collect();
    std::fs::write(&dataset, lines.join("\n") + "\n").unwrap();
    let (key, _) = answer_key(&rows, |i| i % 3 != 0);
    let model = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let folder = dir.join("run");
    succeeds(
        evalr()
            .env("AZURE_OPENAI_ENDPOINT", model.azure_endpoint())
            .env("AZURE_OPENAI_API_KEY", "test-key")
            .args([
                "run",
                "--program",
                "zero_shot_letters",
                "--model",
                "azure:gpt-4o",
                "--no-cache",
                "--quiet",
            ])
            .arg("--dataset")
            .arg(&dataset)
            .arg("--results-dir")
            .arg(&folder),
    );
    folder
}

fn judge_server(style: AnswerStyle) -> ChatServer {
    ChatServer::start(ServerConfig {
        answer_key: rows()
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    r["question"].as_str().unwrap().to_string(),
                    score_of(i).to_string(),
                )
            })
            .collect(),
        default_answer: "1".into(),
        style,
        ..Default::default()
    })
}

/// Judges `folder` (a fresh copy per style) with evalr and with the package, and checks that
/// they agree on `metrics`. `--metric` gets `metric_arg` (the metrics' names, or the paths of
/// their judge files); returns the server, which saw evalr's requests and then the package's.
fn compare(
    folder: &Path,
    style: AnswerStyle,
    metrics: &[&str],
    metric_arg: &str,
    text_answers: bool,
) -> ChatServer {
    let server = judge_server(style);
    let output = evalr()
        .env("AZURE_OPENAI_ENDPOINT", server.azure_endpoint())
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .arg("judge")
        .arg(folder)
        .args([
            "--metric",
            metric_arg,
            "--judge-model",
            "azure:gpt-4o",
            "--no-cache",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{style:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let evalr_requests = server.seen().len();
    assert_eq!(evalr_requests, ROWS * metrics.len());

    let mut script = Command::new("python3");
    script
        .arg(Path::new(REPO).join("scripts/azure-judges.py"))
        .args([
            "--endpoint",
            &server.azure_endpoint(),
            "--key",
            "test-key",
            "--deployment",
            "gpt-4o",
        ]);
    for metric in metrics {
        script.arg("--metric").arg(format!(
            "{metric}={}",
            folder
                .join("judge")
                .join(metric)
                .join("rows.jsonl")
                .display()
        ));
    }
    if text_answers {
        script.arg("--text-answers");
    }
    let answers = folder.join("azure-ai-evaluation.json");
    script.arg("--out").arg(&answers);
    let out = script.output().unwrap();
    assert!(
        out.status.success(),
        "{style:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let azure: Value = serde_json::from_slice(&std::fs::read(&answers).unwrap()).unwrap();
    // The package asked the same server once per row and metric too.
    assert_eq!(server.seen().len(), 2 * evalr_requests, "{style:?}");
    // Every request of both carried the row's question (no judge prompt lost its query).
    assert!(
        server.seen().iter().all(|r| r.question.is_some()),
        "{style:?}"
    );

    let judged: BTreeMap<String, Value> = read_jsonl(&folder.join("judged.jsonl"))
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect();
    assert_eq!(judged.len(), ROWS);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("summary.json")).unwrap())
            .unwrap();
    for metric in metrics {
        let theirs = &azure[metric];
        let rows = theirs["rows"].as_object().unwrap();
        assert_eq!(rows.len(), ROWS, "{style:?} {metric}");
        for (id, fields) in rows {
            let ours = &judged[id];
            for suffix in ["", "_result", "_reason", "_threshold"] {
                let key = format!("{metric}{suffix}");
                let (a, b) = (&ours[&key], &fields[&key]);
                let same = match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) => x == y,
                    _ => a == b,
                };
                assert!(
                    same,
                    "{style:?} {id} {key}: evalr {a}, azure-ai-evaluation {b}"
                );
            }
        }
        let entry = summary["judged"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == *metric)
            .unwrap();
        let figures = &theirs["metrics"];
        match figures.get(format!("{metric}.{metric}")) {
            Some(mean) => assert_eq!(entry["mean"].as_f64(), mean.as_f64(), "{style:?} {metric}"),
            // The package reports no mean when no row has a score.
            None => assert_eq!(entry["n"], 0, "{style:?} {metric}"),
        }
        assert_eq!(
            entry["binary_aggregate"].as_f64(),
            figures[format!("{metric}.binary_aggregate")].as_f64(),
            "{style:?} {metric}"
        );
    }
    server
}

fn copy_run(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn evalr_and_azure_ai_evaluation_agree_row_by_row() {
    if !package_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = judged_run(dir.path());
    let quality = ["coherence", "groundedness", "relevance", "similarity"];
    let cases: [(AnswerStyle, &[&str], bool); 4] = [
        // The package as shipped: JSON mode, JSON answers.
        (AnswerStyle::JudgeJson, &quality, false),
        // Its earlier formats, read by its own text parser (JSON mode off). Its relevance
        // evaluator reads JSON only (a text answer is an error there), so it sits these out.
        (
            AnswerStyle::JudgeSTags,
            &["coherence", "groundedness"],
            true,
        ),
        (AnswerStyle::JudgeDigit, &["coherence", "similarity"], true),
        (
            AnswerStyle::JudgeGarbage,
            &["coherence", "groundedness", "similarity"],
            true,
        ),
    ];
    for (style, metrics, text_answers) in cases {
        let folder = dir.path().join(format!("{style:?}"));
        copy_run(&run, &folder);
        compare(&folder, style, metrics, &metrics.join(","), text_answers);
    }
}

/// The official judge files, as the installed package ships them, given to `evalr judge` by
/// path: evalr sends the requests the package's own evaluators send (same messages, same
/// settings, row by row), and writes the same per-row fields and summary.
#[test]
fn official_judge_files_by_path_send_what_the_package_sends_and_agree() {
    if !package_available() {
        return;
    }
    let files = azure_ai_evaluation_prompty_files();
    let official = |suffix: &str| {
        files
            .iter()
            .find(|f| f.ends_with(suffix))
            .unwrap_or_else(|| panic!("{suffix} not in {files:?}"))
            .display()
            .to_string()
    };
    let metrics = ["coherence", "groundedness", "relevance", "similarity"];
    let paths = [
        official("_coherence/coherence.prompty"),
        official("_groundedness/groundedness_with_query.prompty"),
        official("_relevance/relevance.prompty"),
        official("_similarity/similarity.prompty"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("official");
    copy_run(&judged_run(dir.path()), &folder);
    let server = compare(
        &folder,
        AnswerStyle::JudgeJson,
        &metrics,
        &paths.join(","),
        false,
    );

    // Each metric's judge run ran the official file.
    for (metric, path) in metrics.iter().zip(&paths) {
        let run_json: Value = serde_json::from_str(
            &std::fs::read_to_string(folder.join("judge").join(metric).join("run.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(run_json["program"]["path"], json!(path), "{metric}");
    }

    // The same requests: evalr's came first, then the package's.
    let seen = server.seen();
    let (ours, theirs) = seen.split_at(ROWS * metrics.len());
    let settings = [
        "temperature",
        "max_tokens",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
    ];
    // A setting written `0` in the file is `0` from the package and `0.0` from evalr: the
    // same number, so numbers are compared as numbers.
    fn numbers_as_floats(value: &Value) -> Value {
        match value {
            Value::Number(n) => json!(n.as_f64()),
            Value::Array(items) => Value::Array(items.iter().map(numbers_as_floats).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let request = |r: &openai_server::SeenRequest| {
        let mut kept = serde_json::Map::new();
        kept.insert("messages".into(), r.body["messages"].clone());
        for key in settings {
            kept.insert(key.into(), r.body[key].clone());
        }
        numbers_as_floats(&Value::Object(kept)).to_string()
    };
    let mut ours: Vec<String> = ours.iter().map(request).collect();
    let mut theirs: Vec<String> = theirs.iter().map(request).collect();
    ours.sort();
    theirs.sort();
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a, b, "evalr's request, then the package's");
    }
    let first: Value = serde_json::from_str(&ours[0]).unwrap();
    assert_eq!(first["response_format"], json!({"type": "json_object"}));
    assert_eq!(first["max_tokens"], json!(800.0));

    // The per-row fields azure-ai-evaluation names, and the summary.
    let judged: BTreeMap<String, Value> = read_jsonl(&folder.join("judged.jsonl"))
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect();
    for (i, row) in rows().iter().enumerate() {
        let fields = &judged[row["id"].as_str().unwrap()];
        let score = score_of(i);
        for metric in metrics {
            assert_eq!(fields[metric], json!(score as f64), "{metric} row {i}");
            assert_eq!(fields[format!("gpt_{metric}")], json!(score as f64));
            assert_eq!(
                fields[format!("{metric}_result")],
                json!(if score >= 3 { "pass" } else { "fail" })
            );
            assert_eq!(fields[format!("{metric}_threshold")], json!(3));
            assert_eq!(
                fields[format!("{metric}_reason")],
                json!(openai_server::JUDGE_REASON)
            );
            let prompt = fields[format!("{metric}_prompt_tokens")].as_u64().unwrap();
            let completion = fields[format!("{metric}_completion_tokens")]
                .as_u64()
                .unwrap();
            assert!(prompt > 100 && completion > 0, "{metric}");
            assert_eq!(
                fields[format!("{metric}_total_tokens")],
                json!(prompt + completion)
            );
        }
    }
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("summary.json")).unwrap())
            .unwrap();
    for metric in metrics {
        let entry = summary["judged"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == metric)
            .unwrap();
        assert_eq!(entry["n"], 10, "{metric}");
        assert_eq!(entry["mean"], 3.0, "{metric}");
        assert_eq!(entry["distribution"], json!([2, 2, 2, 2, 2]), "{metric}");
        assert_eq!(entry["pass_rate"], 0.6, "{metric}");
        assert_eq!(entry["unparsed"], 0, "{metric}");
        // t(0.975, 9) * sd / sqrt(10), sd of 1..5 twice = sqrt(20/9).
        let half = 2.2621571628540993 * (20.0f64 / 9.0).sqrt() / 10f64.sqrt();
        let ci = entry["ci95"].as_array().unwrap();
        assert!(
            (ci[0].as_f64().unwrap() - (3.0 - half)).abs() < 1e-9,
            "{ci:?}"
        );
        assert!(
            (ci[1].as_f64().unwrap() - (3.0 + half)).abs() < 1e-9,
            "{ci:?}"
        );
    }
}
