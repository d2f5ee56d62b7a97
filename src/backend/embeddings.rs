//! Embeddings over HTTP: Azure OpenAI embedding deployments
//! (`{endpoint}/openai/deployments/{deployment}/embeddings?api-version=...`) and
//! OpenAI-compatible servers (`{base_url}/embeddings` with `"model"`). Requests go through the
//! deployment's `JsonEndpoint`, so they share its credential, quota limiter and error mapping
//! with chat calls.

use serde::Deserialize;
use serde_json::{Value, json};

use super::http::JsonEndpoint;
use super::tokens::TokenCounter;
use super::{BackendError, EmbedReply, EmbedRequest, Usage};

#[derive(Debug, Deserialize)]
struct EmbeddingList {
    data: Vec<EmbeddingItem>,
    #[serde(default)]
    usage: Option<EmbeddingUsage>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

/// One `embeddings` request for all of `request.inputs`. The answer's items are put back in
/// input order by their `index` (the API does not promise order); a missing or duplicated
/// index, or vectors of different lengths, make the answer unreadable.
pub async fn post_embeddings(
    http: &JsonEndpoint,
    model: Option<&str>,
    tokens: &TokenCounter,
    request: &EmbedRequest,
) -> Result<EmbedReply, BackendError> {
    if request.inputs.is_empty() {
        return Ok(EmbedReply {
            vectors: Vec::new(),
            usage: Usage::default(),
            requests: 0,
        });
    }
    let mut body = serde_json::Map::new();
    if let Some(model) = model {
        body.insert("model".into(), json!(model));
    }
    body.insert("input".into(), json!(request.inputs));
    body.insert("encoding_format".into(), json!("float"));
    let estimate: u64 = request.inputs.iter().map(|t| tokens.count(t)).sum();
    let text = http.post(&Value::Object(body), estimate).await?;
    let url = http.url_for_errors();
    let list: EmbeddingList = serde_json::from_str(&text).map_err(|e| {
        BackendError::InvalidResponse(format!(
            "{url} answered with a body that is not an embedding list ({e})"
        ))
    })?;
    let n = request.inputs.len();
    if list.data.len() != n {
        return Err(BackendError::InvalidResponse(format!(
            "{url} returned {} embeddings for {n} inputs",
            list.data.len()
        )));
    }
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; n];
    for (position, item) in list.data.into_iter().enumerate() {
        let index = item.index.unwrap_or(position);
        match vectors.get_mut(index) {
            Some(slot) if slot.is_none() => *slot = Some(item.embedding),
            _ => {
                return Err(BackendError::InvalidResponse(format!(
                    "{url} returned an embedding with index {index}, out of range or repeated"
                )));
            }
        }
    }
    let vectors: Vec<Vec<f32>> = vectors.into_iter().flatten().collect();
    let dims = vectors[0].len();
    if dims == 0 || vectors.iter().any(|v| v.len() != dims) {
        return Err(BackendError::InvalidResponse(format!(
            "{url} returned embeddings of different or zero lengths"
        )));
    }
    Ok(EmbedReply {
        vectors,
        usage: Usage {
            prompt_tokens: list.usage.map(|u| u.prompt_tokens).unwrap_or(estimate),
            completion_tokens: 0,
            ..Usage::default()
        },
        requests: 1,
    })
}
