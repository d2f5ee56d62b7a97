//! Logging a result folder to MLflow through its REST API.
//!
//! When `MLFLOW_TRACKING_URI` is set (AzureML sets it in every job, with `MLFLOW_RUN_ID` and
//! `MLFLOW_TRACKING_TOKEN`), a result folder is logged as:
//! - parameters: run.json (read through `crate::results`) flattened to dotted names
//!   (`model.identity`, `config.concurrency`);
//! - metrics: every numeric leaf of summary.json under its dotted name (`accuracy`,
//!   `accuracy_by_subject.anatomy`), read as plain JSON so this module does not depend on
//!   the scorer's types;
//! - artifacts: the report files, uploaded through the tracking server's artifact proxy
//!   (`mlflow-artifacts:` artifact URIs, what `mlflow server` serves by default).
//!
//! `azureml://<host>/mlflow/v1.0/subscriptions/...` URIs are the https endpoint of the same
//! path, called with a bearer token (`MLFLOW_TRACKING_TOKEN`, else Entra ID).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::backend::identity::{self, TokenSource};

mod client;
mod flatten;

use client::Client;
pub use flatten::{numeric_leaves, run_params, sanitize_key};

#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    #[error(
        "MLFLOW_TRACKING_URI '{0}' is not supported: evalr logs over HTTP to http(s):// and azureml:// tracking servers"
    )]
    UnsupportedUri(String),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("MLflow {endpoint} at {base}: {message}")]
    Http {
        base: String,
        endpoint: String,
        message: String,
    },
    #[error("MLflow authentication: {0}")]
    Auth(#[from] identity::IdentityError),
}

/// How requests authenticate.
#[derive(Clone)]
pub enum Auth {
    None,
    Basic {
        user: String,
        password: String,
    },
    /// A bearer token from this source, for this scope.
    Bearer {
        source: Arc<dyn TokenSource>,
        scope: String,
    },
}

/// Where and how to log.
#[derive(Clone)]
pub struct Tracking {
    /// The REST base: `<base>/api/2.0/mlflow/...`.
    pub base: String,
    pub auth: Auth,
    /// Log into this existing run (AzureML's `MLFLOW_RUN_ID`) instead of creating one.
    pub run_id: Option<String>,
    pub experiment_id: Option<String>,
    pub experiment_name: String,
}

pub const DEFAULT_EXPERIMENT: &str = "evalr";

/// MLflow's limits on one log-batch call.
const MAX_PARAMS_PER_BATCH: usize = 100;
const MAX_METRICS_PER_BATCH: usize = 1000;

/// The https base for an `azureml://` tracking URI; http(s) URIs as they are.
pub fn rest_base(uri: &str) -> Result<String, MlflowError> {
    let uri = uri.trim().trim_end_matches('/');
    if let Some(rest) = uri.strip_prefix("azureml://") {
        return Ok(format!("https://{rest}"));
    }
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return Ok(uri.to_string());
    }
    Err(MlflowError::UnsupportedUri(uri.to_string()))
}

