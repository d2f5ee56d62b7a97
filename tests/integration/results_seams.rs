//! The seams between commands: the results format as run writes it, exit codes, closed
//! pipes, the price lookup, the model a run picks and why, where datasets are found.

use crate::common::openai_server;
use crate::common::runs;
use crate::common::runs::succeeds;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use openai_server::{ChatServer, ServerConfig};
use runs::{REPO, answer_key, dataset_rows, evalr, letters_run};
use serde_json::Value;

fn json_of(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("file")).expect("JSON")
}

/// `evalr programs list | head -1`: the reader goes away after one line; evalr must end
/// quietly (it used to panic: "failed printing to stdout: Broken pipe", exit 101).
#[test]
fn programs_list_ends_quietly_on_a_broken_pipe() {
    let dir = tempfile::tempdir().unwrap();
    // More output than a pipe buffers (64 KiB), so the write after `head` left must fail.
    let description = "d".repeat(600);
    for i in 0..300 {
        std::fs::write(
            dir.path().join(format!("p{i:03}.prompty")),
            format!("---\nname: p{i:03}\ndescription: {description}\n---\nuser:\nHi {{{{ question }}}}\n"),
        )
        .unwrap();
    }
    let mut child = evalr()
        .args(["programs", "list", "--programs-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The listing starts with the built-in programs, then the folder's.
    assert!(first.starts_with("few_shot "), "{first}");
    // The pipe's read end is dropped here, as `head -1` exits.
    let output = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn help_documents_the_exit_codes() {
    let output = evalr().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for line in [
        "Exit codes:",
        "  2    usage or configuration error",
        "  3    negative verdict",
        "  4    incomplete",
    ] {
        assert!(help.contains(line), "{line:?} missing from:\n{help}");
    }
}

/// `azure:gpt-4o` has a price in the shipped table; the dry run used to say "cost: unknown
/// (no prices in the model profile)" while the report priced the same run from the table.
#[test]
fn dry_run_prices_from_the_shipped_table_as_the_report_does() {
    let output = letters_run("http://127.0.0.1:9")
        .args(["--dry-run", "--limit", "10"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("from the shipped price table (gpt-4o)"),
        "{stdout}"
    );
}

/// The config file's top-level `[prices]` table is read (it used to be ignored although the
/// report told users to set it).
#[test]
fn the_config_prices_table_prices_a_model_the_shipped_table_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("evalr.toml");
    std::fs::write(
        &config,
        "[prices]\n\"llama-3-8b\" = { input_per_mtok = 1000000.0, output_per_mtok = 0.0 }\n",
    )
    .unwrap();
    let output = evalr()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args([
            "run",
            "--program",
            "zero_shot_letters",
            "--dataset",
            "mmlu_anatomy_test",
            "--model",
            "openai:llama-3-8b",
            "--dry-run",
            "--limit",
            "1",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("the config file's [prices] llama-3-8b"),
        "{stdout}"
    );
    // One prompt token costs $1 at this price: the cost is the prompt's token count.
    let tokens: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("prompt tokens:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("prompt tokens line");
    assert!(
        stdout.contains(&format!("cost:               ${tokens:.4} (at most")),
        "{stdout}"
    );
}

/// `--max-cost` with no known price is refused before the first request (it used to run and
/// never stop).
#[test]
fn max_cost_without_a_price_is_refused_up_front() {
    let server = ChatServer::start(ServerConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let output = evalr()
        .env("OPENAI_BASE_URL", server.openai_base_url())
        .env("OPENAI_API_KEY", "test-key")
        .args([
            "run",
            "--program",
            "zero_shot_letters",
            "--dataset",
            "mmlu_anatomy_test",
            "--model",
            "openai:llama-3-8b",
            "--max-cost",
            "1",
            "--quiet",
            "--results-dir",
        ])
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--max-cost needs the model's price") && stderr.contains("[prices]"),
        "{stderr}"
    );
    assert!(server.seen().is_empty());
    assert!(!dir.path().join("run").exists());
}

/// With AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT exported and no --model, the run
/// uses that deployment (it used to use the embedded 270M model, silently) and says so first.
#[test]
fn the_azure_deployment_the_environment_names_is_used_and_the_first_line_says_why() {
    let rows: Vec<Value> = dataset_rows("mmlu_anatomy_test")
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
    let output = evalr()
        .env("AZURE_OPENAI_ENDPOINT", server.azure_endpoint())
        .env("AZURE_OPENAI_DEPLOYMENT", "gpt-4o-mini")
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .args([
            "run",
            "--program",
            "zero_shot_letters",
            "--dataset",
            "mmlu_anatomy_test",
            "--no-cache",
            "--limit",
            "3",
            "--results-dir",
        ])
        .arg(&folder)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        stderr.lines().next(),
        Some("model: azure:gpt-4o-mini (from AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT)")
    );
    assert_eq!(server.seen().len(), 3);
    // run.json writes the deployment the summary reads (it used to be read, never written).
    let run = json_of(&folder.join("run.json"));
    assert_eq!(run["schema_version"], 1);
    assert_eq!(run["model"]["deployment"], "gpt-4o-mini");
    assert_eq!(run["model"]["prices"]["source"]["kind"], "default_table");
    let summary = json_of(&folder.join("summary.json"));
    assert_eq!(summary["run"]["deployment"], "gpt-4o-mini");
}

/// Cached prompt tokens and reasoning tokens come back from the service's usage details,
/// are kept per row and reported apart, and cached tokens are priced at the cached rate.
#[test]
fn cached_prompt_and_reasoning_tokens_are_recorded_priced_and_reported_apart() {
    let rows: Vec<Value> = dataset_rows("mmlu_anatomy_test")
        .into_iter()
        .take(4)
        .collect();
    let (key, _) = answer_key(&rows, |_| true);
    let server = ChatServer::start(ServerConfig {
        answer_key: key,
        cached_prompt_tokens: 20,
        reasoning_tokens: 7,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    succeeds(
        letters_run(&server.azure_endpoint())
            .args(["--no-cache", "--quiet", "--limit", "4", "--results-dir"])
            .arg(&folder),
    );
    for line in std::fs::read_to_string(folder.join("outputs.jsonl"))
        .unwrap()
        .lines()
    {
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["usage"]["cached_prompt_tokens"], 20);
        assert_eq!(record["usage"]["reasoning_tokens"], 7);
    }
    let summary = json_of(&folder.join("summary.json"));
    let tokens = &summary["tokens"];
    assert_eq!(tokens["cached_prompt"], 80);
    assert_eq!(tokens["reasoning"], 28);
    let prompt = tokens["prompt"].as_f64().unwrap();
    let completion = tokens["completion"].as_f64().unwrap();
    // gpt-4o in the shipped table: input 2.50, cached input 1.25, output 10.00 per 1M.
    let cost = &summary["cost"];
    let expected = ((prompt - 80.0) * 2.5 + 80.0 * 1.25 + completion * 10.0) / 1e6;
    assert!(
        (cost["total"].as_f64().unwrap() - expected).abs() < 1e-12,
        "{cost}"
    );
    assert!((cost["parts"]["cached_input"].as_f64().unwrap() - 80.0 * 1.25 / 1e6).abs() < 1e-15);
    let report = std::fs::read_to_string(folder.join("report.md")).unwrap();
    assert!(
        report.contains("| prompt tokens served from the prompt cache | 80 |"),
        "{report}"
    );
    assert!(
        report.contains("| completion tokens spent reasoning | 28 |"),
        "{report}"
    );
}

/// `EVALR_DATASETS_DIR` is honoured by `run` and `programs render`, as by `datasets`.
#[test]
fn the_datasets_dir_variable_is_honoured_by_run_and_programs() {
    let dir = tempfile::tempdir().unwrap();
    let datasets = dir.path().join("elsewhere");
    std::fs::create_dir_all(&datasets).unwrap();
    std::fs::copy(
        std::path::Path::new(REPO).join("datasets/mmlu_anatomy_test.jsonl"),
        datasets.join("moved_anatomy.jsonl"),
    )
    .unwrap();
    let output = succeeds(evalr().env("EVALR_DATASETS_DIR", &datasets).args([
        "programs",
        "render",
        "--program",
        "zero_shot_letters",
        "--dataset",
        "moved_anatomy",
    ]));
    assert!(String::from_utf8_lossy(&output.stdout).contains("--- user ---"));
    let output = evalr()
        .env("EVALR_DATASETS_DIR", &datasets)
        .env("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:9")
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .args([
            "run",
            "--program",
            "zero_shot_letters",
            "--dataset",
            "moved_anatomy",
            "--model",
            "azure:gpt-4o",
            "--dry-run",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("rows:               135"), "{stdout}");
}
