//! What a run writes: `run.json`, one `outputs.jsonl` line per finished row, `errors.jsonl`.
//! The format is the contract with `score`, `compare` and `merge`; see the README.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backend::{SelectPath, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Correct,
    Wrong,
    /// The model's answer matched no option (kept apart from `wrong` in every count).
    Unparsed,
    /// The service's content filter refused the request.
    Refused,
    /// The row has no correct answer (or the program no answer select): nothing to score.
    Unscored,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRecord {
    pub capture: String,
    pub option: String,
    /// Index into the row's choices.
    pub index: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub capture: String,
    /// `select` or `gen`.
    pub kind: String,
    pub path: Option<SelectPath>,
    pub options: Option<Vec<String>>,
    pub chosen: Option<usize>,
    pub option_probs: Option<Vec<f64>>,
    pub text: Option<String>,
    pub usage: Usage,
    pub latency_ms: f64,
    pub attempts: u32,
    pub rate_limited: u32,
    pub cached: bool,
    /// The ensemble repeat that made the call (absent for repeat 0 and ordinary rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub id: String,
    pub row: Value,
    pub program: String,
    pub captures: Map<String, Value>,
    pub answer: Option<AnswerRecord>,
    pub outcome: Outcome,
    pub calls: Vec<CallRecord>,
    pub usage: Usage,
    pub latency_ms: f64,
    pub attempts: u32,
    pub rate_limited: u32,
    pub model: String,
    pub finished_at: String,
    /// Every request of the row was answered by a batch (`evalr run --batch`): the report
    /// prices it at the batch rate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
    /// The few-shot examples the row was shown, in prompt order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<PickedExample>,
    /// Repeats, votes and their reduction, when the row was ensembled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleRecord>,
}

/// One few-shot example chosen for a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickedExample {
    pub id: String,
    /// Cosine similarity of the example's embedding to the row's (`knn` picks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
}

/// How an ensembled row was decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleRecord {
    pub shuffle: crate::program::Shuffle,
    pub reduce: crate::program::Reduce,
    /// Votes per choice of the row (dataset order).
    pub votes: Vec<u32>,
    /// The row's option probabilities, in dataset order: the vote shares (`mean`: the mean
    /// option probabilities).
    pub option_probs: Vec<f64>,
    /// How the winner was found among tied choices, when there was a tie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_break: Option<String>,
    pub repeats: Vec<RepeatRecord>,
}

/// One repeat of an ensembled row: what it was shown and what it answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepeatRecord {
    pub repeat: u32,
    /// `permutation[i]` is the dataset index of the choice shown at position `i`.
    pub permutation: Vec<usize>,
    /// The option index the model chose among the shown options.
    pub chosen: Option<usize>,
    /// `chosen` mapped back to the dataset's choice order.
    pub answer: Option<usize>,
    /// The answer select's probabilities mapped back to the dataset's choice order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option_probs: Option<Vec<f64>>,
    pub outcome: Outcome,
    pub captures: Map<String, Value>,
    pub usage: Usage,
    pub requests: u32,
    pub cached: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidRow,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub kind: ErrorKind,
    pub error: String,
    pub attempts: u32,
    pub at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Finished,
    Interrupted,
    StoppedMaxErrors,
    StoppedMaxCost,
    /// Stopped because an error would fail every row (bad key, unknown deployment).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramInfo {
    pub name: String,
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub spec: String,
    pub files: Vec<String>,
    pub sha256: String,
    /// Rows selected for this run (after --subjects, --sample, --limit, --shard).
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub identity: String,
    pub backend: String,
    pub spec: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<crate::config::Prices>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: u32,
    pub count: u32,
}

/// `run.json`: what the run was, complete enough to resume it, without secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    pub run_id: String,
    pub evalr_version: String,
    pub status: RunStatus,
    pub program: ProgramInfo,
    pub dataset: DatasetInfo,
    pub model: ModelInfo,
    /// The options the run was started with (flags and settings, never keys).
    pub config: Value,
    pub shard: Option<ShardInfo>,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// A batch run's batches: input files, file and batch ids, states (see `crate::batch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<crate::batch::ledger::BatchLedger>,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
