//! Turning a resolved model into a backend, with one quota limiter per deployment.

use std::sync::Arc;
use std::time::Duration;

use super::error::RunError;
use super::options::RunOptions;
use crate::backend::azureml::AzureMlBackend;
use crate::backend::endpoint::ChatEndpoint;
use crate::backend::http::{Credential, JsonEndpoint};
use crate::backend::identity::{self, TokenSource};
use crate::backend::openai::{ChatBackend, ChatConfig};
use crate::backend::pool::DeploymentPool;
use crate::backend::{Backend, Capabilities};
use crate::config::ConfigError;
use crate::config::{ProviderKind, ResolvedDeployment, ResolvedModel};
use crate::limiter::{QuotaConfig, QuotaLimiter};

/// The Entra ID token source for keyless Azure deployments, checked by fetching a token now:
/// a credential problem is a configuration error before the first request, not a failed row.
async fn entra_tokens(
    spec: &str,
    endpoint: &str,
    key_env: &str,
    scope: &str,
) -> Result<Arc<dyn TokenSource>, RunError> {
    let tokens: Arc<dyn TokenSource> = Arc::new(identity::default_token_source());
    match tokens.token(scope).await {
        Ok(_) => Ok(tokens),
        Err(error) => Err(RunError::Config(ConfigError::Missing(format!(
            "no API key for model `{spec}`: set {key_env} (the key of {endpoint}), or sign in for Entra ID (az login, a managed identity, or AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET) - {error}"
        )))),
    }
}

/// The credential of one deployment: its key, else an Entra ID token (one token source shared
/// by the deployments of a model, checked once).
async fn credential_for(
    kind: ProviderKind,
    spec: &str,
    deployment: &ResolvedDeployment,
    entra: &mut Option<Arc<dyn TokenSource>>,
) -> Result<Credential, RunError> {
    Ok(match (kind, &deployment.key) {
        (ProviderKind::Azure, Some(key)) => Credential::ApiKey(key.clone()),
        (ProviderKind::Azure | ProviderKind::Azureml, None) => {
            let scope = if kind == ProviderKind::Azure {
                identity::COGNITIVE_SERVICES_SCOPE
            } else {
                identity::AZUREML_SCOPE
            };
            if entra.is_none() {
                let key_env = deployment
                    .key_env
                    .as_deref()
                    .unwrap_or("AZURE_OPENAI_API_KEY");
                *entra = Some(entra_tokens(spec, &deployment.url_base, key_env, scope).await?);
            }
            Credential::Entra {
                tokens: Arc::clone(entra.as_ref().expect("set above")),
                scope,
            }
        }
        (_, Some(key)) => Credential::Bearer(key.clone()),
        (_, None) => Credential::None,
    })
}

fn chat_endpoint(
    kind: ProviderKind,
    deployment: &ResolvedDeployment,
    model: &Option<String>,
) -> ChatEndpoint {
    match kind {
        ProviderKind::Azure => ChatEndpoint::Azure {
            endpoint: deployment.url_base.clone(),
            deployment: deployment.deployment.clone().unwrap_or_default(),
            api_version: deployment.api_version.clone().unwrap_or_default(),
        },
        _ => ChatEndpoint::OpenAi {
            base_url: deployment.url_base.clone(),
            model: model.clone().unwrap_or_default(),
        },
    }
}

/// The chat configuration of a model's first deployment and that deployment's quota, for
/// batch runs (a batch goes to one resource; the others of a pool are not used).
/// What a chat-completions deployment can do: one definition for live and batch runs, so a
/// batch body is built with exactly the options a live request would use.
fn remote_chat_capabilities(logprobs: bool, json_schema: bool) -> Capabilities {
    Capabilities {
        exact_loglikelihood: false,
        logprobs,
        json_schema,
        regex: false,
        penalties: true,
        json_object: true,
        images: true,
    }
}

pub async fn chat_setup(
    resolved: &ResolvedModel,
    options: &RunOptions,
) -> Result<(ChatConfig, QuotaConfig), RunError> {
    let ResolvedModel::Remote {
        kind: kind @ (ProviderKind::Azure | ProviderKind::Openai),
        spec,
        model,
        reasoning,
        logprobs,
        json_schema,
        deployments,
        ..
    } = resolved
    else {
        return Err(RunError::Usage(
            "--batch needs an Azure OpenAI or OpenAI model (a profile of kind azure or openai, azure:DEPLOYMENT or openai:MODEL); AzureML endpoints and the local model have no batch API".into(),
        ));
    };
    let Some(deployment) = deployments.first() else {
        return Err(RunError::Usage(format!("model `{spec}` has no deployment")));
    };
    let mut entra = None;
    let credential = credential_for(*kind, spec, deployment, &mut entra).await?;
    let config = ChatConfig {
        endpoint: chat_endpoint(*kind, deployment, model),
        credential,
        model: model.clone(),
        reasoning: *reasoning,
        capabilities: remote_chat_capabilities(*logprobs, *json_schema),
        request_timeout: Duration::from_secs_f64(options.connection.request_timeout_secs.max(0.1)),
    };
    Ok((config, deployment.quota))
}

/// The backends of a run, built at once: the run's model, and the model that embeds for
/// `--pick knn` when it is another one; with how many requests each takes at once.
pub struct Backends {
    pub run: Arc<dyn Backend>,
    pub run_concurrency: usize,
    /// `None` when examples are not picked by embedding.
    pub embeddings: Option<(Arc<dyn Backend>, usize)>,
}

