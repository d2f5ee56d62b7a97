//! Scoring: metrics and statistics over a result folder.
//!
//! `score` reads only result folders (the format `evalr run` writes, see the README). The
//! statistics are pure functions over numbers, each in the file of its concern; this module
//! ties them to a folder: [`score_folder`] computes a [`Summary`], [`write_reports`] writes
//! `summary.json`, `report.md`, `outputs.parquet` and the charts beside the results.

use std::path::{Path, PathBuf};

pub mod accuracy;
pub mod agreement;
pub mod calibration;
pub mod compare;
pub mod folder;
pub mod judge_answer;
pub mod judged;
pub mod prices;
pub mod stats;
pub mod summary;
pub mod text;

#[cfg(test)]
mod reference;

pub use compare::{Comparison, RunRows, compare};
pub use folder::{Outcome, OutputRecord, ResultFolder};
pub use summary::{ScoreOptions, Summary};

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("results folder {0} does not exist or is not a folder")]
    NotAFolder(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line} column {}: not a valid record: {}", source.column(), json_message(source))]
    Json {
        path: PathBuf,
        line: u64,
        source: serde_json::Error,
    },
    #[error("{path} line {line}: row id {id:?} already appeared on line {first_line}")]
    DuplicateId {
        path: PathBuf,
        line: u64,
        id: String,
        first_line: u64,
    },
    #[error(
        "{a} and {b} cover different rows ({only_a} only in the first, {only_b} only in the second, e.g. {example:?}); pass --intersect to compare the {shared} shared rows"
    )]
    DifferentRows {
        a: String,
        b: String,
        only_a: usize,
        only_b: usize,
        shared: usize,
        example: String,
    },
    #[error("the runs share no row id: nothing to compare")]
    NoSharedRows,
    #[error("compare needs at least two result folders")]
    TooFewRuns,
    #[error("writing {path}: {message}")]
    Write { path: PathBuf, message: String },
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

/// Score the result folder at `path`.
pub fn score_folder(path: &Path) -> Result<Summary, ScoreError> {
    score_folder_with(path, &ScoreOptions::default())
}

/// Score the result folder at `path` with non-default options.
pub fn score_folder_with(path: &Path, options: &ScoreOptions) -> Result<Summary, ScoreError> {
    let folder = ResultFolder::open(path)?;
    let mut summary = summary::summarise_folder_with(&folder, options)?;
    // `evalr judge` writes one judge run per metric into `judge/<metric>/`: their scores are
    // part of this run's summary, so scoring again never drops them.
    let judges = judged::score_judges(path, options.judge_threshold)?;
    summary.attach_judged(judges.metrics);
    summary.judge_agreement = judges.agreement;
    Ok(summary)
}

/// Where `evalr judge` writes its judge runs inside a result folder.
pub const JUDGE_FOLDER: &str = "judge";

/// Write `summary.json`, `report.md`, `outputs.parquet` and (when option probabilities exist)
/// `calibration.svg` into the result folder at `path`.
pub fn write_reports(path: &Path, summary: &Summary) -> Result<(), ScoreError> {
    let folder = ResultFolder::open(path)?;
    crate::report::write_score_reports(&folder, summary)?;
    judged::write_judged_rows(path, &summary.judged).map(|_| ())
}
