//! The result folders the score/compare tests read, written at test time by evalr's own
//! results writer (`evalr::results`), so they are always in the format evalr writes.
//!
//! Questions: the first rows of five MMLU test subjects (MIT license), committed in
//! tests/fixtures/results/rows.jsonl. Model answers, probabilities, latencies and tokens are
//! made up, deterministically (a seeded ChaCha generator per run):
//!
//!   run-a       40 rows, gpt-4o-mini (default price table), logprobs with option_probs,
//!               1 unparsed, 1 refused, retries and 429s, 1 failed row in errors.jsonl
//!   run-b       the same 40 rows, gpt-4o, clearly better (11 rows wrong->right, 1 right->wrong)
//!   run-c       30 of those rows + 10 rows of another subject, local model (cost 0)
//!   run-judged  judge rows (row.metric, score select "1".."5") with ground truths
//!   corrupt     run.json is not JSON
//!   bad-line    outputs.jsonl line 3 is cut in the middle of a record
#![allow(dead_code)]

use std::path::Path;

use chrono::{DateTime, Utc};
use evalr::backend::{SelectPath, Usage};
use evalr::dataset::Row;
use evalr::results::{
    AnswerSelect, CallKind, CallRecord, DatasetInfo, ErrorKind, ErrorRecord, FinishedRow,
    ModelInfo, OutputRecord, ProgramInfo, RunManifest, RunStatus, write_folder,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

const LETTERS: [&str; 4] = ["A", "B", "C", "D"];
const GPT_4O_MINI: &str = "azure:https://contoso.openai.azure.com/gpt-4o-mini";
const GPT_4O: &str = "azure:https://contoso.openai.azure.com/gpt-4o";
const LOCAL: &str = "local:qwen2.5-0.5b-instruct-q4_k_m.gguf@ab12";

fn rows() -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results/rows.jsonl");
    std::fs::read_to_string(&path)
        .expect("rows.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a row"))
        .collect()
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("a time stamp")
}

/// How one made-up answer looks.
struct Answer<'a> {
    chosen: Option<usize>,
    refused: bool,
    model: &'a str,
    finished_at: String,
    path: SelectPath,
    attempts: u32,
    cached: bool,
}

impl<'a> Answer<'a> {
    fn chose(chosen: usize, model: &'a str, finished_at: String, path: SelectPath) -> Self {
        Answer {
            chosen: Some(chosen),
            refused: false,
            model,
            finished_at,
            path,
            attempts: 1,
            cached: false,
        }
    }
}

/// Option probabilities with the chosen option ahead by `sharp`, rounded to 4 digits.
fn probs(rng: &mut ChaCha8Rng, chosen: usize, sharp: f64) -> Vec<f64> {
    let mut weights: Vec<f64> = (0..4).map(|_| rng.random::<f64>() * 0.3).collect();
    weights[chosen] += sharp;
    let total: f64 = weights.iter().sum();
    weights
        .iter()
        .map(|w| (w / total * 10_000.0).round() / 10_000.0)
        .collect()
}

