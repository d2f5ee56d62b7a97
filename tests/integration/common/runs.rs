//! Helpers for tests that run the real `evalr run` binary: a clean environment, datasets and
//! their answer keys, and readers for the result files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// `evalr` run from the repository root with none of the caller's model settings.
pub fn evalr() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_evalr"));
    command.current_dir(REPO);
    for (name, _) in std::env::vars() {
        if name.starts_with("AZURE_")
            || name.starts_with("OPENAI_")
            || name.starts_with("EVALR_")
            || name.starts_with("MLFLOW_")
        {
            command.env_remove(name);
        }
    }
    command
}

/// `evalr run --program zero_shot_letters --dataset mmlu_anatomy_test --model azure:gpt-4o`
/// against an Azure OpenAI-protocol server at `endpoint` (key `test-key`); callers add flags.
/// Runs `command` and returns what it printed, failing the test with its stderr unless it
/// succeeded.
#[track_caller]
pub fn succeeds(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The standard output of `evalr ARGS`, which must succeed (else its stderr is shown).
pub fn stdout_of(args: &[&str]) -> String {
    let output = evalr().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The path of a Prompty fixture, relative to the repository (where `evalr()` runs).
pub fn prompty_fixture(name: &str) -> String {
    format!("tests/fixtures/prompty/{name}")
}

pub fn letters_run(endpoint: &str) -> Command {
    let mut command = evalr();
    command
        .env("AZURE_OPENAI_ENDPOINT", endpoint)
        .env("AZURE_OPENAI_API_KEY", "test-key")
        .args([
            "run",
            "--program",
            "zero_shot_letters",
            "--dataset",
            "mmlu_anatomy_test",
            "--model",
            "azure:gpt-4o",
        ]);
    command
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad line {l}: {e}", path.display()))
        })
        .collect()
}

pub fn dataset_rows(name: &str) -> Vec<Value> {
    read_jsonl(
        &PathBuf::from(REPO)
            .join("datasets")
            .join(format!("{name}.jsonl")),
    )
}

pub fn letter(index: u64) -> String {
    ((b'A' + index as u8) as char).to_string()
}

/// An answer key that is right for rows where `right(i)` holds and wrong (the next letter)
/// otherwise; returns the key and the number of rows answered right.
pub fn answer_key(rows: &[Value], right: impl Fn(usize) -> bool) -> (Vec<(String, String)>, usize) {
    let mut correct = 0;
    let key = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let answer = row["correct_answer"].as_u64().expect("correct_answer");
            let given = if right(i) {
                correct += 1;
                answer
            } else {
                (answer + 1) % 4
            };
            (
                row["question"].as_str().expect("question").to_string(),
                letter(given),
            )
        })
        .collect();
    (key, correct)
}

/// The figures of a run's `summary.json` (written by the scorer at the end of `evalr run`)
/// that the run tests check, under short names.
pub fn summary(folder: &Path) -> Value {
    let full: Value = serde_json::from_str(
        &std::fs::read_to_string(folder.join("summary.json")).expect("summary.json"),
    )
    .expect("summary json");
    serde_json::json!({
        "rows": full["rows"]["outputs"],
        "correct": full["rows"]["correct"],
        "wrong": full["rows"]["wrong"],
        "unparsed": full["rows"]["unparsed"],
        "refused": full["rows"]["refused"],
        "errors": full["rows"]["failed"],
        "accuracy": full["accuracy"]["micro"]["value"],
        "requests": full["retries"]["requests"],
        "rate_limited": full["retries"]["rate_limited"],
        "cached_rows": full["retries"]["cached_rows"],
    })
}

/// The `.prompty` files azure-ai-evaluation ships, read where pip installed them (evalr never
/// copies Microsoft's prompt text; scripts/setup.sh --test installs the package).
pub fn azure_ai_evaluation_prompty_files() -> Vec<PathBuf> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import azure.ai.evaluation, os; print(os.path.dirname(azure.ai.evaluation.__file__))",
        ])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "azure-ai-evaluation is not installed: run scripts/setup.sh --test ({})",
        String::from_utf8_lossy(&output.stderr)
    );
    let root = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "prompty") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Whether the default embedded model is installed; a missing model fails when
/// `EVALR_REQUIRE_MODEL` is set (CI), else the test is skipped loudly.
pub fn model_installed() -> bool {
    let dir = std::env::var_os("EVALR_MODEL_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".cache/evalr/models"))
        })
        .expect("HOME");
    let path = dir.join("gemma-3-270m-q4_k_m.gguf");
    if path.is_file() {
        return true;
    }
    assert!(
        std::env::var_os("EVALR_REQUIRE_MODEL").is_none(),
        "EVALR_REQUIRE_MODEL is set but {} is missing: run scripts/install-default-model.sh",
        path.display()
    );
    eprintln!(
        "\n*** SKIPPED: {} is not installed (scripts/install-default-model.sh) ***\n",
        path.display()
    );
    false
}
