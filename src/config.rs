//! Model configuration: named profiles from a TOML file, `provider:name` specs, and the
//! environment variables the Azure and OpenAI SDKs use. Resolved *before* the first request:
//! a missing setting is one line that says what to set.
//!
//! ```toml
//! default_model = "gpt4o-eastus"
//!
//! [models.gpt4o-eastus]
//! kind = "azure"                          # azure | openai | local
//! endpoint = "https://eastus.openai.azure.com"
//! deployment = "gpt-4o"
//! api_version = "2024-10-21"
//! api_key_env = "AZURE_OPENAI_API_KEY_EASTUS"   # the variable holding the key; keys never go in the file
//! model = "gpt-4o"
//! rpm = 600
//! tpm = 100000
//! prices = { input_per_mtok = 2.5, output_per_mtok = 10.0 }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::azureml::EndpointFormat;
use crate::limiter::QuotaConfig;
use crate::prices::ConfiguredPrice;
use crate::secret::Secret;

pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Where evalr looks for the profiles file when neither `--config` nor `EVALR_CONFIG` is set.
pub const DEFAULT_CONFIG_FILE: &str = "evalr.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Missing(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Azure,
    Openai,
    /// An AzureML managed (realtime) online endpoint: `input_data` requests to its scoring URI.
    Azureml,
    Local,
}

/// One deployment of a profile (a profile may list several, e.g. regions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    pub endpoint: Option<String>,
    pub deployment: Option<String>,
    pub api_version: Option<String>,
    pub api_key_env: Option<String>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub max_in_flight: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub kind: ProviderKind,
    #[serde(flatten)]
    pub deployment: DeploymentConfig,
    /// OpenAI-compatible base URL (`kind = "openai"`).
    pub base_url: Option<String>,
    /// Model name: sent as `model` to OpenAI-compatible servers; chooses the tokenizer.
    pub model: Option<String>,
    /// Path or `hf:REPO/FILE.gguf` for `kind = "local"`.
    pub path: Option<String>,
    #[serde(default)]
    pub reasoning: bool,
    pub logprobs: Option<bool>,
    pub json_schema: Option<bool>,
    pub prices: Option<ConfiguredPrice>,
    #[serde(default)]
    pub deployments: Vec<DeploymentConfig>,
    /// `kind = "azureml"`: a custom scoring script's request template and response pointer.
    #[serde(default, flatten)]
    pub format: EndpointFormat,
    /// Run through the batch API (as `evalr run --batch`), with these limits.
    #[serde(default, flatten)]
    pub batch: BatchProfile,
}

impl Profile {
    /// A profile of `kind` with nothing else set: what a `--model azure:NAME` or a program's
    /// own model configuration starts from.
    pub fn of_kind(kind: ProviderKind) -> Profile {
        Profile {
            kind,
            deployment: DeploymentConfig::default(),
            base_url: None,
            model: None,
            path: None,
            reasoning: false,
            logprobs: None,
            json_schema: None,
            prices: None,
            deployments: Vec::new(),
            format: EndpointFormat::default(),
            batch: BatchProfile::default(),
        }
    }
}

/// A profile's batch settings (`batch = true`, `batch_max_requests`, ...); flags override them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchProfile {
    #[serde(default)]
    pub batch: bool,
    /// Requests per input file (the service's limit: 100,000 on Azure, 50,000 on OpenAI).
    pub batch_max_requests: Option<u64>,
    /// Bytes per input file (the service's limit: 200 MB).
    pub batch_max_bytes: Option<u64>,
    /// The deployment's enqueued-token quota: batches in flight never hold more tokens.
    pub batch_enqueued_tokens: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub default_model: Option<String>,
    #[serde(default)]
    pub models: BTreeMap<String, Profile>,
    /// Overrides of the shipped price table, by model name.
    #[serde(default)]
    pub prices: BTreeMap<String, ConfiguredPrice>,
}

impl ConfigFile {
    /// `--config PATH`, else `$EVALR_CONFIG`, else `./evalr.toml` when it exists.
    pub fn load(explicit: Option<&Path>) -> Result<(ConfigFile, Option<PathBuf>), ConfigError> {
        let path = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("EVALR_CONFIG").map(PathBuf::from))
            .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()));
        let Some(path) = path else {
            return Ok((ConfigFile::default(), None));
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let file = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok((file, Some(path)))
    }
}

/// A fully resolved remote deployment: everything needed to send a request.
#[derive(Debug, Clone)]
pub struct ResolvedDeployment {
    pub url_base: String,
    pub deployment: Option<String>,
    pub api_version: Option<String>,
    pub key: Option<Secret>,
    /// The variable the key is read from, for error messages.
    pub key_env: Option<String>,
    pub quota: QuotaConfig,
}

