//! `evalr merge` and `evalr mlflow-log`: the AzureML edge's commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::azureml::merge::{self, RowOrder};

/// `evalr merge SHARD_DIR... --out DIR`
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shard folders (`shard-K-of-N/`, each with its run.json), or folders holding them
    /// (the `--results-dir` the shards shared).
    #[arg(required = true, value_name = "SHARD_DIR")]
    pub inputs: Vec<PathBuf>,
    /// The merged result folder to write (must not already hold a run).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let summary = merge::merge(&args.inputs, &args.out).map_err(|e| match e {
        // Every merge refusal means the inputs or --out must change: nothing was written.
        merge::MergeError::Io { .. } => anyhow::Error::new(e),
        other => anyhow::Error::new(super::UsageError(other.to_string())),
    })?;
    for warning in &summary.warnings {
        eprintln!("warning: {warning}");
    }
    let order = match summary.order {
        RowOrder::Dataset => "dataset order",
        RowOrder::NaturalId => "id order (dataset files not readable here)",
    };
    eprintln!(
        "merged {} shards into {}: {} rows, {} errors, status {} ({order}; {} duplicate output lines and {} superseded error lines dropped)",
        summary.shards,
        args.out.display(),
        summary.outputs,
        summary.errors,
        summary.status,
        summary.duplicate_outputs,
        summary.dropped_errors,
    );
    Ok(ExitCode::SUCCESS)
}
