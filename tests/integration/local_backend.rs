//! The embedded model backend on the real default model (Gemma 3 270M Q4_K_M).
//!
//! The model is installed by `scripts/install-default-model.sh`. Without it these tests say so
//! loudly and pass, unless `EVALR_REQUIRE_MODEL` is set (CI sets it), where they fail.
//!
//! `tests/fixtures/mmlu_20.jsonl`: the first test row of 20 MMLU subjects spread over the 57
//! (subjects sorted by name, index `i * 57 / 20`), written once from
//! /work/shared/data/mmlu/hf/cais/mmlu/all/test-00000-of-00001.parquet.
#![cfg(feature = "local")]

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use evalr::backend::local::{
    ChatFormatSource, LocalBackend, LocalOptions, default_model_path, llama_backend,
};
use evalr::backend::{Backend, GenRequest, Message, Role, SelectPath, SelectRequest};
use evalr::dataset::Row;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

/// Log-likelihoods from llama.cpp on CPU differ by up to ~0.3 nats between ways of evaluating
/// the same tokens (batched, KV reused, re-decoded); see the shared notes on the model.
const TOLERANCE_NATS: f64 = 0.3;

fn model_path() -> Option<PathBuf> {
    let path = default_model_path().expect("models directory");
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("EVALR_REQUIRE_MODEL").is_some() {
        panic!(
            "EVALR_REQUIRE_MODEL is set but {} does not exist: run scripts/install-default-model.sh",
            path.display()
        );
    }
    eprintln!(
        "\n*** SKIPPED: {} is not installed; run scripts/install-default-model.sh \
         (set EVALR_REQUIRE_MODEL=1 to make this a failure) ***\n",
        path.display()
    );
    None
}

/// One backend shared by the scoring tests (loading takes about a second).
fn shared_backend() -> Option<&'static LocalBackend> {
    static BACKEND: OnceLock<Option<LocalBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            model_path().map(|p| LocalBackend::load(&p, LocalOptions::default()).unwrap())
        })
        .as_ref()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn rows() -> Vec<Row> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mmlu_20.jsonl"),
    )
    .unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

fn question_text(row: &Row) -> String {
    let subject = row.subject.as_deref().unwrap_or("").replace('_', " ");
    let mut text = format!(
        "The following is a multiple choice question about {subject}.\n\n{}\n",
        row.question
    );
    for (letter, choice) in LETTERS.iter().zip(&row.choices) {
        text.push_str(&format!("{letter}. {choice}\n"));
    }
    text
}

/// A zero-shot letters conversation: the user turn holds the question, the assistant turn
/// starts with "Answer:" and the model continues it.
fn letters_messages(row: &Row) -> Vec<Message> {
    vec![
        Message::text(Role::User, question_text(row)),
        Message::text(Role::Assistant, "Answer:".to_string()),
    ]
}

/// What llama.cpp's built-in "gemma" template makes of `letters_messages`, written out here
/// so that the independent computation does not use the backend's formatting code.
fn gemma_prompt(row: &Row) -> String {
    format!(
        "<start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\nAnswer:",
        question_text(row).trim()
    )
}

/// The low-level reference: for each option, a fresh context decodes `prompt + option` from
/// scratch (BOS added by the tokenizer) and sums the log-probabilities of the tokens after
/// the prefix all options share. Differences between options equal differences of the full
/// texts' log-likelihoods.
fn reference_loglikelihoods(prompt: &str, options: &[String]) -> Vec<f64> {
    static MODEL: OnceLock<LlamaModel> = OnceLock::new();
    let backend = llama_backend().unwrap();
    let model = MODEL.get_or_init(|| {
        LlamaModel::load_from_file(backend, model_path().unwrap(), &LlamaModelParams::default())
            .unwrap()
    });
    let wholes: Vec<Vec<LlamaToken>> = options
        .iter()
        .map(|o| {
            model
                .vocab()
                .tokenize(format!("{prompt}{o}").as_bytes(), true, true)
        })
        .collect();
    assert_eq!(wholes[0][0], model.vocab().bos(), "one BOS first");
    assert_ne!(wholes[0][1], model.vocab().bos(), "no second BOS");
    let shared = (0..)
        .take_while(|&i| wholes.iter().all(|w| i < w.len() && w[i] == wholes[0][i]))
        .count();
    wholes
        .iter()
        .map(|whole| {
            let params = LlamaContextParams::default()
                .with_n_ctx(NonZeroU32::new(2048))
                .with_n_batch(2048);
            let mut ctx = model.new_context(backend, params).unwrap();
            let mut batch = LlamaBatch::new(whole.len(), 1);
            for (i, token) in whole.iter().enumerate() {
                let wanted = i + 1 >= shared && i + 1 < whole.len();
                batch.add(*token, i as i32, &[0], wanted).unwrap();
            }
            ctx.decode(&mut batch).unwrap();
            (shared - 1..whole.len() - 1)
                .map(|i| log_softmax_at(ctx.get_logits_ith(i as i32), whole[i + 1]))
                .sum()
        })
        .collect()
}

