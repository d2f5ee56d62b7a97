//! Runs: plan, then execute.
//!
//! [`Plan::new`] resolves and checks everything before the first request (program, dataset,
//! rows, model, price, results folder); [`execute`] builds the backend, opens the journal
//! (`crate::results`) and hands the rows to the scheduler, which streams them through the
//! program with as many in flight as the quota allows and journals each as it finishes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

mod choice;
mod dry_run;
pub mod embed;
mod error;
pub mod judge;
mod models;
mod options;
mod picker;
mod plan;

pub use dry_run::{DryRunEstimate, dry_run};
pub use error::RunError;
pub use models::{build_backend, chat_setup};
pub use options::{
    BatchOptions, EnsembleOptions, ExampleOptions, Folders, LimitOptions, ModelSettings,
    OutputOptions, ResumeOverrides, RetryOptions, RowOptions, RunOptions,
};
pub use plan::{Inputs, Plan};

use crate::backend::Usage;
use crate::batch::BatchJob;
use crate::dataset::Row;
use crate::examples::ExamplePicker;
use crate::live::LiveJob;
use crate::play::{EnsembleRunner, RowContext, StopRules, invalid_record};
use crate::results::batch_ledger::BatchLedger;
use crate::results::{Journal, ResultFolder, RunManifest, RunStatus, write_manifest};

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub folder: PathBuf,
    pub status: RunStatus,
    pub summary: crate::score::Summary,
    /// Why nothing was answered, when every row tried failed (the run then failed).
    pub unanswered: Option<String>,
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
    let backends = models::build_backends(
        &plan.inputs.model,
        plan.inputs.embeddings_model.as_ref(),
        &plan.options,
    )
    .await?;
    let backend = Arc::clone(&backends.run);
    plan.inputs.check_program_settings(backend.capabilities())?;
    let picker = picker::build_picker(
        &plan.inputs,
        &plan.options,
        backends.embeddings.as_ref(),
        show_progress,
    )
    .await?;
    let mut manifest = plan.manifest(backend.identity());
    let ctx = Arc::new(RowContext {
        program: Arc::clone(&plan.inputs.program),
        backend: Arc::clone(&backend),
        cache: plan.options.retries.cache(),
        repeat: plan.options.repeat,
        retry: plan.options.retries.policy(),
    });
    // Everything is checked: from here on, files are written and requests sent.
    let mut journal = Journal::open(&plan.folder)?;
    write_manifest(&plan.folder, &manifest)?;
    let spent = spent_so_far(&plan)?;
    let rules = StopRules::new(&plan.options.limits, plan.inputs.price.clone(), spent);
    let status = match chat {
        Some(chat) => {
            play_batched(
                &plan,
                chat,
                rules,
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
            let job = LiveJob {
                rows: plan.inputs.rows(&plan.done),
                ctx,
                picker: picker.as_ref(),
                shots: plan.inputs.shots,
                ensemble: ensemble.as_ref(),
                concurrency: backends.run_concurrency,
                rules,
                selected: plan.selected,
                already_done: plan.done.len() as u64,
                show_progress,
            };
            crate::live::play_rows(job, &mut journal).await?
        }
    };
    journal.sync()?;
    let unanswered = journal.appended().nothing_answered(plan.done.len());
    // A run in which every row failed has evaluated nothing: it fails (exit 1) rather than
    // finish, so that a CI job gating on it never passes on nothing.
    let status = match (&unanswered, status) {
        (Some(_), RunStatus::Finished) => RunStatus::Failed,
        (_, status) => status,
    };
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
        unanswered,
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

/// A batch run (`--batch`): invalid rows are journaled as in a live run, the others go to
/// `crate::batch`, which records its batches in `run.json` as they change.
async fn play_batched(
    plan: &Plan,
    (chat, quota): (
        crate::backend::openai::ChatConfig,
        crate::limiter::QuotaConfig,
    ),
    rules: StopRules,
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
            Err(invalid) => journal.append_error(&invalid_record(&invalid))?,
        }
    }
    let folder = journal.folder().to_path_buf();
    let ledger = manifest.batch.clone().unwrap_or_default();
    let run_id = manifest.run_id.clone();
    let mut save = |ledger: &BatchLedger| {
        manifest.batch = Some(ledger.clone());
        write_manifest(&folder, manifest)
    };
    let status = crate::batch::run_batched(BatchJob {
        rows,
        program: Arc::clone(&plan.inputs.program),
        chat,
        quota,
        options: &plan.options.batch,
        retries: &plan.options.retries,
        request_timeout: plan.options.connection.request_timeout(),
        repeat: plan.options.repeat,
        rules,
        profile: plan.inputs.batch_profile(),
        folder: &folder,
        run_id,
        journal,
        ledger,
        save: &mut save,
        show_progress,
    })
    .await?;
    Ok(status)
}

/// `evalr batch status RUN`: the service's view of the run's batches.
pub async fn batch_status(folder: &Path) -> Result<BatchLedger, RunError> {
    let (api, manifest) = batch_api_for_run(folder).await?;
    let ledger = manifest.batch.clone().unwrap_or_default();
    Ok(crate::batch::status(&api, ledger).await?)
}

/// `evalr batch cancel RUN`: cancels the run's batches still running; returns (id, status).
pub async fn batch_cancel(folder: &Path) -> Result<Vec<(String, String)>, RunError> {
    let (api, mut manifest) = batch_api_for_run(folder).await?;
    let mut ledger = manifest.batch.clone().unwrap_or_default();
    let cancelled = crate::batch::cancel(&api, &mut ledger).await?;
    manifest.batch = Some(ledger);
    write_manifest(folder, &manifest)?;
    Ok(cancelled)
}

/// The batch API of the model a batch run used (from its `run.json`).
async fn batch_api_for_run(
    folder: &Path,
) -> Result<(crate::batch::protocol::BatchApi, RunManifest), RunError> {
    let manifest = crate::results::read_manifest(folder)?;
    if manifest.batch.is_none() {
        return Err(RunError::Usage(format!(
            "{} is not a batch run (its run.json records no batches)",
            folder.display()
        )));
    }
    let options: RunOptions =
        serde_json::from_value(manifest.config.clone()).map_err(|e| RunError::Resume {
            folder: folder.to_path_buf(),
            message: format!("run.json has no usable options ({e})"),
        })?;
    let (file, _) = crate::config::ConfigFile::load(options.connection.config_file.as_deref())?;
    let (spec, _) = crate::config::choose_model(options.model.as_deref(), &file);
    let resolved =
        crate::config::resolve_model(&spec, &file, crate::config::QuotaOverrides::default())?;
    let (chat, _) = chat_setup(&resolved, &options).await?;
    let api = crate::batch::protocol::BatchApi::new(
        chat.endpoint,
        chat.credential,
        options.connection.request_timeout(),
    )?;
    Ok((api, manifest))
}