/// What `--model` resolved to.
#[derive(Debug, Clone)]
pub enum ResolvedModel {
    Remote {
        kind: ProviderKind,
        /// The name the user gave (`gpt4o-eastus`, `azure:gpt-4o`).
        spec: String,
        model: Option<String>,
        reasoning: bool,
        logprobs: bool,
        json_schema: bool,
        prices: Option<ConfiguredPrice>,
        deployments: Vec<ResolvedDeployment>,
        format: EndpointFormat,
        batch: BatchProfile,
    },
    Local {
        spec: String,
        prices: Option<ConfiguredPrice>,
    },
}

impl ResolvedModel {
    /// The name the user gave.
    pub fn spec(&self) -> &str {
        match self {
            ResolvedModel::Remote { spec, .. } | ResolvedModel::Local { spec, .. } => spec,
        }
    }

    /// `azure`, `openai`, `azureml` or `local`, as run.json records it.
    pub fn backend_name(&self) -> &'static str {
        match self {
            ResolvedModel::Remote { kind, .. } => match kind {
                ProviderKind::Azure => "azure",
                ProviderKind::Openai => "openai",
                ProviderKind::Azureml => "azureml",
                ProviderKind::Local => "local",
            },
            ResolvedModel::Local { .. } => "local",
        }
    }

    /// The deployment requests name (the first one of a pool), else the model name.
    pub fn deployment(&self) -> Option<&str> {
        match self {
            ResolvedModel::Remote {
                deployments, model, ..
            } => deployments
                .first()
                .and_then(|d| d.deployment.as_deref())
                .or(model.as_deref()),
            ResolvedModel::Local { .. } => None,
        }
    }

    /// The model name (chooses the tokenizer).
    pub fn model_name(&self) -> Option<&str> {
        match self {
            ResolvedModel::Remote { model, .. } => model.as_deref(),
            ResolvedModel::Local { .. } => None,
        }
    }

    /// The `prices` of the profile.
    pub fn profile_price(&self) -> Option<&ConfiguredPrice> {
        match self {
            ResolvedModel::Remote { prices, .. } | ResolvedModel::Local { prices, .. } => {
                prices.as_ref()
            }
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, ResolvedModel::Local { .. })
    }
}

/// Quota flags that override a profile's (`--rpm`, `--tpm`, `--max-in-flight`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize, clap::Args,
)]
pub struct QuotaOverrides {
    /// Requests per minute (overrides the profile).
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Tokens per minute (overrides the profile).
    #[arg(long)]
    pub tpm: Option<u32>,
    /// Requests in flight at once per deployment (overrides the profile; default 8).
    #[arg(long)]
    pub max_in_flight: Option<usize>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn quota(deployment: &DeploymentConfig, overrides: QuotaOverrides) -> QuotaConfig {
    QuotaConfig {
        rpm: overrides.rpm.or(deployment.rpm),
        tpm: overrides.tpm.or(deployment.tpm),
        max_in_flight: overrides
            .max_in_flight
            .or(deployment.max_in_flight)
            .unwrap_or(QuotaConfig::default().max_in_flight),
    }
}

/// Why a run uses the model it uses: said in the first line of every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelOrigin {
    /// `--model`.
    Flag,
    /// `$EVALR_MODEL`.
    EvalrModelEnv,
    /// The program's own `model.configuration` (after --model and EVALR_MODEL, before the
    /// config file's default: it is what the file runs against in any Prompty runtime).
    Program,
    /// The config file's `default_model`.
    ConfigDefault,
    /// `$AZURE_OPENAI_ENDPOINT` and `$AZURE_OPENAI_DEPLOYMENT`, as the Azure SDK samples set.
    AzureEnv,
    /// Nothing named a model: the embedded one.
    BuiltInDefault,
}

impl ModelOrigin {
    pub fn describe(self) -> &'static str {
        match self {
            ModelOrigin::Flag => "from --model",
            ModelOrigin::EvalrModelEnv => "from EVALR_MODEL",
            ModelOrigin::Program => "the program's model.configuration",
            ModelOrigin::ConfigDefault => "the config file's default_model",
            ModelOrigin::AzureEnv => "from AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT",
            ModelOrigin::BuiltInDefault => {
                "the embedded default: no --model, EVALR_MODEL, default_model or AZURE_OPENAI_DEPLOYMENT was set"
            }
        }
    }
}

