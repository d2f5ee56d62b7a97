//! Model backends: one wire protocol (or in-process engine) per file, behind one trait.
//!
//! A backend knows nothing of datasets, programs or results: it receives a conversation and a
//! `select` or `gen` call and answers it, reporting usage. Scheduling, the journal and the
//! response cache live in `run`; quota lives in `limiter`.

pub mod azureml;
pub mod embeddings;
pub mod endpoint;
pub mod http;
pub mod http_client;
pub mod identity;
pub mod openai;
pub mod pool;
pub mod select_match;
pub mod tokens;

pub use crate::secret::Secret;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[cfg(feature = "local")]
pub mod local;

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// OpenAI's newer name for system instructions (a Prompty role line).
    Developer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Developer => "developer",
        }
    }
}

/// One chat message. A conversation that ends with an `assistant` message asks the model to
/// continue that message (the text a program wrote before a call, e.g. "Answer: ").
///
/// A message with images carries its whole content, in order, in `parts` (OpenAI's content
/// parts); `content` is then the text of its text parts, for what reads text only (token
/// estimates, reports). A text-only message has no parts, so its serialized form - and the
/// response cache key made from it - is the same as before images existed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<ContentPart>,
    /// Who speaks (a Prompty role line's `name` attribute), sent as the message's `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A part of a message's content, as chat APIs take it (`{"type": "text", ...}`,
/// `{"type": "image_url", ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

/// An image: an `https://` URL or a `data:image/...;base64,` URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageUrl {
    pub url: String,
    /// `low`, `high` or `auto`, when the program or row says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Message {
    /// A text message.
    pub fn text(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
            parts: Vec::new(),
            name: None,
        }
    }

    /// A message of text and image parts; with no image it is a text message.
    pub fn with_parts(role: Role, parts: Vec<ContentPart>) -> Message {
        let texts = parts.iter().filter_map(|p| match p {
            ContentPart::Text { text } => Some(text.as_str()),
            ContentPart::ImageUrl { .. } => None,
        });
        let content = texts.collect::<Vec<_>>().join("\n");
        let has_image = parts
            .iter()
            .any(|p| matches!(p, ContentPart::ImageUrl { .. }));
        Message {
            role,
            content,
            parts: if has_image { parts } else { Vec::new() },
            name: None,
        }
    }

    pub fn named(mut self, name: Option<String>) -> Message {
        self.name = name;
        self
    }

    /// The message's images, in order.
    pub fn images(&self) -> impl Iterator<Item = &ImageUrl> {
        self.parts.iter().filter_map(|p| match p {
            ContentPart::ImageUrl { image_url } => Some(image_url),
            ContentPart::Text { .. } => None,
        })
    }

    /// The message as chat-completions APIs take it: `content` a string, or the list of parts
    /// when there are images (Prompty spec §7.1.1); `name` when there is one.
    pub fn to_wire(&self) -> serde_json::Value {
        let mut wire = serde_json::Map::new();
        wire.insert("role".into(), self.role.as_str().into());
        let content = if self.parts.is_empty() {
            serde_json::Value::String(self.content.clone())
        } else {
            serde_json::to_value(&self.parts).unwrap_or_default()
        };
        wire.insert("content".into(), content);
        if let Some(name) = &self.name {
            wire.insert("name".into(), name.clone().into());
        }
        serde_json::Value::Object(wire)
    }
}

/// A backend that cannot read images refuses a conversation holding one, with what to do.
pub fn refuse_images(messages: &[Message], backend: &str) -> Result<(), BackendError> {
    if messages.iter().any(|m| m.images().next().is_some()) {
        return Err(BackendError::Fatal(format!(
            "the conversation holds an image, which {backend} cannot read; run image programs against a chat API model that takes images (--model azure:DEPLOYMENT or openai:MODEL)"
        )));
    }
    Ok(())
}

/// What a backend can do; decides how `select` is carried out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Can score arbitrary continuations exactly (local model).
    pub exact_loglikelihood: bool,
    /// Returns `logprobs`/`top_logprobs` and accepts `logit_bias`.
    pub logprobs: bool,
    /// Accepts `response_format` with a JSON schema (structured outputs).
    pub json_schema: bool,
    /// Can constrain `gen` with a regex (local model through llguidance).
    pub regex: bool,
    /// Sends `presence_penalty`/`frequency_penalty` (a program's model settings).
    pub penalties: bool,
    /// Accepts `response_format: {type: json_object}`.
    pub json_object: bool,
    /// Takes image content parts (chat APIs).
    pub images: bool,
}

/// Which way a `select` was decided; recorded on every output row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectPath {
    /// Every option's full token sequence scored after the prompt (local model).
    Loglikelihood,
    /// One token with `top_logprobs` and `logit_bias` on the options' first tokens.
    Logprobs,
    /// Structured output whose schema is an `enum` of the options.
    JsonSchema,
    /// Free generation matched to an option (exactly, or by the lenient rule).
    GenerateMatch,
    /// As `GenerateMatch`, after one re-ask.
    Reask,
}

