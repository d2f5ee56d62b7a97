//! The results folder: the format every part of evalr reads and writes through this module.
//!
//! ```text
//! results/<run-id>/
//!   run.json        what the run was (RunManifest), with schema_version
//!   outputs.jsonl   one OutputRecord per finished row, append-only
//!   errors.jsonl    one ErrorRecord per row that did not finish
//!   repeats.jsonl   ensemble runs: one RepeatLine per finished repeat (for resume)
//!   judge/, judged.jsonl   `evalr judge`'s folders and per-row fields (see `judged.rs`)
//! ```
//!
//! `run` writes through [`Journal`] and [`write_manifest`]; `score`, `compare`, `judge`,
//! `merge`, MLflow and the parquet export read through [`ResultFolder`], [`for_each_line`]
//! and [`finished_ids`]. Nothing else parses these files. The user documentation of the
//! format is `docs/results.md`.

pub mod batch_ledger;
mod judged;
mod manifest;
mod reader;
mod record;
mod writer;

use std::path::PathBuf;

pub use judged::{
    JUDGE_FOLDER, JUDGE_MANIFEST, JUDGED_ROWS_FILE, JudgeFolder, JudgeManifest, JudgedRowLine,
    REPEATS_FOLDER, judge_folders, judge_metric, judged_id, write_judged_rows,
};
pub use manifest::{
    DatasetInfo, MergedShard, ModelInfo, ProgramInfo, RunManifest, RunStatus, SCHEMA_VERSION,
    ShardInfo,
};
pub use reader::{
    Line, ReadNotes, ResultFolder, finished_ids, finished_repeats, for_each_line, read_manifest,
    read_optional,
};
pub use record::{
    AnswerRecord, AnswerSelect, CallKind, CallRecord, EnsembleRecord, ErrorKind, ErrorRecord,
    FinishedRow, Outcome, OutputRecord, PickedExample, RepeatLine, RepeatRecord, now,
};
pub use writer::{Appended, Journal, RepeatJournal, write_folder, write_lines, write_manifest};

pub const MANIFEST_FILE: &str = "run.json";
pub const OUTPUTS_FILE: &str = "outputs.jsonl";
pub const ERRORS_FILE: &str = "errors.jsonl";
pub const REPEATS_FILE: &str = "repeats.jsonl";

/// Why a results folder could not be read or written. Each names the file (and line).
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("results folder {0} does not exist or is not a folder")]
    NotAFolder(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// (`error` is shown in the message, with the file's line instead of serde's, so it is
    /// not also a `source`: the error chain would print it twice.)
    #[error("{} line {line} column {}: not a valid record: {}", path.display(), error.column(), json_message(error))]
    Json {
        path: PathBuf,
        line: u64,
        error: serde_json::Error,
    },
    #[error("{} line {line}: row id {id:?} already appeared on line {first_line}", path.display())]
    DuplicateId {
        path: PathBuf,
        line: u64,
        id: String,
        first_line: u64,
    },
    #[error(
        "{} has schema_version {found}, newer than this evalr reads ({supported}): upgrade evalr",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
}

/// serde_json's message without its own " at line L column C" (the line it counts is the
/// line inside one JSONL record, not the file's).
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}
