//! Runs: scheduling, retries, the journal, resume.
//!
//! Everything is resolved and checked before the first request (program, dataset, model,
//! credentials, results folder); then rows stream through the program with as many in flight
//! as the quota allows, and each finished row is appended to `outputs.jsonl` at once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

pub mod cache;
pub mod journal;
pub mod judge;
mod models;
mod progress;
pub mod record;
mod row;
pub mod rows;

pub use models::{build_backend, chat_setup};
pub use row::{RetryPolicy, RowContext, RowFailure, row_context, run_row};

use crate::backend::Backend;
use crate::config::{ConfigError, ConfigFile, QuotaOverrides, ResolvedModel, resolve_model};
use crate::dataset::{DatasetError, DatasetSource, Row};
use crate::program::{Program, ProgramError, load_program};
use cache::ResponseCache;
use journal::Journal;
use record::{
    DatasetInfo, ErrorKind, ErrorRecord, ModelInfo, ProgramInfo, RunManifest, RunStatus, ShardInfo,
    now_rfc3339,
};

/// How one row ended.
enum RowResult {
    Finished(Box<record::OutputRecord>),
    Failed { id: String, failure: RowFailure },
    Invalid(crate::dataset::RowError),
}
use rows::{ExamplePool, RowSelection, stratified_sample};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot resume {}: {message}", folder.display())]
    Resume { folder: PathBuf, message: String },
    #[error("the model cannot be used: {0}")]
    Backend(String),
    #[error("the run finished but could not be scored: {0}")]
    Score(#[from] crate::score::ScoreError),
    #[error("batch: {0}")]
    Batch(#[from] crate::batch::BatchError),
}

impl RunError {
    /// Errors found before anything was sent: the user must fix input or configuration.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            RunError::Io { .. } | RunError::Score(_) | RunError::Batch(_)
        )
    }
}

/// Everything `evalr run` was asked, as recorded in `run.json` (no secrets: keys are read
/// from the environment each time).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOptions {
    pub program: String,
    pub programs_dir: PathBuf,
    pub dataset: String,
    pub datasets_dir: PathBuf,
    pub examples: Option<String>,
    pub shots: Option<usize>,
    pub model: Option<String>,
    pub config_file: Option<PathBuf>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub max_in_flight: Option<usize>,
    pub limit: Option<u64>,
    pub subjects: Option<Vec<String>>,
    pub sample: Option<u64>,
    pub seed: u64,
    pub shard: Option<(u32, u32)>,
    pub run_id: Option<String>,
    pub results_dir: Option<PathBuf>,
    pub cache_dir: PathBuf,
    pub no_cache: bool,
    pub max_cost: Option<f64>,
    pub max_errors: Option<u64>,
    pub max_retries: u32,
    pub retry_interval_secs: f64,
    pub request_timeout_secs: f64,
    pub threads: Option<usize>,
    pub no_chat_template: bool,
    /// `--batch` and its limits (absent from the run.json of older runs).
    #[serde(default)]
    pub batch: crate::batch::BatchOptions,
    /// Which repeat of the same requests this run is (`evalr judge --judge-repeats`): 0 for the
    /// first; any other value is part of every cache key, so a repeat asks the model again
    /// instead of reading the first answer back.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeat: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Settings a resumed run may change (everything else comes from its `run.json`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ResumeOverrides {
    pub max_cost: Option<f64>,
    pub max_errors: Option<u64>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub max_in_flight: Option<usize>,
}

impl ResumeOverrides {
    fn apply(self, options: &mut RunOptions) {
        options.max_cost = self.max_cost.or(options.max_cost);
        options.max_errors = self.max_errors.or(options.max_errors);
        options.rpm = self.rpm.or(options.rpm);
        options.tpm = self.tpm.or(options.tpm);
        options.max_in_flight = self.max_in_flight.or(options.max_in_flight);
    }
}

/// How the run ended, for the exit code.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub folder: PathBuf,
    pub status: RunStatus,
    pub summary: crate::score::Summary,
}

/// What a dry run found.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunEstimate {
    pub rows: u64,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Option<f64>,
    /// The run would go through batches: `cost` is at the batch rate.
    pub batch: bool,
}

