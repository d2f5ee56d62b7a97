//! What `evalr run` is asked: the options recorded in `run.json` (and read back by
//! `--resume`), and the few a resumed run may change.
//!
//! The options come in groups, one struct per concern, each flattened into the command line
//! (`#[command(flatten)]`) and into `run.json` (`#[serde(flatten)]`, so the file keeps its flat
//! keys): a new flag touches one group, and `run`, `judge` and `embed` share groups rather than
//! fields. The groups the row engine and the transports read live with them
//! (`crate::play::LimitOptions`, `crate::play::RetryOptions`, `crate::batch::BatchOptions`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::batch::BatchOptions;
pub use crate::play::{LimitOptions, RetryOptions};

/// Everything `evalr run` was asked, as recorded in `run.json` (no secrets: keys are read
/// from the environment each time).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOptions {
    pub program: String,
    pub dataset: String,
    /// The model spec (`--model`, or `--judge-model` for judge runs).
    pub model: Option<String>,
    #[serde(flatten)]
    pub folders: Folders,
    #[serde(flatten)]
    pub rows: RowOptions,
    #[serde(flatten)]
    pub examples: ExampleOptions,
    #[serde(flatten)]
    pub ensemble: EnsembleOptions,
    #[serde(flatten)]
    pub connection: ModelSettings,
    #[serde(flatten)]
    pub limits: LimitOptions,
    #[serde(flatten)]
    pub retries: RetryOptions,
    #[serde(flatten)]
    pub output: OutputOptions,
    /// `--batch` and its limits (absent from the run.json of older runs).
    #[serde(default)]
    pub batch: BatchOptions,
    /// Which repeat of the same requests this run is (`evalr judge --judge-repeats`): 0 for the
    /// first; any other value is part of every cache key, so a repeat asks the model again
    /// instead of reading the first answer back.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeat: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where programs and datasets are found by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct Folders {
    /// Folder of .prompty programs that add to or override the built-in ones.
    #[arg(long, env = "EVALR_PROGRAMS_DIR", default_value = "programs")]
    pub programs_dir: PathBuf,
    /// Folder of named datasets (datasets/NAME.jsonl).
    #[arg(long, default_value = "datasets", env = "EVALR_DATASETS_DIR")]
    pub datasets_dir: PathBuf,
}

impl Default for Folders {
    fn default() -> Self {
        Folders {
            programs_dir: "programs".into(),
            datasets_dir: "datasets".into(),
        }
    }
}

/// How the model is reached: the profiles file, timeouts, the local model's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct ModelSettings {
    /// Model profiles file (default: $EVALR_CONFIG, else ./evalr.toml if present).
    #[arg(long = "config")]
    pub config_file: Option<PathBuf>,
    /// Seconds before a request times out.
    #[arg(long = "request-timeout", default_value_t = 120.0)]
    pub request_timeout_secs: f64,
    /// CPU threads for the local model (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Local model: send raw text, no chat template.
    #[arg(long)]
    pub no_chat_template: bool,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            config_file: None,
            request_timeout_secs: 120.0,
            threads: None,
            no_chat_template: false,
        }
    }
}

impl ModelSettings {
    /// The timeout of one request.
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.request_timeout_secs.max(0.1))
    }
}

/// Which rows of the dataset a run takes (`--limit` is with the limits).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct RowOptions {
    /// Only these subjects (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub subjects: Option<Vec<String>>,
    /// A random sample of N rows, stratified by subject (reproducible with --seed).
    #[arg(long)]
    pub sample: Option<u64>,
    /// Seed for --sample and few-shot example choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run only shard K of N (0-based), or `auto` from the job's rank and size
    /// (OMPI_COMM_WORLD_RANK/SIZE, RANK/WORLD_SIZE, JOB_COMPLETION_INDEX + EVALR_SHARD_COUNT).
    /// Rows are assigned by a hash of their id; the shard writes into
    /// <results folder>/shard-K-of-N/ and takes 1/N of the quota.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<(u32, u32)>,
}

/// `K/N` (0-based) or `auto` (the rank and size an AzureML / MPI / PyTorch / Kubernetes job gives).
fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let spec = crate::dataset::shard::ShardSpec::from_arg(text).map_err(|e| e.to_string())?;
    Ok((spec.index, spec.count))
}

/// Few-shot examples: where they come from, how many, how they are picked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct ExampleOptions {
    /// Dataset the few-shot examples come from (default: the evaluated dataset itself, never
    /// the row under test).
    #[arg(long)]
    pub examples: Option<String>,
    /// Number of few-shot examples (default: the program's `examples.count`).
    #[arg(long)]
    pub shots: Option<usize>,
    /// How examples are picked: `knn` (nearest by embedding, see --embeddings-model) or
    /// `random` (default: the program's `examples.pick`, else random).
    #[arg(long)]
    #[serde(default)]
    pub pick: Option<crate::program::ExamplePick>,
    /// With --examples results/<run>: which of its rows serve as examples, `correct` (default)
    /// or `all`; their captures (e.g. `explanation`) become example fields.
    #[arg(long)]
    #[serde(default)]
    pub examples_where: Option<crate::examples::ExampleFilter>,
    /// The model that embeds pool and rows for --pick knn (same forms as --model; default:
    /// the run's model).
    #[arg(long)]
    #[serde(default)]
    pub embeddings_model: Option<String>,
    /// The pool's embeddings file for --pick knn (e.g. from `evalr embed`; default:
    /// results/embeddings/<pool>-<model hash>.parquet, computed when missing).
    #[arg(long)]
    #[serde(default)]
    pub pool_embeddings: Option<PathBuf>,
    /// The evaluated rows' embeddings file for --pick knn (default: as for the pool).
    #[arg(long)]
    #[serde(default)]
    pub row_embeddings: Option<PathBuf>,
}

/// Repeats of each row, and how they are shuffled and reduced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct EnsembleOptions {
    /// Play each row N times and reduce the answers (default: the program's `ensemble`).
    #[arg(long)]
    #[serde(default)]
    pub repeats: Option<u32>,
    /// Order of the choices in each repeat: none, plain-hunt or random (seeded by --seed).
    #[arg(long)]
    #[serde(default)]
    pub shuffle: Option<crate::program::Shuffle>,
    /// How repeats become the row's answer: majority, mode, mean, pass-at-k or all-correct.
    #[arg(long)]
    #[serde(default)]
    pub reduce: Option<crate::program::Reduce>,
}

/// Where the run folder goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct OutputOptions {
    /// Name of the run folder under results/ (default: PROGRAM-DATASET-TIMESTAMP).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Write the run into this folder instead of results/<run-id> (e.g. an AzureML output).
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
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
    /// The overrides a resumed run takes from its command line's limits.
    pub fn from_limits(limits: &LimitOptions) -> ResumeOverrides {
        ResumeOverrides {
            max_cost: limits.max_cost,
            max_errors: limits.max_errors,
            rpm: limits.quota.rpm,
            tpm: limits.quota.tpm,
            max_in_flight: limits.quota.max_in_flight,
        }
    }

    pub(super) fn apply(self, options: &mut RunOptions) {
        let limits = &mut options.limits;
        limits.max_cost = self.max_cost.or(limits.max_cost);
        limits.max_errors = self.max_errors.or(limits.max_errors);
        limits.quota.rpm = self.rpm.or(limits.quota.rpm);
        limits.quota.tpm = self.tpm.or(limits.quota.tpm);
        limits.quota.max_in_flight = self.max_in_flight.or(limits.quota.max_in_flight);
    }
}
