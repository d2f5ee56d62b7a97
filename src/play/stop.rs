//! The stop rules of a run, fed row by row by whichever transport plays the rows
//! (`--max-errors`, `--max-cost`, an error that would fail every row), and the error lines of
//! rows that did not finish. The first rule to fire decides how the run ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::failure::RowFailure;
use crate::config::QuotaOverrides;
use crate::dataset::RowError;
use crate::prices::Price;
use crate::results::{ErrorKind, ErrorRecord, OutputRecord, RunStatus, now};

/// Limits and quota: how many rows, how fast, and when a run stops on its own. One group of
/// `evalr run`'s options (shared by `judge` and `embed`), recorded flat in `run.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct LimitOptions {
    /// Take at most N rows (after --subjects and --sample).
    #[arg(long)]
    pub limit: Option<u64>,
    #[command(flatten)]
    #[serde(flatten)]
    pub quota: QuotaOverrides,
    /// Stop cleanly (resumable, exit code 4) once the spend reaches this many dollars. Needs
    /// the model's price (profile, the config's [prices], or the shipped table): refused
    /// before the first request otherwise.
    #[arg(long)]
    pub max_cost: Option<f64>,
    /// Stop (exit code 3) once more than N rows have failed for good.
    #[arg(long)]
    pub max_errors: Option<u64>,
}

/// The stop rules of one run.
pub struct StopRules {
    /// Set when a rule fires (or Ctrl-C is pressed): take no more rows.
    stop: Arc<AtomicBool>,
    status: RunStatus,
    errors: u64,
    max_errors: Option<u64>,
    spent: f64,
    max_cost: Option<f64>,
    price: Option<Price>,
}

impl StopRules {
    /// Rules for a run that has already spent `spent` dollars (the budget is the whole run's).
    pub fn new(limits: &LimitOptions, price: Option<Price>, spent: f64) -> StopRules {
        StopRules {
            stop: Arc::new(AtomicBool::new(false)),
            status: RunStatus::Finished,
            errors: 0,
            max_errors: limits.max_errors,
            spent,
            max_cost: limits.max_cost,
            price,
        }
    }

    /// The flag a transport checks before taking another row.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// How the run ends so far: `Finished` until a rule fires.
    pub fn status(&self) -> RunStatus {
        self.status
    }

    /// The run was interrupted (Ctrl-C); a rule that fired first keeps its status.
    pub fn interrupted(&mut self) {
        if self.status == RunStatus::Finished {
            self.status = RunStatus::Interrupted;
        }
    }

    fn stop_with(&mut self, status: RunStatus, message: String) {
        if self.status == RunStatus::Finished {
            eprintln!("{message}");
            self.stop.store(true, Ordering::SeqCst);
            self.status = status;
        }
    }

    /// A row finished: its cost counts against `--max-cost`.
    pub fn finished(&mut self, record: &OutputRecord) {
        if let Some(price) = &self.price {
            self.spent += price.cost(&record.usage);
        }
        if let Some(max) = self.max_cost
            && self.spent >= max
        {
            let spent = self.spent;
            self.stop_with(
                RunStatus::StoppedMaxCost,
                format!(
                    "stopping: spent ${spent:.4}, reaching --max-cost ${max}; resume later with --resume"
                ),
            );
        }
    }

    /// A row did not finish (`failure` is `None` for an invalid dataset line).
    pub fn failed(&mut self, failure: Option<&RowFailure>) {
        if let Some(failure) = failure.filter(|f| f.is_fatal_for_run()) {
            self.stop_with(
                RunStatus::Failed,
                format!("error: {failure}\nstopping: this error would fail every row"),
            );
        }
        self.errors += 1;
        if let Some(max) = self.max_errors
            && self.errors > max
        {
            let errors = self.errors;
            self.stop_with(
                RunStatus::StoppedMaxErrors,
                format!(
                    "stopping: {errors} rows failed, more than --max-errors {max}; see errors.jsonl"
                ),
            );
        }
    }
}

/// The error line of a row that failed.
pub fn failure_record(id: String, failure: &RowFailure) -> ErrorRecord {
    ErrorRecord {
        id: Some(id),
        file: None,
        line: None,
        kind: ErrorKind::Failed,
        error: failure.to_string(),
        attempts: failure.attempts(),
        at: Some(now()),
    }
}

/// The error line of a dataset line that is not a valid row.
pub fn invalid_record(invalid: &RowError) -> ErrorRecord {
    ErrorRecord {
        id: None,
        file: Some(invalid.file.display().to_string()),
        line: Some(invalid.line),
        kind: ErrorKind::InvalidRow,
        error: invalid.to_string(),
        attempts: 0,
        at: Some(now()),
    }
}
