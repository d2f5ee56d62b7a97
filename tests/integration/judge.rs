//! `evalr judge` end to end against a local chat server playing the judge: each answer style
//! azure-ai-evaluation's judges use (JSON, S-tags, a bare digit) and garbage, parsed into the
//! fields that package names; repeats and a second judge measured by Krippendorff's alpha
//! (reference values from the `krippendorff` package, tests/fixtures/judge_reference.py).

use crate::common::openai_server;
use crate::common::runs;
use crate::common::runs::succeeds;

use std::path::{Path, PathBuf};

use openai_server::{AnswerStyle, ChatServer, JUDGE_REASON, ServerConfig};
use runs::{answer_key, dataset_rows, evalr, letters_run, read_jsonl};
use serde_json::{Value, json};

const ROWS: usize = 10;

/// Row i of the anatomy test is scored `(i % 5) + 1` by the judge: mean 3.0, 6 of 10 pass.
fn score_of(i: usize) -> u64 {
    (i % 5) as u64 + 1
}

fn rows() -> Vec<Value> {
    dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(ROWS)
        .collect()
}

fn question(row: &Value) -> String {
    row["question"].as_str().unwrap().to_string()
}

/// A finished 10-row letters run in `dir/name`.
fn judged_run(dir: &Path, name: &str) -> PathBuf {
    let (key, _) = answer_key(&rows(), |i| i % 2 == 0);
    let model = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let folder = dir.join(name);
    succeeds(
        letters_run(&model.azure_endpoint())
            .args(["--no-cache", "--quiet", "--limit", "10"])
            .arg("--results-dir")
            .arg(&folder),
    );
    folder
}

fn judge_server(style: AnswerStyle, scores: impl Fn(usize) -> u64) -> ChatServer {
    ChatServer::start(ServerConfig {
        answer_key: rows()
            .iter()
            .enumerate()
            .map(|(i, r)| (question(r), scores(i).to_string()))
            .collect(),
        default_answer: "1".into(),
        style,
        ..Default::default()
    })
}

