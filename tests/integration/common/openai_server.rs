//! A local chat-completions server for tests and benchmarks that speaks the Azure OpenAI and
//! OpenAI protocols the way the services do (request and response JSON, headers, error
//! bodies):
//!
//! - `POST /openai/deployments/{deployment}/chat/completions?api-version=...` (Azure: `api-key`
//!   header or `Authorization: Bearer`) and `POST /v1/chat/completions` (OpenAI: bearer key).
//! - Deterministic answers: an answer key maps a question text (found in the last user
//!   message) to the answer option; anything else gets `default_answer`.
//! - `logprobs` / `top_logprobs` when asked and enabled; `response_format` JSON schema answers
//!   `{"answer": ...}`; without either the answer is written in `style` (plain, sentence,
//!   or unmatchable text).
//! - Per-minute request and token quotas, evaluated like Azure's over short windows (a bucket
//!   holding one window's worth, refilled at the per-minute rate; tokens estimated on arrival
//!   as prompt characters / 4 + `max_tokens`), answering 429 with `retry-after-ms` /
//!   `retry-after`, and `x-ratelimit-remaining-*` on success.
//! - Rate-limit headers on success in the style of Azure (`x-ratelimit-remaining-*`, with or
//!   without `x-ratelimit-limit-*`) or OpenAI (`-limit-*`, `-remaining-*`, `-reset-*`), or none;
//!   and another client that takes a share of the quota from some moment on.
//! - A gateway's constant `x-ratelimit-remaining-requests` (no limit, no reset, never a 429),
//!   whatever is sent: a quota that is reported but does not bind.
//! - Faults: latency, injected 500s, hangs, malformed bodies, content-filter refusals.
//! - Every request is recorded (question, status) so tests can count what was sent.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// How the model writes its answer when neither logprobs nor a schema is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerStyle {
    /// `B`
    Plain,
    /// `The answer is B.`
    Sentence,
    /// Text that matches no option.
    Unmatchable,
    /// A judge answering in JSON, as azure-ai-evaluation's current judges ask:
    /// `{"reason": JUDGE_REASON, "score": <answer>, "status": "completed"}`.
    JudgeJson,
    /// A judge answering in S-tags: `<S0>JUDGE_THOUGHTS</S0><S1>JUDGE_REASON</S1><S2><answer></S2>`.
    JudgeSTags,
    /// A judge answering with the score alone (`<answer>`).
    JudgeDigit,
    /// A judge whose answer holds no score (JUDGE_GARBAGE).
    JudgeGarbage,
}

/// The reason the judge styles give (digits and braces in it must not be read as the score).
pub const JUDGE_REASON: &str =
    "Let's think step by step: the response makes 2 points {in order} and answers the query.";
/// The thoughts of the S-tag style.
pub const JUDGE_THOUGHTS: &str = "Let's think step by step: 1 question, 3 sentences.";
/// The garbage style's whole answer.
pub const JUDGE_GARBAGE: &str = "I am unable to evaluate this response.";

impl AnswerStyle {
    fn write(self, answer: &str) -> String {
        match self {
            AnswerStyle::Plain => answer.to_string(),
            AnswerStyle::Sentence => format!("The answer is {answer}."),
            AnswerStyle::Unmatchable => "I would rather not say.".to_string(),
            AnswerStyle::JudgeJson => {
                let score = answer
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(answer));
                json!({"reason": JUDGE_REASON, "score": score, "status": "completed"}).to_string()
            }
            AnswerStyle::JudgeSTags => {
                format!("<S0>{JUDGE_THOUGHTS}</S0><S1>{JUDGE_REASON}</S1><S2>{answer}</S2>")
            }
            AnswerStyle::JudgeDigit => answer.to_string(),
            AnswerStyle::JudgeGarbage => JUDGE_GARBAGE.to_string(),
        }
    }

    fn is_judge(self) -> bool {
        matches!(
            self,
            AnswerStyle::JudgeJson
                | AnswerStyle::JudgeSTags
                | AnswerStyle::JudgeDigit
                | AnswerStyle::JudgeGarbage
        )
    }
}

