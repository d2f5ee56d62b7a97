//! One row through a program: render, stop at the open call, ask the backend (through the
//! cache and the retry policy), capture, render again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Map, Value};

use super::cache::ResponseCache;
use super::record::{AnswerRecord, CallRecord, Outcome, OutputRecord, now_rfc3339};
use crate::backend::{
    Backend, BackendError, GenReply, GenRequest, SelectReply, SelectRequest, Usage,
};
use crate::dataset::Row;
use crate::program::{CallKind, Captures, Program, ProgramError, Step};

/// How failed calls are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    /// First wait after a failure; doubles each attempt (with jitter), capped at `max_interval`.
    pub initial_interval: Duration,
    pub max_interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 6,
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter": half the interval fixed, half random, so that
    /// rows failing together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial_interval.as_secs_f64()
            * 2f64.powi(attempt.saturating_sub(1).min(20) as i32);
        let capped = exp.min(self.max_interval.as_secs_f64());
        let jitter = rand::rng().random_range(0.0..=capped / 2.0);
        Duration::from_secs_f64(capped / 2.0 + jitter)
    }
}

/// What a row needs from the run.
pub struct RowContext {
    pub program: Arc<Program>,
    pub backend: Arc<dyn Backend>,
    pub cache: Option<ResponseCache>,
    pub retry: RetryPolicy,
}

/// Why a row did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RowFailure {
    #[error("{error} (after {attempts} attempt{})", if *attempts == 1 { "" } else { "s" })]
    Backend { error: BackendError, attempts: u32 },
    #[error("{0}")]
    Program(#[from] ProgramError),
    #[error(
        "row `{id}`: the program's required input `{field}` has no value in the row and no default"
    )]
    MissingInput { id: String, field: String },
    #[error("row `{id}`: {message}")]
    Ensemble { id: String, message: String },
}

impl RowFailure {
    pub fn attempts(&self) -> u32 {
        match self {
            RowFailure::Backend { attempts, .. } => *attempts,
            _ => 0,
        }
    }
    /// Errors that will fail every row the same way: stop the run instead of burning rows.
    pub fn is_fatal_for_run(&self) -> bool {
        matches!(
            self,
            RowFailure::Backend {
                error: BackendError::Fatal(_),
                ..
            }
        )
    }
}

pub(crate) struct Attempted<T> {
    pub value: T,
    pub attempts: u32,
    pub rate_limited: u32,
    pub latency: Duration,
    pub cached: bool,
}

pub(crate) async fn with_retries<T, F, Fut>(
    policy: RetryPolicy,
    mut call: F,
) -> Result<Attempted<T>, RowFailure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let mut attempts = 0;
    let mut rate_limited = 0;
    loop {
        attempts += 1;
        let started = Instant::now();
        match call().await {
            Ok(value) => {
                return Ok(Attempted {
                    value,
                    attempts,
                    rate_limited,
                    latency: started.elapsed(),
                    cached: false,
                });
            }
            Err(error) if error.is_retryable() && attempts <= policy.max_retries => {
                let wait = match &error {
                    BackendError::RateLimited { retry_after } => {
                        rate_limited += 1;
                        retry_after.unwrap_or_else(|| policy.backoff(attempts))
                    }
                    _ => policy.backoff(attempts),
                };
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(RowFailure::Backend { error, attempts }),
        }
    }
}

async fn cached_call<T, F, Fut>(
    ctx: &RowContext,
    kind: &str,
    request: &impl serde::Serialize,
    repeat: u32,
    call: F,
) -> Result<Attempted<T>, RowFailure>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    // Repeat 0 is the very request an ordinary run sends, so it shares that cache entry; later
    // repeats carry their index, so repeats sampled at temperature > 0 get answers of their own.
    let key = ctx.cache.as_ref().map(|_| match repeat {
        0 => ResponseCache::key(&ctx.backend.identity(), kind, request),
        _ => ResponseCache::key(
            &ctx.backend.identity(),
            kind,
            &serde_json::json!({"request": request, "repeat": repeat}),
        ),
    });
    if let (Some(cache), Some(key)) = (&ctx.cache, &key)
        && let Some(value) = cache.get::<T>(key)
    {
        return Ok(Attempted {
            value,
            attempts: 0,
            rate_limited: 0,
            latency: Duration::ZERO,
            cached: true,
        });
    }
    let attempted = with_retries(ctx.retry, call).await?;
    if let (Some(cache), Some(key)) = (&ctx.cache, &key) {
        // A cache that cannot be written costs money later, not correctness now.
        let _ = cache.put(key, &attempted.value);
    }
    Ok(attempted)
}

