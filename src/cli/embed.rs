//! `evalr embed`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::UsageError;
use crate::run::RunOptions;
use crate::run::embed::{EmbedJob, embed_dataset};

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Dataset name (datasets/NAME.jsonl), a .jsonl file, a folder, or a run folder.
    pub dataset: String,
    /// The embedding model: azure:DEPLOYMENT (an embeddings deployment), openai:MODEL, a
    /// profile, local or local:PATH.gguf (pooled hidden states of the GGUF model).
    #[arg(long)]
    pub model: Option<String>,
    /// The parquet file to write (default: results/embeddings/<dataset>-<model hash>.parquet,
    /// where `evalr run --pick knn` looks).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub rpm: Option<u32>,
    #[arg(long)]
    pub tpm: Option<u32>,
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    #[arg(long, default_value = crate::run::cache::DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    #[arg(long)]
    pub no_cache: bool,
    #[arg(long, default_value_t = 6)]
    pub max_retries: u32,
    #[arg(long, default_value_t = 0.5)]
    pub retry_interval: f64,
    #[arg(long, default_value_t = 120.0)]
    pub request_timeout: f64,
    /// CPU threads for the local model (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, default_value = "datasets")]
    pub datasets_dir: PathBuf,
}

pub fn execute_embed(args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let options = RunOptions {
        program: String::new(),
        programs_dir: PathBuf::from("programs"),
        dataset: args.dataset.clone(),
        datasets_dir: args.datasets_dir.clone(),
        examples: None,
        shots: None,
        model: args.model.clone(),
        config_file: args.config.clone(),
        rpm: args.rpm,
        tpm: args.tpm,
        max_in_flight: args.max_in_flight,
        limit: None,
        subjects: None,
        sample: None,
        seed: 0,
        shard: None,
        run_id: None,
        results_dir: None,
        cache_dir: args.cache_dir.clone(),
        no_cache: args.no_cache,
        max_cost: None,
        max_errors: None,
        max_retries: args.max_retries,
        retry_interval_secs: args.retry_interval,
        request_timeout_secs: args.request_timeout,
        threads: args.threads,
        no_chat_template: false,
        batch: Default::default(),
        pick: None,
        examples_where: None,
        embeddings_model: None,
        pool_embeddings: None,
        row_embeddings: None,
        repeats: None,
        shuffle: None,
        reduce: None,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let (path, stats) = runtime
        .block_on(embed_dataset(EmbedJob {
            dataset: args.dataset.clone(),
            output: args.output.clone(),
            options,
        }))
        .map_err(|error| {
            if error.is_usage() {
                anyhow::Error::new(UsageError(error.to_string()))
            } else {
                anyhow::Error::new(error)
            }
        })?;
    println!(
        "{}: {} rows ({} computed in {} requests, {} from the file, {} from the cache; {} tokens)",
        path.display(),
        stats.rows,
        stats.computed,
        stats.requests,
        stats.stored,
        stats.cached,
        stats.prompt_tokens
    );
    Ok(ExitCode::SUCCESS)
}
