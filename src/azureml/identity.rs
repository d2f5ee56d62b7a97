//! Entra ID tokens for backends and MLflow when no key is configured.
//!
//! [`TokenSource`] is what callers use: `token(scope)` returns a bearer token. The sources
//! that actually talk to Entra ID implement [`TokenFetcher`] and are wrapped in
//! [`CachedTokenSource`], which keeps one token per scope and fetches a new one a margin
//! *before* it expires (a token that expires between being read and the request arriving
//! would turn into a 401 mid-run).
//!
//! [`DefaultChain`] tries credentials in the order DefaultAzureCredential does, choosing by
//! the environment: environment client secret, workload identity, managed identity, Azure
//! CLI. The credentials themselves come from the `azure_identity` crate, except the
//! `MSI_ENDPOINT` managed identity protocol (what an AzureML compute exposes, and Cloud
//! Shell), which `azure_identity` 1.0 rejects as unsupported and evalr speaks itself.
//!
//! Tokens never appear in a log line, an error or a `Debug` output.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Deserialize;

/// Scope for Azure OpenAI (Cognitive Services) data-plane calls.
pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";
/// Scope for AzureML online endpoints.
pub const AZUREML_SCOPE: &str = "https://ml.azure.com/.default";
/// Scope for Azure Resource Manager, which AzureML's MLflow tracking server accepts.
pub const MANAGEMENT_SCOPE: &str = "https://management.azure.com/.default";

/// Refresh this long before a token expires.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{credential}: {message}")]
    Credential {
        credential: &'static str,
        message: String,
    },
    #[error("{credential}: token request to {url} failed: {message}")]
    Http {
        credential: &'static str,
        url: String,
        message: String,
    },
    #[error(
        "no Entra ID credential worked for scope {scope} ({tried}); set a key instead, or sign in with `az login`, or run where a managed identity is available"
    )]
    NoCredential { scope: String, tried: String },
}

/// A bearer token and when it stops being valid.
#[derive(Clone)]
pub struct AccessToken {
    pub secret: String,
    pub expires_at: SystemTime,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What HTTP backends and MLflow ask for a token.
#[async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(&self, scope: &str) -> Result<String, IdentityError>;
}

/// One way of getting a token from Entra ID, uncached.
#[async_trait]
pub trait TokenFetcher: Send + Sync {
    async fn fetch(&self, scope: &str) -> Result<AccessToken, IdentityError>;
    /// For messages: which credential this is.
    fn name(&self) -> &'static str;
}

/// Caches one token per scope and refreshes it `margin` before it expires. Concurrent
/// callers wait for one fetch instead of each starting their own.
pub struct CachedTokenSource<F> {
    fetcher: F,
    margin: Duration,
    cache: tokio::sync::Mutex<HashMap<String, AccessToken>>,
}

impl<F: TokenFetcher> CachedTokenSource<F> {
    pub fn new(fetcher: F) -> Self {
        Self::with_margin(fetcher, DEFAULT_REFRESH_MARGIN)
    }

    pub fn with_margin(fetcher: F, margin: Duration) -> Self {
        CachedTokenSource {
            fetcher,
            margin,
            cache: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A fresh-enough token and its expiry.
    pub async fn access_token(&self, scope: &str) -> Result<AccessToken, IdentityError> {
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.get(scope)
            && token.expires_at > SystemTime::now() + self.margin
        {
            return Ok(token.clone());
        }
        let token = self.fetcher.fetch(scope).await?;
        cache.insert(scope.to_string(), token.clone());
        Ok(token)
    }

    pub fn fetcher(&self) -> &F {
        &self.fetcher
    }
}

#[async_trait]
impl<F: TokenFetcher> TokenSource for CachedTokenSource<F> {
    async fn token(&self, scope: &str) -> Result<String, IdentityError> {
        Ok(self.access_token(scope).await?.secret)
    }
}

/// A fixed token (`MLFLOW_TRACKING_TOKEN`, a token handed in by the user).
pub struct StaticToken(pub String);

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self, _scope: &str) -> Result<String, IdentityError> {
        Ok(self.0.clone())
    }
}

/// A v2 scope (`https://x/.default`) as the v1 resource the managed identity endpoints take.
fn scope_to_resource(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}

/// Any `azure_identity` credential.
pub struct AzureSdkCredential {
    name: &'static str,
    inner: Arc<dyn azure_core::credentials::TokenCredential>,
}

impl AzureSdkCredential {
    pub fn new(
        name: &'static str,
        inner: Arc<dyn azure_core::credentials::TokenCredential>,
    ) -> Self {
        AzureSdkCredential { name, inner }
    }
}

#[async_trait]
impl TokenFetcher for AzureSdkCredential {
    async fn fetch(&self, scope: &str) -> Result<AccessToken, IdentityError> {
        let token =
            self.inner
                .get_token(&[scope], None)
                .await
                .map_err(|e| IdentityError::Credential {
                    credential: self.name,
                    // azure_identity puts a troubleshooting link on a second line; keep one line.
                    message: e.to_string().replace('\n', " "),
                })?;
        let seconds = token.expires_on.unix_timestamp().max(0) as u64;
        Ok(AccessToken {
            secret: token.token.secret().to_string(),
            expires_at: UNIX_EPOCH + Duration::from_secs(seconds),
        })
    }

