//! Benchmark of the embedded model backend (issue 4), at the backend level.
//!
//!     cargo run --release --example local_bench -- speed    [--threads N] [--model PATH]
//!     cargo run --release --example local_bench -- accuracy [--rows 2000] [--seed 2026]
//!
//! Rows come from the MMLU test split in parquet (`--parquet`, default
//! /work/shared/data/mmlu/hf/cais/mmlu/all/test-00000-of-00001.parquet). The prompt is the
//! zero-shot letters prompt (user turn: "The following is a multiple choice question about
//! {subject}." + question + "A. ..".."D. .."; assistant turn: "Answer:"; select among " A".." D"
//! by log-likelihood). Figures are printed as markdown for BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use arrow_array::{Array, Int64Array, ListArray, StringArray};
use evalr::backend::local::{LocalBackend, LocalOptions, default_model_path};
use evalr::backend::{Backend, Message, Role, SelectRequest};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;

#[derive(Debug, Clone)]
struct Question {
    subject: String,
    question: String,
    choices: Vec<String>,
    answer: usize,
}

fn read_mmlu(path: &PathBuf) -> Vec<Question> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let column = |name: &str| batch.column_by_name(name).unwrap().clone();
        let questions = column("question");
        let questions = questions.as_any().downcast_ref::<StringArray>().unwrap();
        let subjects = column("subject");
        let subjects = subjects.as_any().downcast_ref::<StringArray>().unwrap();
        let choices = column("choices");
        let choices = choices.as_any().downcast_ref::<ListArray>().unwrap();
        let answers = column("answer");
        let answers = answers.as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..batch.num_rows() {
            let list = choices.value(i);
            let list = list.as_any().downcast_ref::<StringArray>().unwrap();
            rows.push(Question {
                subject: subjects.value(i).to_string(),
                question: questions.value(i).to_string(),
                choices: (0..list.len()).map(|j| list.value(j).to_string()).collect(),
                answer: answers.value(i) as usize,
            });
        }
    }
    rows
}

const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

fn question_text(q: &Question) -> String {
    let mut text = format!(
        "The following is a multiple choice question about {}.\n\n{}\n",
        q.subject.replace('_', " "),
        q.question
    );
    for (letter, choice) in LETTERS.iter().zip(&q.choices) {
        text.push_str(&format!("{letter}. {choice}\n"));
    }
    text
}

fn zero_shot(q: &Question) -> Vec<Message> {
    vec![
        Message::text(Role::User, question_text(q)),
        Message::text(Role::Assistant, "Answer:"),
    ]
}

fn five_shot(shots: &[Question], q: &Question) -> Vec<Message> {
    let mut messages = Vec::new();
    for shot in shots {
        messages.push(Message::text(Role::User, question_text(shot)));
        messages.push(Message::text(
            Role::Assistant,
            format!("Answer: {}", LETTERS[shot.answer]),
        ));
    }
    messages.extend(zero_shot(q));
    messages
}

fn request(messages: Vec<Message>) -> SelectRequest {
    SelectRequest {
        messages,
        options: LETTERS.iter().map(|l| format!(" {l}")).collect(),
        temperature: None,
    }
}

/// Proportional stratified sample over subjects: ceil(n_subject * target / total) rows of
/// each subject, drawn with a seeded RNG; the result is in dataset order.
fn stratified(rows: &[Question], target: usize, seed: u64) -> Vec<usize> {
    let mut by_subject: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, q) in rows.iter().enumerate() {
        by_subject.entry(&q.subject).or_default().push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut picked = Vec::new();
    for indices in by_subject.values() {
        let k = (indices.len() * target)
            .div_ceil(rows.len())
            .min(indices.len());
        for j in sample(&mut rng, indices.len(), k) {
            picked.push(indices[j]);
        }
    }
    picked.sort_unstable();
    picked
}

/// Wilson score interval for a binomial proportion (z = 1.96 for 95%).
fn wilson(successes: usize, n: usize) -> (f64, f64) {
    let z = 1.959_963_984_540_054_f64;
    let n = n as f64;
    let p = successes as f64 / n;
    let denominator = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denominator;
    let half = z * ((p * (1.0 - p) / n) + z * z / (4.0 * n * n)).sqrt() / denominator;
    (centre - half, centre + half)
}

struct Args {
    mode: String,
    threads: Option<usize>,
    model: PathBuf,
    parquet: PathBuf,
    rows: usize,
    seed: u64,
}

fn args() -> Args {
    let mut args = Args {
        mode: String::new(),
        threads: None,
        model: default_model_path().unwrap(),
        // The repository's copy of the hub's MMLU test split (all subjects in one file).
        parquet: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/hf/cais/mmlu/all/test-00000-of-00001.parquet"
        )),
        rows: 2000,
        seed: 2026,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--threads" => args.threads = it.next().and_then(|v| v.parse().ok()),
            "--model" => args.model = it.next().map(PathBuf::from).unwrap(),
            "--parquet" => args.parquet = it.next().map(PathBuf::from).unwrap(),
            "--rows" => args.rows = it.next().and_then(|v| v.parse().ok()).unwrap(),
            "--seed" => args.seed = it.next().and_then(|v| v.parse().ok()).unwrap(),
            mode => args.mode = mode.to_string(),
        }
    }
    args
}