fn log_softmax_at(logits: &[f32], token: LlamaToken) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    logits[token.0 as usize] as f64 - max - sum.ln()
}

/// Extra tolerance per scored token when options span several tokens: the per-token
/// differences (a few hundredths of a nat) add up over an option's tokens.
const TOLERANCE_PER_TOKEN: f64 = 0.05;

/// Checks one select reply against the reference computation; `tokens` is the most tokens any
/// option has.
fn assert_matches_reference(
    id: &str,
    chosen: usize,
    logprobs: &[f64],
    reference: &[f64],
    tokens: usize,
) {
    let tolerance = TOLERANCE_NATS + TOLERANCE_PER_TOKEN * tokens.saturating_sub(1) as f64;
    let best = reference
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    let mut sorted = reference.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let margin = sorted[0] - sorted.get(1).copied().unwrap_or(f64::NEG_INFINITY);
    if margin > tolerance {
        assert_eq!(
            chosen, best,
            "{id}: backend {logprobs:?}, reference {reference:?}"
        );
    } else {
        assert!(
            reference[best] - reference[chosen] <= tolerance,
            "{id}: a near tie may flip, but not by more than {tolerance} nats: \
             backend {logprobs:?}, reference {reference:?}"
        );
    }
    // Differences between options, not just the winner, agree.
    for i in 0..reference.len() {
        let backend_diff = logprobs[i] - logprobs[0];
        let reference_diff = reference[i] - reference[0];
        assert!(
            (backend_diff - reference_diff).abs() <= tolerance,
            "{id}: option {i}: backend {logprobs:?}, reference {reference:?}"
        );
    }
}

#[test]
fn select_on_20_mmlu_rows_picks_the_argmax_of_independent_loglikelihoods() {
    let Some(backend) = shared_backend() else {
        return;
    };
    let rt = runtime();
    let options: Vec<String> = LETTERS.iter().map(|l| format!(" {l}")).collect();
    let rows = rows();
    assert_eq!(rows.len(), 20);
    for row in &rows {
        let request = SelectRequest {
            messages: letters_messages(row),
            options: options.clone(),
            temperature: None,
        };
        let reply = rt.block_on(backend.select(&request)).unwrap();
        assert_eq!(reply.path, SelectPath::Loglikelihood);
        let chosen = reply.chosen.expect("every row gets an option");
        assert!(chosen < 4);
        let probs = reply.option_probs.as_ref().unwrap();
        assert_eq!(probs.len(), 4);
        assert!(
            (probs.iter().sum::<f64>() - 1.0).abs() < 1e-6,
            "{}: {probs:?}",
            row.id
        );
        let logprobs = reply.option_logprobs.as_ref().unwrap();
        assert!(logprobs.iter().all(|l| *l < 0.0 && l.is_finite()));
        let best = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(best, chosen, "the chosen option is the most probable");
        assert_eq!(reply.requests, 1);
        assert_eq!(reply.usage.completion_tokens, 0);

        let reference = reference_loglikelihoods(&gemma_prompt(row), &options);
        assert_matches_reference(&row.id, chosen, logprobs, &reference, 1);
    }
}