/// Which rate-limit headers a successful answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaHeaderStyle {
    /// Azure OpenAI: `x-ratelimit-remaining-requests` / `-tokens` (per window).
    Azure,
    /// Azure with the per-window limits too (`x-ratelimit-limit-requests` / `-tokens`).
    AzureWithLimits,
    /// OpenAI: `x-ratelimit-limit-*`, `-remaining-*` and `-reset-*` (time until full).
    OpenAi,
    /// No rate-limit headers: a client learns the quota from 429s alone.
    None,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Question text -> answer option.
    pub answer_key: Vec<(String, String)>,
    pub default_answer: String,
    pub style: AnswerStyle,
    pub logprobs: bool,
    /// Required `api-key` / bearer value; `None` accepts anything.
    pub api_key: Option<String>,
    pub latency: Duration,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// The quota window: Azure evaluates over 1 or 10 seconds.
    pub window: Duration,
    /// Quotas as Azure (and Microsoft's API simulator) enforce them: at most one window's
    /// worth in any window, sliding - a request's share comes back when it leaves the window.
    /// Otherwise buckets holding one window's worth, refilled continuously.
    pub sliding: bool,
    /// Answer 500 to every Nth request (1-based), if set.
    pub fail_every: Option<u64>,
    /// Answer with a body that is not JSON to every Nth request, if set.
    pub malformed_every: Option<u64>,
    /// Never answer the first N requests (they hang until the client times out).
    pub hang_first: u64,
    /// Never answer request N and every one after it, until `stop_hanging` (so a test can
    /// kill a client at a moment when every answered row is on disk).
    pub hang_from: Option<u64>,
    /// Questions containing this text are refused by the content filter.
    pub content_filter_trigger: Option<String>,
    /// Question text -> the answer given when the question is asked again (a judge that does
    /// not always give the same score); the first answer still comes from `answer_key`.
    pub repeat_answers: Vec<(String, String)>,
    pub quota_headers: QuotaHeaderStyle,
    /// From this long after the first request on, another client takes this share of the
    /// quota (of both buckets' refill).
    pub others_take: Option<(Duration, f64)>,
    /// Prompt tokens each answer reports as served from the prompt cache
    /// (`usage.prompt_tokens_details.cached_tokens`, at most the prompt's).
    pub cached_prompt_tokens: u64,
    /// Reasoning tokens each answer reports (`usage.completion_tokens_details`), counted
    /// in its completion tokens as the service does.
    pub reasoning_tokens: u64,
    /// Question text -> the text of the choice to answer: the server finds the question in
    /// the latest user message that holds one, finds the line there that shows that choice
    /// (`B. text` or `1: text`) and answers its label, wherever the choice sits.
    pub choice_key: Vec<(String, String)>,
    /// A stand-in model for benchmarks: when set, it writes every answer (see [`Simulated`]).
    pub simulated: Option<Simulated>,
    /// Every successful answer says `x-ratelimit-remaining-requests: N`, whatever was sent
    /// (as gateways in front of OpenAI-compatible servers do); no other rate-limit header.
    pub constant_remaining: Option<u64>,
}

/// A stand-in for a model, for benchmarks that need answers of a realistic size and spread
/// (the answer key is looked up by substring, too slow for 14,000 questions): given the last
/// user message and whether the request is a select (it asks for logprobs or a JSON schema),
/// the answer option or the generated text.
#[derive(Clone)]
pub struct Simulated(pub Arc<SimulatedAnswer>);

/// `(last user message, is a select) -> answer`.
pub type SimulatedAnswer = dyn Fn(&str, bool) -> String + Send + Sync;

impl std::fmt::Debug for Simulated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Simulated(..)")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            answer_key: Vec::new(),
            default_answer: "A".into(),
            style: AnswerStyle::Plain,
            logprobs: true,
            api_key: Some("test-key".into()),
            latency: Duration::ZERO,
            rpm: None,
            tpm: None,
            window: Duration::from_secs(1),
            sliding: false,
            fail_every: None,
            malformed_every: None,
            hang_first: 0,
            hang_from: None,
            content_filter_trigger: None,
            repeat_answers: Vec::new(),
            quota_headers: QuotaHeaderStyle::Azure,
            others_take: None,
            cached_prompt_tokens: 0,
            reasoning_tokens: 0,
            choice_key: Vec::new(),
            simulated: None,
            constant_remaining: None,
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub question: Option<String>,
    /// The `azureml-model-deployment` header, on AzureML scoring requests.
    pub deployment: Option<String>,
    pub status: u16,
    pub body: Value,
    pub at: Instant,
}

