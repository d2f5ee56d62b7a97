//! Azure OpenAI and OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp server,
//! AzureML serverless endpoints).
//!
//! `select` goes down the capability ladder: logprobs with `logit_bias` on the options' tokens,
//! then a JSON-schema `enum`, then a short generation matched to an option with one re-ask.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::embeddings::post_embeddings;
use super::endpoint::embeddings_url;
use super::http::{Credential, JsonEndpoint};
use super::select_match::select_by_generation;
use super::tokens::TokenCounter;
use super::{
    Backend, BackendError, Capabilities, GenReply, GenRequest, Message, SelectPath, SelectReply,
    SelectRequest, Usage,
};
use crate::limiter::QuotaLimiter;

// The endpoint's home is `super::endpoint`; `run` and `batch` still name it through the chat
// backend (to be switched when their restructuring lands, then this line goes).
use super::endpoint::{ChatEndpoint, chat_url};

#[derive(Debug, Clone)]
pub struct ChatConfig {
    pub endpoint: ChatEndpoint,
    pub credential: Credential,
    /// Model family for the tokenizer and reasoning-model rules (e.g. `gpt-4o`, `o3-mini`).
    pub model: Option<String>,
    /// Reasoning models take `max_completion_tokens` and no temperature/top_p/logprobs.
    pub reasoning: bool,
    pub capabilities: Capabilities,
    pub request_timeout: Duration,
}

/// Where a chat-completions body goes and its answer comes from: the service over HTTP for
/// live runs, or the answers of a batch (`crate::batch`). Bodies are built, and answers read,
/// by `ChatBackend` alone, so a batch line is exactly the request a live run sends.
#[async_trait]
pub trait ChatTransport: Send + Sync {
    /// Sends one chat-completions body; `estimated_tokens` is what the quota is charged.
    /// Returns the body of a successful answer.
    async fn send(&self, body: &Value, estimated_tokens: u64) -> Result<String, BackendError>;
    /// The URL for messages (no query string, no secret).
    fn url_for_errors(&self) -> String;
    /// The quota limiter requests pass through; `None` for transports that send nothing
    /// live (batch answers read from files).
    fn limiter(&self) -> Option<&Arc<QuotaLimiter>> {
        None
    }
}

#[async_trait]
impl ChatTransport for JsonEndpoint {
    async fn send(&self, body: &Value, estimated_tokens: u64) -> Result<String, BackendError> {
        self.post(body, estimated_tokens).await
    }
    fn url_for_errors(&self) -> String {
        JsonEndpoint::url_for_errors(self)
    }
    fn limiter(&self) -> Option<&Arc<QuotaLimiter>> {
        Some(JsonEndpoint::limiter(self))
    }
}

pub struct ChatBackend {
    config: ChatConfig,
    http: Arc<dyn ChatTransport>,
    /// The same deployment's (or server's) embeddings URL, under the same quota limiter
    /// (none for a backend whose chat bodies go to a batch).
    embeddings_http: Option<JsonEndpoint>,
    tokens: TokenCounter,
    /// Turned off the first time the service answers without the logprobs it was asked for.
    logprobs_work: AtomicBool,
    json_schema_works: AtomicBool,
    /// Reported prompt tokens / estimated prompt tokens, smoothed (f64 bits; NaN until the
    /// first answer with `usage`): corrects the length estimate the quota is charged.
    estimate_correction: AtomicU64,
}

/// Bias that makes the options' tokens the only likely ones without touching their order.
const OPTION_LOGIT_BIAS: i32 = 100;
const TOP_LOGPROBS: usize = 20;
/// `max_completion_tokens` of a reasoning model's `select`: room to reason, then answer.
const REASONING_SELECT_BUDGET: u32 = 4096;

impl ChatBackend {
    pub fn new(
        config: ChatConfig,
        limiter: Arc<QuotaLimiter>,
    ) -> Result<ChatBackend, BackendError> {
        let http = JsonEndpoint::new(
            chat_url(&config.endpoint),
            config.credential.clone(),
            Vec::new(),
            Arc::clone(&limiter),
            config.request_timeout,
        )?;
        let embeddings_http = JsonEndpoint::new(
            embeddings_url(&config.endpoint),
            config.credential.clone(),
            Vec::new(),
            limiter,
            config.request_timeout,
        )?;
        let mut backend = ChatBackend::with_transport(config, Arc::new(http));
        backend.embeddings_http = Some(embeddings_http);
        Ok(backend)
    }