fn output(row: &Row, answer: Answer<'_>, rng: &mut ChaCha8Rng) -> OutputRecord {
    let with_probs = answer.path != SelectPath::GenerateMatch;
    let option_probs = match answer.chosen {
        Some(chosen) if with_probs => {
            let sharp = 0.5 + rng.random::<f64>();
            Some(probs(rng, chosen, sharp))
        }
        _ => None,
    };
    let text = match (answer.chosen, answer.refused) {
        (Some(i), _) => LETTERS[i].to_string(),
        (None, true) => "I cannot answer that.".to_string(),
        (None, false) => "The answer is unclear".to_string(),
    };
    let prompt_tokens = 90 + row.question.chars().count() as u64 / 4;
    let retried = if answer.attempts > 1 { 900.0 } else { 0.0 };
    let latency = ((180.0 + rng.random::<f64>() * 400.0 + retried) * 10.0).round() / 10.0;
    let usage = Usage {
        prompt_tokens,
        completion_tokens: 1,
        ..Usage::default()
    };
    let call = CallRecord {
        capture: "answer".into(),
        kind: CallKind::Select,
        path: Some(answer.path),
        options: Some(LETTERS.iter().map(|l| l.to_string()).collect()),
        chosen: answer.chosen,
        option_probs,
        text: answer.chosen.is_none().then(|| text.clone()),
        usage,
        latency_ms: latency,
        attempts: answer.attempts,
        rate_limited: answer.attempts - 1,
        cached: answer.cached,
        repeat: None,
        messages: Vec::new(),
    };
    let mut captures = Map::new();
    captures.insert("answer".into(), Value::String(text));
    let mut record = OutputRecord::from_finished(FinishedRow {
        row: row.clone(),
        program: "zero_shot".into(),
        captures,
        answer_capture: "answer".into(),
        answer: answer
            .chosen
            .map_or(AnswerSelect::Unmatched, AnswerSelect::Chosen),
        refused: answer.refused,
        calls: vec![call],
        latency_ms: latency + 0.8,
        model: answer.model.into(),
        batch: false,
    });
    record.finished_at = Some(at(&answer.finished_at));
    record
}

fn manifest(
    run_id: &str,
    model: &str,
    backend: &str,
    deployment: Option<&str>,
    rows: u64,
    started: &str,
    finished: &str,
) -> RunManifest {
    RunManifest {
        run_id: run_id.into(),
        evalr_version: "0.1.0".into(),
        status: RunStatus::Finished,
        program: ProgramInfo {
            name: "zero_shot".into(),
            path: "programs/zero_shot.prompty".into(),
            sha256: format!("9f2c{}", "0".repeat(60)),
        },
        dataset: DatasetInfo {
            spec: "mmlu:test".into(),
            files: vec!["datasets/mmlu/test.jsonl".into()],
            sha256: format!("5be1{}", "0".repeat(60)),
            rows: Some(rows),
        },
        model: ModelInfo {
            identity: model.into(),
            backend: backend.into(),
            spec: model.into(),
            deployment: deployment.map(str::to_string),
            prices: None,
        },
        config: json!({"concurrency": 8, "temperature": 0}),
        started_at: Some(at(started)),
        finished_at: Some(at(finished)),
        ..RunManifest::default()
    }
}

fn wrong(row: &Row, k: usize) -> usize {
    (row.correct_answer.expect("an answer key") + k) % 4
}

/// Rows of run A answered right (row index modulo 5 in 0..3).
fn a_correct(i: usize) -> bool {
    i % 5 < 3
}

fn run_a(rows: &[Row]) -> (RunManifest, Vec<OutputRecord>, Vec<ErrorRecord>) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let outputs = rows[..40]
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let t = format!("2026-11-20T10:00:{i:02}Z");
            let mut answer = if i == 13 || i == 27 {
                Answer {
                    chosen: None,
                    refused: i == 27,
                    ..Answer::chose(0, GPT_4O_MINI, t, SelectPath::GenerateMatch)
                }
            } else {
                let chosen = if a_correct(i) {
                    row.correct_answer.expect("key")
                } else {
                    wrong(row, 1 + i % 3)
                };
                Answer::chose(chosen, GPT_4O_MINI, t, SelectPath::Logprobs)
            };
            answer.attempts = if i == 4 || i == 17 { 2 } else { 1 };
            answer.cached = i == 30 || i == 31;
            output(row, answer, &mut rng)
        })
        .collect();
    let errors = vec![ErrorRecord {
        id: Some("mmlu/world_religions/test/10".into()),
        file: None,
        line: None,
        kind: ErrorKind::Failed,
        error: "HTTP 500 from the service after 4 attempts".into(),
        attempts: 4,
        at: Some(at("2026-11-20T10:00:45Z")),
    }];
    let run = manifest(
        "run-a",
        GPT_4O_MINI,
        "azure",
        Some("gpt-4o-mini"),
        41,
        "2026-11-20T10:00:00Z",
        "2026-11-20T10:00:50Z",
    );
    (run, outputs, errors)
}