/// Builds the backends of a plan's inputs (the last check: it may fetch a token or load a
/// model).
pub async fn build_backends(
    run_model: &ResolvedModel,
    embeddings_model: Option<&ResolvedModel>,
    options: &RunOptions,
) -> Result<Backends, RunError> {
    let run = build_backend(run_model, options).await?;
    let embeddings = match embeddings_model {
        None => None,
        // `--pick knn` without --embeddings-model embeds with the run's own model.
        Some(_) if options.examples.embeddings_model.is_none() => {
            Some((Arc::clone(&run), concurrency(run_model, options)))
        }
        Some(model) => Some((
            build_backend(model, options).await?,
            concurrency(model, options),
        )),
    };
    Ok(Backends {
        run,
        run_concurrency: concurrency(run_model, options),
        embeddings,
    })
}

pub async fn build_backend(
    resolved: &ResolvedModel,
    options: &RunOptions,
) -> Result<Arc<dyn Backend>, RunError> {
    match resolved {
        ResolvedModel::Remote {
            kind,
            spec,
            model,
            reasoning,
            logprobs,
            json_schema,
            deployments,
            format,
            ..
        } => {
            let shard_count = options.rows.shard.map(|(_, count)| count).unwrap_or(1);
            let mut entra: Option<Arc<dyn TokenSource>> = None;
            let mut members: Vec<(Box<dyn Backend>, u32)> = Vec::new();
            for deployment in deployments {
                let endpoint = chat_endpoint(*kind, deployment, model);
                let credential = credential_for(*kind, spec, deployment, &mut entra).await?;
                // Shards of one run share each deployment's quota.
                let quota = deployment.quota.split(shard_count);
                let timeout =
                    Duration::from_secs_f64(options.connection.request_timeout_secs.max(0.1));
                if *kind == ProviderKind::Azureml {
                    let headers = deployment
                        .deployment
                        .iter()
                        .map(|d| ("azureml-model-deployment".to_string(), d.clone()))
                        .collect();
                    let http = JsonEndpoint::new(
                        deployment.url_base.clone(),
                        credential,
                        headers,
                        Arc::new(QuotaLimiter::new(quota)),
                        timeout,
                    )
                    .map_err(|e| RunError::Backend(e.to_string()))?;
                    let backend = AzureMlBackend::new(
                        http,
                        &deployment.url_base,
                        deployment.deployment.as_deref(),
                        format,
                    )
                    .map_err(|e| RunError::Config(ConfigError::Missing(e.to_string())))?;
                    members.push((Box::new(backend), quota.rpm.unwrap_or(1)));
                    continue;
                }
                let backend = ChatBackend::new(
                    ChatConfig {
                        endpoint,
                        credential,
                        model: model.clone(),
                        reasoning: *reasoning,
                        capabilities: remote_chat_capabilities(*logprobs, *json_schema),
                        request_timeout: Duration::from_secs_f64(
                            options.connection.request_timeout_secs.max(0.1),
                        ),
                    },
                    Arc::new(QuotaLimiter::new(quota)),
                )
                .map_err(|e| RunError::Backend(e.to_string()))?;
                members.push((Box::new(backend), quota.rpm.unwrap_or(1)));
            }
            if members.len() == 1 {
                let (only, _) = members.remove(0);
                return Ok(Arc::from(only));
            }
            let identity = format!(
                "pool:{}",
                model.clone().unwrap_or_else(|| members[0].0.identity())
            );
            Ok(Arc::new(DeploymentPool::new(identity, members)))
        }
        ResolvedModel::Local { spec, .. } => local_backend(spec, options).await,
    }
}

/// Rows in flight at once: enough to fill every deployment's in-flight cap.
pub fn concurrency(resolved: &ResolvedModel, _options: &RunOptions) -> usize {
    match resolved {
        ResolvedModel::Remote { deployments, .. } => deployments
            .iter()
            .map(|d| d.quota.max_in_flight.max(1))
            .sum::<usize>()
            .max(1),
        // One model in one process: a row at a time, so each row's calls follow each other and
        // reuse the KV cache of the previous call's prompt.
        ResolvedModel::Local { .. } => 1,
    }
}

#[cfg(feature = "local")]
async fn local_backend(spec: &str, options: &RunOptions) -> Result<Arc<dyn Backend>, RunError> {
    use crate::backend::local::{LocalBackend, LocalOptions, resolve_local_model};
    let spec = spec.to_string();
    let local_options = LocalOptions {
        threads: options.connection.threads,
        no_chat_template: options.connection.no_chat_template,
        ..LocalOptions::default()
    };
    // Resolving may download (local:hf:...) and loading hashes and maps the file: blocking work.
    let loaded = tokio::task::spawn_blocking(move || {
        let path = resolve_local_model(&spec)?;
        LocalBackend::load(&path, local_options)
    })
    .await
    .map_err(|e| RunError::Backend(e.to_string()))?;
    match loaded {
        Ok(backend) => Ok(Arc::new(backend)),
        Err(error) => Err(RunError::Config(ConfigError::Missing(error.to_string()))),
    }
}

#[cfg(not(feature = "local"))]
async fn local_backend(spec: &str, _options: &RunOptions) -> Result<Arc<dyn Backend>, RunError> {
    Err(RunError::Config(ConfigError::Missing(format!(
        "`{spec}`: this evalr was built without the embedded model (feature `local`); rebuild with default features, or pass --model azure:DEPLOYMENT, openai:MODEL or a profile"
    ))))
}