/// Token counts of one call, as the service reports them (or the local tokenizer counts).
/// Every field defaults to 0 when absent, so results and caches written before a field
/// existed still read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, those served from the service's prompt cache
    /// (`usage.prompt_tokens_details.cached_tokens`), billed at the cached input rate.
    #[serde(default)]
    pub cached_prompt_tokens: u64,
    /// Of `completion_tokens`, those a reasoning model spent thinking
    /// (`usage.completion_tokens_details.reasoning_tokens`), billed as output.
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
    pub fn add(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cached_prompt_tokens += other.cached_prompt_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
    }
}

/// A `select(...)` call: the model must pick exactly one of `options`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelectRequest {
    pub messages: Vec<Message>,
    pub options: Vec<String>,
    pub temperature: Option<f64>,
}

/// The answer to a `select`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectReply {
    /// Index into the request's options; `None` when no option could be matched (`unparsed`).
    pub chosen: Option<usize>,
    pub path: SelectPath,
    /// Probability of each option, normalised over the options, when the path measures them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option_probs: Option<Vec<f64>>,
    /// Sum of token log-probabilities of each option (loglikelihood path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option_logprobs: Option<Vec<f64>>,
    /// The text the model produced, on the generate paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_text: Option<String>,
    pub usage: Usage,
    /// Model calls made (a re-ask makes two).
    pub requests: u32,
}

/// A `gen(...)` call: free text, optionally constrained.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GenRequest {
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    pub stop: Vec<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<u64>,
    /// The whole generated text must match this regex (local backend only).
    pub regex: Option<String>,
    /// The generated text must be JSON valid against this schema.
    pub json_schema: Option<serde_json::Value>,
    // Settings only a program's `model:` section asks for; absent ones are left out of the
    // serialized request so the cache keys of existing requests do not change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Any JSON object (`response_format: {type: json_object}`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub json_object: bool,
}

/// The answer to a `gen`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenReply {
    pub text: String,
    /// `stop`, `length`, `content_filter`, ...
    pub finish_reason: String,
    pub usage: Usage,
    pub requests: u32,
}

/// Texts to embed, one vector each.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbedRequest {
    pub inputs: Vec<String>,
}

/// The vectors of an `EmbedRequest`, in the order of its inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedReply {
    pub vectors: Vec<Vec<f32>>,
    pub usage: Usage,
    pub requests: u32,
}

/// Why a call failed. `run` decides on retries from `is_retryable`.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("rate limited (HTTP 429){}", retry_after.map(|d| format!(", retry after {:.1}s", d.as_secs_f64())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("request timed out after {0:.1?}")]
    Timeout(Duration),
    #[error("transient failure: {0}")]
    Transient(String),
    #[error("the service's content filter refused the request: {0}")]
    ContentFilter(String),
    #[error("the service returned an answer evalr cannot read: {0}")]
    InvalidResponse(String),
    /// The service refused this request as malformed (HTTP 400, 422, ...). Callers decide by
    /// `status` (e.g. a 400 to structured output means the deployment lacks it), never by
    /// the message's text.
    #[error("{message}")]
    Rejected { status: u16, message: String },
    #[error("{0}")]
    Fatal(String),
}

impl BackendError {
    /// An error that will fail every request of the run the same way (bad key, unknown
    /// deployment, a request shape the service rejects).
    pub fn is_fatal(&self) -> bool {
        matches!(self, BackendError::Fatal(_) | BackendError::Rejected { .. })
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BackendError::RateLimited { .. }
                | BackendError::Timeout(_)
                | BackendError::Transient(_)
                | BackendError::InvalidResponse(_)
        )
    }
}

/// One model behind one protocol.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Stable identity of the model for the response cache and `run.json`, without secrets
    /// (e.g. `azure:https://x.openai.azure.com/gpt-4o` or `local:gemma-3-270m-q4_k_m.gguf@<sha>`).
    fn identity(&self) -> String;
    fn capabilities(&self) -> Capabilities;
    async fn select(&self, request: &SelectRequest) -> Result<SelectReply, BackendError>;
    async fn generate(&self, request: &GenRequest) -> Result<GenReply, BackendError>;
    /// What each deployment's quota limiter learned (remote backends), for the run's results.
    fn quota_traces(&self) -> Vec<crate::limiter::DeploymentQuota> {
        Vec::new()
    }
    /// Embeds texts (an embeddings deployment, `/v1/embeddings`, or the local model's pooled
    /// hidden states). Backends without embeddings say so.
    async fn embed(&self, _request: &EmbedRequest) -> Result<EmbedReply, BackendError> {
        Err(BackendError::Fatal(format!(
            "{} cannot embed text: pass --embeddings-model with an embeddings deployment (azure:DEPLOYMENT, openai:MODEL) or `local`",
            self.identity()
        )))
    }
}