impl Tracking {
    /// From the MLflow environment variables; `None` when `MLFLOW_TRACKING_URI` is unset.
    pub fn from_env() -> Result<Option<Self>, MlflowError> {
        Self::from_env_with(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_env_with(
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, MlflowError> {
        let Some(uri) = env("MLFLOW_TRACKING_URI") else {
            return Ok(None);
        };
        let base = rest_base(&uri)?;
        let auth = if let Some(token) = env("MLFLOW_TRACKING_TOKEN") {
            Auth::Bearer {
                source: Arc::new(identity::StaticToken(token)),
                scope: String::new(),
            }
        } else if let (Some(user), Some(password)) = (
            env("MLFLOW_TRACKING_USERNAME"),
            env("MLFLOW_TRACKING_PASSWORD"),
        ) {
            Auth::Basic { user, password }
        } else if uri.trim().starts_with("azureml://") {
            Auth::Bearer {
                source: Arc::new(identity::default_token_source()),
                scope: identity::MANAGEMENT_SCOPE.to_string(),
            }
        } else {
            Auth::None
        };
        Ok(Some(Tracking {
            base,
            auth,
            run_id: env("MLFLOW_RUN_ID"),
            experiment_id: env("MLFLOW_EXPERIMENT_ID"),
            experiment_name: env("MLFLOW_EXPERIMENT_NAME")
                .unwrap_or_else(|| DEFAULT_EXPERIMENT.into()),
        }))
    }
}

/// What was logged.
#[derive(Debug, Clone)]
pub struct Logged {
    pub run_id: String,
    pub experiment_id: String,
    pub params: usize,
    pub metrics: usize,
    pub artifacts: Vec<String>,
    /// Why artifacts were not uploaded, when they were not.
    pub artifacts_skipped: Option<String>,
}

/// The files of a result folder that are logged as artifacts: the reports, the summary, the
/// run description, the errors and charts. `outputs.jsonl` and `outputs.parquet` are not:
/// they can be large and they stay in the result folder (the job's output in AzureML).
pub fn artifact_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("report")
                || matches!(name, "summary.json" | "run.json" | "errors.jsonl")
                || name.ends_with(".svg")
                || name.ends_with(".png")
        })
        .collect();
    files.sort();
    files
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn read_json(path: &Path) -> Result<Value, MlflowError> {
    let text = std::fs::read_to_string(path).map_err(|e| MlflowError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| MlflowError::File {
        path: path.to_path_buf(),
        message: format!("not JSON: {e}"),
    })
}

/// The artifact proxy path of an `mlflow-artifacts:` URI
/// (`mlflow-artifacts:/1/<run>/artifacts` or `mlflow-artifacts://host:port/1/<run>/artifacts`).
fn proxied_artifact_path(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map(|(_, p)| p)?,
        None => rest,
    };
    Some(path.trim_matches('/').to_string())
}

/// Logs the result folder `dir` (run.json, summary.json, report files) to MLflow.
pub async fn log_results(tracking: &Tracking, dir: &Path) -> Result<Logged, MlflowError> {
    let manifest = crate::results::read_manifest(dir).map_err(|e| MlflowError::File {
        path: dir.join(crate::results::MANIFEST_FILE),
        message: e.to_string(),
    })?;
    let run = serde_json::to_value(&manifest).unwrap_or_default();
    let summary = read_summary(dir)?;
    let client = client_for(tracking)?;

    let created = tracking.run_id.is_none();
    let target = match &tracking.run_id {
        Some(id) => existing_run(&client, id).await?,
        None => create_run(&client, &manifest.run_id).await?,
    };

    let params = run_params(&run);
    let metrics = numeric_leaves(&summary);
    log_params(&client, &target.run_id, &params).await?;
    log_metrics(&client, &target.run_id, &metrics).await?;
    let (artifacts, artifacts_skipped) =
        upload_artifacts(&client, dir, &target.artifact_uri).await?;

    if created {
        let status = match manifest.status {
            crate::results::RunStatus::Finished => "FINISHED",
            _ => "KILLED",
        };
        client
            .post(
                "mlflow/runs/update",
                json!({"run_id": target.run_id, "status": status, "end_time": now_ms()}),
                true,
            )
            .await?;
    }

    Ok(Logged {
        run_id: target.run_id,
        experiment_id: target.experiment_id,
        params: params.len(),
        metrics: metrics.len(),
        artifacts,
        artifacts_skipped,
    })
}

/// The MLflow run logged into.
struct TargetRun {
    run_id: String,
    experiment_id: String,
    artifact_uri: String,
}

/// `summary.json`, which exists only once the run was scored.
fn read_summary(dir: &Path) -> Result<Value, MlflowError> {
    let summary_path = dir.join("summary.json");
    if !summary_path.is_file() {
        return Err(MlflowError::File {
            path: summary_path,
            message: format!(
                "missing: score the run first (`evalr score {}`)",
                dir.display()
            ),
        });
    }
    read_json(&summary_path)
}

fn client_for(tracking: &Tracking) -> Result<Client, MlflowError> {
    Ok(Client {
        http: crate::backend::http_client::http_client(Duration::from_secs(120)).map_err(|e| {
            MlflowError::Http {
                base: tracking.base.clone(),
                endpoint: String::new(),
                message: e.to_string(),
            }
        })?,
        tracking: tracking.clone(),
    })
}

