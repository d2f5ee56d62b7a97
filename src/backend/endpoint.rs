//! Where an OpenAI-style deployment lives: an Azure OpenAI resource's deployment, or an
//! OpenAI-compatible base URL and model, and the URL of each of its operations. Chat
//! (`openai.rs`), embeddings (`embeddings.rs`) and batches (`crate::batch`) all address the
//! same endpoint, so its layout is written once, here, below them.

/// Where the chat completions (and the other operations) of a deployment live.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEndpoint {
    /// `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`
    Azure {
        endpoint: String,
        deployment: String,
        api_version: String,
    },
    /// `{base_url}/chat/completions` with `"model": model` in the body.
    OpenAi { base_url: String, model: String },
}

/// The URL of an operation (`chat/completions`, `embeddings`) of an endpoint: under the
/// deployment with the api-version on Azure, under the base URL elsewhere.
pub fn operation_url(endpoint: &ChatEndpoint, operation: &str) -> String {
    match endpoint {
        ChatEndpoint::Azure {
            endpoint,
            deployment,
            api_version,
        } => format!(
            "{}/openai/deployments/{deployment}/{operation}?api-version={api_version}",
            endpoint.trim_end_matches('/')
        ),
        ChatEndpoint::OpenAi { base_url, .. } => {
            format!("{}/{operation}", base_url.trim_end_matches('/'))
        }
    }
}

/// The live chat-completions URL of an endpoint.
pub fn chat_url(endpoint: &ChatEndpoint) -> String {
    operation_url(endpoint, "chat/completions")
}

/// The embeddings URL beside a chat endpoint.
pub fn embeddings_url(endpoint: &ChatEndpoint) -> String {
    operation_url(endpoint, "embeddings")
}
