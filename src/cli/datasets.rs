//! `evalr datasets ...`

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// List the datasets in `datasets/`.
    List,
}

pub fn execute(command: DatasetsCommand) -> anyhow::Result<ExitCode> {
    match command {
        DatasetsCommand::List => Ok(ExitCode::SUCCESS),
    }
}
