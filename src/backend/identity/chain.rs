//! The credential chain: `azure_identity` credentials and the MSI endpoint, chosen by the
//! environment in DefaultAzureCredential's order.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;

use super::msi::MsiEndpoint;
use super::{AccessToken, IdentityError, TokenFetcher};

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
