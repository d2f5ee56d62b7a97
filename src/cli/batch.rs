//! `evalr batch status|cancel RUN`: the batches of a batch run.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::say;
use anyhow::Context;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Show the run's batches: status, requests completed and failed, file ids.
    Status {
        /// The run folder (results/<run-id>).
        run: PathBuf,
    },
    /// Cancel the run's batches still running on the service (what they finished is kept;
    /// `evalr run --resume RUN` sends the rest again).
    Cancel {
        /// The run folder (results/<run-id>).
        run: PathBuf,
    },
}

pub fn execute(command: BatchCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match command {
        BatchCommand::Status { run } => {
            let ledger = runtime.block_on(crate::run::batch_status(&run))?;
            say!(
                "{:<32} {:<12} {:>7} {:>10} {:>7}  input",
                "batch",
                "status",
                "lines",
                "completed",
                "failed"
            )?;
            for entry in &ledger.batches {
                say!(
                    "{:<32} {:<12} {:>7} {:>10} {:>7}  {}",
                    entry.batch_id.as_deref().unwrap_or("-"),
                    entry.status,
                    entry.lines,
                    entry.completed,
                    entry.failed,
                    entry.input
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        BatchCommand::Cancel { run } => {
            let cancelled = runtime.block_on(crate::run::batch_cancel(&run))?;
            if cancelled.is_empty() {
                say!("no batch of {} is running", run.display())?;
            }
            for (id, status) in cancelled {
                say!("{id}: {status}")?;
            }
            say!(
                "resume with `evalr run --resume {}`: what the batches finished is kept, the rest is sent again",
                run.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