/// What is left of the quota: request and token cells, refilled continuously (or, for a
/// sliding window, what the window holds).
struct Quota {
    requests: Option<f64>,
    tokens: Option<f64>,
    last: Instant,
    first: Option<Instant>,
    /// Sliding windows: the admitted requests' arrival times and token estimates, oldest first.
    window: VecDeque<(Instant, f64)>,
    /// Sliding windows: when the other client's next request arrives.
    others_next: Option<Instant>,
}

struct Shared {
    config: ServerConfig,
    key: HashMap<String, String>,
    seen: Mutex<Vec<SeenRequest>>,
    quota: Mutex<Quota>,
    counter: AtomicU64,
    hang_from: AtomicU64,
}

pub struct ChatServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _runtime: Option<tokio::runtime::Runtime>,
}

impl ChatServer {
    /// Starts the server on 127.0.0.1 (a free port) on its own runtime thread.
    pub fn start(config: ServerConfig) -> ChatServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (addr, shared) = runtime.block_on(Self::serve(config, "127.0.0.1:0"));
        ChatServer {
            addr,
            shared,
            _runtime: Some(runtime),
        }
    }

    /// Serves on `bind` inside the current runtime (for the standalone benchmark server).
    pub async fn serve_forever(config: ServerConfig, bind: &str) -> SocketAddr {
        let (addr, _shared) = Self::serve(config, bind).await;
        addr
    }

    async fn serve(config: ServerConfig, bind: &str) -> (SocketAddr, Arc<Shared>) {
        let key = config.answer_key.iter().cloned().collect();
        let shared = Arc::new(Shared {
            config,
            key,
            seen: Mutex::new(Vec::new()),
            quota: Mutex::new(Quota {
                requests: None,
                tokens: None,
                last: Instant::now(),
                first: None,
                window: VecDeque::new(),
                others_next: None,
            }),
            counter: AtomicU64::new(0),
            hang_from: AtomicU64::new(u64::MAX),
        });
        if let Some(n) = shared.config.hang_from {
            shared.hang_from.store(n, Ordering::SeqCst);
        }
        let app = Router::new()
            .route(
                "/openai/deployments/{deployment}/chat/completions",
                post(azure_chat),
            )
            .route("/v1/chat/completions", post(openai_chat))
            .route(
                "/openai/deployments/{deployment}/embeddings",
                post(azure_embeddings),
            )
            .route("/v1/embeddings", post(openai_embeddings))
            .route("/score", post(azureml_score))
            .route("/custom/score", post(custom_score))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr, shared)
    }

    pub fn azure_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.shared.seen.lock().expect("lock").clone()
    }

    /// From now on, answers `answered` more requests and then holds every later one unanswered
    /// (until `stop_hanging`), like `hang_from` counted from this moment.
    pub fn hang_after(&self, answered: u64) {
        let received = self.shared.counter.load(Ordering::SeqCst);
        self.shared
            .hang_from
            .store(received + answered + 1, Ordering::SeqCst);
    }

    /// Answers normally again after `hang_from`.
    pub fn stop_hanging(&self) {
        self.shared.hang_from.store(u64::MAX, Ordering::SeqCst);
    }

    /// Requests received that are still waiting for an answer because of `hang_from`.
    pub fn hanging(&self) -> usize {
        self.seen().iter().filter(|r| r.status == 0).count()
    }

    /// How many requests carried each question, counting only those answered 200.
    pub fn answered_per_question(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for request in self.seen() {
            if let (Some(q), 200) = (request.question, request.status) {
                *counts.entry(q).or_insert(0) += 1;
            }
        }
        counts
    }
}

async fn azure_chat(
    State(shared): State<Arc<Shared>>,
    Path(_deployment): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = azure_key(&headers);
    chat(shared, key, body).await
}

async fn openai_chat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    chat(shared, bearer(&headers), body).await
}

