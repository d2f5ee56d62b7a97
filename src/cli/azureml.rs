//! `evalr merge` and `evalr mlflow-log`: the AzureML edge's commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::azureml::merge::{self, RowOrder};
use crate::azureml::mlflow;
use crate::backend::identity;
use crate::say;

/// `evalr merge SHARD_DIR... --out DIR`
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shard folders (`shard-K-of-N/`, each with its run.json), or folders holding them
    /// (the `--results-dir` the shards shared).
    #[arg(required = true, value_name = "SHARD_DIR")]
    pub inputs: Vec<PathBuf>,
    /// The merged result folder to write (must not already hold a run).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let summary = merge::merge(&args.inputs, &args.out)?;
    for warning in &summary.warnings {
        eprintln!("warning: {warning}");
    }
    let order = match summary.order {
        RowOrder::Dataset => "dataset order",
        RowOrder::NaturalId => "id order (dataset files not readable here)",
    };
    eprintln!(
        "merged {} shards into {}: {} rows, {} errors, status {} ({order}; {} duplicate output lines and {} superseded error lines dropped)",
        summary.shards,
        args.out.display(),
        summary.outputs,
        summary.errors,
        summary.status,
        summary.duplicate_outputs,
        summary.dropped_errors,
    );
    Ok(ExitCode::SUCCESS)
}

/// `evalr auth-check [--scope SCOPE]`
#[derive(Debug, Args)]
pub struct AuthCheckArgs {
    /// Scope to get a token for: Azure OpenAI's by default; AzureML endpoints take
    /// https://ml.azure.com/.default.
    #[arg(long, default_value = identity::COGNITIVE_SERVICES_SCOPE)]
    pub scope: String,
}

/// Gets one Entra ID token the way a keyless backend would and says which credential gave
/// it. The token itself is never printed.
pub fn auth_check(args: AuthCheckArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    let source = identity::CachedTokenSource::new(identity::DefaultChain::from_env());
    let token = runtime.block_on(source.access_token(&args.scope))?;
    let from = source.fetcher().chosen_name().unwrap_or("?");
    let until = chrono::DateTime::<chrono::Utc>::from(token.expires_at);
    let left = token
        .expires_at
        .duration_since(std::time::SystemTime::now())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    say!(
        "ok: got a token for {} from {from}, valid until {} ({left} s from now)",
        args.scope,
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `evalr mlflow-log RESULTS_DIR`
#[derive(Debug, Args)]
pub struct MlflowLogArgs {
    /// A scored result folder (run.json and summary.json).
    #[arg(value_name = "RESULTS_DIR")]
    pub dir: PathBuf,
}

/// Logs a result folder to the MLflow tracking server named by `MLFLOW_TRACKING_URI`.
pub fn mlflow_log(args: MlflowLogArgs) -> anyhow::Result<ExitCode> {
    let tracking = mlflow::Tracking::from_env()?.ok_or_else(|| {
            super::UsageError(
                "MLFLOW_TRACKING_URI is not set: point it at a tracking server (http://host:port, or the azureml:// URI of a workspace; AzureML jobs set it)".into(),
            )
        })?;
    if !args.dir.join(crate::results::MANIFEST_FILE).is_file() {
        return Err(super::UsageError(format!(
            "{}: not a result folder (no run.json)",
            args.dir.display()
        ))
        .into());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let logged = runtime.block_on(mlflow::log_results(&tracking, &args.dir))?;
    if let Some(reason) = &logged.artifacts_skipped {
        eprintln!("warning: artifacts not uploaded: {reason}");
    }
    say!(
        "logged {} to MLflow run {} (experiment {}) at {}: {} params, {} metrics, {} artifacts{}",
        args.dir.display(),
        logged.run_id,
        logged.experiment_id,
        tracking.base,
        logged.params,
        logged.metrics,
        logged.artifacts.len(),
        if logged.artifacts.is_empty() {
            String::new()
        } else {
            format!(" ({})", logged.artifacts.join(", "))
        }
    )?;
    Ok(ExitCode::SUCCESS)
}
