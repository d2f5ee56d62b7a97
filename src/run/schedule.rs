//! The executor's loop: rows stream through the program with as many in flight as the quota
//! allows; each finished row is journaled at once; the stop rules (`--max-errors`,
//! `--max-cost`, an error that would fail every row, Ctrl-C) end the run cleanly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;

use super::ensemble::EnsembleRunner;
use super::error::RunError;
use super::plan::Plan;
use super::progress::Progress;
use super::row::{RowContext, RowFailure, run_row};
use crate::dataset::{Row, RowError};
use crate::examples::{ExamplePicker, Picked};
use crate::prices::Price;
use crate::results::{
    ErrorKind, ErrorRecord, Journal, OutputRecord, PickedExample, RunManifest, RunStatus, now,
    write_manifest,
};

/// How one row ended.
enum RowResult {
    Finished(Box<OutputRecord>),
    Failed { id: String, failure: RowFailure },
    Invalid(RowError),
}

/// The stop rules, fed row by row. The first rule to fire decides the status.
struct StopRules {
    stop: Arc<AtomicBool>,
    status: RunStatus,
    errors: u64,
    max_errors: Option<u64>,
    spent: f64,
    max_cost: Option<f64>,
    price: Option<Price>,
}

impl StopRules {
    fn stop_with(&mut self, status: RunStatus, message: String) {
        if self.status == RunStatus::Finished {
            eprintln!("{message}");
            self.stop.store(true, Ordering::SeqCst);
            self.status = status;
        }
    }

    fn finished(&mut self, record: &OutputRecord) {
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

    /// A row did not finish; `fatal` is the error when it would fail every row.
    fn failed(&mut self, fatal: Option<String>) {
        if let Some(failure) = fatal {
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

/// Ctrl-C stops taking rows (the rows in flight finish and are journaled); a second one
/// quits at once. Returns whether Ctrl-C was pressed.
fn watch_ctrl_c(stop: &Arc<AtomicBool>) -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let (stop, flag) = (Arc::clone(stop), Arc::clone(&interrupted));
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
            stop.store(true, Ordering::SeqCst);
            eprintln!(
                "\nstopping: finishing the rows in flight (Ctrl-C again to quit now; finished rows are on disk)"
            );
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    interrupted
}

/// The error line of a row that did not finish.
fn error_record(result: RowResult) -> Option<ErrorRecord> {
    let (id, file, line, kind, error, attempts) = match result {
        RowResult::Finished(_) => return None,
        RowResult::Failed { id, failure } => (
            Some(id),
            None,
            None,
            ErrorKind::Failed,
            failure.to_string(),
            failure.attempts(),
        ),
        RowResult::Invalid(invalid) => (
            None,
            Some(invalid.file.display().to_string()),
            Some(invalid.line),
            ErrorKind::InvalidRow,
            invalid.to_string(),
            0,
        ),
    };
    Some(ErrorRecord {
        id,
        file,
        line,
        kind,
        error,
        attempts,
        at: Some(now()),
    })
}

/// How each row is played: the row context, its examples' picker, the ensemble runner when
/// rows repeat, and how many rows are in flight at once.
pub(super) struct Scheduled<'a> {
    pub ctx: Arc<RowContext>,
    pub picker: Option<&'a ExamplePicker>,
    pub ensemble: Option<&'a EnsembleRunner>,
    pub concurrency: usize,
}

/// Runs the plan's remaining rows; returns how the run ended. `spent` is what the rows
/// already done cost (the budget is the whole run's).
pub(super) async fn schedule(
    plan: &Plan,
    scheduled: Scheduled<'_>,
    journal: &mut Journal,
    spent: f64,
    show_progress: bool,
) -> Result<RunStatus, RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = watch_ctrl_c(&stop);
    let mut progress = Progress::new(plan.selected, plan.done.len() as u64, show_progress);
    let mut rules = StopRules {
        stop: Arc::clone(&stop),
        status: RunStatus::Finished,
        errors: 0,
        max_errors: plan.options.max_errors,
        spent,
        max_cost: plan.options.max_cost,
        price: plan.inputs.price.clone(),
    };
    let rows = plan
        .inputs
        .rows(&plan.done)
        .take_while(|_| !stop.load(Ordering::SeqCst));
    let Scheduled {
        ctx,
        picker,
        ensemble,
        concurrency,
    } = scheduled;
    let shots = plan.inputs.shots;
    let mut results = futures::stream::iter(rows)
        .map(|item| {
            let ctx = Arc::clone(&ctx);
            let picked: Vec<Picked<'_>> = match (&item, picker) {
                (Ok(row), Some(picker)) => picker.pick(row, shots),
                _ => Vec::new(),
            };
            async move {
                let row = match item {
                    Ok(row) => row,
                    Err(invalid) => return RowResult::Invalid(invalid),
                };
                let refs: Vec<&Row> = picked.iter().map(|p| p.row).collect();
                let played = match ensemble {
                    Some(runner) => runner.run_row(&ctx, &row, &refs).await,
                    None => run_row(&ctx, &row, &refs).await,
                };
                match played {
                    Ok(mut record) => {
                        record.examples = picked
                            .iter()
                            .map(|p| PickedExample {
                                id: p.row.id.clone(),
                                similarity: p.similarity,
                            })
                            .collect();
                        RowResult::Finished(Box::new(record))
                    }
                    Err(failure) => RowResult::Failed {
                        id: row.id,
                        failure,
                    },
                }
            }
        })
        .buffer_unordered(concurrency);
    while let Some(result) = results.next().await {
        if let RowResult::Finished(record) = &result {
            journal.append_output(record)?;
            progress.row_done(record.outcome());
            rules.finished(record);
            continue;
        }
        let fatal = match &result {
            RowResult::Failed { failure, .. } if failure.is_fatal_for_run() => {
                Some(failure.to_string())
            }
            _ => None,
        };
        if let Some(record) = error_record(result) {
            journal.append_error(&record)?;
            progress.row_failed(&record.error);
        }
        rules.failed(fatal);
    }
    progress.finish();
    if interrupted.load(Ordering::SeqCst) && rules.status == RunStatus::Finished {
        rules.status = RunStatus::Interrupted;
    }
    Ok(rules.status)
}

