//! AzureML managed (realtime) online endpoints hosting catalog models: a scoring URI that
//! takes `{"input_data": {"input_string": [messages], "parameters": {...}}}` and answers
//! `{"output": "..."}`, with a key or an Entra ID token (scope `https://ml.azure.com`) and
//! the `azureml-model-deployment` header to pick a deployment. Endpoints with a custom
//! scoring script (`init()`/`run()`) take a request template and a JSON pointer into the
//! answer from the model profile. (Serverless pay-as-you-go endpoints speak the
//! OpenAI-compatible protocol: `kind = "openai"` with their `/v1` base URL.)
//!
//! These endpoints give neither logprobs nor structured outputs: `select` generates a short
//! answer, matches it to an option and re-asks once.

use async_trait::async_trait;
use minijinja::Environment;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::JsonEndpoint;
use super::select_match::select_by_generation;
use super::{
    Backend, BackendError, Capabilities, GenReply, GenRequest, Message, SelectReply, SelectRequest,
    Usage,
};

/// How to talk to an AzureML online endpoint whose scoring script is not the catalog's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointFormat {
    /// A Jinja template of the request body (JSON once rendered); sees `messages`, `prompt`
    /// (the messages' contents joined) and `parameters` (max_new_tokens, temperature, top_p).
    pub request_template: Option<String>,
    /// A JSON pointer to the generated text in the response (default `/output`).
    pub response_pointer: Option<String>,
}

const DEFAULT_RESPONSE_POINTER: &str = "/output";
/// `max_new_tokens` of a `select`'s short answer.
const SELECT_MAX_TOKENS: u32 = 24;

pub struct AzureMlBackend {
    identity: String,
    http: JsonEndpoint,
    template: Option<Environment<'static>>,
    pointer: String,
}

impl AzureMlBackend {
    /// `endpoint` is the scoring URI; `deployment`, when set, goes in `azureml-model-deployment`.
    pub fn new(
        http: JsonEndpoint,
        scoring_uri: &str,
        deployment: Option<&str>,
        format: &EndpointFormat,
    ) -> Result<AzureMlBackend, BackendError> {
        let template = match &format.request_template {
            Some(source) => {
                let mut env = Environment::new();
                env.add_template_owned("request", source.clone())
                    .map_err(|e| {
                        BackendError::Fatal(format!(
                            "the profile's request_template is not a valid template: {e}"
                        ))
                    })?;
                Some(env)
            }
            None => None,
        };
        Ok(AzureMlBackend {
            identity: format!(
                "azureml:{}{}",
                scoring_uri,
                deployment.map(|d| format!("#{d}")).unwrap_or_default()
            ),
            http,
            template,
            pointer: format
                .response_pointer
                .clone()
                .unwrap_or_else(|| DEFAULT_RESPONSE_POINTER.into()),
        })
    }

    fn request_body(
        &self,
        messages: &[Message],
        parameters: &Value,
    ) -> Result<Value, BackendError> {
        super::refuse_images(messages, "an AzureML endpoint")?;
        let wire: Vec<Value> = messages.iter().map(Message::to_wire).collect();
        let Some(env) = &self.template else {
            return Ok(json!({"input_data": {"input_string": wire, "parameters": parameters}}));
        };
        let prompt: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
        let rendered = env
            .get_template("request")
            .and_then(|t| t.render(minijinja::context! { messages => wire, prompt => prompt.join("\n"), parameters => parameters }))
            .map_err(|e| BackendError::Fatal(format!("the profile's request_template failed to render: {e}")))?;
        serde_json::from_str(&rendered).map_err(|e| {
            BackendError::Fatal(format!("the profile's request_template does not render to JSON ({e}); use the `tojson` filter for strings"))
        })
    }

    /// The generated text at the response pointer: a string, or the first string of an array.
    fn read_text(&self, body: &str) -> Result<String, BackendError> {
        let value: Value = serde_json::from_str(body).map_err(|e| {
            BackendError::InvalidResponse(format!(
                "{} answered with a body that is not JSON ({e})",
                self.http.url_for_errors()
            ))
        })?;
        // A pointer that finds nothing is a profile mistake, not a passing fault: every row
        // would fail the same way, so the run stops at once.
        let found = value.pointer(&self.pointer).ok_or_else(|| {
            BackendError::Fatal(format!(
                "{}: the answer has nothing at {} (set `response_pointer` in the profile)",
                self.http.url_for_errors(),
                self.pointer
            ))
        })?;
        match found {
            Value::String(text) => Ok(text.clone()),
            Value::Array(items) => items
                .iter()
                .find_map(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    BackendError::InvalidResponse(format!(
                        "{}: {} is an array without text",
                        self.http.url_for_errors(),
                        self.pointer
                    ))
                }),
            other => Err(BackendError::InvalidResponse(format!(
                "{}: {} is not text but {other}",
                self.http.url_for_errors(),
                self.pointer
            ))),
        }
    }

    async fn complete(
        &self,
        messages: &[Message],
        max_tokens: u32,
        temperature: Option<f64>,
        top_p: Option<f64>,
    ) -> Result<(String, Usage), BackendError> {
        let temperature = temperature.unwrap_or(0.0);
        let mut parameters = json!({"max_new_tokens": max_tokens, "temperature": temperature, "do_sample": temperature > 0.0, "return_full_text": false});
        if let Some(p) = top_p {
            parameters["top_p"] = json!(p);
        }
        let body = self.request_body(messages, &parameters)?;
        // No tokenizer is known for catalog models: four characters a token, for the quota.
        let prompt_tokens = messages
            .iter()
            .map(|m| m.content.chars().count() as u64)
            .sum::<u64>()
            .div_ceil(4);
        let text = self
            .http
            .post(&body, prompt_tokens + u64::from(max_tokens))
            .await?;
        let generated = self.read_text(&text)?;
        let completion_tokens = (generated.chars().count() as u64).div_ceil(4);
        Ok((
            generated,
            Usage {
                prompt_tokens,
                completion_tokens,
                ..Usage::default()
            },
        ))
    }
}

#[async_trait]
impl Backend for AzureMlBackend {
    fn quota_traces(&self) -> Vec<crate::limiter::DeploymentQuota> {
        vec![crate::limiter::DeploymentQuota {
            deployment: self.identity(),
            trace: self.http.limiter().trace(),
        }]
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn select(&self, request: &SelectRequest) -> Result<SelectReply, BackendError> {
        select_by_generation(request, |messages| async move {
            self.complete(&messages, SELECT_MAX_TOKENS, request.temperature, None)
                .await
        })
        .await
    }

    async fn generate(&self, request: &GenRequest) -> Result<GenReply, BackendError> {
        if request.regex.is_some() || request.json_schema.is_some() {
            return Err(BackendError::Fatal("gen(..., regex=/json_schema=) needs the local model; AzureML endpoints cannot constrain generation".into()));
        }
        let (mut text, usage) = self
            .complete(
                &request.messages,
                request.max_tokens,
                request.temperature,
                request.top_p,
            )
            .await?;
        // Scoring scripts rarely take stop sequences: cut at the first one here.
        let mut finish_reason = "length".to_string();
        if let Some(cut) = request
            .stop
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            text.truncate(cut);
            finish_reason = "stop".into();
        } else if usage.completion_tokens < u64::from(request.max_tokens) {
            finish_reason = "stop".into();
        }
        Ok(GenReply {
            text,
            finish_reason,
            usage,
            requests: 1,
        })
    }
}