/// The template context of a row: its fields at top level, as the dataset has them, and
/// evalr's helpers under `evalr.` (see `program::template_context`).
pub fn row_context(row: &Row, examples: &[&Row]) -> Map<String, Value> {
    crate::program::template_context(
        &row.to_json(),
        examples.iter().map(|r| r.to_json()).collect(),
    )
}

/// What one play of a program over a context produced.
pub struct Played {
    pub captures: Captures,
    pub calls: Vec<CallRecord>,
    /// `Some(chosen)` once the answer select was made (`chosen` is `None` when unparsed).
    pub answer_choice: Option<Option<usize>>,
    /// The options of the answer select, when it was made.
    pub answer_options: Option<Vec<String>>,
    pub refused: bool,
}

/// The row's template context with the program's inputs completed: a missing input takes its
/// default, a required one without a default fails the row.
pub fn input_context(
    ctx: &RowContext,
    row: &Row,
    examples: &[&Row],
) -> Result<Map<String, Value>, RowFailure> {
    let mut context = row_context(row, examples);
    crate::program::complete_inputs(&ctx.program.file.inputs, &mut context).map_err(|input| {
        RowFailure::MissingInput {
            id: row.id.clone(),
            field: input.name.clone(),
        }
    })?;
    Ok(context)
}

/// Plays the program over `context` to its end: render, call, capture, render again.
/// `repeat` is the ensemble repeat (0 for an ordinary row): it enters the cache key, and a
/// sampled `gen` of a later repeat gets a seed of its own.
pub async fn play_program(
    ctx: &RowContext,
    context: &Map<String, Value>,
    repeat: u32,
) -> Result<Played, RowFailure> {
    let program = &ctx.program;
    let params = &program.file.parameters;
    let mut captures = Captures::new();
    let mut calls: Vec<CallRecord> = Vec::new();
    let mut answer_choice: Option<Option<usize>> = None;
    let mut answer_options: Option<Vec<String>> = None;
    let mut refused = false;
    loop {
        let Step::Call(call) = program.next_step(context, &captures)? else {
            break;
        };
        match call.kind {
            CallKind::Select {
                options,
                temperature,
            } => {
                let request = SelectRequest {
                    messages: call.messages,
                    options: options.clone(),
                    temperature: temperature.or(params.temperature),
                };
                let attempted = match cached_call(ctx, "select", &request, repeat, || {
                    ctx.backend.select(&request)
                })
                .await
                {
                    Err(RowFailure::Backend {
                        error: BackendError::ContentFilter(_),
                        attempts,
                    }) => {
                        refused = true;
                        calls.push(refused_call(&call.capture, "select", attempts));
                        break;
                    }
                    other => other?,
                };
                let reply: SelectReply = attempted.value;
                let chosen_text = reply.chosen.and_then(|i| options.get(i).cloned());
                if call.capture == program.file.answer_capture {
                    answer_choice = Some(reply.chosen);
                    answer_options = Some(options.clone());
                }
                captures.insert(
                    call.capture.clone(),
                    Value::String(chosen_text.unwrap_or_default()),
                );
                calls.push(CallRecord {
                    capture: call.capture,
                    kind: "select".into(),
                    path: Some(reply.path),
                    options: Some(options),
                    chosen: reply.chosen,
                    option_probs: reply.option_probs,
                    text: reply.raw_text,
                    usage: reply.usage,
                    latency_ms: attempted.latency.as_secs_f64() * 1000.0,
                    attempts: attempted.attempts,
                    rate_limited: attempted.rate_limited,
                    cached: attempted.cached,
                    repeat: (repeat > 0).then_some(repeat),
                });
            }
            CallKind::Gen {
                max_tokens,
                stop,
                temperature,
                top_p,
                seed,
                regex,
                json_schema,
            } => {
                let capabilities = ctx.backend.capabilities();
                let wants_object = json_schema.is_none()
                    && params.response_format == Some(crate::program::ResponseFormat::JsonObject);
                // A backend with schemas but no JSON mode (the embedded model) gets the schema
                // of any object: the same constraint.
                let (json_object, json_schema) =
                    if wants_object && !capabilities.json_object && capabilities.json_schema {
                        (false, Some(serde_json::json!({"type": "object"})))
                    } else {
                        (wants_object, json_schema)
                    };
                let temperature = temperature.or(params.temperature);
                let mut seed = seed.or(params.seed);
                if repeat > 0 && temperature.is_some_and(|t| t > 0.0) {
                    // Without a seed of its own, a sampled repeat on a seeded backend (the
                    // local model) would draw exactly what repeat 0 drew.
                    seed = Some(super::rows::derived_seed(
                        seed.unwrap_or(0),
                        &format!("repeat {repeat}"),
                    ));
                }
                let request = GenRequest {
                    messages: call.messages,
                    max_tokens: max_tokens.or(params.max_tokens).unwrap_or(256),
                    // The file's stop sequences apply to a call that names none.
                    stop: if stop.is_empty() {
                        params.stop.clone()
                    } else {
                        stop
                    },
                    temperature,
                    top_p: top_p.or(params.top_p),
                    seed,
                    regex,
                    json_object,
                    json_schema,
                    presence_penalty: params.presence_penalty,
                    frequency_penalty: params.frequency_penalty,
                };
                let attempted = match cached_call(ctx, "gen", &request, repeat, || {
                    ctx.backend.generate(&request)
                })
                .await
                {
                    Err(RowFailure::Backend {
                        error: BackendError::ContentFilter(_),
                        attempts,
                    }) => {
                        refused = true;
                        calls.push(refused_call(&call.capture, "gen", attempts));
                        break;
                    }
                    other => other?,
                };
                let reply: GenReply = attempted.value;
                captures.insert(call.capture.clone(), Value::String(reply.text.clone()));
                calls.push(CallRecord {
                    capture: call.capture,
                    kind: "gen".into(),
                    path: None,
                    options: None,
                    chosen: None,
                    option_probs: None,
                    text: Some(reply.text),
                    usage: reply.usage,
                    latency_ms: attempted.latency.as_secs_f64() * 1000.0,
                    attempts: attempted.attempts,
                    rate_limited: attempted.rate_limited,
                    cached: attempted.cached,
                    repeat: (repeat > 0).then_some(repeat),
                });
            }
        }
    }
    Ok(Played {
        captures,
        calls,
        answer_choice,
        answer_options,
        refused,
    })
}

