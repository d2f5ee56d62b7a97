//! JSON over HTTPS under a quota: the part every remote protocol shares - authentication
//! (key, bearer, Entra ID token), the deployment's limiter, and turning HTTP answers into
//! `BackendError`s (429 with its retry time, 5xx and timeouts retryable, content filter, and
//! errors that name the URL without its query string or any secret).

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::http_client::{certificate_problem, http_client, request_error_text};
use super::identity::TokenSource;
use super::{BackendError, Secret};
use crate::limiter::{QuotaHeaders, QuotaLimiter};

/// How requests authenticate.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Azure's `api-key` header.
    ApiKey(Secret),
    /// `Authorization: Bearer ...` (OpenAI keys, AzureML endpoint keys).
    Bearer(Secret),
    /// `Authorization: Bearer` with an Entra ID token for `scope`, refreshed before it expires.
    Entra {
        tokens: Arc<dyn TokenSource>,
        scope: &'static str,
    },
    None,
}

impl Credential {
    /// Adds this credential's header to a request (an Entra ID token is fetched or refreshed).
    pub async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, BackendError> {
        Ok(match self {
            Credential::ApiKey(key) => request.header("api-key", key.expose()),
            Credential::Bearer(token) => request.bearer_auth(token.expose()),
            Credential::Entra { tokens, scope } => {
                let token = tokens
                    .token(scope)
                    .await
                    .map_err(|e| BackendError::Fatal(format!("no Entra ID token: {e}")))?;
                request.bearer_auth(token)
            }
            Credential::None => request,
        })
    }
}

impl std::fmt::Debug for dyn TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource")
    }
}

/// One URL that takes JSON requests, with its credential, extra headers and quota.
pub struct JsonEndpoint {
    client: reqwest::Client,
    url: String,
    credential: Credential,
    headers: Vec<(String, String)>,
    limiter: Arc<QuotaLimiter>,
    timeout: Duration,
}

impl JsonEndpoint {
    pub fn new(
        url: String,
        credential: Credential,
        headers: Vec<(String, String)>,
        limiter: Arc<QuotaLimiter>,
        timeout: Duration,
    ) -> Result<JsonEndpoint, BackendError> {
        let client = http_client(timeout).map_err(|e| BackendError::Fatal(e.to_string()))?;
        Ok(JsonEndpoint {
            client,
            url,
            credential,
            headers,
            limiter,
            timeout,
        })
    }

    pub fn limiter(&self) -> &Arc<QuotaLimiter> {
        &self.limiter
    }

    /// The URL without query string, for messages.
    pub fn url_for_errors(&self) -> String {
        self.url.split('?').next().unwrap_or_default().to_string()
    }

    /// Sends `body` once the quota allows a request of `estimated_tokens`; returns the body
    /// of a 2xx answer.
    pub async fn post(&self, body: &Value, estimated_tokens: u64) -> Result<String, BackendError> {
        let permit = self
            .limiter
            .acquire(u32::try_from(estimated_tokens).unwrap_or(u32::MAX))
            .await;
        let mut request = self.client.post(&self.url).json(body);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request = self.credential.authorize(request).await?;
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| self.transport_error(e))?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = retry_after(&headers);
            permit.rate_limited(retry_after);
            return Err(BackendError::RateLimited { retry_after });
        }
        permit.answered(&quota_headers(&headers));
        if !status.is_success() {
            return Err(self.status_error(status, &text));
        }
        Ok(text)
    }

    fn transport_error(&self, error: reqwest::Error) -> BackendError {
        if error.is_timeout() {
            return BackendError::Timeout(self.timeout);
        }
        if let Some(problem) = certificate_problem(&error) {
            let host = reqwest::Url::parse(&self.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            return BackendError::Fatal(format!(
                "{}: the TLS certificate of {host} is not trusted ({problem}); if a proxy or a private CA signs it, set SSL_CERT_FILE to that CA's certificate (PEM)",
                self.url_for_errors()
            ));
        }
        // reqwest's messages include the URL; ours never carry the query string or a key.
        let cause = request_error_text(error);
        BackendError::Transient(format!("{}: {cause}", self.url_for_errors()))
    }

    fn status_error(&self, status: StatusCode, body: &str) -> BackendError {
        error_for_status(&self.url_for_errors(), status.as_u16(), body)
    }
}

/// The error an HTTP status and error body mean, for a request to `url` (no query string):
/// shared by live requests and the lines of a batch output file, which carry the status and
/// body the live request would have had.
pub fn error_for_status(url: &str, status: u16, body: &str) -> BackendError {
    let parsed: Option<ErrorBody> = serde_json::from_str(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|b| b.error.code.clone())
        .unwrap_or_default();
    let message = parsed
        .map(|b| b.error.message)
        .unwrap_or_else(|| body.chars().take(200).collect());
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code == "content_filter" || message.contains("content management policy") {
        return BackendError::ContentFilter(message);
    }
    match status.as_u16() {
        429 => BackendError::RateLimited { retry_after: None },
        401 | 403 => BackendError::Fatal(format!(
            "{url} refused the credentials (HTTP {status}): check the API key or the identity's role assignment"
        )),
        404 => BackendError::Fatal(format!(
            "{url} was not found (HTTP 404): check the endpoint, deployment name and api-version ({message})"
        )),
        408 | 409 | 500..=599 => {
            BackendError::Transient(format!("{url} answered HTTP {status}: {message}"))
        }
        code => BackendError::Rejected {
            status: code,
            message: format!("{url} rejected the request (HTTP {status}): {message}"),
        },
    }
}