/// The run given by `MLFLOW_RUN_ID` (AzureML's job run).
async fn existing_run(client: &Client, id: &str) -> Result<TargetRun, MlflowError> {
    let info = client.get("mlflow/runs/get", &[("run_id", id)]).await?;
    let info = &info["run"]["info"];
    Ok(TargetRun {
        run_id: id.to_string(),
        experiment_id: info["experiment_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        artifact_uri: info["artifact_uri"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    })
}

/// A new run named after evalr's run id, in the configured experiment.
async fn create_run(client: &Client, evalr_run_id: &str) -> Result<TargetRun, MlflowError> {
    let experiment_id = client.experiment_id().await?;
    let name = Some(evalr_run_id)
        .filter(|n| !n.is_empty())
        .unwrap_or("evalr");
    let created = client
        .post(
            "mlflow/runs/create",
            json!({"experiment_id": experiment_id, "run_name": name, "start_time": now_ms(),
                   "tags": [{"key": "mlflow.runName", "value": name},
                            {"key": "mlflow.source.name", "value": "evalr"},
                            {"key": "evalr.run_id", "value": name}]}),
            false,
        )
        .await?;
    let info = &created["run"]["info"];
    let id = info["run_id"]
        .as_str()
        .ok_or_else(|| client.error("mlflow/runs/create", "the answer has no run_id"))?;
    Ok(TargetRun {
        run_id: id.to_string(),
        experiment_id,
        artifact_uri: info["artifact_uri"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    })
}

async fn log_params(
    client: &Client,
    run_id: &str,
    params: &[(String, String)],
) -> Result<(), MlflowError> {
    for chunk in params.chunks(MAX_PARAMS_PER_BATCH) {
        let params: Vec<Value> = chunk
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        client
            .post(
                "mlflow/runs/log-batch",
                json!({"run_id": run_id, "params": params}),
                true,
            )
            .await?;
    }
    Ok(())
}

async fn log_metrics(
    client: &Client,
    run_id: &str,
    metrics: &[(String, f64)],
) -> Result<(), MlflowError> {
    let timestamp = now_ms();
    for chunk in metrics.chunks(MAX_METRICS_PER_BATCH) {
        let metrics: Vec<Value> = chunk
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v, "timestamp": timestamp, "step": 0}))
            .collect();
        client
            .post(
                "mlflow/runs/log-batch",
                json!({"run_id": run_id, "metrics": metrics}),
                true,
            )
            .await?;
    }
    Ok(())
}

/// Uploads the artifact files through the tracking server's artifact proxy; the names
/// uploaded, or why nothing was.
async fn upload_artifacts(
    client: &Client,
    dir: &Path,
    artifact_uri: &str,
) -> Result<(Vec<String>, Option<String>), MlflowError> {
    let Some(root) = proxied_artifact_path(artifact_uri) else {
        return Ok((
            Vec::new(),
            Some(format!(
                "the run's artifacts live at '{artifact_uri}', which evalr does not upload to (it uploads through the mlflow-artifacts proxy of `mlflow server`); the report files stay in {}",
                dir.display()
            )),
        ));
    };
    let mut artifacts = Vec::new();
    for file in artifact_files(dir) {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let bytes = std::fs::read(&file).map_err(|e| MlflowError::File {
            path: file.clone(),
            message: e.to_string(),
        })?;
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{root}/{name}",
            client.tracking.base
        );
        let endpoint = format!("mlflow-artifacts/artifacts/{name}");
        client
            .send(&endpoint, |http| http.put(&url).body(bytes.clone()), true)
            .await?;
        artifacts.push(name);
    }
    Ok((artifacts, None))
}

/// For the end of `evalr run`: logs `dir` when `MLFLOW_TRACKING_URI` is set, else nothing.
pub async fn log_results_from_env(dir: &Path) -> Result<Option<Logged>, MlflowError> {
    match Tracking::from_env()? {
        Some(tracking) => log_results(&tracking, dir).await.map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azureml_uris_map_to_https() {
        assert_eq!(
            rest_base("azureml://eastus.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w").unwrap(),
            "https://eastus.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w"
        );
        assert_eq!(
            rest_base("http://127.0.0.1:5000/").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            rest_base("file:///tmp/mlruns").unwrap_err().to_string(),
            "MLFLOW_TRACKING_URI 'file:///tmp/mlruns' is not supported: evalr logs over HTTP to http(s):// and azureml:// tracking servers"
        );
    }

    #[test]
    fn artifact_proxy_paths() {
        assert_eq!(
            proxied_artifact_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxied_artifact_path("mlflow-artifacts://127.0.0.1:5000/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxied_artifact_path("azureml://experiments/x/runs/y/artifacts"),
            None
        );
    }
}
