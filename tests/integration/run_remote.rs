//! `evalr run` end to end against a local Azure OpenAI / OpenAI-compatible server.

use crate::common::identity_server;
use crate::common::openai_server;
use crate::common::runs;
use crate::common::runs::succeeds;

use std::collections::HashSet;
use std::time::Duration;

use openai_server::{AnswerStyle, ChatServer, ServerConfig};
use runs::{answer_key, dataset_rows, evalr, letters_run, read_jsonl, summary};

/// `evalr run` of `zero_shot_letters` on anatomy against `server` as `azure:gpt-4o`, with no
/// cache and no progress output, into `folder`, plus `extra` flags.
fn run_letters(
    server: &ChatServer,
    folder: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    letters_run(&server.azure_endpoint())
        .args(["--no-cache", "--quiet"])
        .args(extra)
        .arg("--results-dir")
        .arg(folder)
        .output()
        .unwrap()
}

fn azure(server: &ChatServer, command: &mut std::process::Command) {
    command
        .env("AZURE_OPENAI_ENDPOINT", server.azure_endpoint())
        .env("AZURE_OPENAI_API_KEY", "test-key");
}

#[test]
fn anatomy_end_to_end_gives_the_exact_accuracy_the_server_implies() {
    let rows = dataset_rows("mmlu_anatomy_test");
    let (key, correct) = answer_key(&rows, |i| i % 3 != 0);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let output = run_letters(&server, &folder, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outputs = read_jsonl(&folder.join("outputs.jsonl"));
    assert_eq!(outputs.len(), 135);
    assert_eq!(correct, 90);
    let s = summary(&folder);
    assert_eq!(s["correct"], 90);
    assert_eq!(s["wrong"], 45);
    assert_eq!(s["unparsed"], 0);
    assert!((s["accuracy"].as_f64().unwrap() - 90.0 / 135.0).abs() < 1e-12);
    for record in &outputs {
        let call = &record["calls"][0];
        assert_eq!(call["path"], "logprobs");
        let probs: f64 = call["option_probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .sum();
        assert!((probs - 1.0).abs() < 1e-9);
        assert_eq!(record["row"]["id"], record["id"]);
    }
    // One request per row, each carrying a logit_bias on the four letters and max_tokens 1.
    let seen = server.seen();
    assert_eq!(seen.len(), 135);
    assert!(server.answered_per_question().values().all(|&n| n == 1));
    assert_eq!(seen[0].body["max_tokens"], 1);
    assert_eq!(seen[0].body["logit_bias"].as_object().unwrap().len(), 4);
    // The key never leaves the process: not in run.json, outputs, or what was printed.
    let everything = [
        std::fs::read_to_string(folder.join("run.json")).unwrap(),
        std::fs::read_to_string(folder.join("outputs.jsonl")).unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ]
    .join("\n");
    assert!(!everything.contains("test-key"));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("run.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "finished");
    assert_eq!(manifest["dataset"]["rows"], 135);
    assert_eq!(manifest["program"]["name"], "zero_shot_letters");
}

#[test]
fn a_429_storm_slows_the_run_but_every_row_completes() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(40)
        .collect();
    let (key, correct) = answer_key(&rows, |_| true);
    // The server allows 5 requests a second; the client is told nothing of it and sends 8 at once.
    // No rate-limit headers: only 429s can teach it (with headers it would pace without them).
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        rpm: Some(300),
        quota_headers: openai_server::QuotaHeaderStyle::None,
        latency: Duration::from_millis(20),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let output = run_letters(
        &server,
        &folder,
        &[
            "--limit",
            "40",
            "--max-in-flight",
            "8",
            "--max-retries",
            "20",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let s = summary(&folder);
    assert_eq!(s["rows"], 40);
    assert_eq!(s["correct"].as_u64().unwrap() as usize, correct);
    assert_eq!(s["errors"], 0);
    let throttled = server.seen().iter().filter(|r| r.status == 429).count() as u64;
    assert!(throttled > 0, "the storm never happened");
    assert_eq!(s["rate_limited"].as_u64().unwrap(), throttled);
    assert!(server.answered_per_question().values().all(|&n| n == 1));
}

#[test]
fn server_errors_hangs_and_malformed_bodies_are_retried() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(30)
        .collect();
    let (key, correct) = answer_key(&rows, |i| i % 2 == 0);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        fail_every: Some(4),
        malformed_every: Some(7),
        hang_first: 2,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    succeeds(
        letters_run(&server.azure_endpoint())
            .args(["--no-cache", "--quiet", "--limit", "30"])
            .args(["--request-timeout", "1", "--retry-interval", "0.05"])
            .arg("--results-dir")
            .arg(&folder),
    );
    let s = summary(&folder);
    assert_eq!(s["rows"], 30);
    assert_eq!(s["correct"].as_u64().unwrap() as usize, correct);
    assert_eq!(s["errors"], 0);
    let outputs = read_jsonl(&folder.join("outputs.jsonl"));
    let retried = outputs
        .iter()
        .filter(|r| r["attempts"].as_u64().unwrap() > 1)
        .count();
    assert!(retried >= 6, "only {retried} rows needed a retry");
}

#[test]
fn content_filter_refusals_are_their_own_outcome_and_never_retried() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(10)
        .collect();
    let (key, _) = answer_key(&rows, |_| true);
    let trigger = rows[3]["question"].as_str().unwrap().to_string();
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        content_filter_trigger: Some(trigger.clone()),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let output = run_letters(&server, &folder, &["--limit", "10"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let s = summary(&folder);
    assert_eq!(
        (s["correct"].as_u64(), s["refused"].as_u64()),
        (Some(9), Some(1))
    );
    assert!((s["accuracy"].as_f64().unwrap() - 0.9).abs() < 1e-12);
    let refused_requests = server
        .seen()
        .iter()
        .filter(|r| r.question.as_deref() == Some(trigger.as_str()))
        .count();
    assert_eq!(refused_requests, 1);
}

#[test]
fn without_logprobs_answers_are_matched_and_unmatchable_ones_are_unparsed_after_one_reask() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(12)
        .collect();
    let (key, correct) = answer_key(&rows, |i| i < 8);
    let sentence = ChatServer::start(ServerConfig {
        answer_key: key.clone(),
        logprobs: false,
        style: AnswerStyle::Sentence,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("matched");
    let output = run_letters(
        &sentence,
        &folder,
        &["--limit", "12", "--max-in-flight", "1"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        summary(&folder)["correct"].as_u64().unwrap() as usize,
        correct
    );
    let outputs = read_jsonl(&folder.join("outputs.jsonl"));
    // The first request asked for logprobs and got none; from then on the backend stops asking.
    assert!(
        outputs
            .iter()
            .all(|r| r["calls"][0]["path"] == "generate_match")
    );
    assert_eq!(
        sentence
            .seen()
            .iter()
            .filter(|r| r.body.get("logprobs").is_some())
            .count(),
        1
    );

    let unmatchable = ChatServer::start(ServerConfig {
        answer_key: key,
        logprobs: false,
        style: AnswerStyle::Unmatchable,
        ..Default::default()
    });
    let folder = dir.path().join("unparsed");
    let output = run_letters(&unmatchable, &folder, &["--limit", "12"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let s = summary(&folder);
    assert_eq!(
        (
            s["unparsed"].as_u64(),
            s["wrong"].as_u64(),
            s["correct"].as_u64()
        ),
        (Some(12), Some(0), Some(0))
    );
    let outputs = read_jsonl(&folder.join("outputs.jsonl"));
    assert!(outputs.iter().all(|r| r["calls"][0]["path"] == "reask"
        && r["answer"].is_null()
        && r["outcome"] == "unparsed"));
}

#[test]
fn malformed_dataset_lines_are_reported_with_their_line_numbers_and_the_rest_runs() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(4)
        .collect();
    let (key, _) = answer_key(&rows, |_| true);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("broken.jsonl");
    let line = |v: &serde_json::Value| v.to_string();
    let mut missing_choices = rows[2].clone();
    missing_choices.as_object_mut().unwrap().remove("choices");
    std::fs::write(
        &data,
        [
            line(&rows[0]),
            "{not json".into(),
            line(&missing_choices),
            line(&rows[1]),
            line(&rows[3]),
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    let folder = dir.path().join("run");
    let mut command = evalr();
    azure(&server, &mut command);
    succeeds(
        command
            .args([
                "run",
                "--program",
                "zero_shot_letters",
                "--model",
                "azure:gpt-4o",
                "--no-cache",
                "--quiet",
                "--dataset",
            ])
            .arg(&data)
            .arg("--results-dir")
            .arg(&folder),
    );
    assert_eq!(summary(&folder)["rows"], 3);
    let errors = read_jsonl(&folder.join("errors.jsonl"));
    assert_eq!(errors.len(), 2);
    assert_eq!(
        (errors[0]["line"].as_u64(), errors[1]["line"].as_u64()),
        (Some(2), Some(3))
    );
    assert!(errors.iter().all(
        |e| e["kind"] == "invalid_row" && e["file"].as_str().unwrap().ends_with("broken.jsonl")
    ));
    assert!(
        errors[1]["error"].as_str().unwrap().contains("choices"),
        "{}",
        errors[1]
    );
}

#[test]
fn no_key_is_a_one_line_error_with_exit_code_2_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let output = evalr()
        .env("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:9")
        .args([
            "run",
            "--program",
            "zero_shot_letters",
            "--dataset",
            "mmlu_anatomy_test",
            "--model",
            "azure:gpt-4o",
        ])
        .arg("--results-dir")
        .arg(&folder)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The run's first line says which model; then one line of error.
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert_eq!(lines[0], "model: azure:gpt-4o (from --model)");
    assert!(lines[1].starts_with("error: "), "{stderr}");
    assert!(lines[1].contains("set AZURE_OPENAI_API_KEY"), "{stderr}");
    assert!(!folder.exists());
}

#[test]
fn a_second_run_of_the_same_program_is_answered_by_the_cache() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(15)
        .collect();
    let (key, correct) = answer_key(&rows, |i| i % 2 == 1);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    for name in ["first", "second"] {
        let mut command = evalr();
        azure(&server, &mut command);
        succeeds(
            command
                .args([
                    "run",
                    "--program",
                    "zero_shot_letters",
                    "--dataset",
                    "mmlu_anatomy_test",
                    "--model",
                    "azure:gpt-4o",
                    "--quiet",
                    "--limit",
                    "15",
                ])
                .arg("--cache-dir")
                .arg(dir.path().join("cache"))
                .arg("--results-dir")
                .arg(dir.path().join(name)),
        );
        assert_eq!(
            summary(&dir.path().join(name))["correct"].as_u64().unwrap() as usize,
            correct
        );
    }
    assert_eq!(server.seen().len(), 15);
    let second = summary(&dir.path().join("second"));
    assert_eq!(
        (second["cached_rows"].as_u64(), second["requests"].as_u64()),
        (Some(15), Some(0))
    );
}

#[test]
fn sigkill_then_resume_finishes_the_run_and_pays_for_each_row_once() {
    let rows = dataset_rows("mmlu_anatomy_test");
    let (key, correct) = answer_key(&rows, |i| i % 4 != 1);
    // From the 60th request on the server stops answering: the client ends up with four
    // requests in flight and every answered row on disk, and is killed right then.
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        latency: Duration::from_millis(5),
        hang_from: Some(60),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let cache = dir.path().join("cache");
    let mut command = evalr();
    azure(&server, &mut command);
    let mut child = command
        .args([
            "run",
            "--program",
            "zero_shot_letters",
            "--dataset",
            "mmlu_anatomy_test",
            "--model",
            "azure:gpt-4o",
            "--quiet",
            "--max-in-flight",
            "4",
        ])
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--results-dir")
        .arg(&folder)
        .spawn()
        .unwrap();
    let outputs = folder.join("outputs.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answered = server.seen().iter().filter(|r| r.status == 200).count();
        if server.hanging() == 4 && read_jsonl_lossy(&outputs) == answered {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never reached the hang"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(read_jsonl_lossy(&outputs), 59);
    server.stop_hanging();

    let mut command = evalr();
    azure(&server, &mut command);
    succeeds(command.args(["run", "--quiet", "--resume"]).arg(&folder));
    let records = read_jsonl(&outputs);
    let ids: HashSet<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!((records.len(), ids.len()), (135, 135));
    assert_eq!(
        summary(&folder)["correct"].as_u64().unwrap() as usize,
        correct
    );
    // Each row was answered (and paid for) exactly once over both processes; the four that
    // were in flight at the kill were sent again because they had never been answered.
    let counts = server.answered_per_question();
    assert_eq!(counts.len(), 135);
    assert!(
        counts.values().all(|&n| n == 1),
        "{} rows were answered twice",
        counts.values().filter(|&&n| n > 1).count()
    );
    assert_eq!(server.seen().len(), 135 + 4);
}

#[test]
fn a_torn_last_line_from_a_crash_is_cut_off_on_resume() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(10)
        .collect();
    let (key, correct) = answer_key(&rows, |_| true);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let output = run_letters(&server, &folder, &["--limit", "10"]);
    assert!(output.status.success());
    // Simulate a crash in the middle of writing the eighth line.
    let outputs = folder.join("outputs.jsonl");
    let text = std::fs::read_to_string(&outputs).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let torn = format!("{}\n{}", lines[..7].join("\n"), &lines[7][..40]);
    std::fs::write(&outputs, torn).unwrap();
    let mut command = evalr();
    azure(&server, &mut command);
    succeeds(command.args(["run", "--quiet", "--resume"]).arg(&folder));
    let records = read_jsonl(&outputs);
    assert_eq!(records.len(), 10);
    assert_eq!(
        summary(&folder)["correct"].as_u64().unwrap() as usize,
        correct
    );
    assert_eq!(server.seen().len(), 13);
}

/// Lines in a file that may end in a torn line.
fn read_jsonl_lossy(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn openai_compatible_servers_work_by_base_url_with_a_bearer_key() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(8)
        .collect();
    let (key, correct) = answer_key(&rows, |i| i != 0);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    succeeds(
        evalr()
            .env("OPENAI_BASE_URL", server.openai_base_url())
            .env("OPENAI_API_KEY", "test-key")
            .args([
                "run",
                "--program",
                "zero_shot_letters",
                "--dataset",
                "mmlu_anatomy_test",
                "--model",
                "openai:gpt-4o-mini",
                "--no-cache",
                "--quiet",
                "--limit",
                "8",
            ])
            .arg("--results-dir")
            .arg(&folder),
    );
    assert_eq!(
        summary(&folder)["correct"].as_u64().unwrap() as usize,
        correct
    );
    assert_eq!(server.seen()[0].body["model"], "gpt-4o-mini");
}

#[test]
fn a_profile_with_two_deployments_keeps_going_when_one_is_down() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(20)
        .collect();
    let (key, correct) = answer_key(&rows, |_| true);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("evalr.toml");
    std::fs::write(
        &config,
        format!(
            "[models.two-regions]\nkind = \"azure\"\nmodel = \"gpt-4o\"\napi_key_env = \"EVALR_TEST_KEY\"\n\n[[models.two-regions.deployments]]\nendpoint = \"http://{dead}\"\ndeployment = \"gpt-4o\"\nrpm = 600\n\n[[models.two-regions.deployments]]\nendpoint = \"{}\"\ndeployment = \"gpt-4o\"\nrpm = 600\n",
            server.azure_endpoint()
        ),
    )
    .unwrap();
    let folder = dir.path().join("run");
    succeeds(
        evalr()
            .env("EVALR_TEST_KEY", "test-key")
            .args([
                "run",
                "--program",
                "zero_shot_letters",
                "--dataset",
                "mmlu_anatomy_test",
                "--model",
                "two-regions",
                "--no-cache",
                "--quiet",
                "--limit",
                "20",
            ])
            .arg("--config")
            .arg(&config)
            .arg("--results-dir")
            .arg(&folder),
    );
    let s = summary(&folder);
    assert_eq!(
        (s["rows"].as_u64(), s["errors"].as_u64()),
        (Some(20), Some(0))
    );
    assert_eq!(s["correct"].as_u64().unwrap() as usize, correct);
}

#[test]
fn dry_run_counts_requests_and_cost_without_calling_anything() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("evalr.toml");
    std::fs::write(&config, "[models.priced]\nkind = \"azure\"\nendpoint = \"http://127.0.0.1:9\"\ndeployment = \"gpt-4o\"\nmodel = \"gpt-4o\"\napi_key_env = \"EVALR_TEST_KEY\"\nprices = { input_per_mtok = 2.5, output_per_mtok = 10.0 }\n").unwrap();
    let output = succeeds(
        evalr()
            .env("EVALR_TEST_KEY", "k")
            .args([
                "run",
                "--program",
                "zero_shot_cot",
                "--dataset",
                "mmlu_anatomy_test",
                "--model",
                "priced",
                "--dry-run",
                "--limit",
                "10",
            ])
            .arg("--config")
            .arg(&config),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("rows:               10"), "{stdout}");
    // chain of thought: a gen and a select per row.
    assert!(stdout.contains("requests:           20"), "{stdout}");
    assert!(stdout.contains("completion tokens:  4010"), "{stdout}");
    assert!(stdout.contains("cost:               $"), "{stdout}");
}

#[test]
fn max_errors_stops_the_run_cleanly_with_the_verdict_exit_code_3() {
    let server = ChatServer::start(ServerConfig {
        fail_every: Some(1),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let output = letters_run(&server.azure_endpoint())
        .args(["--no-cache", "--quiet"])
        .args([
            "--max-retries",
            "0",
            "--max-errors",
            "3",
            "--max-in-flight",
            "1",
        ])
        .arg("--results-dir")
        .arg(&folder)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let errors = read_jsonl(&folder.join("errors.jsonl"));
    assert_eq!(errors.len(), 4);
    assert!(
        errors
            .iter()
            .all(|e| e["kind"] == "failed" && e["error"].as_str().unwrap().contains("HTTP 500"))
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("run.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "stopped_max_errors");
}

#[test]
fn reasoning_models_get_max_completion_tokens_and_no_sampling_parameters() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(3)
        .collect();
    let (key, _) = answer_key(&rows, |_| true);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let mut command = evalr();
    azure(&server, &mut command);
    succeeds(
        command
            .args([
                "run",
                "--program",
                "zero_shot_letters",
                "--dataset",
                "mmlu_anatomy_test",
                "--model",
                "azure:o3-mini",
                "--no-cache",
                "--quiet",
                "--limit",
                "3",
            ])
            .arg("--results-dir")
            .arg(&folder),
    );
    assert_eq!(summary(&folder)["correct"], 3);
    for request in server.seen() {
        let body = request.body.as_object().unwrap();
        assert!(body.contains_key("max_completion_tokens") && !body.contains_key("max_tokens"));
        assert!(!body.contains_key("temperature") && !body.contains_key("logprobs"));
    }
}

#[test]
fn max_cost_stops_cleanly_and_the_run_resumes_to_the_end() {
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(30)
        .collect();
    let (key, _) = answer_key(&rows, |_| true);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("evalr.toml");
    std::fs::write(
        &config,
        format!("[models.priced]\nkind = \"azure\"\nendpoint = \"{}\"\ndeployment = \"gpt-4o\"\nmodel = \"gpt-4o\"\napi_key_env = \"EVALR_TEST_KEY\"\nmax_in_flight = 1\nprices = {{ input_per_mtok = 1000.0, output_per_mtok = 1000.0 }}\n", server.azure_endpoint()),
    )
    .unwrap();
    let folder = dir.path().join("run");
    // Each row costs ~0.1 $ at these prices: a 1 $ budget stops the run after about ten rows.
    let output = evalr()
        .env("EVALR_TEST_KEY", "test-key")
        .args([
            "run",
            "--program",
            "zero_shot_letters",
            "--dataset",
            "mmlu_anatomy_test",
            "--model",
            "priced",
            "--no-cache",
            "--quiet",
            "--limit",
            "30",
            "--max-cost",
            "1",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--results-dir")
        .arg(&folder)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("run.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "stopped_max_cost");
    let stopped_at = read_jsonl(&folder.join("outputs.jsonl")).len();
    assert!((5..30).contains(&stopped_at), "{stopped_at}");
    // The budget is the whole run's: resuming with the same budget stops after at most one row
    // more; a raised budget finishes the run, each row sent once.
    let output = evalr()
        .env("EVALR_TEST_KEY", "test-key")
        .args(["run", "--quiet", "--resume"])
        .arg(&folder)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(read_jsonl(&folder.join("outputs.jsonl")).len() <= stopped_at + 1);
    succeeds(
        evalr()
            .env("EVALR_TEST_KEY", "test-key")
            .args(["run", "--quiet", "--max-cost", "100", "--resume"])
            .arg(&folder),
    );
    assert_eq!(read_jsonl(&folder.join("outputs.jsonl")).len(), 30);
    assert!(server.answered_per_question().values().all(|&n| n == 1));
}

#[test]
fn ctrl_c_stops_gracefully_with_everything_finished_on_disk() {
    let rows = dataset_rows("mmlu_anatomy_test");
    let (key, _) = answer_key(&rows, |_| true);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        latency: Duration::from_millis(50),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let child = letters_run(&server.azure_endpoint())
        .args(["--no-cache", "--quiet", "--max-in-flight", "2"])
        .arg("--results-dir")
        .arg(&folder)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let outputs = folder.join("outputs.jsonl");
    while read_jsonl_lossy(&outputs) < 10 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("run.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "interrupted");
    let records = read_jsonl(&outputs);
    assert!(records.len() < 135);
    // Every row the server answered before the stop is on disk: nothing finished is lost.
    assert_eq!(
        records.len(),
        server.seen().iter().filter(|r| r.status == 200).count()
    );
}

#[test]
fn without_a_key_azure_calls_carry_an_entra_id_token_from_the_managed_identity() {
    let identity = identity_server::IdentityServer::start(3600);
    let rows: Vec<_> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(5)
        .collect();
    let (key, correct) = answer_key(&rows, |_| true);
    // The chat server accepts only the first token the identity endpoint hands out.
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        api_key: Some("token-1".into()),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    succeeds(
        evalr()
            .env("AZURE_OPENAI_ENDPOINT", server.azure_endpoint())
            .env("MSI_ENDPOINT", format!("{}/msi/token", identity.base))
            .env("MSI_SECRET", identity_server::SECRET)
            .args([
                "run",
                "--program",
                "zero_shot_letters",
                "--dataset",
                "mmlu_anatomy_test",
                "--model",
                "azure:gpt-4o",
                "--no-cache",
                "--quiet",
                "--limit",
                "5",
            ])
            .arg("--results-dir")
            .arg(&folder),
    );
    assert_eq!(
        summary(&folder)["correct"].as_u64().unwrap() as usize,
        correct
    );
    // One token for the whole run (cached), for the Cognitive Services scope.
    let requests = identity.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].params["resource"],
        "https://cognitiveservices.azure.com"
    );
    assert!(
        !std::fs::read_to_string(folder.join("outputs.jsonl"))
            .unwrap()
            .contains("token-1")
    );
}

#[test]
fn a_stratified_sample_takes_each_subjects_share_and_is_fixed_by_the_seed() {
    let server = ChatServer::start(ServerConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let ids_of = |name: &str, seed: &str| {
        let folder = dir.path().join(name);
        let mut command = evalr();
        azure(&server, &mut command);
        succeeds(
            command
                .args([
                    "run",
                    "--program",
                    "zero_shot_letters",
                    "--dataset",
                    "datasets",
                    "--model",
                    "azure:gpt-4o",
                    "--no-cache",
                    "--quiet",
                ])
                .args([
                    "--subjects",
                    "anatomy,astronomy",
                    "--sample",
                    "30",
                    "--seed",
                    seed,
                ])
                .arg("--results-dir")
                .arg(&folder),
        );
        let mut ids: Vec<String> = read_jsonl(&folder.join("outputs.jsonl"))
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let first = ids_of("a", "7");
    // anatomy has 135 rows and astronomy 152: shares of 30 are 14.1 and 15.9, so 14 and 16.
    assert_eq!(first.len(), 30);
    assert_eq!(
        first
            .iter()
            .filter(|id| id.starts_with("mmlu/anatomy/"))
            .count(),
        14
    );
    assert_eq!(
        first
            .iter()
            .filter(|id| id.starts_with("mmlu/astronomy/"))
            .count(),
        16
    );
    assert_eq!(ids_of("b", "7"), first);
    assert_ne!(ids_of("c", "8"), first);
}

/// A run in which every row fails has evaluated nothing: it exits 1 (not 0), its run.json says
/// `failed`, and the error names the cause under the wrapper (here the refused connection),
/// so a CI job gating on evalr never passes having evaluated nothing.
#[test]
fn a_run_that_answered_no_row_fails_and_says_why() {
    // A port nothing listens on: every request is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    let output = letters_run(&endpoint)
        .args([
            "--no-cache",
            "--quiet",
            "--limit",
            "3",
            "--max-retries",
            "0",
        ])
        .arg("--results-dir")
        .arg(&folder)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no row was answered: 3 failed; the first: "),
        "{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("connection refused"),
        "the cause under the wrapper: {stderr}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("run.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "failed");
    assert_eq!(read_jsonl(&folder.join("errors.jsonl")).len(), 3);
}