/// A batch run (`--batch`): invalid rows are journaled as in a live run, the others go to
/// `crate::batch`, which records its batches in `run.json` as they change.
pub(super) async fn schedule_batch(
    plan: &Plan,
    (chat, quota): (
        crate::backend::openai::ChatConfig,
        crate::limiter::QuotaConfig,
    ),
    picker: Option<&ExamplePicker>,
    journal: &mut Journal,
    manifest: &mut RunManifest,
    show_progress: bool,
) -> Result<RunStatus, RunError> {
    let mut rows = Vec::new();
    for item in plan.inputs.rows(&plan.done) {
        match item {
            Ok(row) => {
                let examples: Vec<Row> = picker
                    .map(|p| {
                        p.pick(&row, plan.inputs.shots)
                            .into_iter()
                            .map(|picked| picked.row.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                rows.push((row, examples));
            }
            Err(invalid) => {
                if let Some(record) = error_record(RowResult::Invalid(invalid)) {
                    journal.append_error(&record)?;
                }
            }
        }
    }
    let folder = journal.folder().to_path_buf();
    let ledger = manifest.batch.clone().unwrap_or_default();
    let run_id = manifest.run_id.clone();
    let mut save = |ledger: &crate::batch::ledger::BatchLedger| {
        manifest.batch = Some(ledger.clone());
        write_manifest(&folder, manifest).map_err(RunError::from)
    };
    crate::batch::run_batched(crate::batch::BatchJob {
        rows,
        program: Arc::clone(&plan.inputs.program),
        chat,
        quota,
        options: &plan.options,
        profile: plan.inputs.batch_profile(),
        folder: &folder,
        run_id,
        journal,
        ledger,
        save: &mut save,
        show_progress,
    })
    .await
}
