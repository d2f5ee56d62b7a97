//! The test suite's chat-completions server with a simulated model, for the HTML benchmark
//! (benches/html/run.sh): a run against it writes result folders of the size and spread of a
//! real chain-of-thought MMLU run, in minutes and without a paid endpoint.
//!
//! The simulated model knows the MMLU answers (it reads the datasets folder) and is right on a
//! share `--skill` of the questions, chosen by a hash of the seed and the question, so two
//! seeds disagree on some rows as two models do; its explanations are 40 to 160 words drawn
//! from the question and its choices, ending with the letter it picks. A question it cannot
//! find (another dataset) gets a letter drawn by the hash.
//!
//! With `--judge` it is a judge instead: every answer is the JSON object evalr's judges ask for,
//! `{"reason": "<20 to 60 words of the request>", "score": <1 to 5, by the hash>}`.
//!
//! Usage: cargo run --release --example html_bench_server -- --port 8999 --seed 1 --skill 0.8

#[path = "../tests/integration/common/openai_server.rs"]
mod openai_server;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 8999)]
    port: u16,
    /// Two servers with different seeds answer like two different models.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The share of questions answered right.
    #[arg(long, default_value_t = 0.8)]
    skill: f64,
    /// The folder of `*.jsonl` datasets whose answers the model knows.
    #[arg(long, default_value = "datasets")]
    datasets: PathBuf,
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Answer as an LLM judge (reason and score) instead of as the model under test.
    #[arg(long)]
    judge: bool,
}

/// A question's choices and the index of the right one.
struct Known {
    choices: usize,
    correct: usize,
}

fn read_datasets(folder: &PathBuf) -> HashMap<String, Known> {
    let mut known = HashMap::new();
    let entries = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", folder.display()));
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for line in text.lines() {
            let Ok(row) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let (Some(question), Some(choices), Some(correct)) = (
                row["question"].as_str(),
                row["choices"].as_array(),
                row["correct_answer"].as_u64(),
            ) else {
                continue;
            };
            known.insert(
                question.to_string(),
                Known {
                    choices: choices.len(),
                    correct: correct as usize,
                },
            );
        }
    }
    known
}

/// The question under test in an MMLU-style prompt: the text before its choices (the last
/// "\nA. "), from the start of the message or from a blank line (the few-shot examples come
/// first, each ending with a blank line; a question may hold blank lines itself).
/// Returns where the question starts in `text`, the question and what is known of it.
fn find_question<'a>(
    known: &'a HashMap<String, Known>,
    text: &str,
) -> Option<(usize, &'a str, &'a Known)> {
    let end = text.rfind("\nA. ")?;
    let head = &text[..end];
    let starts = head
        .rmatch_indices("\n\n")
        .map(|(p, _)| p + 2)
        .chain(std::iter::once(0));
    for start in starts {
        if let Some((question, known)) = known.get_key_value(&head[start..]) {
            return Some((start, question.as_str(), known));
        }
    }
    None
}

fn hash(seed: u64, text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    seed.hash(&mut hasher);
    text.hash(&mut hasher);
    hasher.finish()
}

const LETTERS: &[u8] = b"ABCDEFGHIJ";

/// The letter the model picks for a question.
fn pick(seed: u64, skill: f64, text: &str, question: Option<(&str, &Known)>) -> (u64, String) {
    let Some((question, known)) = question else {
        let h = hash(seed, text);
        return (h, (LETTERS[(h % 4) as usize] as char).to_string());
    };
    let h = hash(seed, question);
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    let n = known.choices.max(2);
    let index = if u < skill {
        known.correct
    } else {
        (known.correct + 1 + (h % (n as u64 - 1)) as usize) % n
    };
    (
        h,
        (LETTERS[index.min(LETTERS.len() - 1)] as char).to_string(),
    )
}

/// An explanation of 40 to 160 words taken from the question and its choices, in sentences.
fn explain(h: u64, text: &str, letter: &str) -> String {
    format!(
        "{}. So the answer is {letter}.",
        words_of(h, text, 40, 160).trim_end()
    )
}

/// A judge's answer: a reason of 20 to 60 words of the request, and a score of 1 to 5.
fn judge(seed: u64, text: &str) -> String {
    let h = hash(seed, text);
    let score = 1 + h % 5;
    let reason = format!("{}.", words_of(h, text, 20, 60).trim_end());
    serde_json::json!({"reason": reason, "score": score}).to_string()
}

/// `min` to `max` words drawn from `text`, a full stop after every 13.
fn words_of(h: u64, text: &str, min: u64, max: u64) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut state = h | 1;
    let mut next = || {
        // xorshift64: enough spread for made-up prose, and the same text for the same request.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let count = (min + next() % (max - min + 1)) as usize;
    let mut out = String::new();
    for k in 0..count {
        let word = words
            .get((next() % words.len().max(1) as u64) as usize)
            .unwrap_or(&"so");
        out.push_str(word);
        out.push(if k % 13 == 12 { '.' } else { ' ' });
        if k % 13 == 12 {
            out.push(' ');
        }
    }
    out
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let known = Arc::new(read_datasets(&args.datasets));
    eprintln!(
        "{} questions known from {}",
        known.len(),
        args.datasets.display()
    );
    let (seed, skill, as_judge) = (args.seed, args.skill, args.judge);
    let model = openai_server::Simulated(Arc::new(move |text: &str, select: bool| {
        if as_judge {
            return judge(seed, text);
        }
        let found = find_question(&known, text);
        let (h, letter) = pick(seed, skill, text, found.map(|(_, q, k)| (q, k)));
        if select {
            letter
        } else {
            // The words of the question under test and its choices, not of the examples.
            explain(h, &text[found.map_or(0, |(start, _, _)| start)..], &letter)
        }
    }));
    let config = openai_server::ServerConfig {
        latency: Duration::from_millis(args.latency_ms),
        simulated: Some(model),
        ..Default::default()
    };
    let addr =
        openai_server::ChatServer::serve_forever(config, &format!("127.0.0.1:{}", args.port)).await;
    eprintln!("listening on http://{addr}");
    std::future::pending::<()>().await;
}
