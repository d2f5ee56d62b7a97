//! Which model a run uses, and why: `--model`, `EVALR_MODEL`, the program's own model, the
//! config file's default, else the embedded model; and the model `--pick knn` embeds with.
//! Resolved once, in the plan, from the config file the plan loaded.

use super::error::RunError;
use super::options::RunOptions;
use crate::config::{
    ConfigError, ConfigFile, ModelOrigin, ProviderKind, ResolvedModel, choose_model,
};
use crate::program::{ExamplePick, Program};

/// The run's model and why it is that one.
pub fn run_model(
    options: &RunOptions,
    program: &Program,
    file: &ConfigFile,
) -> Result<(ResolvedModel, ModelOrigin), RunError> {
    let overrides = options.limits.quota;
    let (spec, chosen) = choose_model(options.model.as_deref(), file);
    // The program's own model comes after --model and EVALR_MODEL, before the config
    // file's default: it is what the file runs against in any Prompty runtime.
    let explicit = matches!(chosen, ModelOrigin::Flag | ModelOrigin::EvalrModelEnv);
    Ok(
        match program_model(program, overrides).filter(|_| !explicit) {
            Some(resolved) => (resolved?, ModelOrigin::Program),
            None => (
                crate::config::resolve_model(&spec, file, overrides)?,
                chosen,
            ),
        },
    )
}

/// The model `--pick knn` embeds pool and rows with: `--embeddings-model`, else the run's
/// model; `None` when examples are not picked by embedding.
pub fn embeddings_model(
    options: &RunOptions,
    pick: ExamplePick,
    run_model: &ResolvedModel,
    file: &ConfigFile,
) -> Result<Option<ResolvedModel>, RunError> {
    if pick != ExamplePick::Knn {
        return Ok(None);
    }
    Ok(Some(match &options.examples.embeddings_model {
        Some(spec) => crate::config::resolve_model(spec, file, options.limits.quota)?,
        None => run_model.clone(),
    }))
}

/// The model a program names in its own `model.configuration` (v1) / `connection` (v2),
/// used when neither `--model` nor `EVALR_MODEL` says otherwise. `${env:VAR}` settings are
/// read now; the API key is only ever passed on as its variable's name, so its value cannot
/// reach `run.json`, a log or an error. `None` when the program names no service.
fn program_model(
    program: &crate::program::Program,
    overrides: crate::config::QuotaOverrides,
) -> Option<Result<ResolvedModel, RunError>> {
    use crate::config::{DeploymentConfig, Profile};
    use crate::program::{ServiceKind, Setting};
    let connection = program.file.model.connection.as_ref()?;
    let path = program.file.path.display().to_string();
    let resolve = |setting: &Option<Setting>, what: &str| -> Result<Option<String>, RunError> {
        match setting {
            None => Ok(None),
            Some(setting) => setting.resolve().map(Some).map_err(|var| {
                RunError::Config(ConfigError::Missing(format!(
                    "{path} names its model's {what} as ${{env:{var}}}, which is not set: set {var}, or pass --model"
                )))
            }),
        }
    };
    let result = (|| {
        let kind = match &connection.kind {
            ServiceKind::AzureOpenAi => ProviderKind::Azure,
            ServiceKind::OpenAi => ProviderKind::Openai,
            ServiceKind::Other(other) => {
                return Err(RunError::Usage(format!(
                    "{path} names a `{other}` model, which evalr cannot call: pass --model"
                )));
            }
        };
        let api_key_env = match &connection.api_key {
            Some(Setting::Env { var, .. }) => Some(var.clone()),
            _ => None,
        };
        let model = resolve(&connection.model, "model")?;
        let deployment = resolve(&connection.deployment, "deployment")?;
        let profile = Profile {
            deployment: DeploymentConfig {
                endpoint: resolve(&connection.endpoint, "endpoint")?,
                deployment: deployment.clone().or_else(|| model.clone()),
                api_version: resolve(&connection.api_version, "api_version")?,
                api_key_env,
                ..Default::default()
            },
            model: model.or(deployment),
            ..Profile::of_kind(kind)
        };
        let spec = format!("program:{}", program.file.name);
        crate::config::resolve_unlisted_profile(&spec, &profile, overrides).map_err(RunError::from)
    })();
    Some(result)
}