fn main() {
    let args = args();
    let rows = read_mmlu(&args.parquet);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = |prefix_cache: bool| LocalOptions {
        threads: args.threads,
        prefix_cache,
        ..LocalOptions::default()
    };
    match args.mode.as_str() {
        "speed" => speed(&rt, &args, &rows, options(true), options(false)),
        "accuracy" => accuracy(&rt, &args, &rows, options(true)),
        other => {
            eprintln!("usage: local_bench speed|accuracy [--threads N] [--rows N] (got {other:?})");
            std::process::exit(2);
        }
    }
}

fn speed(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    rows: &[Question],
    cached: LocalOptions,
    uncached: LocalOptions,
) {
    let started = Instant::now();
    let backend = LocalBackend::load(&args.model, cached).unwrap();
    let load = started.elapsed().as_secs_f64();
    println!(
        "model {} ({}), {} threads, load {:.2} s",
        backend.identity(),
        backend.info().chat_format,
        backend.info().threads,
        load
    );

    // Zero-shot: 200 rows spread over all subjects.
    let sample_rows = stratified(rows, 200, args.seed);
    let before = backend.stats();
    let started = Instant::now();
    let mut prompt_tokens = 0;
    for &i in &sample_rows {
        let reply = rt
            .block_on(backend.select(&request(zero_shot(&rows[i]))))
            .unwrap();
        prompt_tokens += reply.usage.prompt_tokens;
    }
    let seconds = started.elapsed().as_secs_f64();
    let decoded = backend.stats().decoded_tokens - before.decoded_tokens;
    println!(
        "| zero-shot letters | {} rows | {:.1} rows/s | {:.0} prompt tokens/row | {:.0} decoded tokens/s | {:.1} s |",
        sample_rows.len(),
        sample_rows.len() as f64 / seconds,
        prompt_tokens as f64 / sample_rows.len() as f64,
        decoded as f64 / seconds,
        seconds
    );

    // Five-shot: the same five examples (the first row of five subjects, left out of the
    // measured rows) before every question, with and without prefix reuse.
    let shot_indices = [0usize, 1000, 3000, 6000, 9000];
    let shots: Vec<Question> = shot_indices.iter().map(|&i| rows[i].clone()).collect();
    let measured: Vec<usize> = stratified(rows, 60, args.seed + 1)
        .into_iter()
        .filter(|i| !shot_indices.contains(i))
        .collect();
    let mut rates = Vec::new();
    for (label, backend) in [
        ("with prefix reuse", backend),
        (
            "without prefix reuse",
            LocalBackend::load(&args.model, uncached).unwrap(),
        ),
    ] {
        // One warm-up row so that both start with the examples cached where they can be.
        rt.block_on(backend.select(&request(five_shot(&shots, &rows[measured[0]]))))
            .unwrap();
        let before = backend.stats();
        let started = Instant::now();
        let mut prompt_tokens = 0;
        for &i in &measured[1..] {
            let reply = rt
                .block_on(backend.select(&request(five_shot(&shots, &rows[i]))))
                .unwrap();
            prompt_tokens += reply.usage.prompt_tokens;
        }
        let seconds = started.elapsed().as_secs_f64();
        let stats = backend.stats();
        let n = measured.len() - 1;
        let rate = n as f64 / seconds;
        rates.push(rate);
        println!(
            "| five-shot letters, {label} | {n} rows | {rate:.2} rows/s | {:.0} prompt tokens/row | {:.0} decoded tokens/row | {:.1} s |",
            prompt_tokens as f64 / n as f64,
            (stats.decoded_tokens - before.decoded_tokens) as f64 / n as f64,
            seconds
        );
    }
    println!(
        "five-shot speed-up from prefix reuse: {:.1}x",
        rates[0] / rates[1]
    );
}

fn accuracy(rt: &tokio::runtime::Runtime, args: &Args, rows: &[Question], options: LocalOptions) {
    let backend = LocalBackend::load(&args.model, options).unwrap();
    let picked = stratified(rows, args.rows, args.seed);
    let subjects: std::collections::BTreeSet<&str> =
        picked.iter().map(|&i| rows[i].subject.as_str()).collect();
    let started = Instant::now();
    let mut correct = 0;
    let mut chosen_counts = [0usize; 4];
    let mut answer_counts = [0usize; 4];
    for (n, &i) in picked.iter().enumerate() {
        let q = &rows[i];
        let reply = rt.block_on(backend.select(&request(zero_shot(q)))).unwrap();
        let chosen = reply.chosen.unwrap();
        chosen_counts[chosen] += 1;
        answer_counts[q.answer] += 1;
        if chosen == q.answer {
            correct += 1;
        }
        if (n + 1) % 50 == 0 {
            eprintln!(
                "{} / {} rows, {:.1} rows/s",
                n + 1,
                picked.len(),
                (n + 1) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let n = picked.len();
    let (low, high) = wilson(correct, n);
    println!(
        "model {}, {} rows from {} subjects (seed {}, proportional stratified sample), {:.0} s ({:.1} rows/s)",
        backend.identity(),
        n,
        subjects.len(),
        args.seed,
        seconds,
        n as f64 / seconds
    );
    println!(
        "accuracy {correct}/{n} = {:.2}% (95% Wilson interval {:.2}% - {:.2}%)",
        100.0 * correct as f64 / n as f64,
        100.0 * low,
        100.0 * high
    );
    println!("chosen letters A/B/C/D: {chosen_counts:?}; correct letters: {answer_counts:?}");
}