fn judge(server: &ChatServer, folder: &Path, args: &[&str]) -> std::process::Output {
    evalr()
        .env("AZURE_OPENAI_ENDPOINT", server.azure_endpoint())
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .arg("judge")
        .arg(folder)
        .args(["--quiet"])
        .args(args)
        .output()
        .unwrap()
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `judged.jsonl` by judged row id.
fn judged_rows(folder: &Path) -> std::collections::BTreeMap<String, Value> {
    read_jsonl(&folder.join("judged.jsonl"))
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect()
}

/// The fields azure-ai-evaluation gives a row, without the token counts (checked apart).
fn expected_fields(metric: &str, score: Option<u64>, reason: &str) -> Value {
    let (value, result, status) = match score {
        Some(s) => (
            json!(s as f64),
            if s >= 3 { "pass" } else { "fail" },
            "completed",
        ),
        None => (Value::Null, "unknown", "unparsed"),
    };
    json!({
        metric: value,
        format!("gpt_{metric}"): value,
        format!("{metric}_result"): result,
        format!("{metric}_threshold"): 3,
        format!("{metric}_reason"): if score.is_some() { reason } else { "" },
        format!("{metric}_status"): status,
    })
}

#[test]
fn every_official_answer_style_is_parsed_into_azures_fields() {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows();
    // Per style: (coherence scored?, similarity scored?, reason). Coherence is one of
    // azure-ai-evaluation's reason-and-score judges: a bare digit is no score for it.
    let cases = [
        (AnswerStyle::JudgeJson, true, true, JUDGE_REASON),
        (AnswerStyle::JudgeSTags, true, true, JUDGE_REASON),
        (AnswerStyle::JudgeDigit, false, true, ""),
        (AnswerStyle::JudgeGarbage, false, false, ""),
    ];
    for (style, coherence_scored, similarity_scored, reason) in cases {
        let folder = judged_run(dir.path(), &format!("{style:?}"));
        let server = judge_server(style, score_of);
        let output = judge(
            &server,
            &folder,
            &[
                "--metric",
                "coherence,similarity",
                "--judge-model",
                "azure:gpt-4o",
                "--no-cache",
            ],
        );
        assert!(
            output.status.success(),
            "{style:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // One judgment per row and metric: the judge reasons and scores in one answer.
        assert_eq!(server.seen().len(), 2 * ROWS, "{style:?}");

        let judged = judged_rows(&folder);
        assert_eq!(judged.len(), ROWS, "{style:?}");
        for (i, row) in rows.iter().enumerate() {
            let fields = &judged[row["id"].as_str().unwrap()];
            for (metric, scored) in [
                ("coherence", coherence_scored),
                ("similarity", similarity_scored),
            ] {
                let expected = expected_fields(metric, scored.then(|| score_of(i)), reason);
                for (key, value) in expected.as_object().unwrap() {
                    assert_eq!(&fields[key], value, "{style:?} row {i} {key}");
                }
                let prompt = fields[format!("{metric}_prompt_tokens")].as_u64().unwrap();
                let completion = fields[format!("{metric}_completion_tokens")]
                    .as_u64()
                    .unwrap();
                assert!(prompt > 100 && completion > 0, "{style:?} {metric}");
                assert_eq!(
                    fields[format!("{metric}_total_tokens")],
                    prompt + completion
                );
                // The judge model's identity: backend, endpoint, deployment.
                assert_eq!(
                    fields[format!("{metric}_model")],
                    format!("azure:{}/gpt-4o", server.azure_endpoint())
                );
            }
        }

        let summary = json_file(&folder.join("summary.json"));
        let judged = summary["judged"].as_array().unwrap();
        assert_eq!(judged.len(), 2, "{style:?}");
        for (entry, scored) in judged.iter().zip([coherence_scored, similarity_scored]) {
            if scored {
                assert_eq!(entry["n"], 10, "{style:?}");
                assert_eq!(entry["mean"], 3.0);
                assert_eq!(entry["distribution"], json!([2, 2, 2, 2, 2]));
                assert_eq!(entry["pass_rate"], 0.6);
                assert_eq!(entry["binary_aggregate"], 0.6);
                assert_eq!(entry["unparsed"], 0);
                // t(0.975, 9) * sd / sqrt(10), sd of 1..5 twice = sqrt(20/9).
                let ci = entry["ci95"].as_array().unwrap();
                let half = 2.2621571628540993 * (20.0f64 / 9.0).sqrt() / 10f64.sqrt();
                assert!(
                    (ci[0].as_f64().unwrap() - (3.0 - half)).abs() < 1e-9,
                    "{ci:?}"
                );
                assert!(
                    (ci[1].as_f64().unwrap() - (3.0 + half)).abs() < 1e-9,
                    "{ci:?}"
                );
            } else {
                assert_eq!(
                    (&entry["n"], &entry["unparsed"]),
                    (&json!(0), &json!(10)),
                    "{style:?}"
                );
                assert_eq!(entry["binary_aggregate"], 0.0);
            }
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        if coherence_scored {
            assert!(
                stdout.contains("coherence: mean 3.00 (95% CI 1.93-4.07) over 10 rows, pass rate 60.0% (score >= 3)"),
                "{stdout}"
            );
        } else {
            assert!(stdout.contains("10 without a score"), "{stdout}");
        }
    }
}

#[test]
fn thresholds_are_kept_with_the_judgment_and_can_be_changed_when_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let folder = judged_run(dir.path(), "run");
    let server = judge_server(AnswerStyle::JudgeJson, score_of);
    let output = judge(
        &server,
        &folder,
        &[
            "--metric",
            "coherence",
            "--judge-model",
            "azure:gpt-4o",
            "--no-cache",
            "--threshold",
            "4",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = json_file(&folder.join("summary.json"));
    assert_eq!(summary["judged"][0]["threshold"], 4);
    assert_eq!(summary["judged"][0]["pass_rate"], 0.4);
    // `evalr score` keeps the judgment's threshold, and --judge-threshold overrides it.
    assert!(
        evalr()
            .arg("score")
            .arg(&folder)
            .status()
            .unwrap()
            .success()
    );
    let summary = json_file(&folder.join("summary.json"));
    assert_eq!(summary["judged"][0]["threshold"], 4);
    assert!(
        evalr()
            .arg("score")
            .arg(&folder)
            .args(["--judge-threshold", "2"])
            .status()
            .unwrap()
            .success()
    );
    let summary = json_file(&folder.join("summary.json"));
    assert_eq!(summary["judged"][0]["pass_rate"], 0.8);
    let judged = judged_rows(&folder);
    let first = &judged[rows()[0]["id"].as_str().unwrap()];
    assert_eq!(first["coherence_threshold"], 2);
    assert_eq!(first["coherence_result"], "fail");
}

/// `{name: alpha}` of tests/fixtures/judge_reference.json.
fn reference_alpha(name: &str) -> f64 {
    let reference = json_file(&Path::new(runs::REPO).join("tests/fixtures/judge_reference.json"));
    reference["krippendorff_alpha_ordinal"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["alpha_ordinal"].as_f64())
        .unwrap()
}

#[test]
fn repeats_and_a_second_judge_report_how_reliable_the_judging_was() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let folder = judged_run(dir.path(), "run");
    let rows = rows();
    // Asked again, this judge changes its mind on rows 0, 2 and 3.
    let changed = [(0usize, 2u64), (2, 4), (3, 3)];
    let server = ChatServer::start(ServerConfig {
        answer_key: rows
            .iter()
            .enumerate()
            .map(|(i, r)| (question(r), score_of(i).to_string()))
            .collect(),
        repeat_answers: changed
            .iter()
            .map(|(i, s)| (question(&rows[*i]), s.to_string()))
            .collect(),
        style: AnswerStyle::JudgeJson,
        ..Default::default()
    });
    let args = |extra: &[&str]| {
        let mut args = vec!["--metric", "coherence", "--judge-model", "azure:gpt-4o"];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |server: &ChatServer, args: Vec<String>| {
        let mut command = evalr();
        command
            .env("AZURE_OPENAI_ENDPOINT", server.azure_endpoint())
            .env("AZURE_OPENAI_API_KEY", "test-key")
            .arg("judge")
            .arg(&folder)
            .args(&args)
            .arg("--cache-dir")
            .arg(&cache);
        command.output().unwrap()
    };
    let output = run(&server, args(&["--judge-repeats", "3"]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Each repeat is its own request although the messages are the same: the cache key
    // holds the repeat.
    assert_eq!(server.seen().len(), 3 * ROWS);
    for k in ["2", "3"] {
        assert_eq!(
            read_jsonl(
                &folder
                    .join("judge/coherence/repeats")
                    .join(k)
                    .join("outputs.jsonl")
            )
            .len(),
            ROWS
        );
    }
    let summary = json_file(&folder.join("summary.json"));
    let coherence = &summary["judged"][0];
    // The figures are the first judgment's, as a single judgment would give.
    assert_eq!(coherence["mean"], 3.0);
    let reliability = &coherence["reliability"];
    assert_eq!(reliability["judgments"], 3);
    assert_eq!(reliability["rows"], 10);
    assert_eq!(reliability["rows_disagreeing"], 3);
    assert_eq!(reliability["mean_spread"], 0.3);
    assert_eq!(reliability["max_spread"], 1.0);
    let alpha = reliability["krippendorff_alpha_ordinal"].as_f64().unwrap();
    assert!(
        (alpha - reference_alpha("cli_repeats")).abs() < 1e-9,
        "{alpha}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("3 repeats: Krippendorff's alpha (ordinal) 0.951, 3 of 10 rows disagree, mean spread 0.30"),
        "{stdout}"
    );
    let judged = judged_rows(&folder);
    let first = &judged[rows[0]["id"].as_str().unwrap()];
    assert_eq!(first["coherence_repeats"], json!([1.0, 2.0, 2.0]));
    assert_eq!(first["coherence_spread"], 1.0);

    // Judging again asks nothing: every repeat resumes finished.
    let output = run(&server, args(&["--judge-repeats", "3"]));
    assert!(output.status.success());
    assert_eq!(server.seen().len(), 3 * ROWS);

    // A second judge model over the same rows: refused where it would mix with the first...
    let second_scores = [1u64, 3, 3, 4, 4, 2, 2, 3, 5, 5];
    let second = judge_server(AnswerStyle::JudgeSTags, |i| second_scores[i]);
    let mini = |extra: &[&str]| {
        let mut args = vec![
            "--metric",
            "coherence",
            "--judge-model",
            "azure:gpt-4o-mini",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let output = run(&second, mini(&[]));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("holds a judgment of coherence by azure:gpt-4o"),
        "{stderr}"
    );
    assert!(stderr.contains("add --judge-name LABEL"), "{stderr}");
    assert!(second.seen().is_empty());
    // ...and kept apart with a name; the two judges' agreement is in the summary.
    let output = run(&second, mini(&["--judge-name", "mini"]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(second.seen().len(), ROWS);
    let summary = json_file(&folder.join("summary.json"));
    let names: Vec<&str> = summary["judged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["metric"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["coherence", "coherence@mini"]);
    assert_eq!(summary["judged"][1]["mean"], 3.2);
    let pair = &summary["judge_agreement"][0];
    assert_eq!(pair["metric"], "coherence");
    assert_eq!(pair["judges"], json!(["coherence", "coherence@mini"]));
    assert_eq!(pair["rows"], 10);
    assert_eq!(pair["rows_disagreeing"], 4);
    let alpha = pair["krippendorff_alpha_ordinal"].as_f64().unwrap();
    assert!(
        (alpha - reference_alpha("cli_two_judges")).abs() < 1e-9,
        "{alpha}"
    );
    let judged = judged_rows(&folder);
    assert_eq!(
        judged[rows[1]["id"].as_str().unwrap()]["coherence@mini"],
        3.0
    );
}

#[test]
fn a_judge_program_of_ones_own_is_named_by_its_front_matter() {
    let dir = tempfile::tempdir().unwrap();
    let folder = judged_run(dir.path(), "run");
    let program = dir.path().join("my_helpfulness.prompty");
    std::fs::write(
        &program,
        "---\nname: Helpfulness Check\ninputs: [query, answer]\n---\nsystem:\nRate how helpful the answer is, 1 to 5; reply with the digit only.\n\nuser:\n{{ query }}\n\n{{ answer }}\n\nassistant:\n{{ gen(\"stars\", max_tokens=5) }}\n",
    )
    .unwrap();
    let server = judge_server(AnswerStyle::JudgeDigit, score_of);
    let output = judge(
        &server,
        &folder,
        &[
            "--metric",
            program.to_str().unwrap(),
            "--judge-model",
            "azure:gpt-4o",
            "--no-cache",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = json_file(&folder.join("summary.json"));
    assert_eq!(summary["judged"][0]["metric"], "helpfulness_check");
    // A user's judge may answer with a bare digit, as azure-ai-evaluation's similarity does.
    assert_eq!(summary["judged"][0]["mean"], 3.0);
    let judged = judged_rows(&folder);
    assert_eq!(
        judged[rows()[4]["id"].as_str().unwrap()]["helpfulness_check"],
        5.0
    );

    let output = judge(
        &server,
        &folder,
        &["--metric", "helpfulnes", "--judge-model", "azure:gpt-4o"],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown metric `helpfulnes`"), "{stderr}");
}

#[test]
fn groundedness_without_contexts_is_refused_before_any_call() {
    let dir = tempfile::tempdir().unwrap();
    let folder = judged_run(dir.path(), "run");
    let server = judge_server(AnswerStyle::JudgeJson, score_of);
    let output = judge(
        &server,
        &folder,
        &["--metric", "groundedness", "--judge-model", "azure:gpt-4o"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs a `context` field"));
    assert!(server.seen().is_empty());
}

/// A judge that judged no row (its model refused every connection) fails the command with
/// exit 1 and names the cause, as a run that answered nothing does.
#[test]
fn a_judge_that_judged_no_row_fails_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let folder = judged_run(dir.path(), "run");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let output = evalr()
        .env("AZURE_OPENAI_ENDPOINT", &endpoint)
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .arg("judge")
        .arg(&folder)
        .args([
            "--quiet",
            "--metric",
            "coherence",
            "--judge-model",
            "azure:gpt-4o",
            "--max-retries",
            "0",
            "--no-cache",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no row was answered: 10 failed"),
        "{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("connection refused"),
        "{stderr}"
    );
}