fn run_b(rows: &[Row]) -> (RunManifest, Vec<OutputRecord>) {
    // A's correct rows stay correct except row 0; 11 of A's other rows become correct.
    let b_correct = |i: usize| {
        (a_correct(i) && i != 0) || [3, 4, 8, 9, 13, 14, 18, 19, 23, 27, 28].contains(&i)
    };
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let outputs = rows[..40]
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let chosen = if b_correct(i) {
                row.correct_answer.expect("key")
            } else {
                wrong(row, 2)
            };
            let t = format!("2026-11-21T09:00:{i:02}Z");
            output(
                row,
                Answer::chose(chosen, GPT_4O, t, SelectPath::Logprobs),
                &mut rng,
            )
        })
        .collect();
    let run = manifest(
        "run-b",
        GPT_4O,
        "azure",
        Some("gpt-4o"),
        40,
        "2026-11-21T09:00:00Z",
        "2026-11-21T09:00:40Z",
    );
    (run, outputs)
}

fn run_c(rows: &[Row]) -> (RunManifest, Vec<OutputRecord>) {
    // Rows 0..29 and 10 rows of another subject (anatomy, rows 40..49).
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let outputs = rows[..30]
        .iter()
        .chain(&rows[40..50])
        .enumerate()
        .map(|(i, row)| {
            let chosen = if i % 2 == 0 {
                row.correct_answer.expect("key")
            } else {
                wrong(row, 1)
            };
            let t = format!("2026-11-22T08:00:{i:02}Z");
            output(
                row,
                Answer::chose(chosen, LOCAL, t, SelectPath::Loglikelihood),
                &mut rng,
            )
        })
        .collect();
    let run = manifest(
        "run-c",
        LOCAL,
        "local",
        None,
        40,
        "2026-11-22T08:00:00Z",
        "2026-11-22T08:01:20Z",
    );
    (run, outputs)
}

/// Fluency and similarity of free-text answers, judged by gpt-4o; one judge answer could
/// not be read.
fn run_judged() -> (RunManifest, Vec<OutputRecord>) {
    let answers = [
        (
            "What is the capital of France?",
            "Paris is the capital of France.",
            "Paris",
            "5",
            "4",
        ),
        (
            "Who wrote Hamlet?",
            "William Shakespeare",
            "Shakespeare",
            "5",
            "5",
        ),
        (
            "What gas do plants absorb?",
            "They absorb oxygen at night.",
            "carbon dioxide",
            "3",
            "1",
        ),
        (
            "How many moons has Mars?",
            "Two: Phobos and Deimos.",
            "two",
            "4",
            "5",
        ),
        ("What is 7 times 8?", "56", "56", "5", "5"),
        (
            "Largest planet?",
            "jupiter is biggest i think",
            "Jupiter",
            "2",
            "4",
        ),
    ];
    let mut outputs = Vec::new();
    for (k, (question, response, truth, fluency, similarity)) in answers.iter().enumerate() {
        for (metric, score) in [("fluency", fluency), ("similarity", similarity)] {
            let last = k == answers.len() - 1 && metric == "similarity";
            let id = format!("qa/{k}/{metric}");
            let row: Row = serde_json::from_value(json!({
                "id": id, "dataset": "qa", "question": question, "choices": [],
                "response": response, "ground_truth": truth, "metric": metric,
            }))
            .expect("a judge row");
            let index: usize = score.parse::<usize>().expect("a score") - 1;
            let select = CallRecord {
                capture: "score".into(),
                kind: CallKind::Select,
                path: Some(SelectPath::Logprobs),
                options: Some((1..=5).map(|n| n.to_string()).collect()),
                chosen: Some(index),
                option_probs: None,
                text: None,
                usage: Usage {
                    prompt_tokens: 240,
                    completion_tokens: 1,
                    ..Usage::default()
                },
                latency_ms: 300.0 + 10.0 * k as f64,
                attempts: 1,
                rate_limited: 0,
                cached: false,
                repeat: None,
                messages: Vec::new(),
            };
            let reason = CallRecord {
                capture: "reason".into(),
                kind: CallKind::Gen,
                path: None,
                options: None,
                chosen: None,
                text: Some("Judged against the rubric.".into()),
                usage: Usage {
                    prompt_tokens: 250,
                    completion_tokens: 12,
                    ..Usage::default()
                },
                latency_ms: 420.0,
                ..select.clone()
            };
            let mut captures = Map::new();
            let (score_text, reason_text) = if last {
                ("five", "")
            } else {
                (*score, "Judged against the rubric.")
            };
            captures.insert("score".into(), Value::String(score_text.into()));
            captures.insert("reason".into(), Value::String(reason_text.into()));
            let mut record = OutputRecord::from_finished(FinishedRow {
                row,
                program: metric.into(),
                captures,
                answer_capture: "score".into(),
                answer: if last {
                    AnswerSelect::Unmatched
                } else {
                    AnswerSelect::Chosen(index)
                },
                refused: false,
                calls: vec![select, reason],
                latency_ms: 721.0 + 10.0 * k as f64,
                model: GPT_4O.into(),
                batch: false,
            });
            record.finished_at = Some(at(&format!("2026-11-23T07:00:{:02}Z", outputs.len())));
            outputs.push(record);
        }
    }
    let run = manifest(
        "run-judged",
        GPT_4O,
        "azure",
        Some("gpt-4o"),
        12,
        "2026-11-23T07:00:00Z",
        "2026-11-23T07:00:30Z",
    );
    (run, outputs)
}