/// Resolved before the first request.
struct Prepared {
    program: Arc<Program>,
    source: DatasetSource,
    selection: RowSelection,
    examples: Option<ExamplePool>,
    shots: usize,
    resolved: ResolvedModel,
}

fn prepare(options: &RunOptions) -> Result<Prepared, RunError> {
    let program = Program::compile(load_program(&options.program, &options.programs_dir)?)?;
    let source = DatasetSource::resolve(&options.dataset, &options.datasets_dir)?;
    let shots = options
        .shots
        .or(program.file.examples.as_ref().map(|e| e.count))
        .unwrap_or(0);
    let examples = match (&options.examples, shots) {
        (Some(spec), _) => {
            let examples_source = DatasetSource::resolve(spec, &options.datasets_dir)?;
            let rows: Vec<Row> = examples_source.rows().filter_map(Result::ok).collect();
            Some(ExamplePool::new(rows, options.seed))
        }
        (None, 0) => None,
        // Offline there is no dev split: by default examples are other rows of the dataset itself
        // (same subject, never the row under test).
        (None, _) => Some(ExamplePool::new(
            source.rows().filter_map(Result::ok).collect(),
            options.seed,
        )),
    };
    let (file, _) = ConfigFile::load(options.config_file.as_deref())?;
    let overrides = QuotaOverrides {
        rpm: options.rpm,
        tpm: options.tpm,
        max_in_flight: options.max_in_flight,
    };
    // The program's own model comes after --model and EVALR_MODEL, before the config file's
    // default: it is what the file runs against in any Prompty runtime.
    let explicit =
        options.model.is_some() || std::env::var("EVALR_MODEL").is_ok_and(|v| !v.trim().is_empty());
    let resolved = match models::program_model(&program, overrides).filter(|_| !explicit) {
        Some(resolved) => resolved?,
        None => resolve_model(options.model.as_deref(), &file, overrides)?,
    };
    let mut selection = RowSelection {
        subjects: options
            .subjects
            .as_ref()
            .map(|s| s.iter().cloned().collect::<HashSet<_>>()),
        sample: None,
        limit: options.limit,
        shard: options.shard,
    };
    if let Some(n) = options.sample {
        selection.sample = Some(stratified_sample(&source, &selection, n, options.seed));
    }
    Ok(Prepared {
        program: Arc::new(program),
        source,
        selection,
        examples,
        shots,
        resolved,
    })
}

/// A model setting the program asks for and the backend cannot send is refused before any
/// request, never dropped silently.
fn check_program_settings(
    program: &Program,
    capabilities: crate::backend::Capabilities,
) -> Result<(), RunError> {
    let p = &program.file.parameters;
    let path = program.file.path.display();
    if !capabilities.images
        && let Some(source) = program.image_sources().first()
    {
        return Err(RunError::Usage(format!(
            "{path}: {source} is sent as an image, which this model cannot read (the embedded model and AzureML endpoints take text only); run the program against a chat API model that takes images (--model azure:DEPLOYMENT or openai:MODEL)"
        )));
    }
    if !p.unknown.is_empty() {
        return Err(RunError::Usage(format!(
            "{path}: evalr cannot send the model settings {}; remove them from the file",
            p.unknown.join(", ")
        )));
    }
    // A zero penalty changes nothing (azure-ai-evaluation's judges write `0`): only a real one
    // needs a backend that sends it.
    let penalty = |v: Option<f64>| v.is_some_and(|v| v != 0.0);
    if (penalty(p.presence_penalty) || penalty(p.frequency_penalty)) && !capabilities.penalties {
        return Err(RunError::Usage(format!(
            "{path}: presence_penalty/frequency_penalty cannot be honoured by this model's backend; remove them or use a chat API model"
        )));
    }
    use crate::program::ResponseFormat;
    let wants_schema = matches!(p.response_format, Some(ResponseFormat::JsonSchema { .. }))
        || (program.is_plain_completion() && program.file.outputs_schema.is_some());
    // Chat APIs take a schema in `response_format` whether or not the profile says selects
    // may use one (as `gen(..., json_schema=...)` does); only backends with no JSON mode
    // at all refuse.
    if wants_schema && !capabilities.json_schema && !capabilities.json_object {
        return Err(RunError::Usage(format!(
            "{path}: the program asks for JSON against a schema, which this model's backend does not support"
        )));
    }
    // A backend with schemas but no JSON mode (the embedded model) gets the schema of any
    // object instead: the same constraint (see `run_row`).
    if p.response_format == Some(ResponseFormat::JsonObject)
        && !wants_schema
        && !capabilities.json_object
        && !capabilities.json_schema
    {
        return Err(RunError::Usage(format!(
            "{path}: response_format json_object cannot be honoured by this model's backend; use a chat API model, or declare `outputs:` for a JSON schema"
        )));
    }
    Ok(())
}

