//! Command-line definitions and the edge that maps them onto the library. Exit codes are
//! decided in one place, [`exit`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod azureml;
pub mod batch;
pub mod datasets;
pub mod embed;
pub mod exit;
pub mod judge;
pub mod programs;
pub mod run;
pub mod score;
pub mod view;

#[derive(Debug, Parser)]
#[command(
    name = "evalr",
    version,
    about = "Evaluate large language models on MMLU-style datasets",
    after_help = exit::AFTER_HELP
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
    /// LLM-as-judge metrics (coherence, groundedness, any judge .prompty) over a run.
    Judge(Box<judge::JudgeArgs>),
    /// List, render and check programs (Prompty files).
    #[command(subcommand)]
    Programs(programs::ProgramsCommand),
    /// Join the shard folders of a sharded run (`--shard K/N`) into one result folder.
    Merge(azureml::MergeArgs),
    /// Get an Entra ID token as a keyless backend would, and say which credential gave it.
    AuthCheck(azureml::AuthCheckArgs),
    /// Log a scored result folder to MLflow (MLFLOW_TRACKING_URI): params, metrics, reports.
    MlflowLog(azureml::MlflowLogArgs),
    /// Score a result folder: summary.json, report.md, report.html, outputs.parquet, charts.
    Score(score::ScoreArgs),
    /// Compare runs row by row against the first (CI gate with --fail-if-worse).
    Compare(score::CompareArgs),
    /// List the runs under a results folder and serve their HTML pages on 127.0.0.1.
    View(view::ViewArgs),
    /// Embed a dataset's questions (one vector per row id) into a parquet file.
    Embed(Box<embed::EmbedArgs>),
    /// The batches of a batch run (`evalr run --batch`): status, cancel.
    #[command(subcommand)]
    Batch(batch::BatchCommand),
}

/// Writes a line to standard output, returning the error (a closed pipe is a quiet end, see
/// [`exit::is_broken_pipe`]) where `println!` would panic.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
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
        Command::Judge(args) => judge::execute_judge(*args),
        Command::Merge(args) => azureml::merge(args),
        Command::AuthCheck(args) => azureml::auth_check(args),
        Command::MlflowLog(args) => azureml::mlflow_log(args),
        Command::Score(args) => score::execute_score(args),
        Command::Compare(args) => score::execute_compare(args),
        Command::View(args) => view::execute_view(args),
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

/// The exit code of a failed command (see [`exit`]).
pub fn exit_code_for(error: &anyhow::Error) -> ExitCode {
    exit::Exit::of_error(error).into()
}
