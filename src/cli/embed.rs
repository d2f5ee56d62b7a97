//! `evalr embed`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::run::RunFlags;
use crate::run::embed::{EmbedJob, embed_dataset};
use crate::say;

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
    /// Quota, cache, retries and folders, as `evalr run` takes them.
    #[command(flatten)]
    pub flags: RunFlags,
}

pub fn execute_embed(args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let options = args
        .flags
        .options(String::new(), args.dataset.clone(), args.model.clone());
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let (path, stats) = runtime.block_on(embed_dataset(EmbedJob {
        dataset: args.dataset.clone(),
        output: args.output.clone(),
        options,
    }))?;
    say!(
        "{}: {} rows ({} computed in {} requests, {} from the file, {} from the cache; {} tokens)",
        path.display(),
        stats.rows,
        stats.computed,
        stats.requests,
        stats.stored,
        stats.cached,
        stats.prompt_tokens
    )?;
    Ok(ExitCode::SUCCESS)
}