/// The run's folder: `--results-dir` as given, else `results/<run-id>`; a shard writes into
/// `shard-K-of-N/` inside it, because every node of a distributed job gets the same folder.
fn run_folder(options: &RunOptions, run_id: &str) -> PathBuf {
    let base = options
        .results_dir
        .clone()
        .unwrap_or_else(|| Path::new("results").join(run_id));
    match options.shard {
        Some((index, count)) => base.join(format!("shard-{index}-of-{count}")),
        None => base,
    }
}

fn default_run_id(program: &str, dataset: &str) -> String {
    let program = program
        .rsplit('/')
        .next()
        .unwrap_or(program)
        .trim_end_matches(".prompty");
    format!(
        "{}-{}-{}",
        program,
        dataset,
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    )
}

/// Counts what a run would send, without calling the model: each row's program is played with
/// placeholder answers (first option, `max_tokens` of text).
pub fn dry_run(options: &RunOptions) -> Result<DryRunEstimate, RunError> {
    let prepared = prepare(options)?;
    let counter = crate::backend::tokens::TokenCounter::for_model(match &prepared.resolved {
        ResolvedModel::Remote { model, .. } => model.as_deref(),
        ResolvedModel::Local { .. } => None,
    });
    let mut estimate = DryRunEstimate {
        rows: 0,
        requests: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        cost: None,
        batch: options.batch.wanted(&match &prepared.resolved {
            ResolvedModel::Remote { batch, .. } => *batch,
            ResolvedModel::Local { .. } => Default::default(),
        }),
    };
    for row in selected_rows(&prepared, &HashSet::new()).filter_map(Result::ok) {
        let examples = prepared
            .examples
            .as_ref()
            .map(|p| p.examples_for(&row, prepared.shots))
            .unwrap_or_default();
        let mut context = row_context(&row, &examples);
        // A row that lacks a required input fails without a request: nothing to count.
        if crate::program::complete_inputs(&prepared.program.file.inputs, &mut context).is_err() {
            continue;
        }
        let mut captures = crate::program::Captures::new();
        estimate.rows += 1;
        while let crate::program::Step::Call(call) =
            prepared.program.next_step(&context, &captures)?
        {
            estimate.requests += 1;
            estimate.prompt_tokens += counter.count_messages(&call.messages);
            let (value, completion) = match &call.kind {
                crate::program::CallKind::Select { options, .. } => (options[0].clone(), 1),
                crate::program::CallKind::Gen { max_tokens, .. } => {
                    let n = max_tokens
                        .or(prepared.program.file.parameters.max_tokens)
                        .unwrap_or(256);
                    (String::new(), u64::from(n))
                }
            };
            estimate.completion_tokens += completion;
            captures.insert(call.capture.clone(), serde_json::Value::String(value));
        }
    }
    let factor = if estimate.batch {
        crate::score::prices::batch_factor()
    } else {
        1.0
    };
    estimate.cost = model_prices(&prepared.resolved)
        .map(|p| p.cost(estimate.prompt_tokens, estimate.completion_tokens) * factor);
    Ok(estimate)
}

fn model_prices(resolved: &ResolvedModel) -> Option<crate::config::Prices> {
    match resolved {
        ResolvedModel::Remote { prices, .. } | ResolvedModel::Local { prices, .. } => *prices,
    }
}