/// Azure's `api-key` header, else an `Authorization: Bearer` token (Entra ID).
fn azure_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| bearer(headers))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
        .into_response()
}

/// The text of a message's content: the string, or its text parts joined.
pub fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// What the service refuses in `messages`, with its error text: content parts it does not
/// know, images outside user messages, image URLs that are neither http(s) nor base64 image
/// data URLs, names with spaces or `<|\/>`.
fn invalid_messages(body: &Value) -> Option<String> {
    let messages = body.get("messages")?.as_array()?;
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if let Some(name) = message.get("name") {
            let ok = name.as_str().is_some_and(|n| {
                !n.is_empty() && !n.chars().any(|c| c.is_whitespace() || "<|\\/>".contains(c))
            });
            if !ok {
                return Some(format!(
                    "Invalid 'messages[{i}].name': string does not match pattern. Expected a string that matches the pattern '^[^\\s<|\\\\/>]+$'."
                ));
            }
        }
        let Some(parts) = message.get("content").and_then(Value::as_array) else {
            continue;
        };
        for (j, part) in parts.iter().enumerate() {
            match part.get("type").and_then(Value::as_str) {
                Some("text") if part.get("text").is_some_and(Value::is_string) => {}
                Some("image_url") => {
                    if role != "user" {
                        return Some(format!(
                            "Invalid 'messages[{i}]'. Image URLs are only allowed for messages with role 'user', but this message with role '{role}' contains an image URL."
                        ));
                    }
                    let url = part
                        .pointer("/image_url/url")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let detail_ok = part
                        .pointer("/image_url/detail")
                        .is_none_or(|d| matches!(d.as_str(), Some("low" | "high" | "auto")));
                    let data_ok = url.strip_prefix("data:").is_some_and(|rest| {
                        rest.split_once(";base64,").is_some_and(|(media, data)| {
                            matches!(
                                media,
                                "image/png" | "image/jpeg" | "image/gif" | "image/webp"
                            ) && !data.is_empty()
                                && data
                                    .bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
                        })
                    });
                    if !(url.starts_with("https://") || url.starts_with("http://") || data_ok)
                        || !detail_ok
                    {
                        return Some(format!(
                            "Invalid image URL: 'messages[{i}].content[{j}].image_url.url'. Expected a valid URL or a base64-encoded data URL with an image MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU=')."
                        ));
                    }
                }
                _ => {
                    return Some(format!(
                        "Invalid value: 'messages[{i}].content[{j}]'. Supported values are: 'text' and 'image_url'."
                    ));
                }
            }
        }
    }
    None
}

/// The question a request is about: the known question found in its last user message (chat
/// and AzureML `input_data` requests) or in its `prompt` (the custom scoring script).
fn find_question(shared: &Shared, body: &Value) -> Option<String> {
    let text = last_user_text(body)?;
    shared
        .config
        .answer_key
        .iter()
        .map(|(q, _)| q)
        .filter(|q| text.contains(q.as_str()))
        .max_by_key(|q| q.len())
        .cloned()
}

/// The text a request asks about: its `prompt`, else the text of its last user message (its
/// text parts, when it has images).
fn last_user_text(body: &Value) -> Option<String> {
    if let Some(prompt) = body.get("prompt").and_then(Value::as_str) {
        return Some(prompt.to_string());
    }
    let messages = body
        .get("messages")
        .or_else(|| body.pointer("/input_data/input_string"))?
        .as_array()?;
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    Some(text_of(last_user.get("content")?))
}

