//! Runs: plan, then execute.
//!
//! [`Plan::new`] resolves and checks everything before the first request (program, dataset,
//! rows, model, price, results folder); [`execute`] builds the backend, opens the journal
//! (`crate::results`) and hands the rows to the scheduler, which streams them through the
//! program with as many in flight as the quota allows and journals each as it finishes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub mod cache;
pub mod embed;
pub mod ensemble;
mod error;
pub mod judge;
mod models;
mod options;
mod picker;
mod plan;
mod progress;
mod row;
pub mod rows;
mod schedule;

pub use error::RunError;
pub use models::{build_backend, chat_setup};
pub use options::{ResumeOverrides, RunOptions};
pub use plan::{DryRunEstimate, Inputs, Plan, dry_run};
pub use row::{RetryPolicy, RowContext, RowFailure, row_context, run_row};

use crate::backend::Usage;
use crate::results::{Journal, ResultFolder, RunStatus, write_manifest};
use cache::ResponseCache;
use ensemble::EnsembleRunner;

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub folder: PathBuf,
    pub status: RunStatus,
    pub summary: crate::score::Summary,
}

/// Starts a new run, or resumes the one in `resume` (whose `run.json` gives the options).
pub async fn execute(
    options: RunOptions,
    resume: Option<(&Path, ResumeOverrides)>,
    show_progress: bool,
) -> Result<RunReport, RunError> {
    let plan = Plan::new(options, resume)?;
    execute_plan(plan, show_progress).await
}

/// Carries out a plan: the backend (the last check, it may fetch a token or load a model),
/// then the journal and `run.json`, the rows, and the reports.
pub async fn execute_plan(plan: Plan, show_progress: bool) -> Result<RunReport, RunError> {
    if show_progress {
        eprintln!("{}", plan.inputs.model_line());
    }
    // A batch run checks its model and credentials here too, before anything is sent.
    let batched = plan.options.batch.wanted(&plan.inputs.batch_profile()) || plan.ledger.is_some();
    if batched && plan.inputs.ensemble.is_some() {
        // A batch answers each request once, in rounds; repeats journaled per repeat
        // (repeats.jsonl) are not part of its ledger.
        return Err(RunError::Usage(
            "--batch does not run ensembles: drop --repeats (or the program's `ensemble:`), or run without --batch".into(),
        ));
    }
    let chat = if batched {
        Some(chat_setup(&plan.inputs.model, &plan.options).await?)
    } else {
        None
    };
    let backend = build_backend(&plan.inputs.model, &plan.options).await?;
    plan.inputs.check_program_settings(backend.capabilities())?;
    let picker = picker::build_picker(&plan.inputs, &plan.options, &backend, show_progress).await?;
    let mut manifest = plan.manifest(backend.identity());
    let ctx = Arc::new(RowContext {
        program: Arc::clone(&plan.inputs.program),
        backend: Arc::clone(&backend),
        cache: (!plan.options.no_cache).then(|| ResponseCache::new(&plan.options.cache_dir)),
        repeat: plan.options.repeat,
        retry: RetryPolicy {
            max_retries: plan.options.max_retries,
            initial_interval: Duration::from_secs_f64(plan.options.retry_interval_secs.max(0.0)),
            ..RetryPolicy::default()
        },
    });
    // Everything is checked: from here on, files are written and requests sent.
    let mut journal = Journal::open(&plan.folder)?;
    write_manifest(&plan.folder, &manifest)?;
    let status = match chat {
        Some(chat) => {
            schedule::schedule_batch(
                &plan,
                chat,
                picker.as_ref(),
                &mut journal,
                &mut manifest,
                show_progress,
            )
            .await?
        }
        None => {
            let ensemble = match plan.inputs.ensemble {
                Some(ensemble) => Some(EnsembleRunner::open(ensemble, &plan.folder)?),
                None => None,
            };
            let spent = spent_so_far(&plan)?;
            let concurrency = models::concurrency(&plan.inputs.model, &plan.options);
            let scheduled = schedule::Scheduled {
                ctx,
                picker: picker.as_ref(),
                ensemble: ensemble.as_ref(),
                concurrency,
            };
            schedule::schedule(&plan, scheduled, &mut journal, spent, show_progress).await?
        }
    };
    journal.sync()?;
    manifest.status = status;
    manifest.finished_at = Some(crate::results::now());
    manifest.quota = backend.quota_traces();
    write_manifest(&plan.folder, &manifest)?;
    // Every run ends scored: summary.json, report.md, outputs.parquet and charts.
    let summary = crate::score::score_folder(&plan.folder)?;
    crate::report::write_score_reports(&plan.folder, &summary)?;
    Ok(RunReport {
        folder: plan.folder,
        status,
        summary,
    })
}

/// What the rows already done cost: `--max-cost` is the budget of the whole run.
fn spent_so_far(plan: &Plan) -> Result<f64, RunError> {
    let Some(price) = &plan.inputs.price else {
        return Ok(0.0);
    };
    if plan.done.is_empty() {
        return Ok(0.0);
    }
    let mut usage = Usage::default();
    ResultFolder::open(&plan.folder)?.for_each_output(|_, record| {
        usage.add(record.usage);
        Ok::<_, crate::results::ResultsError>(())
    })?;
    Ok(price.cost(&usage))
}