/// The selected rows in dataset order, minus `done`, with invalid lines as errors.
fn selected_rows<'a>(
    prepared: &'a Prepared,
    done: &'a HashSet<String>,
) -> impl Iterator<Item = Result<Row, crate::dataset::RowError>> + 'a {
    let mut taken = 0u64;
    prepared
        .source
        .rows()
        .filter(move |item| match item {
            Ok(row) => prepared.selection.takes(row),
            Err(_) => true,
        })
        .take_while(move |item| {
            if item.is_ok() {
                taken += 1;
            }
            prepared.selection.limit.is_none_or(|limit| taken <= limit)
        })
        .filter(move |item| {
            item.as_ref()
                .map(|row| !done.contains(&row.id))
                .unwrap_or(true)
        })
}

/// Starts a new run, or resumes the one in `resume` (whose `run.json` gives the options).
pub async fn execute(
    options: RunOptions,
    resume: Option<(&Path, ResumeOverrides)>,
    show_progress: bool,
) -> Result<RunReport, RunError> {
    let (options, folder, started_at, done, ledger) = match resume {
        Some((folder, overrides)) => {
            let manifest = journal::read_manifest(folder)?;
            let mut options: RunOptions =
                serde_json::from_value(manifest.config.clone()).map_err(|e| RunError::Resume {
                    folder: folder.to_path_buf(),
                    message: format!("run.json has no usable options ({e})"),
                })?;
            overrides.apply(&mut options);
            let done = journal::finished_ids(folder)?;
            (
                options,
                folder.to_path_buf(),
                manifest.started_at,
                done,
                manifest.batch,
            )
        }
        None => {
            let run_id = options
                .run_id
                .clone()
                .unwrap_or_else(|| default_run_id(&options.program, &options.dataset));
            let folder = run_folder(&options, &run_id);
            if folder.join(journal::OUTPUTS_FILE).exists() {
                return Err(RunError::Usage(format!(
                    "{} already holds a run: resume it with `evalr run --resume {}`, or choose another --run-id/--results-dir",
                    folder.display(),
                    folder.display()
                )));
            }
            (options, folder, now_rfc3339(), HashSet::new(), None)
        }
    };
    let prepared = prepare(&options)?;
    // Hashed once: it pins the run in run.json and guards a resume against a changed dataset.
    let dataset_sha = prepared.source.content_sha256()?;
    if let Some((folder, _)) = resume {
        let manifest = journal::read_manifest(folder)?;
        if manifest.program.sha256 != prepared.program.file.sha256 {
            return Err(RunError::Resume {
                folder: folder.to_path_buf(),
                message: format!(
                    "the program {} changed since the run started; start a new run",
                    prepared.program.file.path.display()
                ),
            });
        }
        if manifest.dataset.sha256 != dataset_sha {
            return Err(RunError::Resume {
                folder: folder.to_path_buf(),
                message: "the dataset changed since the run started; start a new run".into(),
            });
        }
    }
    let batch_profile = match &prepared.resolved {
        ResolvedModel::Remote { batch, .. } => *batch,
        ResolvedModel::Local { .. } => Default::default(),
    };
    // A batch run checks its model and credentials here too, before anything is sent.
    let batched = options.batch.wanted(&batch_profile) || ledger.is_some();
    let chat = if batched {
        Some(chat_setup(&prepared.resolved, &options).await?)
    } else {
        None
    };
    let backend = build_backend(&prepared.resolved, &options).await?;
    check_program_settings(&prepared.program, backend.capabilities())?;
    let run_id = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let selected = selected_rows(&prepared, &HashSet::new())
        .filter(Result::is_ok)
        .count() as u64;
    let mut manifest = RunManifest {
        run_id,
        evalr_version: env!("CARGO_PKG_VERSION").into(),
        status: RunStatus::Running,
        program: ProgramInfo {
            name: prepared.program.file.name.clone(),
            path: prepared.program.file.path.display().to_string(),
            sha256: prepared.program.file.sha256.clone(),
        },
        dataset: DatasetInfo {
            spec: options.dataset.clone(),
            files: prepared
                .source
                .files()
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            sha256: dataset_sha,
            rows: selected,
        },
        model: ModelInfo {
            identity: backend.identity(),
            backend: match &prepared.resolved {
                ResolvedModel::Remote { kind, .. } => format!("{kind:?}").to_lowercase(),
                ResolvedModel::Local { .. } => "local".into(),
            },
            spec: match &prepared.resolved {
                ResolvedModel::Remote { spec, .. } | ResolvedModel::Local { spec, .. } => {
                    spec.clone()
                }
            },
            prices: model_prices(&prepared.resolved),
        },
        config: serde_json::to_value(&options).unwrap_or_default(),
        shard: options
            .shard
            .map(|(index, count)| ShardInfo { index, count }),
        started_at,
        finished_at: None,
        batch: ledger.clone(),
        quota: Vec::new(),
    };
    // Everything is checked: from here on, files are written and requests sent.
    let mut journal = Journal::open(&folder)?;
    journal::write_manifest(&folder, &manifest)?;
    let status = match chat {
        Some((chat, quota)) => {
            schedule_batch(
                &prepared,
                &options,
                (chat, quota, batch_profile),
                &mut journal,
                &mut manifest,
                &done,
                show_progress,
            )
            .await?
        }
        None => {
            schedule(
                &prepared,
                &options,
                Arc::clone(&backend),
                &mut journal,
                &done,
                selected,
                show_progress,
            )
            .await?
        }
    };
    journal.sync()?;
    manifest.status = status;
    manifest.finished_at = Some(now_rfc3339());
    manifest.quota = backend.quota_traces();
    journal::write_manifest(&folder, &manifest)?;
    // Every run ends scored: summary.json, report.md, outputs.parquet and charts.
    let summary = crate::score::score_folder(&folder)?;
    crate::score::write_reports(&folder, &summary)?;
    Ok(RunReport {
        folder,
        status,
        summary,
    })
}