/// Writes the named fixture folder into `target`.
pub fn write_fixture(name: &str, target: &Path) {
    let rows = rows();
    let write = |run: &RunManifest, outputs: &[OutputRecord], errors: &[ErrorRecord]| {
        write_folder(target, run, outputs, errors).expect("fixture written")
    };
    match name {
        "run-a" => {
            let (run, outputs, errors) = run_a(&rows);
            write(&run, &outputs, &errors);
        }
        "run-b" => {
            let (run, outputs) = run_b(&rows);
            write(&run, &outputs, &[]);
        }
        "run-c" => {
            let (run, outputs) = run_c(&rows);
            write(&run, &outputs, &[]);
        }
        "run-judged" => {
            let (run, outputs) = run_judged();
            write(&run, &outputs, &[]);
        }
        "corrupt" => {
            let (run, outputs, _) = run_a(&rows);
            write(&run, &outputs[..1], &[]);
            std::fs::write(
                target.join("run.json"),
                "{\"run_id\": \"corrupt\", \"status\": \"finished\",\n  \"model\": {\"identity\": \n",
            )
            .expect("corrupt run.json");
        }
        "bad-line" => {
            let (_, outputs, _) = run_a(&rows);
            let run = manifest(
                "bad-line",
                GPT_4O_MINI,
                "azure",
                Some("gpt-4o-mini"),
                4,
                "2026-11-20T10:00:00Z",
                "2026-11-20T10:00:04Z",
            );
            write(&run, &outputs[..4], &[]);
            // Line 3 cut in the middle of a record, as a disk-full write would leave it.
            let path = target.join("outputs.jsonl");
            let text = std::fs::read_to_string(&path).expect("outputs.jsonl");
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines[2].truncate(120);
            std::fs::write(&path, lines.join("\n") + "\n").expect("bad line written");
        }
        other => panic!("no fixture named {other}"),
    }
}

/// A temporary directory holding the named fixture folders.
pub fn copy_fixtures(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    for name in names {
        write_fixture(name, &dir.path().join(name));
    }
    dir
}

pub fn evalr() -> assert_cmd::Command {
    let mut command = assert_cmd::Command::new(env!("CARGO_BIN_EXE_evalr"));
    command.env_remove("GITHUB_STEP_SUMMARY");
    command
}