    fn name(&self) -> &'static str {
        self.name
    }
}

/// The `MSI_ENDPOINT` managed identity protocol.
///
/// With `MSI_SECRET` (AzureML compute): `GET $MSI_ENDPOINT?api-version=2017-09-01&resource=R`
/// with a `secret` header, and `clientid=$DEFAULT_IDENTITY_CLIENT_ID` for a user-assigned
/// identity. Without it (Cloud Shell): `POST` of the form `resource=R` with `Metadata: true`.
pub struct MsiEndpoint {
    endpoint: String,
    secret: Option<String>,
    client_id: Option<String>,
    http: reqwest::Client,
}

impl MsiEndpoint {
    pub fn new(endpoint: String, secret: Option<String>, client_id: Option<String>) -> Self {
        MsiEndpoint {
            endpoint,
            secret,
            client_id,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
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
        let request = match &self.secret {
            Some(secret) => {
                let mut query = vec![("api-version", "2017-09-01"), ("resource", resource)];
                if let Some(id) = &self.client_id {
                    query.push(("clientid", id));
                }
                self.http
                    .get(&self.endpoint)
                    .query(&query)
                    .header("secret", secret)
            }
            None => {
                let mut form = vec![("resource", resource)];
                if let Some(id) = &self.client_id {
                    form.push(("client_id", id));
                }
                self.http
                    .post(&self.endpoint)
                    .header("Metadata", "true")
                    .form(&form)
            }
        };
        let http_error = |message: String| IdentityError::Http {
            credential: name,
            url: self.endpoint.clone(),
            message,
        };
        let response = request
            .send()
            .await
            .map_err(|e| http_error(e.without_url().to_string()))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| http_error(e.without_url().to_string()))?;
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

/// DefaultAzureCredential's order, each credential present only when its environment is:
/// 1. client secret: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`
///    (`AZURE_AUTHORITY_HOST` for another cloud);
/// 2. workload identity: `AZURE_FEDERATED_TOKEN_FILE` (+ tenant and client ids);
/// 3. managed identity: `IDENTITY_ENDPOINT` + `IDENTITY_HEADER` (App Service protocol), or
///    `MSI_ENDPOINT` (+ `MSI_SECRET` on AzureML compute), or, when `EVALR_USE_IMDS=1`, the VM
///    metadata endpoint (not probed by default: without a VM it retries for over a minute);
/// 4. Azure CLI (`az account get-access-token`).
///
/// The first credential that returns a token is kept for later scopes.
pub struct DefaultChain {
    credentials: Vec<Box<dyn TokenFetcher>>,
    chosen: std::sync::Mutex<Option<usize>>,
}

impl DefaultChain {
    pub fn from_env() -> Self {
        Self::from_env_with(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// As [`DefaultChain::from_env`], with the evalr-spoken protocols reading `env`. The
    /// `azure_identity` credentials always read the process environment.
    pub fn from_env_with(env: impl Fn(&str) -> Option<String>) -> Self {
        use azure_identity::{
            AzureCliCredential, ClientSecretCredential, ManagedIdentityCredential,
            ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
        };
        let mut credentials: Vec<Box<dyn TokenFetcher>> = Vec::new();
        let mut add = |name: &'static str,
                       made: azure_core::Result<
            Arc<dyn azure_core::credentials::TokenCredential>,
        >| {
            credentials.push(sdk_credential(name, made));
        };
        if let (Some(tenant), Some(client), Some(secret)) = (
            env("AZURE_TENANT_ID"),
            env("AZURE_CLIENT_ID"),
            env("AZURE_CLIENT_SECRET"),
        ) {
            add(
                "EnvironmentCredential(client secret)",
                ClientSecretCredential::new(&tenant, client, secret.into(), None)
                    .map(|c| c as Arc<dyn azure_core::credentials::TokenCredential>),
            );
        }
        if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            add(
                "WorkloadIdentityCredential",
                WorkloadIdentityCredential::new(None)
                    .map(|c| c as Arc<dyn azure_core::credentials::TokenCredential>),
            );
        }
        let user_assigned = env("AZURE_CLIENT_ID").or_else(|| env("DEFAULT_IDENTITY_CLIENT_ID"));
        let has_identity_endpoint =
            env("IDENTITY_ENDPOINT").is_some() && env("IDENTITY_HEADER").is_some();
        if has_identity_endpoint
            || env("MSI_ENDPOINT").is_none() && env("EVALR_USE_IMDS").as_deref() == Some("1")
        {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: user_assigned.clone().map(UserAssignedId::ClientId),
                ..Default::default()
            };
            add(
                "ManagedIdentityCredential",
                ManagedIdentityCredential::new(Some(options))
                    .map(|c| c as Arc<dyn azure_core::credentials::TokenCredential>),
            );
        }
        let msi = env("MSI_ENDPOINT").map(|endpoint| {
            MsiEndpoint::new(
                endpoint,
                env("MSI_SECRET"),
                env("DEFAULT_IDENTITY_CLIENT_ID").or_else(|| env("AZURE_CLIENT_ID")),
            )
        });
        add(
            "AzureCliCredential",
            AzureCliCredential::new(None)
                .map(|c| c as Arc<dyn azure_core::credentials::TokenCredential>),
        );
        // MSI_ENDPOINT goes before the Azure CLI, as managed identity does in the chain.
        if let Some(msi) = msi
            && !has_identity_endpoint
        {
            let at = credentials.len() - 1;
            credentials.insert(at, Box::new(msi));
        }
        DefaultChain {
            credentials,
            chosen: std::sync::Mutex::new(None),
        }
    }

    /// The credentials in the order they are tried, for messages.
    pub fn names(&self) -> Vec<&'static str> {
        self.credentials.iter().map(|c| c.name()).collect()
    }

    /// Which credential answered last (after a successful fetch).
    pub fn chosen_name(&self) -> Option<&'static str> {
        let chosen = *self.chosen.lock().ok()?;
        chosen.map(|i| self.credentials[i].name())
    }
}

