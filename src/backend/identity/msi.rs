//! The `MSI_ENDPOINT` managed identity protocol, which `azure_identity` 1.0 does not speak.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Deserialize;

use super::{AccessToken, IdentityError, TokenFetcher, scope_to_resource};
use crate::backend::http_client::{http_client, request_error_text};

/// The `MSI_ENDPOINT` managed identity protocol.
///
/// With `MSI_SECRET` (AzureML compute): `GET $MSI_ENDPOINT?api-version=2017-09-01&resource=R`
/// with a `secret` header, and `clientid=$DEFAULT_IDENTITY_CLIENT_ID` for a user-assigned
/// identity. Without it (Cloud Shell): `POST` of the form `resource=R` with `Metadata: true`.
pub struct MsiEndpoint {
    endpoint: String,
    secret: Option<String>,
    client_id: Option<String>,
    /// The client, or why none could be built (said when a token is asked for).
    http: Result<reqwest::Client, String>,
}

impl MsiEndpoint {
    pub fn new(endpoint: String, secret: Option<String>, client_id: Option<String>) -> Self {
        MsiEndpoint {
            endpoint,
            secret,
            client_id,
            http: http_client(Duration::from_secs(30)).map_err(|e| e.to_string()),
        }
    }

    fn name_of(&self) -> &'static str {
        if self.secret.is_some() {
            "ManagedIdentity(MSI_ENDPOINT, AzureML)"
        } else {
            "ManagedIdentity(MSI_ENDPOINT, Cloud Shell)"
        }
    }
}

/// `expires_on` is epoch seconds, a string in most answers and a number in some.
#[derive(Deserialize)]
struct MsiAnswer {
    access_token: String,
    #[serde(default)]
    expires_on: Option<serde_json::Value>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

fn json_seconds(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[async_trait]
impl TokenFetcher for MsiEndpoint {
    async fn fetch(&self, scope: &str) -> Result<AccessToken, IdentityError> {
        let name = self.name_of();
        let resource = scope_to_resource(scope);
        let http_error = |message: String| IdentityError::Http {
            credential: name,
            url: self.endpoint.clone(),
            message,
        };
        let http = self.http.as_ref().map_err(|e| http_error(e.clone()))?;
        let request = match &self.secret {
            Some(secret) => {
                let mut query = vec![("api-version", "2017-09-01"), ("resource", resource)];
                if let Some(id) = &self.client_id {
                    query.push(("clientid", id));
                }
                http.get(&self.endpoint)
                    .query(&query)
                    .header("secret", secret)
            }
            None => {
                let mut form = vec![("resource", resource)];
                if let Some(id) = &self.client_id {
                    form.push(("client_id", id));
                }
                http.post(&self.endpoint)
                    .header("Metadata", "true")
                    .form(&form)
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| http_error(request_error_text(e)))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| http_error(request_error_text(e)))?;
        if !status.is_success() {
            // The endpoint's error body names the problem (identity not assigned...) and
            // carries no token.
            let snippet: String = body.chars().take(300).collect();
            return Err(http_error(format!("HTTP {status}: {snippet}")));
        }
        let answer: MsiAnswer = serde_json::from_str(&body)
            .map_err(|e| http_error(format!("unreadable answer: {e}")))?;
        let now = SystemTime::now();
        let expires_at = if let Some(at) = answer.expires_on.as_ref().and_then(json_seconds) {
            UNIX_EPOCH + Duration::from_secs(at)
        } else if let Some(secs) = answer.expires_in.as_ref().and_then(json_seconds) {
            now + Duration::from_secs(secs)
        } else {
            return Err(http_error(
                "the answer has neither expires_on nor expires_in".into(),
            ));
        };
        Ok(AccessToken {
            secret: answer.access_token,
            expires_at,
        })
    }

    fn name(&self) -> &'static str {
        self.name_of()
    }
}