/// How long a 429 asks us to wait: `retry-after-ms`, then `retry-after` (seconds), then the
/// `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` durations some servers send.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    if let Some(s) = header("retry-after").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(s.max(0.0)));
    }
    ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
        .iter()
        .filter_map(|name| header(name).and_then(parse_reset_duration))
        .max()
}

/// What an answer says about the quota: Azure's `x-ratelimit-remaining-requests` /
/// `-tokens` (and limits, on some answers), OpenAI's `x-ratelimit-limit-*`, `-remaining-*` and
/// `-reset-*`. Headers that do not parse are ignored: they are advice, not data.
pub fn quota_headers(headers: &HeaderMap) -> QuotaHeaders {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let number = |name: &str| {
        text(name)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    QuotaHeaders {
        limit_requests: number("x-ratelimit-limit-requests"),
        limit_tokens: number("x-ratelimit-limit-tokens"),
        remaining_requests: number("x-ratelimit-remaining-requests"),
        remaining_tokens: number("x-ratelimit-remaining-tokens"),
        reset_requests: text("x-ratelimit-reset-requests").and_then(parse_reset_duration),
        reset_tokens: text("x-ratelimit-reset-tokens").and_then(parse_reset_duration),
    }
}

/// Parses `1s`, `250ms`, `6m0s`, `1.5s` (the OpenAI reset-header format) or bare seconds.
fn parse_reset_duration(text: &str) -> Option<Duration> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Some(Duration::from_secs_f64(seconds.max(0.0)));
    }
    let mut total = 0.0;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += value * unit;
        any = true;
    }
    (any && number.is_empty()).then(|| Duration::from_secs_f64(total))
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_retry_header() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-reset-requests", "6m0s".parse().unwrap());
        headers.insert("x-ratelimit-reset-tokens", "250ms".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(360)));
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
        assert_eq!(
            parse_reset_duration("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_reset_duration("1h2m"),
            Some(Duration::from_secs(3720))
        );
        assert_eq!(parse_reset_duration("soon"), None);
    }

    #[test]
    fn reads_azure_and_openai_quota_headers() {
        let mut azure = HeaderMap::new();
        azure.insert("x-ratelimit-remaining-requests", "59".parse().unwrap());
        azure.insert("x-ratelimit-remaining-tokens", "5940".parse().unwrap());
        assert_eq!(
            quota_headers(&azure),
            QuotaHeaders {
                remaining_requests: Some(59.0),
                remaining_tokens: Some(5940.0),
                ..QuotaHeaders::default()
            }
        );
        let mut openai = HeaderMap::new();
        openai.insert("x-ratelimit-limit-requests", "500".parse().unwrap());
        openai.insert("x-ratelimit-limit-tokens", "30000".parse().unwrap());
        openai.insert("x-ratelimit-remaining-requests", "499".parse().unwrap());
        openai.insert("x-ratelimit-remaining-tokens", "29,000".parse().unwrap());
        openai.insert("x-ratelimit-reset-requests", "120ms".parse().unwrap());
        openai.insert("x-ratelimit-reset-tokens", "2s".parse().unwrap());
        let parsed = quota_headers(&openai);
        assert_eq!(parsed.limit_requests, Some(500.0));
        assert_eq!(parsed.limit_tokens, Some(30_000.0));
        assert_eq!(parsed.remaining_requests, Some(499.0));
        // Not a number: ignored rather than misread.
        assert_eq!(parsed.remaining_tokens, None);
        assert_eq!(parsed.reset_requests, Some(Duration::from_millis(120)));
        assert_eq!(parsed.reset_tokens, Some(Duration::from_secs(2)));
        assert!(!quota_headers(&HeaderMap::new()).any());
    }

    #[tokio::test]
    async fn an_untrusted_certificate_is_fatal_and_names_the_host_and_the_problem() {
        let server = super::super::http_client::test_tls::TlsServer::start().await;
        let endpoint = JsonEndpoint::new(
            format!("{}/v1/chat/completions?api-version=x", server.base),
            Credential::None,
            Vec::new(),
            Arc::new(QuotaLimiter::new(crate::limiter::QuotaConfig::default())),
            Duration::from_secs(10),
        )
        .unwrap();
        let error = endpoint.post(&serde_json::json!({}), 1).await.unwrap_err();
        assert!(!error.is_retryable() && error.is_fatal(), "{error:?}");
        let port = server.base.rsplit(':').next().unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "https://localhost:{port}/v1/chat/completions: the TLS certificate of localhost is not trusted (invalid peer certificate: UnknownIssuer); if a proxy or a private CA signs it, set SSL_CERT_FILE to that CA's certificate (PEM)"
            )
        );
    }
}