/// A batch run (`--batch`): invalid rows are journaled as in a live run, the others go to
/// `crate::batch`, which records its batches in `run.json` as they change.
async fn schedule_batch(
    prepared: &Prepared,
    options: &RunOptions,
    (chat, quota, profile): (
        crate::backend::openai::ChatConfig,
        crate::limiter::QuotaConfig,
        crate::config::BatchProfile,
    ),
    journal: &mut Journal,
    manifest: &mut RunManifest,
    done: &HashSet<String>,
    show_progress: bool,
) -> Result<RunStatus, RunError> {
    let mut rows = Vec::new();
    for item in selected_rows(prepared, done) {
        match item {
            Ok(row) => {
                let examples: Vec<Row> = prepared
                    .examples
                    .as_ref()
                    .map(|p| {
                        p.examples_for(&row, prepared.shots)
                            .into_iter()
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                rows.push((row, examples));
            }
            Err(invalid) => journal.append_error(&ErrorRecord {
                id: None,
                file: Some(invalid.file.display().to_string()),
                line: Some(invalid.line),
                kind: ErrorKind::InvalidRow,
                error: invalid.to_string(),
                attempts: 0,
                at: now_rfc3339(),
            })?,
        }
    }
    let folder = journal.folder().to_path_buf();
    let ledger = manifest.batch.clone().unwrap_or_default();
    let run_id = manifest.run_id.clone();
    let mut save = |ledger: &crate::batch::ledger::BatchLedger| {
        manifest.batch = Some(ledger.clone());
        journal::write_manifest(&folder, manifest)
    };
    crate::batch::run_batched(crate::batch::BatchJob {
        rows,
        program: Arc::clone(&prepared.program),
        chat,
        quota,
        options,
        profile,
        folder: &folder,
        run_id,
        journal,
        ledger,
        save: &mut save,
        show_progress,
    })
    .await
}

async fn schedule(
    prepared: &Prepared,
    options: &RunOptions,
    backend: Arc<dyn Backend>,
    journal: &mut Journal,
    done: &HashSet<String>,
    selected: u64,
    show_progress: bool,
) -> Result<RunStatus, RunError> {
    let ctx = Arc::new(RowContext {
        program: Arc::clone(&prepared.program),
        backend: Arc::clone(&backend),
        cache: (!options.no_cache).then(|| ResponseCache::new(&options.cache_dir)),
        repeat: options.repeat,
        retry: RetryPolicy {
            max_retries: options.max_retries,
            initial_interval: Duration::from_secs_f64(options.retry_interval_secs.max(0.0)),
            ..RetryPolicy::default()
        },
    });
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        let interrupted = Arc::clone(&interrupted);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
                eprintln!(
                    "\nstopping: finishing the rows in flight (Ctrl-C again to quit now; finished rows are on disk)"
                );
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }
    let concurrency = models::concurrency(&prepared.resolved, options);
    let prices = model_prices(&prepared.resolved);
    let mut progress = progress::Progress::new(selected, done.len() as u64, show_progress);
    let mut errors = 0u64;
    // --max-cost is the budget of the whole run: what resumed rows already cost counts.
    let mut spent = match prices {
        Some(prices) if !done.is_empty() => crate::score::score_folder(journal.folder())
            .map(|s| prices.cost(s.tokens.prompt, s.tokens.completion))
            .unwrap_or(0.0),
        _ => 0.0,
    };
    let mut status = RunStatus::Finished;
    let rows_stop = Arc::clone(&stop);
    let row_stream = futures::stream::iter(
        selected_rows(prepared, done).take_while(move |_| !rows_stop.load(Ordering::SeqCst)),
    );
    let mut results = row_stream
        .map(|item| {
            let ctx = Arc::clone(&ctx);
            let examples: Vec<Row> = match &item {
                Ok(row) => prepared
                    .examples
                    .as_ref()
                    .map(|p| {
                        p.examples_for(row, prepared.shots)
                            .into_iter()
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            async move {
                match item {
                    Ok(row) => {
                        let refs: Vec<&Row> = examples.iter().collect();
                        match run_row(&ctx, &row, &refs).await {
                            Ok(record) => RowResult::Finished(Box::new(record)),
                            Err(failure) => RowResult::Failed {
                                id: row.id,
                                failure,
                            },
                        }
                    }
                    Err(invalid) => RowResult::Invalid(invalid),
                }
            }
        })
        .buffer_unordered(concurrency);
    while let Some(result) = results.next().await {
        let error = match result {
            RowResult::Finished(record) => {
                if let Some(prices) = prices {
                    spent +=
                        prices.cost(record.usage.prompt_tokens, record.usage.completion_tokens);
                }
                journal.append_output(&record)?;
                progress.row_done(record.outcome);
                None
            }
            RowResult::Failed { id, failure } => {
                if failure.is_fatal_for_run() && status == RunStatus::Finished {
                    eprintln!("error: {failure}\nstopping: this error would fail every row");
                    stop.store(true, Ordering::SeqCst);
                    status = RunStatus::Failed;
                }
                Some(ErrorRecord {
                    id: Some(id),
                    file: None,
                    line: None,
                    kind: ErrorKind::Failed,
                    error: failure.to_string(),
                    attempts: failure.attempts(),
                    at: now_rfc3339(),
                })
            }
            RowResult::Invalid(invalid) => Some(ErrorRecord {
                id: None,
                file: Some(invalid.file.display().to_string()),
                line: Some(invalid.line),
                kind: ErrorKind::InvalidRow,
                error: invalid.to_string(),
                attempts: 0,
                at: now_rfc3339(),
            }),
        };
        if let Some(record) = error {
            errors += 1;
            journal.append_error(&record)?;
            progress.row_failed(&record.error);
        }
        if let Some(max) = options.max_errors
            && errors > max
            && status == RunStatus::Finished
        {
            eprintln!(
                "stopping: {errors} rows failed, more than --max-errors {max}; see errors.jsonl"
            );
            stop.store(true, Ordering::SeqCst);
            status = RunStatus::StoppedMaxErrors;
        }
        if let Some(max) = options.max_cost
            && spent >= max
            && status == RunStatus::Finished
        {
            eprintln!(
                "stopping: spent ${spent:.4}, reaching --max-cost ${max}; resume later with --resume"
            );
            stop.store(true, Ordering::SeqCst);
            status = RunStatus::StoppedMaxCost;
        }
    }
    progress.finish();
    if interrupted.load(Ordering::SeqCst) && status == RunStatus::Finished {
        status = RunStatus::Interrupted;
    }
    Ok(status)
}