    /// A backend whose bodies go through `transport` instead of straight to the service.
    pub fn with_transport(config: ChatConfig, transport: Arc<dyn ChatTransport>) -> ChatBackend {
        let tokens = TokenCounter::for_model(config.model.as_deref().or(match &config.endpoint {
            ChatEndpoint::Azure { deployment, .. } => Some(deployment.as_str()),
            ChatEndpoint::OpenAi { model, .. } => Some(model.as_str()),
        }));
        ChatBackend {
            logprobs_work: AtomicBool::new(config.capabilities.logprobs && !config.reasoning),
            json_schema_works: AtomicBool::new(config.capabilities.json_schema),
            estimate_correction: AtomicU64::new(f64::NAN.to_bits()),
            config,
            http: transport,
            embeddings_http: None,
            tokens,
        }
    }

    fn url_for_errors(&self) -> String {
        self.http.url_for_errors()
    }

    /// The tokens of the longest option (at least 1): what an answer naming it takes.
    fn longest_option(&self, options: &[String]) -> u64 {
        options
            .iter()
            .map(|o| self.tokens.count(o))
            .max()
            .unwrap_or(1)
    }

    fn base_body(&self, messages: &[Message], max_tokens: u32) -> serde_json::Map<String, Value> {
        let mut body = serde_json::Map::new();
        if let ChatEndpoint::OpenAi { model, .. } = &self.config.endpoint {
            body.insert("model".into(), json!(model));
        }
        body.insert(
            "messages".into(),
            Value::Array(messages.iter().map(Message::to_wire).collect()),
        );
        let key = if self.config.reasoning {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body.insert(key.into(), json!(max_tokens));
        body
    }

    fn set_sampling(
        &self,
        body: &mut serde_json::Map<String, Value>,
        temperature: Option<f64>,
        top_p: Option<f64>,
    ) {
        if self.config.reasoning {
            return;
        }
        if let Some(t) = temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(p) = top_p {
            body.insert("top_p".into(), json!(p));
        }
    }

    /// One HTTP request under the quota. The token estimate is what Azure counts against TPM:
    /// the prompt plus `max_tokens`.
    async fn post(
        &self,
        body: Value,
        messages: &[Message],
        max_tokens: u32,
    ) -> Result<Completion, BackendError> {
        // The quota is charged an estimate from the text's length, corrected by what the
        // service counted on earlier answers: no tokenizer has to be built for it.
        let prompt_estimate = TokenCounter::estimate_messages(messages);
        let correction = f64::from_bits(self.estimate_correction.load(Ordering::Relaxed));
        let factor = if correction.is_nan() { 1.0 } else { correction };
        let estimate = (prompt_estimate as f64 * factor).ceil() as u64 + u64::from(max_tokens);
        let text = self.http.send(&body, estimate).await?;
        let completion: Completion = serde_json::from_str(&text).map_err(|e| {
            BackendError::InvalidResponse(format!(
                "{} answered with a body that is not a chat completion ({e})",
                self.url_for_errors()
            ))
        })?;
        if completion.choices.is_empty() {
            return Err(BackendError::InvalidResponse(format!(
                "{} answered with no choices",
                self.url_for_errors()
            )));
        }
        if let Some(usage) = &completion.usage
            && usage.prompt_tokens > 0
            && prompt_estimate > 0
        {
            // The first answer sets the ratio; then an exponential moving average, so that one
            // odd request does not swing the estimate.
            let observed = usage.prompt_tokens as f64 / prompt_estimate as f64;
            let updated = if correction.is_nan() {
                observed
            } else {
                0.9 * correction + 0.1 * observed
            };
            self.estimate_correction
                .store(updated.clamp(0.25, 4.0).to_bits(), Ordering::Relaxed);
        }
        if completion.choices[0].finish_reason.as_deref() == Some("content_filter") {
            return Err(BackendError::ContentFilter(
                "the completion was filtered (finish_reason: content_filter)".into(),
            ));
        }
        Ok(completion)
    }

    /// Rung 1: one token with logprobs. `Ok(Err(usage))` when the answer says nothing usable
    /// (no logprobs returned, or none of the top tokens is an option): the next rung decides.
    async fn select_by_logprobs(
        &self,
        request: &SelectRequest,
    ) -> Result<Result<SelectReply, Usage>, BackendError> {
        let option_tokens: Option<Vec<Vec<u32>>> = request
            .options
            .iter()
            .map(|o| self.tokens.encode(o))
            .collect();
        // Bias is only safe when each option is one distinct token of a tokenizer we know.
        let single_tokens = option_tokens.filter(|tokens| {
            tokens.iter().all(|t| t.len() == 1)
                && tokens
                    .iter()
                    .map(|t| t[0])
                    .collect::<std::collections::HashSet<_>>()
                    .len()
                    == tokens.len()
        });
        let mut body = self.base_body(&request.messages, 1);
        self.set_sampling(&mut body, request.temperature, None);
        body.insert("logprobs".into(), json!(true));
        body.insert("top_logprobs".into(), json!(TOP_LOGPROBS));
        if let Some(tokens) = &single_tokens {
            let bias: BTreeMap<String, i32> = tokens
                .iter()
                .map(|t| (t[0].to_string(), OPTION_LOGIT_BIAS))
                .collect();
            body.insert("logit_bias".into(), json!(bias));
        }
        let completion = self.post(Value::Object(body), &request.messages, 1).await?;
        let usage = completion.usage();
        let choice = &completion.choices[0];
        let Some(first) = choice
            .logprobs
            .as_ref()
            .and_then(|l| l.content.as_ref())
            .and_then(|c| c.first())
        else {
            self.logprobs_work.store(false, Ordering::Relaxed);
            return Ok(Err(usage));
        };
        let mut mass = vec![0.0f64; request.options.len()];
        let sampled = first.as_top();
        let candidates = first.top_logprobs.iter().chain(std::iter::once(&sampled));
        let mut seen = std::collections::HashSet::new();
        for candidate in candidates {
            if !seen.insert(candidate.token.clone()) {
                continue;
            }
            let token = candidate.token.trim();
            if let Some(i) = request.options.iter().position(|o| o.trim() == token) {
                mass[i] += candidate.logprob.exp();
            }
        }
        let total: f64 = mass.iter().sum();
        if total <= 0.0 {
            return Ok(Err(usage));
        }
        let probs: Vec<f64> = mass.iter().map(|m| m / total).collect();
        let chosen = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        Ok(Ok(SelectReply {
            chosen,
            path: SelectPath::Logprobs,
            option_probs: Some(probs),
            option_logprobs: None,
            raw_text: choice.message.content.clone(),
            usage,
            requests: 1,
        }))
    }

    /// Rung 2: structured output with an `enum` of the options.
    async fn select_by_schema(
        &self,
        request: &SelectRequest,
    ) -> Result<Result<SelectReply, Usage>, BackendError> {
        let longest = self.longest_option(&request.options);
        let max_tokens = (longest + 16) as u32;
        let mut body = self.base_body(&request.messages, max_tokens);
        self.set_sampling(&mut body, request.temperature, None);
        body.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {"name": "select", "strict": true, "schema": {
                "type": "object", "properties": {"answer": {"type": "string", "enum": request.options}},
                "required": ["answer"], "additionalProperties": false}}}),
        );
        let completion = match self
            .post(Value::Object(body), &request.messages, max_tokens)
            .await
        {
            Err(BackendError::Rejected { status: 400, .. }) => {
                // The deployment does not support structured outputs: stop asking it.
                self.json_schema_works.store(false, Ordering::Relaxed);
                return Ok(Err(Usage::default()));
            }
            other => other?,
        };
        let text = completion.choices[0]
            .message
            .content
            .clone()
            .unwrap_or_default();
        let answer = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("answer").and_then(Value::as_str).map(str::to_string));
        let chosen = answer.and_then(|a| request.options.iter().position(|o| *o == a));
        match chosen {
            Some(i) => Ok(Ok(SelectReply {
                chosen: Some(i),
                path: SelectPath::JsonSchema,
                option_probs: None,
                option_logprobs: None,
                raw_text: Some(text),
                usage: completion.usage(),
                requests: 1,
            })),
            None => Ok(Err(completion.usage())),
        }
    }

    /// Rung 3: generate a short answer, match it, re-ask once.
    async fn select_by_generation(
        &self,
        request: &SelectRequest,
    ) -> Result<SelectReply, BackendError> {
        let longest = self.longest_option(&request.options);
        // Reasoning models spend hidden reasoning tokens out of the same budget.
        let max_tokens = if self.config.reasoning {
            REASONING_SELECT_BUDGET
        } else {
            (longest + 16).max(24) as u32
        };
        select_by_generation(request, |messages| async move {
            let mut body = self.base_body(&messages, max_tokens);
            self.set_sampling(&mut body, request.temperature, None);
            let completion = self
                .post(Value::Object(body), &messages, max_tokens)
                .await?;
            let text = completion.choices[0]
                .message
                .content
                .clone()
                .unwrap_or_default();
            Ok((text, completion.usage()))
        })
        .await
    }
}