#[test]
fn select_scores_full_option_texts_of_several_tokens() {
    let Some(backend) = shared_backend() else {
        return;
    };
    let rt = runtime();
    for row in rows().iter().take(5) {
        let options: Vec<String> = row.choices.iter().map(|c| format!(" {c}")).collect();
        let scores = rt
            .block_on(backend.score_options(&letters_messages(row), &options))
            .unwrap();
        assert!(scores.option_tokens.iter().all(|n| *n >= 1));
        for (i, option) in options.iter().enumerate() {
            let per_byte = scores.logprobs[i] / option.len() as f64;
            assert!((scores.logprobs_per_byte[i] - per_byte).abs() < 1e-12);
        }
        let chosen = scores.best(evalr::backend::local::SelectScore::Sum);
        let reference = reference_loglikelihoods(&gemma_prompt(row), &options);
        let tokens = *scores.option_tokens.iter().max().unwrap();
        assert_matches_reference(&row.id, chosen, &scores.logprobs, &reference, tokens);
    }
}

#[test]
fn identity_names_the_file_and_its_sha256() {
    let Some(backend) = shared_backend() else {
        return;
    };
    // The sha256 the PyPI package checks (EXPECTED_SHA256 = a5fd3b62230a...).
    assert_eq!(
        backend.identity(),
        "local:gemma-3-270m-q4_k_m.gguf@a5fd3b62230a"
    );
    let caps = backend.capabilities();
    assert!(caps.exact_loglikelihood && caps.regex && caps.json_schema && !caps.logprobs);
}

#[test]
fn gemma_base_model_uses_the_builtin_gemma_template_and_continues_the_assistant_turn() {
    let Some(backend) = shared_backend() else {
        return;
    };
    assert_eq!(
        backend.info().chat_format,
        ChatFormatSource::BuiltIn("gemma")
    );
    let rt = runtime();
    let messages = vec![
        Message::text(Role::System, "Answer with one letter."),
        Message::text(Role::User, "Which letter comes first?\nA. b\nB. a\n"),
        Message::text(Role::Assistant, "Answer:"),
    ];
    let prompt = rt.block_on(backend.render_prompt(&messages)).unwrap();
    assert_eq!(
        prompt.text,
        "<start_of_turn>user\nAnswer with one letter.\n\nWhich letter comes first?\nA. b\nB. a\
         <end_of_turn>\n<start_of_turn>model\nAnswer:"
    );

    // A conversation that ends with a user turn opens the model's turn.
    let open = rt.block_on(backend.render_prompt(&messages[1..2])).unwrap();
    assert_eq!(
        open.text,
        "<start_of_turn>user\nWhich letter comes first?\nA. b\nB. a<end_of_turn>\n<start_of_turn>model\n"
    );
}

#[test]
fn no_chat_template_joins_the_messages_as_raw_text_with_one_bos() {
    let Some(path) = model_path() else {
        return;
    };
    let backend = LocalBackend::load(
        &path,
        LocalOptions {
            no_chat_template: true,
            ..LocalOptions::default()
        },
    )
    .unwrap();
    assert_eq!(backend.info().chat_format, ChatFormatSource::Plain);
    let rt = runtime();
    let messages = vec![
        Message::text(Role::User, "Question: 2+2=?\nA. 3\nB. 4"),
        Message::text(Role::Assistant, "Answer:"),
    ];
    let prompt = rt.block_on(backend.render_prompt(&messages)).unwrap();
    assert_eq!(prompt.text, "Question: 2+2=?\nA. 3\nB. 4\nAnswer:");
    // The reference tokenizer adds the one BOS the model asks for.
    let reference = reference_token_count(&prompt.text);
    assert_eq!(prompt.tokens, reference);
}

fn reference_token_count(text: &str) -> usize {
    let backend = llama_backend().unwrap();
    let model =
        LlamaModel::load_from_file(backend, model_path().unwrap(), &LlamaModelParams::default())
            .unwrap();
    model.vocab().tokenize(text.as_bytes(), true, false).len()
}

/// Few-shot conversation: the same `shots` examples before every question.
fn few_shot_messages(shots: &[Row], row: &Row) -> Vec<Message> {
    let mut messages = Vec::new();
    for shot in shots {
        messages.push(Message::text(Role::User, question_text(shot)));
        messages.push(Message::text(
            Role::Assistant,
            format!("Answer: {}", LETTERS[shot.correct_answer.unwrap()]),
        ));
    }
    messages.extend(letters_messages(row));
    messages
}

