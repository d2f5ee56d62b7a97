//! Scoring: metrics and statistics over a result folder.
//!
//! `score` reads only result folders, through `crate::results`. The
//! statistics are pure functions over numbers, each in the file of its concern; this module
//! ties them to a folder: [`score_folder`] computes a [`Summary`]; `crate::report` writes it
//! (score never imports report: the flow is results -> score -> report).

use std::path::{Path, PathBuf};

use crate::results::{ResultFolder, ResultsError};

pub mod accuracy;
pub mod agreement;
pub mod calibration;
pub mod compare;
pub mod judge_answer;
pub mod judged;
pub mod quota;
pub mod stats;
pub mod summary;
pub mod text;

#[cfg(test)]
mod reference;

pub use compare::{Comparison, RunRows, compare};
pub use summary::{ScoreOptions, Summary};

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(transparent)]
    Results(#[from] ResultsError),
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
