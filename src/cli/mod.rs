//! Command-line definitions and the edge that maps them onto the library.
//!
//! Exit codes (documented in the README):
//! - 0: success;
//! - 1: the command ran but its verdict is negative (`compare --fail-if-worse`, a run that
//!   stopped on `--max-errors`);
//! - 2: usage or configuration error (bad flag, missing setting, unreadable input): nothing
//!   was sent to a model.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod azureml;
pub mod batch;
pub mod datasets;
pub mod embed;
pub mod programs;
pub mod run;
pub mod score;

#[derive(Debug, Parser)]
#[command(
    name = "evalr",
    version,
    about = "Evaluate large language models on MMLU-style datasets"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch, convert, list and show datasets.
    #[command(subcommand)]
    Datasets(datasets::DatasetsCommand),
    /// Run a program over a dataset against a model; writes results/<run-id>/.
    Run(Box<run::RunArgs>),
    /// LLM-as-judge metrics (groundedness, coherence, fluency, relevance, similarity) over a run.
    Judge(Box<run::JudgeArgs>),
    /// List, render and check programs (Prompty files).
    #[command(subcommand)]
    Programs(programs::ProgramsCommand),
    /// Join the shard folders of a sharded run (`--shard K/N`) into one result folder.
    Merge(azureml::MergeArgs),
    /// Get an Entra ID token as a keyless backend would, and say which credential gave it.
    AuthCheck(azureml::AuthCheckArgs),
    /// Log a scored result folder to MLflow (MLFLOW_TRACKING_URI): params, metrics, reports.
    MlflowLog(azureml::MlflowLogArgs),
    /// Score a result folder: summary.json, report.md, outputs.parquet, charts.
    Score(score::ScoreArgs),
    /// Compare runs row by row against the first (CI gate with --fail-if-worse).
    Compare(score::CompareArgs),
    /// Embed a dataset's questions (one vector per row id) into a parquet file.
    Embed(Box<embed::EmbedArgs>),
    /// The batches of a batch run (`evalr run --batch`): status, cancel.
    #[command(subcommand)]
    Batch(batch::BatchCommand),
}

/// An error the user must fix before anything runs (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Datasets(command) => datasets::execute(command),
        Command::Run(args) => run::execute_run(*args),
        Command::Programs(command) => programs::execute(command),
        Command::Judge(args) => run::execute_judge(*args),
        Command::Merge(args) => azureml::merge(args),
        Command::AuthCheck(args) => azureml::auth_check(args),
        Command::MlflowLog(args) => azureml::mlflow_log(args),
        Command::Score(args) => score::execute_score(args),
        Command::Compare(args) => score::execute_compare(args),
        Command::Embed(args) => embed::execute_embed(*args),
        Command::Batch(command) => batch::execute(command),
    }
}

/// The error chain on one line: "outer: inner: root".
pub fn describe_error(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

pub fn exit_code_for(error: &anyhow::Error) -> ExitCode {
    let is_usage = |cause: &(dyn std::error::Error + 'static)| {
        cause.downcast_ref::<UsageError>().is_some()
            || cause.downcast_ref::<crate::dataset::RowError>().is_some()
            || cause
                .downcast_ref::<crate::dataset::DatasetError>()
                .is_some_and(|e| e.is_usage())
    };
    if error.chain().any(is_usage) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}