/// The model spec a run uses, and why: `--model`, else `$EVALR_MODEL`, else the config's
/// `default_model`, else the Azure deployment the environment names (endpoint and
/// deployment both set), else the embedded local model.
pub fn choose_model(explicit: Option<&str>, file: &ConfigFile) -> (String, ModelOrigin) {
    if let Some(spec) = explicit {
        return (spec.to_string(), ModelOrigin::Flag);
    }
    if let Some(spec) = env("EVALR_MODEL") {
        return (spec, ModelOrigin::EvalrModelEnv);
    }
    if let Some(spec) = &file.default_model {
        return (spec.clone(), ModelOrigin::ConfigDefault);
    }
    if let (Some(_), Some(deployment)) =
        (env("AZURE_OPENAI_ENDPOINT"), env("AZURE_OPENAI_DEPLOYMENT"))
    {
        return (format!("azure:{deployment}"), ModelOrigin::AzureEnv);
    }
    ("local".to_string(), ModelOrigin::BuiltInDefault)
}

/// Resolves a model spec (see [`choose_model`]) into a model, reading keys from the
/// environment.
pub fn resolve_model(
    spec: &str,
    file: &ConfigFile,
    overrides: QuotaOverrides,
) -> Result<ResolvedModel, ConfigError> {
    let spec = spec.to_string();
    if let Some(profile) = file.models.get(&spec) {
        return resolve_profile(&spec, profile, overrides);
    }
    let (provider, name) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
    match provider {
        "local" => Ok(ResolvedModel::Local {
            spec: spec.clone(),
            prices: None,
        }),
        "azure" if !name.is_empty() => {
            let profile = Profile {
                deployment: DeploymentConfig {
                    deployment: Some(name.to_string()),
                    ..Default::default()
                },
                model: Some(name.to_string()),
                ..Profile::of_kind(ProviderKind::Azure)
            };
            resolve_profile(&spec, &profile, overrides)
        }
        "openai" if !name.is_empty() => {
            let profile = Profile {
                model: Some(name.to_string()),
                ..Profile::of_kind(ProviderKind::Openai)
            };
            resolve_profile(&spec, &profile, overrides)
        }
        _ => {
            let known: Vec<&str> = file.models.keys().map(String::as_str).collect();
            Err(ConfigError::Missing(format!(
                "unknown model `{spec}`: pass a profile name from the config file ({}), `azure:DEPLOYMENT`, `openai:MODEL`, or `local`",
                if known.is_empty() {
                    "none defined".to_string()
                } else {
                    known.join(", ")
                }
            )))
        }
    }
}

fn is_reasoning_model(model: Option<&str>) -> bool {
    model.is_some_and(|m| {
        let m = m.to_ascii_lowercase();
        m.starts_with("o1") || m.starts_with("o3") || m.starts_with("o4") || m.starts_with("gpt-5")
    })
}

/// Resolves a profile that did not come from the config file (a program's own
/// `model.configuration`), named `spec` in `run.json`.
pub fn resolve_unlisted_profile(
    spec: &str,
    profile: &Profile,
    overrides: QuotaOverrides,
) -> Result<ResolvedModel, ConfigError> {
    resolve_profile(spec, profile, overrides)
}

