//! The live transport: rows stream through the program with as many in flight as the quota
//! allows, each call sent now (through the backend's limiter); each finished row is journaled
//! at once; the stop rules (`crate::play::StopRules`) and Ctrl-C end the run cleanly.

mod progress;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;

use crate::dataset::{Row, RowError};
use crate::examples::{ExamplePicker, Picked};
use crate::play::{
    EnsembleRunner, Interrupt, RowContext, RowFailure, StopRules, failure_record, invalid_record,
    run_row,
};
use crate::results::{Journal, OutputRecord, PickedExample, ResultsError, RunStatus};
use progress::Progress;

/// How one row ended.
enum RowResult {
    Finished(Box<OutputRecord>),
    Failed { id: String, failure: RowFailure },
    Invalid(RowError),
}

/// The rows of a run and how to play them.
pub struct LiveJob<'a, R> {
    /// The rows still to play, in dataset order (invalid lines as errors).
    pub rows: R,
    pub ctx: Arc<RowContext>,
    /// Picks each row's few-shot examples.
    pub picker: Option<&'a ExamplePicker>,
    pub shots: usize,
    /// Plays each row as an ensemble of repeats.
    pub ensemble: Option<&'a EnsembleRunner>,
    /// Rows in flight at once.
    pub concurrency: usize,
    pub rules: StopRules,
    /// Rows selected in all, and how many of them were done before (for the progress bar).
    pub selected: u64,
    pub already_done: u64,
    pub show_progress: bool,
}

/// Plays the rows; returns how the run ended. Only a journal that cannot be written fails it.
pub async fn play_rows<'a, R>(
    job: LiveJob<'a, R>,
    journal: &mut Journal,
) -> Result<RunStatus, ResultsError>
where
    R: Iterator<Item = Result<Row, RowError>> + 'a,
{
    let LiveJob {
        rows,
        ctx,
        picker,
        shots,
        ensemble,
        concurrency,
        mut rules,
        selected,
        already_done,
        show_progress,
    } = job;
    let stop = rules.stop_flag();
    let interrupt = Interrupt::install(
        Some(Arc::clone(&stop)),
        Some(
            "stopping: finishing the rows in flight (Ctrl-C again to quit now; finished rows are on disk)",
        ),
    );
    let mut progress = Progress::new(selected, already_done, show_progress);
    let rows = rows.take_while(|_| !stop.load(Ordering::SeqCst));
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
        let (record, failure) = match result {
            RowResult::Finished(record) => {
                journal.append_output(&record)?;
                progress.row_done(record.outcome());
                rules.finished(&record);
                continue;
            }
            RowResult::Failed { id, failure } => (failure_record(id, &failure), Some(failure)),
            RowResult::Invalid(invalid) => (invalid_record(&invalid), None),
        };
        journal.append_error(&record)?;
        progress.row_failed(&record.error);
        rules.failed(failure.as_ref());
    }
    progress.finish();
    if interrupt.is_set() {
        rules.interrupted();
    }
    Ok(rules.status())
}
