//! `evalr judge` end to end: a run, then judge runs of two metrics against a local server
//! whose judge gives known scores; the judged run's summary carries them.

use crate::common::openai_server;
use crate::common::runs;

use openai_server::{ChatServer, ServerConfig};
use runs::{answer_key, dataset_rows, evalr, letters_run, read_jsonl};

#[test]
fn judged_metrics_are_runs_whose_scores_land_in_the_summary() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(10)
        .collect();
    let (key, _) = answer_key(&rows, |i| i % 2 == 0);
    let model = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    // The judge scores row i with (i % 5) + 1: mean 3.0, and 6 of 10 rows at 3 or more.
    let scores: Vec<(String, String)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                r["question"].as_str().unwrap().to_string(),
                ((i % 5) + 1).to_string(),
            )
        })
        .collect();
    let judge = ChatServer::start(ServerConfig {
        answer_key: scores,
        default_answer: "1".into(),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let output = letters_run(&model.azure_endpoint())
        .args(["--no-cache", "--quiet", "--limit", "10"])
        .arg("--results-dir")
        .arg(&folder)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let judge_args = |command: &mut std::process::Command| {
        command
            .env("AZURE_OPENAI_ENDPOINT", judge.azure_endpoint())
            .env("AZURE_OPENAI_API_KEY", "test-key")
            .arg("judge")
            .arg(&folder)
            .args([
                "--metric",
                "coherence,similarity",
                "--judge-model",
                "azure:gpt-4o",
                "--quiet",
            ])
            .arg("--cache-dir")
            .arg(dir.path().join("cache"));
    };
    let mut command = evalr();
    judge_args(&mut command);
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("coherence: mean 3.00 over 10 rows, pass rate 60.0% (score >= 3)"),
        "{stdout}"
    );
    // Two calls per judged row (score select, reason gen), for each of two metrics.
    assert_eq!(judge.seen().len(), 40);

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("summary.json")).unwrap())
            .unwrap();
    let judged = summary["judged"].as_array().unwrap();
    assert_eq!(judged.len(), 2);
    for metric in judged {
        assert_eq!(metric["n"], 10);
        assert_eq!(metric["mean"], 3.0);
        assert_eq!(metric["distribution"], serde_json::json!([2, 2, 2, 2, 2]));
    }
    // The similarity judge saw the text of the correct choice as ground truth.
    let similarity_rows = read_jsonl(&folder.join("judge/similarity/rows.jsonl"));
    assert_eq!(similarity_rows.len(), 10);
    for judged in &similarity_rows {
        let row = rows
            .iter()
            .find(|r| r["id"] == judged["judged_id"])
            .unwrap();
        let correct = &row["choices"][row["correct_answer"].as_u64().unwrap() as usize];
        assert_eq!(&judged["ground_truth"], correct);
        assert_eq!(judged["metric"], "similarity");
    }
    // `evalr score` keeps the judged metrics; judging again is answered by the cache and resume.
    let output = evalr().arg("score").arg(&folder).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rescored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(rescored["judged"].as_array().unwrap().len(), 2);
    let mut command = evalr();
    judge_args(&mut command);
    assert!(command.output().unwrap().status.success());
    assert_eq!(judge.seen().len(), 40);
}

#[test]
fn groundedness_without_contexts_is_refused_before_any_call() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(3)
        .collect();
    let (key, _) = answer_key(&rows, |_| true);
    let model = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let output = letters_run(&model.azure_endpoint())
        .args(["--no-cache", "--quiet", "--limit", "3"])
        .arg("--results-dir")
        .arg(&folder)
        .output()
        .unwrap();
    assert!(output.status.success());
    let before = model.seen().len();
    let output = evalr()
        .env("AZURE_OPENAI_ENDPOINT", model.azure_endpoint())
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .arg("judge")
        .arg(&folder)
        .args(["--metric", "groundedness", "--judge-model", "azure:gpt-4o"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs a `context` field"));
    assert_eq!(model.seen().len(), before);
}