#[async_trait]
impl Backend for ChatBackend {
    fn quota_traces(&self) -> Vec<crate::limiter::DeploymentQuota> {
        self.http
            .limiter()
            .map(|limiter| crate::limiter::DeploymentQuota {
                deployment: self.identity(),
                trace: limiter.trace(),
            })
            .into_iter()
            .collect()
    }

    fn identity(&self) -> String {
        match &self.config.endpoint {
            ChatEndpoint::Azure {
                endpoint,
                deployment,
                ..
            } => {
                format!("azure:{}/{deployment}", endpoint.trim_end_matches('/'))
            }
            ChatEndpoint::OpenAi { base_url, model } => {
                format!("openai:{}/{model}", base_url.trim_end_matches('/'))
            }
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            exact_loglikelihood: false,
            logprobs: self.logprobs_work.load(Ordering::Relaxed),
            json_schema: self.json_schema_works.load(Ordering::Relaxed),
            regex: false,
            penalties: true,
            json_object: true,
            images: true,
        }
    }

    async fn select(&self, request: &SelectRequest) -> Result<SelectReply, BackendError> {
        // Usage and requests of rungs that gave no answer still count: they were paid for.
        let mut spent = Usage::default();
        let mut requests = 0;
        if self.logprobs_work.load(Ordering::Relaxed) {
            requests += 1;
            match self.select_by_logprobs(request).await? {
                Ok(reply) => return Ok(reply),
                Err(usage) => spent.add(usage),
            }
        }
        if self.json_schema_works.load(Ordering::Relaxed) {
            requests += 1;
            match self.select_by_schema(request).await? {
                Ok(mut reply) => {
                    reply.usage.add(spent);
                    reply.requests = requests;
                    return Ok(reply);
                }
                Err(usage) => spent.add(usage),
            }
        }
        let mut reply = self.select_by_generation(request).await?;
        reply.usage.add(spent);
        reply.requests += requests;
        Ok(reply)
    }