async fn chat(shared: Arc<Shared>, key: Option<String>, body: Bytes) -> Response {
    let n = shared.counter.fetch_add(1, Ordering::SeqCst) + 1;
    let config = &shared.config;
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("We could not parse the JSON body of your request: {e}"),
            );
        }
    };
    let by_content = answer_by_content(&shared, &parsed);
    let question = find_question(&shared, &parsed).or_else(|| by_content.clone().map(|(q, _)| q));
    let record = |status: u16| {
        shared.seen.lock().expect("lock").push(SeenRequest {
            question: question.clone(),
            deployment: None,
            status,
            body: parsed.clone(),
            at: Instant::now(),
        });
    };
    if let Some(expected) = &config.api_key
        && key.as_deref() != Some(expected.as_str())
    {
        record(401);
        return error(
            StatusCode::UNAUTHORIZED,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        );
    }
    if let Some(message) = invalid_messages(&parsed) {
        record(400);
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
    }
    if n <= config.hang_first || n >= shared.hang_from.load(Ordering::SeqCst) {
        record(0);
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    // Quota, as the service estimates it on arrival: prompt characters / 4 + max_tokens.
    let prompt_chars: usize = parsed["messages"]
        .as_array()
        .map(|m| m.iter().map(|x| text_of(&x["content"]).len()).sum())
        .unwrap_or(0);
    let max_tokens = parsed
        .get("max_tokens")
        .or_else(|| parsed.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(16);
    let estimated = (prompt_chars as u64).div_ceil(4) + max_tokens;
    let mut remaining = (None, None);
    let mut rate_headers: Vec<(&str, String)> = Vec::new();
    if config.rpm.is_some() || config.tpm.is_some() {
        let mut quota = shared.quota.lock().expect("lock");
        let now = Instant::now();
        // Leaky buckets holding one window's worth, refilled continuously at the per-minute rate.
        let elapsed = now.duration_since(quota.last).as_secs_f64();
        quota.last = now;
        let first = *quota.first.get_or_insert(now);
        // Another client's share of the refill since the last request, once it has started.
        let others = config
            .others_take
            .filter(|(after, _)| now.duration_since(first) >= *after)
            .map(|(_, share)| share)
            .unwrap_or(0.0);
        let scale = config.window.as_secs_f64() / 60.0;
        let request_capacity = config.rpm.map(|r| (r as f64 * scale).max(1.0));
        let token_capacity = config.tpm.map(|t| (t as f64 * scale).max(1.0));
        let wait_secs = if config.sliding {
            sliding_window(
                &mut quota,
                config,
                now,
                estimated as f64,
                request_capacity,
                token_capacity,
            )
        } else {
            if let (Some(capacity), Some(rpm)) = (request_capacity, config.rpm) {
                let refill = elapsed * rpm as f64 / 60.0;
                quota.requests = (quota.requests.unwrap_or(capacity) + refill)
                    .min(capacity)
                    .into();
                quota.requests = quota.requests.map(|r| (r - refill * others).max(0.0));
            }
            if let (Some(capacity), Some(tpm)) = (token_capacity, config.tpm) {
                let refill = elapsed * tpm as f64 / 60.0;
                quota.tokens = (quota.tokens.unwrap_or(capacity) + refill)
                    .min(capacity)
                    .into();
                quota.tokens = quota.tokens.map(|t| (t - refill * others).max(0.0));
            }
            let short_requests = quota
                .requests
                .map(|r| 1.0 - r)
                .filter(|d| *d > 0.0)
                .map(|d| d * 60.0 / config.rpm.unwrap_or(1) as f64);
            let short_tokens = quota
                .tokens
                .map(|t| estimated as f64 - t)
                .filter(|d| *d > 0.0)
                .map(|d| d * 60.0 / config.tpm.unwrap_or(1) as f64);
            let wait = short_requests
                .into_iter()
                .chain(short_tokens)
                .reduce(f64::max);
            if wait.is_none() {
                if let Some(r) = quota.requests.as_mut() {
                    *r -= 1.0;
                }
                if let Some(t) = quota.tokens.as_mut() {
                    *t -= estimated as f64;
                }
            }
            wait
        };
        if let Some(wait_secs) = wait_secs {
            let wait = Duration::from_secs_f64(wait_secs).max(Duration::from_millis(1));
            drop(quota);
            record(429);
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "429",
                &format!(
                    "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after {} seconds.",
                    wait.as_secs().max(1)
                ),
            );
            let h = response.headers_mut();
            h.insert(
                "retry-after-ms",
                HeaderValue::from_str(&wait.as_millis().max(1).to_string()).expect("header"),
            );
            h.insert(
                "retry-after",
                HeaderValue::from_str(&wait.as_secs().max(1).to_string()).expect("header"),
            );
            return response;
        }
        remaining = (
            quota.requests.map(|r| r.max(0.0) as u64),
            quota.tokens.map(|t| t.max(0.0) as u64),
        );
        let style = config.quota_headers;
        if matches!(
            style,
            QuotaHeaderStyle::AzureWithLimits | QuotaHeaderStyle::OpenAi
        ) {
            if let Some(capacity) = request_capacity {
                rate_headers.push(("x-ratelimit-limit-requests", format!("{capacity:.0}")));
            }
            if let Some(capacity) = token_capacity {
                rate_headers.push(("x-ratelimit-limit-tokens", format!("{capacity:.0}")));
            }
        }
        if style == QuotaHeaderStyle::OpenAi {
            // Time until the bucket is full again, in OpenAI's duration format.
            let until_full =
                |level: Option<f64>, capacity: Option<f64>, per_minute: Option<u32>| {
                    let (level, capacity, per_minute) = (level?, capacity?, per_minute?);
                    let secs = (capacity - level).max(0.0) * 60.0 / per_minute.max(1) as f64;
                    Some(if secs < 1.0 {
                        format!("{}ms", (secs * 1000.0).round() as u64)
                    } else {
                        format!("{secs:.3}s")
                    })
                };
            if let Some(reset) = until_full(quota.requests, request_capacity, config.rpm) {
                rate_headers.push(("x-ratelimit-reset-requests", reset));
            }
            if let Some(reset) = until_full(quota.tokens, token_capacity, config.tpm) {
                rate_headers.push(("x-ratelimit-reset-tokens", reset));
            }
        }
        if style == QuotaHeaderStyle::None {
            remaining = (None, None);
        }
    }
    if let Some(constant) = config.constant_remaining {
        remaining = (Some(constant), None);
    }
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    if config.fail_every.is_some_and(|k| n.is_multiple_of(k)) {
        record(500);
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "The server had an error while processing your request. Sorry about that!",
        );
    }
    if config.malformed_every.is_some_and(|k| n.is_multiple_of(k)) {
        record(200);
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            "{\"choices\": [{\"message\": ",
        )
            .into_response();
    }
    if let (Some(trigger), Some(q)) = (&config.content_filter_trigger, &question)
        && q.contains(trigger.as_str())
    {
        record(400);
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            json!({"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.", "type": null, "param": "prompt", "code": "content_filter", "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {"violence": {"filtered": true, "severity": "medium"}}}}}).to_string(),
        )
            .into_response();
    }
    let asked_before = question.as_ref().is_some_and(|q| {
        shared
            .seen
            .lock()
            .expect("lock")
            .iter()
            .any(|r| r.status == 200 && r.question.as_ref() == Some(q))
    });
    let repeated = question
        .as_ref()
        .filter(|_| asked_before)
        .and_then(|q| config.repeat_answers.iter().find(|(k, _)| k == q))
        .map(|(_, a)| a.clone());
    let wants_logprobs = parsed
        .get("logprobs")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let schema = parsed
        .pointer("/response_format/type")
        .and_then(Value::as_str)
        == Some("json_schema");
    let simulated = config.simulated.as_ref().map(|model| {
        (model.0)(
            &last_user_text(&parsed).unwrap_or_default(),
            wants_logprobs || schema,
        )
    });
    let answer = simulated
        .or(repeated)
        .or_else(|| question.as_ref().and_then(|q| shared.key.get(q)).cloned())
        .or_else(|| by_content.map(|(_, label)| label))
        .unwrap_or_else(|| config.default_answer.clone());
    let (content, logprobs) = if config.style.is_judge() {
        // A judge writes its answer in its style whatever the request asks for.
        (config.style.write(&answer), Value::Null)
    } else if wants_logprobs && config.logprobs {
        let others: Vec<Value> = ["A", "B", "C", "D"]
            .iter()
            .filter(|o| **o != answer)
            .map(|o| json!({"token": o, "logprob": (0.1f64).ln(), "bytes": o.as_bytes()}))
            .collect();
        let mut top =
            vec![json!({"token": answer, "logprob": (0.7f64).ln(), "bytes": answer.as_bytes()})];
        top.extend(others);
        (
            answer.clone(),
            json!({"content": [{"token": answer, "logprob": (0.7f64).ln(), "bytes": answer.as_bytes(), "top_logprobs": top}]}),
        )
    } else if schema {
        (json!({"answer": answer}).to_string(), Value::Null)
    } else {
        (config.style.write(&answer), Value::Null)
    };
    record(200);
    let completion_tokens = (content.len() as u64).div_ceil(4).max(1) + config.reasoning_tokens;
    let prompt_tokens = (prompt_chars as u64).div_ceil(4);
    let body = json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop", "logprobs": logprobs}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens,
                  "prompt_tokens_details": {"cached_tokens": config.cached_prompt_tokens.min(prompt_tokens)},
                  "completion_tokens_details": {"reasoning_tokens": config.reasoning_tokens}}
    });
    let mut response = (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(r) = remaining.0 {
        response.headers_mut().insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_str(&r.to_string()).expect("header"),
        );
    }
    if let Some(t) = remaining.1 {
        response.headers_mut().insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_str(&t.to_string()).expect("header"),
        );
    }
    for (name, value) in rate_headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).expect("header"));
    }
    response
}