fn resolve_profile(
    spec: &str,
    profile: &Profile,
    overrides: QuotaOverrides,
) -> Result<ResolvedModel, ConfigError> {
    if profile.kind == ProviderKind::Local {
        return Ok(ResolvedModel::Local {
            spec: profile
                .path
                .as_ref()
                .map(|p| format!("local:{p}"))
                .unwrap_or_else(|| "local".into()),
            prices: profile.prices,
        });
    }
    let entries: Vec<DeploymentConfig> = if profile.deployments.is_empty() {
        vec![profile.deployment.clone()]
    } else {
        // Settings on the profile are defaults for each listed deployment.
        profile
            .deployments
            .iter()
            .map(|d| DeploymentConfig {
                endpoint: d
                    .endpoint
                    .clone()
                    .or_else(|| profile.deployment.endpoint.clone()),
                deployment: d
                    .deployment
                    .clone()
                    .or_else(|| profile.deployment.deployment.clone()),
                api_version: d
                    .api_version
                    .clone()
                    .or_else(|| profile.deployment.api_version.clone()),
                api_key_env: d
                    .api_key_env
                    .clone()
                    .or_else(|| profile.deployment.api_key_env.clone()),
                rpm: d.rpm.or(profile.deployment.rpm),
                tpm: d.tpm.or(profile.deployment.tpm),
                max_in_flight: d.max_in_flight.or(profile.deployment.max_in_flight),
            })
            .collect()
    };
    let mut deployments = Vec::new();
    for entry in &entries {
        deployments.push(match profile.kind {
            ProviderKind::Azure => {
                let endpoint = entry.endpoint.clone().or_else(|| env("AZURE_OPENAI_ENDPOINT")).ok_or_else(|| {
                    ConfigError::Missing(format!(
                        "no Azure OpenAI endpoint for model `{spec}`: set AZURE_OPENAI_ENDPOINT (e.g. https://NAME.openai.azure.com) or `endpoint` in the profile"
                    ))
                })?;
                let deployment = entry.deployment.clone().ok_or_else(|| {
                    ConfigError::Missing(format!("no deployment for model `{spec}`: pass --model azure:DEPLOYMENT or set `deployment` in the profile"))
                })?;
                let key_var = entry.api_key_env.clone().unwrap_or_else(|| "AZURE_OPENAI_API_KEY".into());
                // Without a key the run signs in with Entra ID (checked before the first
                // request, see `run::build_backend`).
                let key = env(&key_var).map(Secret::new);
                ResolvedDeployment {
                    url_base: endpoint,
                    deployment: Some(deployment),
                    api_version: Some(
                        entry.api_version.clone().or_else(|| env("OPENAI_API_VERSION")).unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.into()),
                    ),
                    key,
                    key_env: Some(key_var),
                    quota: quota(entry, overrides),
                }
            }
            ProviderKind::Openai => {
                let base = entry
                    .endpoint
                    .clone()
                    .or_else(|| profile.base_url.clone())
                    .or_else(|| env("OPENAI_BASE_URL"))
                    .unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.into());
                let key_var = entry.api_key_env.clone().unwrap_or_else(|| "OPENAI_API_KEY".into());
                let key = env(&key_var).map(Secret::new);
                if key.is_none() && base == DEFAULT_OPENAI_BASE_URL {
                    return Err(ConfigError::Missing(format!(
                        "no API key for model `{spec}`: set {key_var}, or OPENAI_BASE_URL to an OpenAI-compatible server that needs none"
                    )));
                }
                ResolvedDeployment { url_base: base, deployment: None, api_version: None, key, key_env: Some(key_var), quota: quota(entry, overrides) }
            }
            ProviderKind::Azureml => {
                let endpoint = entry.endpoint.clone().ok_or_else(|| {
                    ConfigError::Missing(format!(
                        "no scoring URI for model `{spec}`: set `endpoint` in the profile (e.g. https://NAME.REGION.inference.ml.azure.com/score)"
                    ))
                })?;
                let key_var = entry.api_key_env.clone().unwrap_or_else(|| "AZUREML_ENDPOINT_KEY".into());
                ResolvedDeployment {
                    url_base: endpoint,
                    deployment: entry.deployment.clone(),
                    api_version: None,
                    key: env(&key_var).map(Secret::new),
                    key_env: Some(key_var),
                    quota: quota(entry, overrides),
                }
            }
            ProviderKind::Local => unreachable!("handled above"),
        });
    }
    Ok(ResolvedModel::Remote {
        kind: profile.kind,
        spec: spec.to_string(),
        model: profile
            .model
            .clone()
            .or_else(|| entries.first().and_then(|e| e.deployment.clone())),
        reasoning: profile.reasoning || is_reasoning_model(profile.model.as_deref()),
        logprobs: profile.logprobs.unwrap_or(true),
        json_schema: profile.json_schema.unwrap_or(false),
        prices: profile.prices,
        deployments,
        format: profile.format.clone(),
        batch: profile.batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_with_several_deployments_inherit_settings() {
        let file: ConfigFile = toml::from_str(
            r#"
            [models.multi]
            kind = "azure"
            model = "gpt-4o"
            api_version = "2024-06-01"
            api_key_env = "EVALR_TEST_KEY_THAT_IS_SET"
            rpm = 60
            [[models.multi.deployments]]
            endpoint = "https://east.example"
            deployment = "gpt-4o"
            [[models.multi.deployments]]
            endpoint = "https://west.example"
            deployment = "gpt-4o-west"
            rpm = 120
            "#,
        )
        .unwrap();
        // SAFETY: tests in this module set only this variable, never read elsewhere.
        unsafe { std::env::set_var("EVALR_TEST_KEY_THAT_IS_SET", "k") };
        let ResolvedModel::Remote {
            deployments, model, ..
        } = resolve_model("multi", &file, QuotaOverrides::default()).unwrap()
        else {
            panic!()
        };
        assert_eq!(model.as_deref(), Some("gpt-4o"));
        assert_eq!(deployments.len(), 2);
        assert_eq!(deployments[0].quota.rpm, Some(60));
        assert_eq!(deployments[1].quota.rpm, Some(120));
        assert_eq!(deployments[1].api_version.as_deref(), Some("2024-06-01"));
        assert_eq!(deployments[1].deployment.as_deref(), Some("gpt-4o-west"));
    }

    #[test]
    fn unknown_model_says_what_to_pass() {
        let err =
            resolve_model("gpt-9", &ConfigFile::default(), QuotaOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("`azure:DEPLOYMENT`"), "{err}");
    }
}