    async fn generate(&self, request: &GenRequest) -> Result<GenReply, BackendError> {
        if request.regex.is_some() {
            return Err(BackendError::Fatal(
                "gen(..., regex=...) needs a backend that constrains generation (the local model); chat APIs cannot".into(),
            ));
        }
        let mut body = self.base_body(&request.messages, request.max_tokens);
        self.set_sampling(&mut body, request.temperature, request.top_p);
        if let Some(seed) = request.seed {
            body.insert("seed".into(), json!(seed));
        }
        if !request.stop.is_empty() {
            // The API takes at most four stop sequences.
            body.insert(
                "stop".into(),
                json!(request.stop.iter().take(4).collect::<Vec<_>>()),
            );
        }
        if let Some(schema) = &request.json_schema {
            body.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "gen", "strict": true, "schema": schema}}),
            );
        } else if request.json_object {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        for (key, value) in [
            ("presence_penalty", request.presence_penalty),
            ("frequency_penalty", request.frequency_penalty),
        ] {
            if let Some(value) = value {
                body.insert(key.into(), json!(value));
            }
        }
        let completion = self
            .post(Value::Object(body), &request.messages, request.max_tokens)
            .await?;
        let choice = &completion.choices[0];
        Ok(GenReply {
            text: choice.message.content.clone().unwrap_or_default(),
            finish_reason: choice
                .finish_reason
                .clone()
                .unwrap_or_else(|| "stop".into()),
            usage: completion.usage(),
            requests: 1,
        })
    }

    async fn embed(
        &self,
        request: &super::EmbedRequest,
    ) -> Result<super::EmbedReply, BackendError> {
        let model = match &self.config.endpoint {
            ChatEndpoint::OpenAi { model, .. } => Some(model.as_str()),
            ChatEndpoint::Azure { .. } => None,
        };
        let Some(http) = &self.embeddings_http else {
            return Err(BackendError::Fatal(format!(
                "{} answers chat through a batch and cannot embed text: embed the rows in a live run (evalr embed) and pass them with --row-embeddings",
                self.url_for_errors()
            )));
        };
        post_embeddings(http, model, &self.tokens, request).await
    }
}