/// An AzureML managed online endpoint hosting a catalog chat model: `input_data` in, `output` out.
/// A sliding window: at most one window's worth of requests and tokens in any window. The
/// other client (if any) sends its requests evenly from its start on, admitted when they fit.
/// Admits the request (and leaves in `quota` what remains), or says how long until it fits.
fn sliding_window(
    quota: &mut Quota,
    config: &ServerConfig,
    now: Instant,
    tokens: f64,
    request_capacity: Option<f64>,
    token_capacity: Option<f64>,
) -> Option<f64> {
    let requests_cap = request_capacity.unwrap_or(f64::INFINITY);
    let tokens_cap = token_capacity.unwrap_or(f64::INFINITY);
    let fits = |window: &VecDeque<(Instant, f64)>, cost: f64| {
        window.len() as f64 + 1.0 <= requests_cap
            && window.iter().map(|(_, c)| c).sum::<f64>() + cost <= tokens_cap
    };
    let expire = |window: &mut VecDeque<(Instant, f64)>, at: Instant| {
        while window
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) >= config.window)
        {
            window.pop_front();
        }
    };
    if let (Some((after, share)), Some(rpm), Some(first)) =
        (config.others_take, config.rpm, quota.first)
        && share > 0.0
    {
        let every = Duration::from_secs_f64(60.0 / (rpm as f64 * share));
        let cost = config.tpm.map_or(0.0, |tpm| tpm as f64 / rpm as f64);
        let mut next = quota.others_next.unwrap_or(first + after);
        while next <= now {
            expire(&mut quota.window, next);
            if fits(&quota.window, cost) {
                quota.window.push_back((next, cost));
            }
            next += every;
        }
        quota.others_next = Some(next);
    }
    expire(&mut quota.window, now);
    if !fits(&quota.window, tokens) {
        // Until enough of the oldest leave.
        let mut left = quota.window.clone();
        while let Some((at, _)) = left.pop_front() {
            if fits(&left, tokens) {
                return Some((at + config.window).duration_since(now).as_secs_f64());
            }
        }
        return Some(config.window.as_secs_f64());
    }
    quota.window.push_back((now, tokens));
    quota.requests = request_capacity.map(|c| c - quota.window.len() as f64);
    quota.tokens = token_capacity.map(|c| c - quota.window.iter().map(|(_, t)| t).sum::<f64>());
    None
}

