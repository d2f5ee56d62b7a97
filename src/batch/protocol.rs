//! The Files and Batches APIs, on Azure OpenAI (`/openai/files`, `/openai/batches` with the
//! api-version, the deployment named in each line's body) and on OpenAI (`/v1/files`,
//! `/v1/batches`): upload an input file, create a batch, retrieve it, download its output
//! and error files, cancel it, list batches.

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde::Deserialize;
use serde_json::{Value, json};

use super::BatchError;
use crate::backend::endpoint::ChatEndpoint;
use crate::backend::http::Credential;

/// A batch as the service describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchObject {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub input_file_id: Option<String>,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub request_counts: Option<RequestCounts>,
    #[serde(default)]
    pub errors: Option<BatchErrors>,
}

impl BatchObject {
    /// No further change will come (the output and error files are final).
    pub fn is_terminal(&self) -> bool {
        is_terminal(&self.status)
    }

    /// The first error the service gave for the whole batch (e.g. `token_limit_exceeded`).
    pub fn first_error(&self) -> Option<&BatchErrorItem> {
        self.errors.as_ref().and_then(|e| e.data.first())
    }
}

pub fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "expired" | "cancelled")
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct RequestCounts {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BatchErrors {
    #[serde(default)]
    pub data: Vec<BatchErrorItem>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BatchErrorItem {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FileObject {
    id: String,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BatchList {
    data: Vec<BatchObject>,
}

/// One Azure OpenAI resource or OpenAI-compatible base URL, and how to sign requests to it.
pub struct BatchApi {
    client: reqwest::Client,
    endpoint: ChatEndpoint,
    credential: Credential,
}

impl BatchApi {
    pub fn new(
        endpoint: ChatEndpoint,
        credential: Credential,
        timeout: Duration,
    ) -> Result<BatchApi, BatchError> {
        let client = crate::backend::http_client::http_client(timeout)
            .map_err(|e| BatchError::Service(e.to_string()))?;
        Ok(BatchApi {
            client,
            endpoint,
            credential,
        })
    }

    /// `files`, `batches/ID`, ... as a full URL with the api-version on Azure.
    fn url(&self, path: &str) -> String {
        match &self.endpoint {
            ChatEndpoint::Azure {
                endpoint,
                api_version,
                ..
            } => format!(
                "{}/openai/{path}?api-version={api_version}",
                endpoint.trim_end_matches('/')
            ),
            ChatEndpoint::OpenAi { base_url, .. } => {
                format!("{}/{path}", base_url.trim_end_matches('/'))
            }
        }
    }

    /// The `url` of each input line: the chat-completions route relative to the API root.
    pub fn line_url(&self) -> &'static str {
        match self.endpoint {
            ChatEndpoint::Azure { .. } => "/chat/completions",
            ChatEndpoint::OpenAi { .. } => "/v1/chat/completions",
        }
    }

    /// The body of an input line: the live request's body; on Azure the deployment goes in
    /// `model`, because a batch is sent to the resource, not to a deployment's URL.
    pub fn line_body(&self, body: &Value) -> Value {
        let mut body = body.clone();
        if let (ChatEndpoint::Azure { deployment, .. }, Value::Object(map)) =
            (&self.endpoint, &mut body)
        {
            let mut with_model = serde_json::Map::new();
            with_model.insert("model".into(), json!(deployment));
            with_model.extend(std::mem::take(map));
            *map = with_model;
        }
        body
    }

    /// Where errors point: the API root, without query string or secret.
    pub fn root_for_errors(&self) -> String {
        self.url("")
            .split('?')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<String, BatchError> {
        let request = self
            .credential
            .authorize(request)
            .await
            .map_err(|e| BatchError::Service(e.to_string()))?;
        let response = request.send().await.map_err(|e| {
            BatchError::Transient(format!(
                "{what} at {}: {}",
                self.root_for_errors(),
                e.without_url()
            ))
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            BatchError::Transient(format!(
                "{what} at {}: {}",
                self.root_for_errors(),
                e.without_url()
            ))
        })?;
        if status.is_success() {
            return Ok(text);
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| text.chars().take(200).collect());
        let detail = format!(
            "{what} at {} answered HTTP {status}: {message}",
            self.root_for_errors()
        );
        Err(match status.as_u16() {
            408 | 409 | 429 | 500..=599 => BatchError::Transient(detail),
            401 | 403 => BatchError::Service(format!(
                "{detail} (check the API key or the identity's role assignment)"
            )),
            _ => BatchError::Service(detail),
        })
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        text: &str,
        what: &str,
    ) -> Result<T, BatchError> {
        serde_json::from_str(text).map_err(|e| {
            BatchError::Service(format!(
                "{what} at {}: the answer is not what the API documents ({e})",
                self.root_for_errors()
            ))
        })
    }

    /// Uploads an input file (`purpose=batch`); returns its file id.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> Result<String, BatchError> {
        let part = Part::bytes(bytes)
            .file_name(name.to_string())
            .mime_str("application/jsonl")
            .map_err(|e| BatchError::Service(e.to_string()))?;
        let form = Form::new().text("purpose", "batch").part("file", part);
        let text = self
            .send(
                self.client.post(self.url("files")).multipart(form),
                "uploading a batch input file",
            )
            .await?;
        let file: FileObject = self.parse(&text, "uploading a batch input file")?;
        if file.status.as_deref() == Some("error") {
            return Err(BatchError::Service(format!(
                "the service rejected the input file {name} (status error)"
            )));
        }
        Ok(file.id)
    }

    /// Creates a batch of an uploaded input file with the 24-hour completion window.
    pub async fn create(&self, input_file_id: &str, run: &str) -> Result<BatchObject, BatchError> {
        let body = json!({
            "input_file_id": input_file_id,
            "endpoint": self.line_url(),
            "completion_window": "24h",
            "metadata": {"evalr_run": run},
        });
        let text = self
            .send(
                self.client.post(self.url("batches")).json(&body),
                "creating a batch",
            )
            .await?;
        self.parse(&text, "creating a batch")
    }

    pub async fn retrieve(&self, id: &str) -> Result<BatchObject, BatchError> {
        let text = self
            .send(
                self.client.get(self.url(&format!("batches/{id}"))),
                "reading a batch",
            )
            .await?;
        self.parse(&text, "reading a batch")
    }

    pub async fn cancel(&self, id: &str) -> Result<BatchObject, BatchError> {
        let text = self
            .send(
                self.client.post(self.url(&format!("batches/{id}/cancel"))),
                "cancelling a batch",
            )
            .await?;
        self.parse(&text, "cancelling a batch")
    }

    /// The most recent batches (to find one created by a run that died before recording it).
    pub async fn list(&self) -> Result<Vec<BatchObject>, BatchError> {
        let url = self.url("batches");
        let url = if url.contains('?') {
            format!("{url}&limit=100")
        } else {
            format!("{url}?limit=100")
        };
        let text = self.send(self.client.get(url), "listing batches").await?;
        Ok(self.parse::<BatchList>(&text, "listing batches")?.data)
    }

    /// The content of an output or error file.
    pub async fn content(&self, file_id: &str) -> Result<String, BatchError> {
        self.send(
            self.client
                .get(self.url(&format!("files/{file_id}/content"))),
            "downloading a batch file",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(endpoint: ChatEndpoint) -> BatchApi {
        BatchApi::new(endpoint, Credential::None, Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn azure_routes_carry_the_api_version_and_lines_name_the_deployment() {
        let azure = api(ChatEndpoint::Azure {
            endpoint: "https://x.openai.azure.com/".into(),
            deployment: "gpt-4o-batch".into(),
            api_version: "2024-10-21".into(),
        });
        assert_eq!(
            azure.url("batches/b1"),
            "https://x.openai.azure.com/openai/batches/b1?api-version=2024-10-21"
        );
        assert_eq!(azure.line_url(), "/chat/completions");
        let body = azure.line_body(&json!({"messages": [], "max_tokens": 1}));
        assert_eq!(
            body.to_string(),
            r#"{"model":"gpt-4o-batch","messages":[],"max_tokens":1}"#
        );
        let openai = api(ChatEndpoint::OpenAi {
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o".into(),
        });
        assert_eq!(openai.url("files"), "https://api.openai.com/v1/files");
        assert_eq!(openai.line_url(), "/v1/chat/completions");
        let live = json!({"model": "gpt-4o", "messages": []});
        assert_eq!(openai.line_body(&live), live);
    }
}