/// The outcome of an answer index against the row's correct answer.
pub fn outcome_of(refused: bool, answer_choice: Option<Option<usize>>, row: &Row) -> Outcome {
    if refused {
        return Outcome::Refused;
    }
    match (answer_choice, row.correct_answer) {
        (None, _) | (_, None) => Outcome::Unscored,
        (Some(None), Some(_)) => Outcome::Unparsed,
        (Some(Some(i)), Some(correct)) if i == correct => Outcome::Correct,
        (Some(Some(_)), Some(_)) => Outcome::Wrong,
    }
}

/// Runs a row to the end of its program.
pub async fn run_row(
    ctx: &RowContext,
    row: &Row,
    examples: &[&Row],
) -> Result<OutputRecord, RowFailure> {
    let program = &ctx.program;
    let context = input_context(ctx, row, examples)?;
    let started = Instant::now();
    let played = play_program(ctx, &context, 0).await?;
    let Played {
        captures,
        calls,
        answer_choice,
        refused,
        ..
    } = played;
    let answer = answer_choice.flatten().and_then(|index| {
        let option = captures
            .get(&program.file.answer_capture)?
            .as_str()?
            .to_string();
        Some(AnswerRecord {
            capture: program.file.answer_capture.clone(),
            option,
            index,
        })
    });
    let outcome = outcome_of(refused, answer_choice, row);
    let mut usage = Usage::default();
    for call in &calls {
        usage.add(call.usage);
    }
    Ok(OutputRecord {
        id: row.id.clone(),
        row: row.to_json(),
        program: program.file.name.clone(),
        captures,
        answer,
        outcome,
        attempts: calls.iter().map(|c| c.attempts).sum(),
        rate_limited: calls.iter().map(|c| c.rate_limited).sum(),
        calls,
        usage,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        model: ctx.backend.identity(),
        finished_at: now_rfc3339(),
        batch: false,
        examples: Vec::new(),
        ensemble: None,
    })
}

fn refused_call(capture: &str, kind: &str, attempts: u32) -> CallRecord {
    CallRecord {
        capture: capture.to_string(),
        kind: kind.to_string(),
        path: None,
        options: None,
        chosen: None,
        option_probs: None,
        text: None,
        usage: Usage::default(),
        latency_ms: 0.0,
        attempts,
        rate_limited: 0,
        cached: false,
        repeat: None,
    }
}
