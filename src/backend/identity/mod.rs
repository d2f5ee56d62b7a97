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
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

mod chain;
mod msi;

pub use chain::{AzureSdkCredential, DefaultChain};
pub use msi::MsiEndpoint;

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
pub(crate) fn scope_to_resource(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
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
            expires_at: std::time::UNIX_EPOCH,
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
