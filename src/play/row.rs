//! One row through a program: render, stop at the open call, ask the backend (through the
//! cache and the retry policy), capture, render again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::cache::ResponseCache;
use super::failure::RowFailure;
use super::retry::{Attempted, RetryPolicy, with_retries};
use crate::backend::{
    Backend, BackendError, GenReply, GenRequest, Message, SelectReply, SelectRequest, Usage,
};
use crate::dataset::Row;
use crate::program::{Call, CallKind, Captures, Program, Step};
use crate::results::{
    AnswerSelect, CallKind as RecordedKind, CallRecord, FinishedRow, OutputRecord,
};

/// What a row needs from the run.
pub struct RowContext {
    pub program: Arc<Program>,
    pub backend: Arc<dyn Backend>,
    pub cache: Option<ResponseCache>,
    pub retry: RetryPolicy,
    /// The run's repeat number, part of the cache key (see `RunOptions::repeat`).
    pub repeat: u32,
}

/// The call kind in the cache key (unchanged since the first cache, so old entries hit).
fn cache_kind(kind: RecordedKind) -> &'static str {
    match kind {
        RecordedKind::Select => "select",
        RecordedKind::Gen => "gen",
    }
}

async fn cached_call<T, F, Fut>(
    ctx: &RowContext,
    kind: RecordedKind,
    request: &impl serde::Serialize,
    ensemble_repeat: u32,
    call: F,
) -> Result<Attempted<T>, RowFailure>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    // Repeat 0 of an ensemble is the very request an ordinary run sends, so it shares that
    // entry; later repeats carry their index, so repeats sampled at temperature > 0 get
    // answers of their own. The run's repeat (a judge's `--judge-repeats`) is another axis.
    let key = ctx.cache.as_ref().map(|_| {
        let identity = ctx.backend.identity();
        let kind = cache_kind(kind);
        match ensemble_repeat {
            0 => ResponseCache::key_of_repeat(&identity, kind, request, ctx.repeat),
            r => ResponseCache::key_of_repeat(
                &identity,
                kind,
                &serde_json::json!({"request": request, "ensemble_repeat": r}),
                ctx.repeat,
            ),
        }
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

/// How one call of a row ended.
enum CallEnd {
    /// Answered: the capture's value and the call's record.
    Answered {
        value: String,
        chosen: Option<usize>,
        record: CallRecord,
    },
    /// The service's content filter refused it: the row ends here, `refused`.
    Refused(CallRecord),
}

/// A call's record: what the attempts gave (the answer's fields are filled by the caller).
fn call_record(
    capture: String,
    kind: RecordedKind,
    attempts: u32,
    rate_limited: u32,
    latency: Duration,
    cached: bool,
    messages: Vec<Message>,
) -> CallRecord {
    CallRecord {
        capture,
        kind,
        path: None,
        options: None,
        chosen: None,
        option_probs: None,
        text: None,
        usage: Usage::default(),
        latency_ms: latency.as_secs_f64() * 1000.0,
        attempts,
        rate_limited,
        cached,
        repeat: None,
        messages,
    }
}

fn answered_record<T>(
    capture: String,
    kind: RecordedKind,
    a: &Attempted<T>,
    messages: Vec<Message>,
) -> CallRecord {
    call_record(
        capture,
        kind,
        a.attempts,
        a.rate_limited,
        a.latency,
        a.cached,
        messages,
    )
}

/// A refusal ends the row (`Err(CallEnd::Refused)`); any other failure fails it.
fn refusal<T>(
    result: Result<Attempted<T>, RowFailure>,
    capture: &str,
    kind: RecordedKind,
    messages: &[Message],
) -> Result<Result<Attempted<T>, CallEnd>, RowFailure> {
    match result {
        Err(RowFailure::Backend {
            error: BackendError::ContentFilter(_),
            attempts,
        }) => Ok(Err(CallEnd::Refused(call_record(
            capture.to_string(),
            kind,
            attempts,
            0,
            Duration::ZERO,
            false,
            messages.to_vec(),
        )))),
        other => other.map(Ok),
    }
}

async fn select_call(
    ctx: &RowContext,
    call: Call,
    options: Vec<String>,
    temperature: Option<f64>,
    repeat: u32,
) -> Result<CallEnd, RowFailure> {
    let request = SelectRequest {
        messages: call.messages,
        options: options.clone(),
        temperature: temperature.or(ctx.program.file.parameters.temperature),
    };
    let result = cached_call(ctx, RecordedKind::Select, &request, repeat, || {
        ctx.backend.select(&request)
    })
    .await;
    let attempted: Attempted<SelectReply> = match refusal(
        result,
        &call.capture,
        RecordedKind::Select,
        &request.messages,
    )? {
        Ok(attempted) => attempted,
        Err(end) => return Ok(end),
    };
    let mut record = answered_record(
        call.capture,
        RecordedKind::Select,
        &attempted,
        request.messages,
    );
    let reply = attempted.value;
    let value = reply
        .chosen
        .and_then(|i| options.get(i).cloned())
        .unwrap_or_default();
    record.path = Some(reply.path);
    record.options = Some(options);
    record.chosen = reply.chosen;
    record.option_probs = reply.option_probs;
    record.text = reply.raw_text;
    record.usage = reply.usage;
    Ok(CallEnd::Answered {
        value,
        chosen: reply.chosen,
        record,
    })
}

async fn gen_call(ctx: &RowContext, call: Call, repeat: u32) -> Result<CallEnd, RowFailure> {
    let CallKind::Gen {
        max_tokens,
        stop,
        temperature,
        top_p,
        seed,
        regex,
        json_schema,
    } = call.kind
    else {
        unreachable!("gen_call is given gen calls")
    };
    let params = &ctx.program.file.parameters;
    let capabilities = ctx.backend.capabilities();
    let wants_object = json_schema.is_none()
        && params.response_format == Some(crate::program::ResponseFormat::JsonObject);
    // A backend with schemas but no JSON mode (the embedded model) gets the schema of any
    // object: the same constraint.
    let (json_object, json_schema) =
        if wants_object && !capabilities.json_object && capabilities.json_schema {
            (false, Some(serde_json::json!({"type": "object"})))
        } else {
            (wants_object, json_schema)
        };
    let temperature = temperature.or(params.temperature);
    let mut seed = seed.or(params.seed);
    if repeat > 0 && temperature.is_some_and(|t| t > 0.0) {
        // Without a seed of its own, a sampled repeat on a seeded backend (the local model)
        // would draw exactly what repeat 0 drew.
        seed = Some(crate::dataset::derived_seed(
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
    let result = cached_call(ctx, RecordedKind::Gen, &request, repeat, || {
        ctx.backend.generate(&request)
    })
    .await;
    let attempted: Attempted<GenReply> =
        match refusal(result, &call.capture, RecordedKind::Gen, &request.messages)? {
            Ok(attempted) => attempted,
            Err(end) => return Ok(end),
        };
    let mut record = answered_record(
        call.capture,
        RecordedKind::Gen,
        &attempted,
        request.messages,
    );
    let reply = attempted.value;
    record.text = Some(reply.text.clone());
    record.usage = reply.usage;
    Ok(CallEnd::Answered {
        value: reply.text,
        chosen: None,
        record,
    })
}

/// What one play of a program over a context produced.
pub struct Played {
    pub captures: Captures,
    pub calls: Vec<CallRecord>,
    /// What the answer select gave (`None` until it was made).
    pub answer: AnswerSelect,
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
/// `repeat` is the ensemble repeat (0 for an ordinary row): it enters the cache key and the
/// calls' records, and a sampled `gen` of a later repeat gets a seed of its own.
pub async fn play_program(
    ctx: &RowContext,
    context: &Map<String, Value>,
    repeat: u32,
) -> Result<Played, RowFailure> {
    let program = &ctx.program;
    let answer_capture = &program.file.answer_capture;
    let mut played = Played {
        captures: Captures::new(),
        calls: Vec::new(),
        answer: AnswerSelect::None,
        answer_options: None,
        refused: false,
    };
    let vars = program.row_vars(context);
    while let Step::Call(call) = program.next_step_with(&vars, &played.captures)? {
        let is_answer = &call.capture == answer_capture;
        let end = match call.kind {
            CallKind::Select {
                ref options,
                temperature,
            } => {
                let options = options.clone();
                if is_answer {
                    played.answer_options = Some(options.clone());
                }
                select_call(ctx, call, options, temperature, repeat).await?
            }
            CallKind::Gen { .. } => gen_call(ctx, call, repeat).await?,
        };
        match end {
            CallEnd::Answered {
                value,
                chosen,
                mut record,
            } => {
                if is_answer && record.kind == RecordedKind::Select {
                    played.answer = chosen.map_or(AnswerSelect::Unmatched, AnswerSelect::Chosen);
                }
                record.repeat = (repeat > 0).then_some(repeat);
                played
                    .captures
                    .insert(record.capture.clone(), Value::String(value));
                played.calls.push(record);
            }
            CallEnd::Refused(mut record) => {
                record.repeat = (repeat > 0).then_some(repeat);
                played.refused = true;
                played.calls.push(record);
                break;
            }
        }
    }
    Ok(played)
}

/// Runs a row to the end of its program.
pub async fn run_row(
    ctx: &RowContext,
    row: &Row,
    examples: &[&Row],
) -> Result<OutputRecord, RowFailure> {
    let context = input_context(ctx, row, examples)?;
    let started = Instant::now();
    let played = play_program(ctx, &context, 0).await?;
    Ok(OutputRecord::from_finished(FinishedRow {
        row: row.clone(),
        program: ctx.program.file.name.clone(),
        captures: played.captures,
        answer_capture: ctx.program.file.answer_capture.clone(),
        answer: played.answer,
        refused: played.refused,
        calls: played.calls,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        model: ctx.backend.identity(),
        batch: false,
    }))
}
