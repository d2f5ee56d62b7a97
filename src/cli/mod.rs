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

pub mod datasets;

#[derive(Debug, Parser)]
#[command(name = "evalr", version, about = "Evaluate large language models on MMLU-style datasets")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch, convert, list and show datasets.
    #[command(subcommand)]
    Datasets(datasets::DatasetsCommand),
}

/// An error the user must fix before anything runs (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Datasets(command) => datasets::execute(command),
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
    if error.chain().any(|c| c.downcast_ref::<UsageError>().is_some()) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}
