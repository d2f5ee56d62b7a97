//! What `evalr run` is asked: the options recorded in `run.json` (and read back by
//! `--resume`), and the few a resumed run may change.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything `evalr run` was asked, as recorded in `run.json` (no secrets: keys are read
/// from the environment each time).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOptions {
    pub program: String,
    pub programs_dir: PathBuf,
    pub dataset: String,
    pub datasets_dir: PathBuf,
    pub examples: Option<String>,
    pub shots: Option<usize>,
    pub model: Option<String>,
    pub config_file: Option<PathBuf>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub max_in_flight: Option<usize>,
    pub limit: Option<u64>,
    pub subjects: Option<Vec<String>>,
    pub sample: Option<u64>,
    pub seed: u64,
    pub shard: Option<(u32, u32)>,
    pub run_id: Option<String>,
    pub results_dir: Option<PathBuf>,
    pub cache_dir: PathBuf,
    pub no_cache: bool,
    pub max_cost: Option<f64>,
    pub max_errors: Option<u64>,
    pub max_retries: u32,
    pub retry_interval_secs: f64,
    pub request_timeout_secs: f64,
    pub threads: Option<usize>,
    pub no_chat_template: bool,
    /// How examples are picked (default: the program's `examples.pick`, else random).
    #[serde(default)]
    pub pick: Option<crate::program::ExamplePick>,
    /// Which rows of a run folder given as `--examples` serve as examples.
    #[serde(default)]
    pub examples_where: Option<crate::examples::ExampleFilter>,
    /// The model that embeds pool and rows for `--pick knn` (default: the run's model).
    #[serde(default)]
    pub embeddings_model: Option<String>,
    /// The pool's embeddings file (default: under `results/embeddings/`, named by dataset
    /// and model).
    #[serde(default)]
    pub pool_embeddings: Option<PathBuf>,
    /// The evaluated rows' embeddings file (default: as for the pool).
    #[serde(default)]
    pub row_embeddings: Option<PathBuf>,
    /// Repeats of each row (default: the program's `ensemble.repeats`).
    #[serde(default)]
    pub repeats: Option<u32>,
    #[serde(default)]
    pub shuffle: Option<crate::program::Shuffle>,
    #[serde(default)]
    pub reduce: Option<crate::program::Reduce>,
    /// `--batch` and its limits (absent from the run.json of older runs).
    #[serde(default)]
    pub batch: crate::batch::BatchOptions,
    /// Which repeat of the same requests this run is (`evalr judge --judge-repeats`): 0 for the
    /// first; any other value is part of every cache key, so a repeat asks the model again
    /// instead of reading the first answer back.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeat: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Settings a resumed run may change (everything else comes from its `run.json`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ResumeOverrides {
    pub max_cost: Option<f64>,
    pub max_errors: Option<u64>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub max_in_flight: Option<usize>,
}

impl ResumeOverrides {
    pub(super) fn apply(self, options: &mut RunOptions) {
        options.max_cost = self.max_cost.or(options.max_cost);
        options.max_errors = self.max_errors.or(options.max_errors);
        options.rpm = self.rpm.or(options.rpm);
        options.tpm = self.tpm.or(options.tpm);
        options.max_in_flight = self.max_in_flight.or(options.max_in_flight);
    }
}
