//! `run.json`: what a run was, complete enough to resume it, without secrets.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::prices::Price;

/// The version of the results folder format this evalr writes, recorded in `run.json` as
/// `schema_version`. Fields are only ever added (readers default them); a change that
/// renames or removes one raises it, and an evalr refuses folders newer than it knows.
/// `run.json` files without the field are version 1, the first format.
pub const SCHEMA_VERSION: u32 = 1;

fn first_version() -> u32 {
    1
}

/// How a run ended (or that it is still running).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Also what a `run.json` without status reads as: not known to have finished.
    #[default]
    Running,
    Finished,
    /// Stopped by Ctrl-C; resumable.
    Interrupted,
    /// Stopped once the spend reached `--max-cost`; resumable.
    StoppedMaxCost,
    /// Stopped once more rows than `--max-errors` had failed.
    StoppedMaxErrors,
    /// Stopped because an error would fail every row (bad key, unknown deployment).
    Failed,
}

impl RunStatus {
    /// How bad the ending is, for joining the statuses of several parts of one run (shards):
    /// the joined run has the status of its worst part, so a failure is never hidden behind
    /// a budget stop, and a part still running keeps the whole unfinished.
    pub fn severity(self) -> u8 {
        match self {
            RunStatus::Finished => 0,
            RunStatus::Running => 1,
            RunStatus::Interrupted => 2,
            RunStatus::StoppedMaxCost => 3,
            RunStatus::StoppedMaxErrors => 4,
            RunStatus::Failed => 5,
        }
    }

    /// The status of a run made of parts with these statuses (`Finished` for none).
    pub fn worst(statuses: impl IntoIterator<Item = RunStatus>) -> RunStatus {
        statuses
            .into_iter()
            .max_by_key(|s| s.severity())
            .unwrap_or(RunStatus::Finished)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Interrupted => "interrupted",
            RunStatus::StoppedMaxCost => "stopped_max_cost",
            RunStatus::StoppedMaxErrors => "stopped_max_errors",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// The `--dataset` the run was given.
    #[serde(default)]
    pub spec: String,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub sha256: String,
    /// Rows selected for this run (after --subjects, --sample, --limit, --shard).
    #[serde(default)]
    pub rows: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The backend's identity (`azure:https://.../gpt-4o`, `local:FILE@SHA`).
    #[serde(default)]
    pub identity: String,
    /// `azure`, `openai`, `azureml` or `local`.
    #[serde(default)]
    pub backend: String,
    /// The `--model` the run was given (a profile name, `azure:gpt-4o`, `local`).
    #[serde(default)]
    pub spec: String,
    /// The deployment (Azure OpenAI, AzureML endpoint) or model name the requests named.
    #[serde(default)]
    pub deployment: Option<String>,
    /// The price the run's budget used (see `crate::prices`); absent when none was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<Price>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: u32,
    pub count: u32,
}

/// One shard of a merged run, as `evalr merge` found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedShard {
    pub index: u32,
    pub count: u32,
    #[serde(default)]
    pub run_id: String,
    pub status: RunStatus,
    #[serde(default)]
    pub path: String,
}

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// The results folder format version (see [`SCHEMA_VERSION`]).
    #[serde(default = "first_version")]
    pub schema_version: u32,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub evalr_version: String,
    #[serde(default)]
    pub status: RunStatus,
    #[serde(default)]
    pub program: ProgramInfo,
    #[serde(default)]
    pub dataset: DatasetInfo,
    #[serde(default)]
    pub model: ModelInfo,
    /// The options the run was started with (flags and settings, never keys); `evalr run
    /// --resume` starts from them.
    #[serde(default)]
    pub config: Value,
    /// Set on the folder of one shard of a sharded run; `None` for whole runs.
    #[serde(default)]
    pub shard: Option<ShardInfo>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// The shards a merged run was joined from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedShard>,
    /// A batch run's batches: input files, file and batch ids, states (see `crate::batch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<super::batch_ledger::BatchLedger>,
    /// What each deployment's quota limiter learned (remote models): pace over time, changes
    /// of the requests in flight, 429s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quota: Vec<crate::limiter::DeploymentQuota>,
}

impl Default for RunManifest {
    /// An empty manifest of the current schema version, status `running`.
    fn default() -> Self {
        RunManifest {
            schema_version: SCHEMA_VERSION,
            run_id: String::new(),
            evalr_version: env!("CARGO_PKG_VERSION").to_string(),
            status: RunStatus::Running,
            program: ProgramInfo::default(),
            dataset: DatasetInfo::default(),
            model: ModelInfo::default(),
            config: Value::Null,
            shard: None,
            started_at: None,
            finished_at: None,
            merged_from: Vec::new(),
            batch: None,
            quota: Vec::new(),
        }
    }
}

impl RunManifest {
    /// A short name for reports: the run id, else the folder's name.
    pub fn name_or(&self, folder: &std::path::Path) -> String {
        if !self.run_id.is_empty() {
            return self.run_id.clone();
        }
        folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| folder.display().to_string())
    }

    /// Whether the run used the embedded local model.
    pub fn is_local(&self) -> bool {
        self.model.backend == "local" || self.model.identity.starts_with("local:")
    }

    /// The names the model is known by, most specific first (for price lookups, reports).
    pub fn model_names(&self) -> Vec<&str> {
        [
            self.model.deployment.as_deref(),
            Some(self.model.identity.as_str()),
        ]
        .into_iter()
        .flatten()
        .filter(|n| !n.is_empty())
        .collect()
    }

    /// The price of the run: the one it recorded, else (folders written before prices were
    /// recorded) the lookup of `crate::prices` on its model names.
    pub fn price(&self) -> Option<Price> {
        if let Some(price) = &self.model.prices {
            return Some(price.clone());
        }
        let names = self.model_names();
        crate::prices::lookup(
            crate::prices::PricedModel {
                profile: None,
                local: self.is_local(),
                names: &names,
            },
            &Default::default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_part_is_never_hidden_behind_a_budget_stop() {
        use RunStatus::*;
        assert_eq!(RunStatus::worst([StoppedMaxCost, Failed]), Failed);
        assert_eq!(RunStatus::worst([Failed, StoppedMaxCost]), Failed);
        assert_eq!(RunStatus::worst([Finished, Running]), Running);
        assert_eq!(
            RunStatus::worst([Finished, StoppedMaxErrors, StoppedMaxCost]),
            StoppedMaxErrors
        );
        assert_eq!(RunStatus::worst([]), Finished);
    }

    #[test]
    fn a_minimal_run_json_reads_with_defaults() {
        let manifest: RunManifest =
            serde_json::from_str(r#"{"run_id": "t", "status": "finished"}"#).unwrap();
        assert_eq!(manifest.schema_version, 1);
        assert_eq!(manifest.status, RunStatus::Finished);
        assert!(manifest.started_at.is_none());
    }
}