#[test]
fn rows_sharing_a_few_shot_prefix_reuse_the_kv_cache_and_score_the_same() {
    let Some(path) = model_path() else {
        return;
    };
    let rt = runtime();
    let cached = LocalBackend::load(&path, LocalOptions::default()).unwrap();
    let uncached = LocalBackend::load(
        &path,
        LocalOptions {
            prefix_cache: false,
            ..LocalOptions::default()
        },
    )
    .unwrap();
    let rows = rows();
    let (shots, questions) = rows.split_at(5);
    let options: Vec<String> = LETTERS.iter().map(|l| format!(" {l}")).collect();
    for (n, row) in questions.iter().take(4).enumerate() {
        let messages = few_shot_messages(shots, row);
        let prompt_tokens = rt.block_on(cached.render_prompt(&messages)).unwrap().tokens as u64;
        let request = SelectRequest {
            messages,
            options: options.clone(),
            temperature: None,
        };
        let before = cached.stats();
        let with_cache = rt.block_on(cached.select(&request)).unwrap();
        let after = cached.stats();
        let without = rt.block_on(uncached.select(&request)).unwrap();

        let decoded = after.decoded_tokens - before.decoded_tokens;
        let reused = after.reused_tokens - before.reused_tokens;
        // One pass over the weights per row: the prompt's new tail and its last token (whose
        // logits score every single-token option) go in one batch, not two decodes.
        assert_eq!(after.decode_calls - before.decode_calls, 1, "row {n}");
        if n == 0 {
            // Cold cache: the whole prompt is decoded once; single-token options need no
            // decoding of their own (the last prompt token's logits score them all).
            assert_eq!(reused, 0);
            assert_eq!(decoded, prompt_tokens);
        } else {
            // The five examples are most of the prompt and are not decoded again.
            assert!(
                reused > prompt_tokens * 2 / 3,
                "row {n}: reused {reused} of {prompt_tokens} prompt tokens"
            );
            assert_eq!(decoded, prompt_tokens - reused);
        }
        let a = with_cache.option_logprobs.unwrap();
        let b = without.option_logprobs.unwrap();
        for i in 0..4 {
            assert!(
                (a[i] - b[i]).abs() <= TOLERANCE_NATS,
                "row {n}: with cache {a:?}, without {b:?}"
            );
        }
    }

    // The very same call again decodes only the last prompt token (for its logits).
    let request = SelectRequest {
        messages: few_shot_messages(shots, &questions[3]),
        options,
        temperature: None,
    };
    let before = cached.stats();
    rt.block_on(cached.select(&request)).unwrap();
    assert_eq!(cached.stats().decoded_tokens - before.decoded_tokens, 1);
    assert_eq!(cached.stats().decode_calls - before.decode_calls, 1);
}

fn gen_request(messages: Vec<Message>, max_tokens: u32) -> GenRequest {
    GenRequest {
        messages,
        max_tokens,
        stop: Vec::new(),
        temperature: None,
        top_p: None,
        seed: None,
        regex: None,
        json_schema: None,
        ..Default::default()
    }
}