#[derive(Debug, Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

impl Completion {
    fn usage(&self) -> Usage {
        self.usage
            .as_ref()
            .map(|u| Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                cached_prompt_tokens: u
                    .prompt_tokens_details
                    .as_ref()
                    .map_or(0, |d| d.cached_tokens),
                reasoning_tokens: u
                    .completion_tokens_details
                    .as_ref()
                    .map_or(0, |d| d.reasoning_tokens),
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    /// `{"cached_tokens": N}`: prompt tokens served from the prompt cache (billed lower).
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
    /// `{"reasoning_tokens": N}`: completion tokens a reasoning model spent thinking.
    #[serde(default)]
    completion_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct CompletionTokensDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: WireMessage,
    finish_reason: Option<String>,
    logprobs: Option<Logprobs>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Logprobs {
    content: Option<Vec<TokenLogprob>>,
}

#[derive(Debug, Deserialize)]
struct TokenLogprob {
    token: String,
    logprob: f64,
    #[serde(default)]
    top_logprobs: Vec<TopLogprob>,
}

impl TokenLogprob {
    fn as_top(&self) -> TopLogprob {
        TopLogprob {
            token: self.token.clone(),
            logprob: self.logprob,
        }
    }
}

#[derive(Debug, Deserialize)]
struct TopLogprob {
    token: String,
    logprob: f64,
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::backend::Role;

    /// Answers every body with one token and its top logprobs, and keeps what it was sent.
    struct Recorder {
        sent: Mutex<Vec<(Value, u64)>>,
    }

    #[async_trait]
    impl ChatTransport for Recorder {
        async fn send(&self, body: &Value, estimated_tokens: u64) -> Result<String, BackendError> {
            self.sent
                .lock()
                .unwrap()
                .push((body.clone(), estimated_tokens));
            let top = |t: &str, lp: f64| json!({"token": t, "logprob": lp});
            Ok(json!({
                "choices": [{
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "B"},
                    "logprobs": {"content": [{
                        "token": "B", "logprob": -0.1,
                        "top_logprobs": [top("B", -0.1), top("A", -2.0), top("C", -3.0), top("D", -4.0)]
                    }]}
                }],
                "usage": {"prompt_tokens": 30, "completion_tokens": 1, "total_tokens": 31}
            })
            .to_string())
        }
        fn url_for_errors(&self) -> String {
            "http://127.0.0.1/test".into()
        }
    }

    #[tokio::test]
    async fn a_letters_select_sends_the_bias_without_building_the_encoding() {
        let transport = Arc::new(Recorder {
            sent: Mutex::new(Vec::new()),
        });
        let backend = ChatBackend::with_transport(
            ChatConfig {
                endpoint: ChatEndpoint::Azure {
                    endpoint: "http://127.0.0.1".into(),
                    deployment: "gpt-4o".into(),
                    api_version: "2024-10-21".into(),
                },
                credential: Credential::None,
                model: None,
                reasoning: false,
                capabilities: Capabilities {
                    logprobs: true,
                    ..Default::default()
                },
                request_timeout: Duration::from_secs(5),
            },
            transport.clone(),
        );
        let request = SelectRequest {
            messages: vec![
                // 80 characters: 20 tokens by length, + 4 for the message, + 3 for the reply.
                Message::text(Role::User, "x".repeat(80)),
                Message::text(Role::Assistant, "Answer:"),
            ],
            options: [" A", " B", " C", " D"].map(String::from).to_vec(),
            temperature: None,
        };
        let reply = backend.select(&request).await.unwrap();
        assert_eq!(reply.chosen, Some(1));
        assert_eq!(reply.path, SelectPath::Logprobs);
        let sent = transport.sent.lock().unwrap().clone();
        // o200k_base ids of " A", " B", " C", " D".
        assert_eq!(
            sent[0].0["logit_bias"],
            json!({"355": 100, "418": 100, "363": 100, "415": 100})
        );
        assert!(
            !backend.tokens.tokenizer_loaded(),
            "a letters select built the whole encoding before its first request"
        );
        // Charged by length (20 + 4, 2 + 4, + 3) plus max_tokens 1; the answer's usage (30
        // prompt tokens) then corrects the next estimate by 30/33.
        assert_eq!(sent[0].1, 33 + 1);
        backend.select(&request).await.unwrap();
        assert_eq!(transport.sent.lock().unwrap()[1].1, 30 + 1);
    }
}
