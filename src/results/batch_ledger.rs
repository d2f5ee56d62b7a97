//! The batches of a run, as `run.json` records them (`batch.batches`): each input file with
//! its file and batch ids, the service's status and counts, and where its output went. It is
//! written before and after every step that talks to the service, so a run killed at any
//! moment is resumed without sending a request twice.

use serde::{Deserialize, Serialize};

/// Where an input file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Written locally; maybe uploaded (`input_file_id`), not yet a batch.
    Queued,
    /// A batch on the service (`batch_id`) that has not been downloaded.
    Submitted,
    /// The batch ended and its output and error files are in the run folder.
    Done,
    /// The service refused the batch for the enqueued-token quota and nothing else was in
    /// flight: its lines went into two smaller input files.
    Split,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchEntry {
    /// The input file, relative to the run folder (`batch/round-1-part-1.jsonl`).
    pub input: String,
    pub round: u32,
    pub lines: u64,
    /// Estimated tokens (prompt + max tokens of every line): what the batch enqueues.
    pub tokens: u64,
    /// Input lines name the deployment in `model` (Azure), which the live body has not.
    #[serde(default)]
    pub model_added: bool,
    pub state: EntryState,
    pub input_file_id: Option<String>,
    pub batch_id: Option<String>,
    /// The service's status (`validating`, `in_progress`, ..., `completed`), or `queued`.
    pub status: String,
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    /// The downloaded files, relative to the run folder.
    pub output_file: Option<String>,
    pub error_file: Option<String>,
    /// Batches the service refused for the enqueued-token quota before this one was taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// Why the batch ended as it did, when the service said (`token_limit_exceeded: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl BatchEntry {
    pub fn queued(input: String, round: u32, lines: u64, tokens: u64, model_added: bool) -> Self {
        BatchEntry {
            input,
            round,
            lines,
            tokens,
            model_added,
            state: EntryState::Queued,
            input_file_id: None,
            batch_id: None,
            status: "queued".into(),
            completed: 0,
            failed: 0,
            output_file_id: None,
            error_file_id: None,
            output_file: None,
            error_file: None,
            refused: Vec::new(),
            note: None,
        }
    }
}

/// `run.json`'s `batch` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchLedger {
    /// `azure` or `openai`: the API the batches were sent to.
    pub api: String,
    pub batches: Vec<BatchEntry>,
    /// The enqueued-token quota learned from refusals (when smaller than the configured one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_enqueued_tokens: Option<u64>,
}

impl BatchLedger {
    /// The round the next input files belong to.
    pub fn next_round(&self) -> u32 {
        self.batches.iter().map(|b| b.round).max().unwrap_or(0) + 1
    }

    /// Batches on the service that have not ended (what `evalr batch cancel` cancels).
    pub fn running(&self) -> impl Iterator<Item = &BatchEntry> {
        self.batches
            .iter()
            .filter(|b| b.state == EntryState::Submitted && b.batch_id.is_some())
    }

    pub fn is_settled(&self) -> bool {
        self.batches
            .iter()
            .all(|b| matches!(b.state, EntryState::Done | EntryState::Split))
    }
}