#[test]
fn gen_honours_regex_json_schema_stop_sequences_and_max_tokens() {
    let Some(path) = model_path() else {
        return;
    };
    // A backend of its own: greedy decoding is compared call against call below.
    let backend = LocalBackend::load(&path, LocalOptions::default()).unwrap();
    let rt = runtime();
    let row = &rows()[1];

    // Regex: sampled at temperature 1 with several seeds, the output always matches.
    let pattern = r"(A|B|C|D)\. [a-z]{2,12}";
    let whole = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
    let mut texts = Vec::new();
    for seed in 1..=5u64 {
        let mut request = gen_request(letters_messages(row), 40);
        request.temperature = Some(1.0);
        request.top_p = Some(0.95);
        request.seed = Some(seed);
        request.regex = Some(pattern.to_string());
        let reply = rt.block_on(backend.generate(&request)).unwrap();
        assert!(whole.is_match(&reply.text), "seed {seed}: {:?}", reply.text);
        assert_eq!(reply.finish_reason, "stop");
        assert!(reply.usage.completion_tokens >= 2);
        texts.push(reply.text);
    }
    // Same seed, same text.
    let mut request = gen_request(letters_messages(row), 40);
    request.temperature = Some(1.0);
    request.top_p = Some(0.95);
    request.seed = Some(1);
    request.regex = Some(pattern.to_string());
    assert_eq!(
        rt.block_on(backend.generate(&request)).unwrap().text,
        texts[0]
    );

    // JSON schema: the output parses and the answer is one of the enum's values.
    let mut request = gen_request(letters_messages(row), 64);
    request.json_schema = Some(serde_json::json!({
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["A", "B", "C", "D"]}},
        "required": ["answer"],
        "additionalProperties": false
    }));
    let reply = rt.block_on(backend.generate(&request)).unwrap();
    let value: serde_json::Value =
        serde_json::from_str(&reply.text).unwrap_or_else(|e| panic!("{e}: {:?}", reply.text));
    let answer = value["answer"].as_str().unwrap();
    assert!(LETTERS.contains(&answer), "{value}");
    assert_eq!(value.as_object().unwrap().len(), 1);

    // max_tokens: greedy free text stops after exactly that many tokens.
    let story = vec![
        Message::text(Role::User, "Tell me about the history of Rome."),
        Message::text(Role::Assistant, "Rome was founded"),
    ];
    let reply = rt
        .block_on(backend.generate(&gen_request(story.clone(), 7)))
        .unwrap();
    assert_eq!(reply.finish_reason, "length");
    assert_eq!(reply.usage.completion_tokens, 7);
    let long = rt
        .block_on(backend.generate(&gen_request(story.clone(), 24)))
        .unwrap();
    assert_eq!(long.finish_reason, "length", "{:?}", long.text);
    assert!(
        long.text.starts_with(&reply.text),
        "{:?} / {:?}",
        long.text,
        reply.text
    );

    // Stop sequences: the text ends right before the first stop sequence, which is dropped.
    let words: Vec<&str> = long.text.split_whitespace().collect();
    assert!(words.len() >= 4, "{:?}", long.text);
    let stop = format!(" {}", words[2]);
    let at = long.text.find(&stop).unwrap();
    let mut request = gen_request(story, 24);
    request.stop = vec!["never appears".into(), stop.clone()];
    let reply = rt.block_on(backend.generate(&request)).unwrap();
    assert_eq!(reply.finish_reason, "stop");
    assert_eq!(reply.text, long.text[..at], "stop {stop:?}");
    assert!(reply.usage.completion_tokens < long.usage.completion_tokens);
}

#[test]
fn missing_and_corrupt_model_files_are_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("no-such-model.gguf");
    let error = LocalBackend::load(&missing, LocalOptions::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("model file not found: {}", missing.display())
    );

    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "this is not a model\n").unwrap();
    let error = LocalBackend::load(&text, LocalOptions::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{} is not a usable GGUF model: it does not start with the GGUF magic bytes",
            text.display()
        )
    );

    // A GGUF header followed by garbage gets past the magic check; llama.cpp rejects it.
    let garbage = dir.path().join("garbage.gguf");
    let mut bytes = b"GGUF".to_vec();
    bytes.extend((0..4096u32).map(|i| (i * 7919 % 251) as u8));
    std::fs::write(&garbage, bytes).unwrap();
    let error = LocalBackend::load(&garbage, LocalOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!(
            "{} is not a usable GGUF model: llama.cpp could not load it",
            garbage.display()
        )),
        "{error}"
    );
    assert!(
        error.ends_with("the file is truncated or corrupt"),
        "{error}"
    );

    // The first 4 MB of the real model: a truncated download.
    let Some(path) = model_path() else {
        return;
    };
    let truncated = dir.path().join("truncated.gguf");
    let head = std::fs::read(&path).unwrap()[..4 << 20].to_vec();
    std::fs::write(&truncated, head).unwrap();
    let error = LocalBackend::load(&truncated, LocalOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!(
            "{} is not a usable GGUF model: llama.cpp could not load it",
            truncated.display()
        )),
        "{error}"
    );
}