async fn azureml_score(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    scoring(shared, headers, body, |text| json!({"output": text})).await
}

/// A custom scoring script: `{"prompt", "max_new_tokens"}` in, `{"result": {"generated": [text]}}` out.
async fn custom_score(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    scoring(
        shared,
        headers,
        body,
        |text| json!({"result": {"generated": [text]}}),
    )
    .await
}

async fn scoring(
    shared: Arc<Shared>,
    headers: HeaderMap,
    body: Bytes,
    wrap: impl Fn(String) -> Value,
) -> Response {
    shared.counter.fetch_add(1, Ordering::SeqCst);
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("invalid JSON: {e}"),
            );
        }
    };
    let question = find_question(&shared, &parsed);
    let deployment = headers
        .get("azureml-model-deployment")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let authorized = shared
        .config
        .api_key
        .as_ref()
        .is_none_or(|k| bearer(&headers).as_deref() == Some(k.as_str()));
    let status = if authorized { 200 } else { 401 };
    shared.seen.lock().expect("lock").push(SeenRequest {
        question: question.clone(),
        deployment,
        status,
        body: parsed.clone(),
        at: Instant::now(),
    });
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "").into_response();
    }
    let answer = question
        .as_ref()
        .and_then(|q| shared.key.get(q))
        .cloned()
        .unwrap_or_else(|| shared.config.default_answer.clone());
    let text = shared.config.style.write(&answer);
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        wrap(text).to_string(),
    )
        .into_response()
}