fn sdk_credential(
    name: &'static str,
    made: azure_core::Result<Arc<dyn azure_core::credentials::TokenCredential>>,
) -> Box<dyn TokenFetcher> {
    match made {
        Ok(c) => Box::new(AzureSdkCredential::new(name, c)),
        Err(e) => Box::new(Unavailable {
            name,
            message: e.to_string().replace('\n', " "),
        }),
    }
}

/// A credential whose construction failed; tried like the others so the failure is reported.
struct Unavailable {
    name: &'static str,
    message: String,
}

#[async_trait]
impl TokenFetcher for Unavailable {
    async fn fetch(&self, _scope: &str) -> Result<AccessToken, IdentityError> {
        Err(IdentityError::Credential {
            credential: self.name,
            message: self.message.clone(),
        })
    }
    fn name(&self) -> &'static str {
        self.name
    }
}

#[async_trait]
impl TokenFetcher for DefaultChain {
    async fn fetch(&self, scope: &str) -> Result<AccessToken, IdentityError> {
        let chosen = self.chosen.lock().ok().and_then(|c| *c);
        if let Some(i) = chosen {
            return self.credentials[i].fetch(scope).await;
        }
        let mut failures = Vec::new();
        for (i, credential) in self.credentials.iter().enumerate() {
            match credential.fetch(scope).await {
                Ok(token) => {
                    if let Ok(mut c) = self.chosen.lock() {
                        *c = Some(i);
                    }
                    return Ok(token);
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(IdentityError::NoCredential {
            scope: scope.to_string(),
            tried: failures.join("; "),
        })
    }

    fn name(&self) -> &'static str {
        "DefaultChain"
    }
}

/// The token source backends use when they have no key.
pub fn default_token_source() -> CachedTokenSource<DefaultChain> {
    CachedTokenSource::new(DefaultChain::from_env())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        calls: AtomicUsize,
        lifetime: Duration,
    }

    #[async_trait]
    impl TokenFetcher for Counting {
        async fn fetch(&self, scope: &str) -> Result<AccessToken, IdentityError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(AccessToken {
                secret: format!("{scope}#{n}"),
                expires_at: SystemTime::now() + self.lifetime,
            })
        }
        fn name(&self) -> &'static str {
            "counting"
        }
    }

    #[tokio::test]
    async fn caches_per_scope_and_refreshes_inside_the_margin() {
        let long = CachedTokenSource::with_margin(
            Counting {
                calls: AtomicUsize::new(0),
                lifetime: Duration::from_secs(3600),
            },
            Duration::from_secs(300),
        );
        assert_eq!(long.token("a").await.unwrap(), "a#1");
        assert_eq!(long.token("a").await.unwrap(), "a#1");
        assert_eq!(long.token("b").await.unwrap(), "b#2");
        // A token that expires inside the margin is never handed out twice.
        let short = CachedTokenSource::with_margin(
            Counting {
                calls: AtomicUsize::new(0),
                lifetime: Duration::from_secs(60),
            },
            Duration::from_secs(300),
        );
        assert_eq!(short.token("a").await.unwrap(), "a#1");
        assert_eq!(short.token("a").await.unwrap(), "a#2");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = AccessToken {
            secret: "eyJ-secret".into(),
            expires_at: UNIX_EPOCH,
        };
        assert!(!format!("{t:?}").contains("eyJ"));
    }

    #[test]
    fn scopes_become_resources() {
        assert_eq!(
            scope_to_resource(COGNITIVE_SERVICES_SCOPE),
            "https://cognitiveservices.azure.com"
        );
        assert_eq!(
            scope_to_resource("https://ml.azure.com"),
            "https://ml.azure.com"
        );
    }
}