/// `choice_key` answering: the latest user message holding a known question, and the label of
/// the line there that shows the question's keyed choice.
fn answer_by_content(shared: &Shared, body: &Value) -> Option<(String, String)> {
    if shared.config.choice_key.is_empty() {
        return None;
    }
    let messages = body.get("messages")?.as_array()?;
    for message in messages.iter().rev() {
        if message.get("role").and_then(Value::as_str) != Some("user") {
            continue;
        }
        let text = message.get("content")?.as_str()?;
        let Some((question, choice)) = shared
            .config
            .choice_key
            .iter()
            .filter(|(q, _)| text.contains(q.as_str()))
            .max_by_key(|(q, _)| q.len())
        else {
            continue;
        };
        // The question's own choices follow it; earlier lines may belong to other questions.
        let after = &text[text.rfind(question.as_str())? + question.len()..];
        let label = after.lines().find_map(|line| {
            let (label, rest) = line.split_once(['.', ':'])?;
            let label = label.trim();
            let is_label = !label.is_empty()
                && (label.chars().all(|c| c.is_ascii_uppercase()) && label.len() == 1
                    || label.chars().all(|c| c.is_ascii_digit()));
            (is_label && rest.trim() == choice.trim()).then(|| label.to_string())
        })?;
        return Some((question.clone(), label));
    }
    None
}

/// The deterministic embedding the test server returns for a text: each lower-cased word
/// adds +1 or -1 (a hash bit) to one of 32 dimensions (another hash), so texts that share words
/// are near. Tests compute expected neighbours with it.
pub fn test_embedding(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0f32; 32];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        // FNV-1a: fixed across platforms and runs.
        let mut hash: u64 = 0xcbf29ce484222325;
        for byte in word.to_lowercase().bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x100000001b3);
        }
        let sign = if hash & (1 << 40) == 0 { 1.0 } else { -1.0 };
        vector[(hash % 32) as usize] += sign;
    }
    vector
}

async fn azure_embeddings(
    State(shared): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = azure_key(&headers);
    embeddings(shared, key, deployment, body).await
}

async fn openai_embeddings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    embeddings(shared, bearer(&headers), String::new(), body).await
}

/// `POST .../embeddings`: `input` a string or a list of strings; answers with the items in
/// reverse order (each with its `index`), as nothing in the API promises order.
async fn embeddings(
    shared: Arc<Shared>,
    key: Option<String>,
    deployment: String,
    body: Bytes,
) -> Response {
    shared.counter.fetch_add(1, Ordering::SeqCst);
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("We could not parse the JSON body of your request: {e}"),
            );
        }
    };
    let authorized = shared
        .config
        .api_key
        .as_ref()
        .is_none_or(|k| key.as_deref() == Some(k.as_str()));
    let status = if authorized { 200 } else { 401 };
    shared.seen.lock().expect("lock").push(SeenRequest {
        question: None,
        deployment: (!deployment.is_empty()).then_some(deployment),
        status,
        body: parsed.clone(),
        at: Instant::now(),
    });
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            "401",
            "Access denied due to invalid subscription key.",
        );
    }
    let inputs: Vec<String> = match &parsed["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    if inputs.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "'input' is a required property",
        );
    }
    let tokens: u64 = inputs.iter().map(|t| (t.len() as u64).div_ceil(4)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": test_embedding(text)}))
        .collect();
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"object": "list", "data": data, "model": "text-embedding-3-small", "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}).to_string(),
    )
        .into_response()
}
