//! Batch runs: Azure OpenAI global batch and the OpenAI Batch API, at the batch price.
//!
//! Every pending row is played through its program as in a live run, with a chat backend
//! whose transport answers from the run's batch files ([`answers`]). The requests the rows
//! stop at become the lines of a round of batches: cut to the service's limits ([`plan`]),
//! uploaded, created, polled with backoff, and downloaded into the run folder; then the rows
//! are played again, finish or stop at their next call, and the next round starts. A program
//! of two calls (CoT, then select) therefore takes two rounds. Finished rows are journaled
//! exactly as a live run journals them, because they are made by the same code.
//!
//! `run.json` records every batch ([`ledger`]) before and after each step with the service,
//! so `evalr run --resume` re-attaches to batches in flight and sends no request twice.

pub mod answers;
pub mod plan;
mod progress;
pub mod protocol;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backend::Backend;
use crate::backend::endpoint::{ChatEndpoint, chat_url};
use crate::backend::http::JsonEndpoint;
use crate::backend::openai::{ChatBackend, ChatConfig};
use crate::config::BatchProfile;
use crate::dataset::Row;
use crate::limiter::{QuotaConfig, QuotaLimiter};
use crate::play::{
    Interrupt, ResponseCache, RetryOptions, RetryPolicy, RowContext, RowFailure, StopRules,
    failure_record, run_row,
};
use crate::program::Program;
use crate::results::batch_ledger::{BatchEntry, BatchLedger, EntryState};
use crate::results::{Journal, OutputRecord, ResultsError, RunStatus};
use answers::{AnswerBook, DeferredLine, LiveFallback, RowTransport};
use plan::{Limits, LineSize};
use progress::BatchProgress;
use protocol::BatchApi;

/// Subfolder of the run folder holding input, output and error files.
pub const BATCH_DIR: &str = "batch";

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Worth another try (a 5xx, a 429, a dropped connection).
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Service(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    File {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The run folder (journal, `run.json`) could not be written.
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// The live fallback's endpoint could not be set up.
    #[error("the model cannot be used: {0}")]
    Endpoint(String),
    #[error(
        "{rows} rows wait for answers that no batch will bring; resume the run with `evalr run --resume {}`",
        folder.display()
    )]
    Stalled { rows: usize, folder: PathBuf },
}

/// What happens to a line that failed in its batch (a 5xx, an expired batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Send it again in the next round's batch (up to --max-retries times).
    #[default]
    Batch,
    /// Send it live at once, at the live price, under the deployment's quota.
    Live,
}

impl std::str::FromStr for Fallback {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "batch" => Ok(Fallback::Batch),
            "live" => Ok(Fallback::Live),
            other => Err(format!("`{other}`: expected `batch` or `live`")),
        }
    }
}

/// `evalr run --batch ...` flags, as `run.json` records them (under `batch`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct BatchOptions {
    /// Send the requests through the batch API (Azure OpenAI global batch, OpenAI Batch API):
    /// half the price, answers within 24 hours, resumable (see docs/batch.md).
    #[arg(long = "batch")]
    #[serde(default)]
    pub enabled: bool,
    /// What happens to a line that failed in its batch: `batch` sends it again in the next
    /// round's batch, `live` sends it live at once (at the live price).
    #[arg(
        long = "batch-fallback",
        value_name = "batch|live",
        default_value = "batch"
    )]
    #[serde(default)]
    pub fallback: Fallback,
    /// Requests per batch input file (overrides the profile's batch_max_requests; default 50000).
    #[arg(long = "batch-max-requests")]
    pub max_requests: Option<u64>,
    /// Bytes per batch input file (overrides the profile's batch_max_bytes; default 200 MiB).
    #[arg(long = "batch-max-bytes")]
    pub max_bytes: Option<u64>,
    /// The deployment's enqueued-token quota: batches in flight never hold more estimated
    /// tokens; the rest waits (overrides the profile's batch_enqueued_tokens).
    #[arg(long = "batch-enqueued-tokens")]
    pub enqueued_tokens: Option<u64>,
    /// Seconds between two looks at running batches at first (grows to 60 while nothing changes).
    #[arg(long = "batch-poll-interval")]
    pub poll_interval_secs: Option<f64>,
}

impl BatchOptions {
    /// Whether the run goes through the batch API: `--batch`, or `batch = true` in the profile.
    pub fn wanted(&self, profile: &BatchProfile) -> bool {
        self.enabled || profile.batch
    }
}

/// The longest wait between two looks at running batches.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Tries of an upload, create or download that failed for a passing reason.
const SERVICE_TRIES: u32 = 5;
/// Rows played at once (CPU only, except live fallback requests, which the quota paces).
const PLAY_CONCURRENCY: usize = 32;

struct Settings {
    limits: Limits,
    fallback: Fallback,
    poll_interval: Duration,
}

impl Settings {
    fn resolve(options: &BatchOptions, profile: &BatchProfile) -> Settings {
        Settings {
            limits: Limits {
                max_requests: options
                    .max_requests
                    .or(profile.batch_max_requests)
                    .unwrap_or(plan::DEFAULT_MAX_REQUESTS),
                max_bytes: options
                    .max_bytes
                    .or(profile.batch_max_bytes)
                    .unwrap_or(plan::DEFAULT_MAX_BYTES),
                enqueued_tokens: options.enqueued_tokens.or(profile.batch_enqueued_tokens),
            },
            fallback: options.fallback,
            poll_interval: options
                .poll_interval_secs
                .map(|s| Duration::from_secs_f64(s.max(0.001)))
                .unwrap_or(DEFAULT_POLL_INTERVAL),
        }
    }
}

/// Everything a batch run needs from the run that starts it.
pub struct BatchJob<'a> {
    /// Pending rows with their few-shot examples, in dataset order.
    pub rows: Vec<(Row, Vec<Row>)>,
    pub program: Arc<Program>,
    pub chat: ChatConfig,
    pub quota: QuotaConfig,
    pub options: &'a BatchOptions,
    /// Retries of a line (batch rounds or the live fallback's) and the response cache.
    pub retries: &'a RetryOptions,
    /// Timeout of one request to the service (uploads, polls, live fallback requests).
    pub request_timeout: Duration,
    /// The run's repeat number (`evalr judge --judge-repeats`), part of every cache key.
    pub repeat: u32,
    pub rules: StopRules,
    pub profile: BatchProfile,
    pub folder: &'a Path,
    pub run_id: String,
    pub journal: &'a mut Journal,
    /// The batches already recorded in `run.json` (a resumed run's).
    pub ledger: BatchLedger,
    /// Writes the ledger into `run.json`.
    pub save: &'a mut (dyn FnMut(&BatchLedger) -> Result<(), ResultsError> + Send),
    pub show_progress: bool,
}

/// One row's play: how it ended, and the request it stopped at (if it did).
struct Play {
    row: Row,
    examples: Vec<Row>,
    result: Result<OutputRecord, RowFailure>,
    deferred: Option<DeferredLine>,
    /// Requests of the row answered live (`--batch-fallback live`).
    live_answers: u32,
}

/// Runs the pending rows through batches until every row is journaled (or the run stops).
pub async fn run_batched(job: BatchJob<'_>) -> Result<RunStatus, BatchError> {
    let BatchJob {
        rows,
        program,
        chat,
        quota,
        options,
        retries,
        request_timeout: timeout,
        repeat,
        mut rules,
        profile,
        folder,
        run_id,
        journal,
        ledger,
        save,
        show_progress,
    } = job;
    let settings = Settings::resolve(options, &profile);
    let api = BatchApi::new(chat.endpoint.clone(), chat.credential.clone(), timeout)?;
    let url = chat_url(&chat.endpoint)
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    let live = live_fallback(&settings, &chat, quota, retries, timeout)?;
    let mut ledger = ledger;
    if ledger.api.is_empty() {
        ledger.api = match chat.endpoint {
            ChatEndpoint::Azure { .. } => "azure".into(),
            ChatEndpoint::OpenAi { .. } => "openai".into(),
        };
    }
    let mut driver = Driver {
        api,
        settings,
        folder: folder.to_path_buf(),
        run_id,
        ledger,
        save,
        progress: BatchProgress::new(show_progress),
    };
    // Ctrl-C stops waiting; the batches keep running on the service.
    let interrupt = Interrupt::install(None, None);
    let cache = retries.cache();
    let max_submissions = retries.max_retries.saturating_add(1);
    let mut pending = rows;
    loop {
        // Batches in flight (a resumed run's, or the round just queued) come back first.
        if !driver.settle(&interrupt).await? {
            return Ok(RunStatus::Interrupted);
        }
        let book = Arc::new(AnswerBook::load(folder, &driver.ledger, &url)?);
        let round = Round {
            book: &book,
            live: &live,
            chat: &chat,
            program: &program,
            cache: cache.as_ref(),
            max_submissions,
            repeat,
        };
        let plays = round.play(pending).await;
        let mut next = Vec::new();
        let mut lines: Vec<(String, DeferredLine)> = Vec::new();
        let mut keys = HashSet::new();
        for play in plays {
            match (play.result, play.deferred) {
                (_, Some(line)) => {
                    // Identical requests of two rows share one line (and one answer).
                    if keys.insert(line.key.clone()) {
                        lines.push((play.row.id.clone(), line));
                    }
                    next.push((play.row, play.examples));
                }
                (Ok(mut record), None) => {
                    // Priced at the batch rate unless a request of it went live.
                    record.batch = play.live_answers == 0;
                    if let Some(cache) = &cache {
                        store_in_cache(
                            &program,
                            &chat,
                            &book,
                            cache,
                            &play.row,
                            &play.examples,
                            repeat,
                        )
                        .await;
                    }
                    journal.append_output(&record)?;
                }
                (Err(failure), None) => {
                    journal.append_error(&failure_record(play.row.id.clone(), &failure))?;
                    rules.failed(Some(&failure));
                }
            }
        }
        if rules.status() != RunStatus::Finished || next.is_empty() {
            return Ok(rules.status());
        }
        if lines.is_empty() {
            return Err(BatchError::Stalled {
                rows: next.len(),
                folder: folder.to_path_buf(),
            });
        }
        driver.queue(lines)?;
        if interrupt.is_set() {
            driver.stop_message();
            return Ok(RunStatus::Interrupted);
        }
        pending = next;
    }
}

/// The live fallback of `--batch-fallback live`: failed lines sent at once, under the
/// deployment's quota, retried as live runs retry.
fn live_fallback(
    settings: &Settings,
    chat: &ChatConfig,
    quota: QuotaConfig,
    retries: &RetryOptions,
    timeout: Duration,
) -> Result<Option<Arc<LiveFallback>>, BatchError> {
    if settings.fallback == Fallback::Batch {
        return Ok(None);
    }
    let endpoint = JsonEndpoint::new(
        chat_url(&chat.endpoint),
        chat.credential.clone(),
        Vec::new(),
        Arc::new(QuotaLimiter::new(quota)),
        timeout,
    )
    .map_err(|e| BatchError::Endpoint(e.to_string()))?;
    Ok(Some(Arc::new(LiveFallback {
        transport: Arc::new(endpoint),
        retry: retries.policy(),
    })))
}

/// One round's play of the pending rows: each row runs through its program with a transport
/// that answers from the batches downloaded so far and defers the first request they lack.
struct Round<'a> {
    book: &'a Arc<AnswerBook>,
    live: &'a Option<Arc<LiveFallback>>,
    chat: &'a ChatConfig,
    program: &'a Arc<Program>,
    cache: Option<&'a ResponseCache>,
    max_submissions: u32,
    repeat: u32,
}

impl Round<'_> {
    async fn play(&self, pending: Vec<(Row, Vec<Row>)>) -> Vec<Play> {
        futures::stream::iter(pending)
            .map(|(row, examples)| {
                let book = Arc::clone(self.book);
                let live = self.live.clone();
                let chat = self.chat.clone();
                let program = Arc::clone(self.program);
                let cache = self.cache.map(ResponseCache::read_only);
                let (max_submissions, repeat) = (self.max_submissions, self.repeat);
                async move {
                    let transport = Arc::new(RowTransport::new(book, live, max_submissions));
                    let ctx = RowContext {
                        program,
                        backend: Arc::new(ChatBackend::with_transport(chat, transport.clone())),
                        cache,
                        // Retries are the next round's batch (or the live fallback's own).
                        retry: RetryPolicy {
                            max_retries: 0,
                            ..RetryPolicy::default()
                        },
                        repeat,
                    };
                    let refs: Vec<&Row> = examples.iter().collect();
                    let result = run_row(&ctx, &row, &refs).await;
                    Play {
                        deferred: transport.take_deferred(),
                        live_answers: transport.live_answers(),
                        row,
                        examples,
                        result,
                    }
                }
            })
            .buffered(PLAY_CONCURRENCY)
            .collect()
            .await
    }
}

/// Plays a finished row once more with a writable cache, so later runs find its answers.
/// (The plays before used a read-only cache: a call answered in an earlier round must be
/// journaled as a paid request, not as a cache hit of this very run.)
async fn store_in_cache(
    program: &Arc<Program>,
    chat: &ChatConfig,
    book: &Arc<AnswerBook>,
    cache: &ResponseCache,
    row: &Row,
    examples: &[Row],
    repeat: u32,
) {
    let transport = Arc::new(RowTransport::new(Arc::clone(book), None, 0));
    let ctx = RowContext {
        program: Arc::clone(program),
        backend: Arc::new(ChatBackend::with_transport(chat.clone(), transport)) as Arc<dyn Backend>,
        cache: Some(cache.clone()),
        retry: RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        },
        repeat,
    };
    let refs: Vec<&Row> = examples.iter().collect();
    let _ = run_row(&ctx, row, &refs).await;
}

struct Driver<'a> {
    api: BatchApi,
    settings: Settings,
    folder: PathBuf,
    run_id: String,
    ledger: BatchLedger,
    save: &'a mut (dyn FnMut(&BatchLedger) -> Result<(), ResultsError> + Send),
    progress: BatchProgress,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BatchError + '_ {
    move |source| BatchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Driver<'_> {
    fn save(&mut self) -> Result<(), BatchError> {
        Ok((self.save)(&self.ledger)?)
    }

    fn stop_message(&mut self) {
        let running = self.ledger.running().count();
        let queued = self
            .ledger
            .batches
            .iter()
            .filter(|b| b.state == EntryState::Queued)
            .count();
        let folder = self.folder.display();
        eprintln!(
            "\nstopping: {running} batch(es) still running on the service, {queued} input file(s) not yet submitted; finished rows are on disk.\nresume with `evalr run --resume {folder}` (re-attaches to the running batches; nothing is sent twice), or cancel them with `evalr batch cancel {folder}`"
        );
    }

    /// Writes a round's lines into input files within the limits and queues them.
    fn queue(&mut self, lines: Vec<(String, DeferredLine)>) -> Result<(), BatchError> {
        let round = self.ledger.next_round();
        let dir = self.folder.join(BATCH_DIR);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let model_added = self.ledger.api == "azure";
        let texts: Vec<(String, u64)> = lines
            .iter()
            .map(|(row_id, line)| {
                let text = json!({
                    "custom_id": format!("{row_id}#{}", line.call),
                    "method": "POST",
                    "url": self.api.line_url(),
                    "body": self.api.line_body(&line.body),
                })
                .to_string();
                (text, line.tokens)
            })
            .collect();
        let sizes: Vec<LineSize> = texts
            .iter()
            .map(|(t, tokens)| LineSize {
                bytes: t.len() as u64 + 1,
                tokens: *tokens,
            })
            .collect();
        let mut limits = self.settings.limits;
        limits.enqueued_tokens = self.quota();
        for (k, range) in plan::pack(&sizes, &limits).into_iter().enumerate() {
            let name = format!("{BATCH_DIR}/round-{round}-part-{}.jsonl", k + 1);
            let part = &texts[range];
            write_lines(
                &self.folder.join(&name),
                part.iter().map(|(t, _)| t.as_str()),
            )?;
            self.ledger.batches.push(BatchEntry::queued(
                name,
                round,
                part.len() as u64,
                part.iter().map(|(_, t)| t).sum(),
                model_added,
            ));
        }
        self.save()
    }

    /// The enqueued-token quota: the configured one, or what refusals taught, whichever is less.
    fn quota(&self) -> Option<u64> {
        match (
            self.settings.limits.enqueued_tokens,
            self.ledger.learned_enqueued_tokens,
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn in_flight_tokens(&self) -> u64 {
        self.ledger
            .batches
            .iter()
            .filter(|b| b.state == EntryState::Submitted)
            .map(|b| b.tokens)
            .sum()
    }

    /// Submits queued input files while the quota has room, then polls until every batch has
    /// come back and is downloaded. False when interrupted (the batches keep running).
    async fn settle(&mut self, interrupt: &Interrupt) -> Result<bool, BatchError> {
        self.progress.reset();
        let mut interval = self.settings.poll_interval;
        let mut shown = false;
        loop {
            self.submit_what_fits().await?;
            if self.ledger.is_settled() {
                if shown {
                    self.progress.show(&self.ledger, None);
                }
                return Ok(true);
            }
            self.progress.show(&self.ledger, None);
            shown = true;
            if interrupt.sleep(interval).await {
                self.save()?;
                self.stop_message();
                return Ok(false);
            }
            let changed = self.poll().await?;
            interval = if changed {
                self.settings.poll_interval
            } else {
                interval
                    .mul_f64(1.5)
                    .min(MAX_POLL_INTERVAL.max(self.settings.poll_interval))
            };
        }
    }

    async fn submit_what_fits(&mut self) -> Result<(), BatchError> {
        let quota = self.quota();
        let mut in_flight = self.in_flight_tokens();
        for index in 0..self.ledger.batches.len() {
            if self.ledger.batches[index].state != EntryState::Queued {
                continue;
            }
            let tokens = self.ledger.batches[index].tokens;
            // Queue order is kept: a batch that does not fit waits, and so do those after it.
            if quota.is_some_and(|q| in_flight > 0 && in_flight + tokens > q) {
                break;
            }
            self.submit(index).await?;
            in_flight += tokens;
        }
        Ok(())
    }

    async fn with_tries<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, BatchError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, BatchError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match call().await {
                Ok(value) => return Ok(value),
                Err(BatchError::Transient(message)) if attempt < SERVICE_TRIES => {
                    self.progress
                        .message(&format!("{what}: {message}; trying again"));
                    tokio::time::sleep(self.settings.poll_interval * attempt).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn submit(&mut self, index: usize) -> Result<(), BatchError> {
        let resumed_upload = self.ledger.batches[index].input_file_id.is_some();
        if !resumed_upload {
            let name = self.ledger.batches[index].input.clone();
            let path = self.folder.join(&name);
            let bytes = std::fs::read(&path).map_err(|e| BatchError::Io {
                path: path.clone(),
                source: e,
            })?;
            let file_name = format!(
                "{}-{}",
                self.run_id,
                name.rsplit('/').next().unwrap_or(&name)
            );
            let id = self
                .with_tries("uploading a batch input file", || {
                    self.api.upload(&file_name, bytes.clone())
                })
                .await?;
            self.ledger.batches[index].input_file_id = Some(id);
            self.save()?;
        }
        let input_file_id = self.ledger.batches[index]
            .input_file_id
            .clone()
            .unwrap_or_default();
        // A run killed between creating the batch and recording it: the batch exists.
        let existing = if resumed_upload {
            let refused = self.ledger.batches[index].refused.clone();
            self.with_tries("listing batches", || self.api.list())
                .await?
                .into_iter()
                .find(|b| {
                    b.input_file_id.as_deref() == Some(input_file_id.as_str())
                        && !refused.contains(&b.id)
                })
        } else {
            None
        };
        let batch = match existing {
            Some(batch) => batch,
            None => {
                let run_id = self.run_id.clone();
                self.with_tries("creating a batch", || {
                    self.api.create(&input_file_id, &run_id)
                })
                .await?
            }
        };
        let entry = &mut self.ledger.batches[index];
        entry.batch_id = Some(batch.id);
        entry.status = batch.status;
        entry.state = EntryState::Submitted;
        self.save()
    }

    /// Looks at every running batch once; downloads those that ended. True if anything changed.
    async fn poll(&mut self) -> Result<bool, BatchError> {
        let mut changed = false;
        for index in 0..self.ledger.batches.len() {
            let entry = &self.ledger.batches[index];
            if entry.state != EntryState::Submitted {
                continue;
            }
            let Some(id) = entry.batch_id.clone() else {
                continue;
            };
            let batch = match self.api.retrieve(&id).await {
                Ok(batch) => batch,
                // A passing failure: look again at the next tick.
                Err(BatchError::Transient(_)) => continue,
                Err(error) => return Err(error),
            };
            let counts = batch.request_counts.unwrap_or_default();
            let entry = &mut self.ledger.batches[index];
            if entry.status != batch.status
                || entry.completed != counts.completed
                || entry.failed != counts.failed
            {
                changed = true;
            }
            entry.status = batch.status.clone();
            entry.completed = counts.completed;
            entry.failed = counts.failed;
            entry.output_file_id = batch.output_file_id.clone();
            entry.error_file_id = batch.error_file_id.clone();
            if !batch.is_terminal() {
                continue;
            }
            let refusal = batch
                .first_error()
                .filter(|e| e.code.as_deref() == Some("token_limit_exceeded"))
                .map(|e| e.message.clone().unwrap_or_default());
            match refusal {
                Some(message) => self.refused(index, &id, message)?,
                None => {
                    if let Some(error) = batch.first_error() {
                        entry.note = Some(format!(
                            "{}: {}",
                            error.code.as_deref().unwrap_or("error"),
                            error.message.as_deref().unwrap_or_default()
                        ));
                    }
                    self.download(index).await?;
                }
            }
            self.save()?;
        }
        Ok(changed)
    }

    /// The service refused a batch for the enqueued-token quota: it waits for the batches in
    /// flight to finish, or, when none is, the quota is smaller than the batch: split it.
    fn refused(&mut self, index: usize, id: &str, message: String) -> Result<(), BatchError> {
        let entry = &mut self.ledger.batches[index];
        entry.refused.push(id.to_string());
        entry.batch_id = None;
        entry.state = EntryState::Queued;
        entry.status = "queued".into();
        entry.note = Some(format!("token_limit_exceeded: {message}"));
        let tokens = entry.tokens;
        let others = self.in_flight_tokens();
        let learned = if others > 0 {
            others
        } else {
            (tokens / 2).max(1)
        };
        self.ledger.learned_enqueued_tokens = Some(
            self.ledger
                .learned_enqueued_tokens
                .map_or(learned, |l| l.min(learned)),
        );
        self.progress.message(&format!(
            "batch {id} refused: the deployment's enqueued-token quota is full ({message}); {}",
            if others > 0 {
                "it waits for the batches in flight"
            } else {
                "splitting it"
            }
        ));
        if others == 0 && self.ledger.batches[index].lines > 1 {
            self.split(index)?;
        }
        Ok(())
    }

    fn split(&mut self, index: usize) -> Result<(), BatchError> {
        let entry = self.ledger.batches[index].clone();
        let path = self.folder.join(&entry.input);
        let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let half = lines.len().div_ceil(2);
        let stem = entry.input.trim_end_matches(".jsonl");
        for (k, part) in [&lines[..half], &lines[half..]].into_iter().enumerate() {
            let name = format!("{stem}-{}.jsonl", k + 1);
            write_lines(&self.folder.join(&name), part.iter().copied())?;
            let tokens = entry.tokens * part.len() as u64 / lines.len().max(1) as u64;
            self.ledger.batches.push(BatchEntry::queued(
                name,
                entry.round,
                part.len() as u64,
                tokens,
                entry.model_added,
            ));
        }
        self.ledger.batches[index].state = EntryState::Split;
        self.ledger.batches[index].status = "split".into();
        Ok(())
    }

    async fn download(&mut self, index: usize) -> Result<(), BatchError> {
        let entry = self.ledger.batches[index].clone();
        let id = entry.batch_id.clone().unwrap_or_default();
        for (file_id, suffix) in [
            (entry.output_file_id.clone(), "output"),
            (entry.error_file_id.clone(), "errors"),
        ] {
            let Some(file_id) = file_id.filter(|f| !f.is_empty()) else {
                continue;
            };
            let text = self
                .with_tries("downloading a batch file", || self.api.content(&file_id))
                .await?;
            let name = format!("{BATCH_DIR}/{id}-{suffix}.jsonl");
            let path = self.folder.join(&name);
            write_file(&path, text.as_bytes())?;
            let entry = &mut self.ledger.batches[index];
            if suffix == "output" {
                entry.output_file = Some(name);
            } else {
                entry.error_file = Some(name);
            }
        }
        self.ledger.batches[index].state = EntryState::Done;
        Ok(())
    }
}

/// Written whole then renamed, with the user's umask: a file named in the ledger is always
/// complete, and readable by whoever reads the run folder.
fn write_lines<'a>(path: &Path, lines: impl Iterator<Item = &'a str>) -> Result<(), BatchError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    Ok(crate::results::write_lines(path, lines)?)
}

/// A downloaded file, byte for byte, written as [`write_lines`] writes.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BatchError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    crate::files::write_atomic(path, bytes).map_err(io_error(path))
}

/// `evalr batch cancel RUN`: cancels the batches of `ledger` still running; returns
/// (id, status) of each.
pub async fn cancel(
    api: &BatchApi,
    ledger: &mut BatchLedger,
) -> Result<Vec<(String, String)>, BatchError> {
    let mut cancelled = Vec::new();
    for entry in ledger.batches.iter_mut() {
        if entry.state != EntryState::Submitted {
            continue;
        }
        let Some(id) = entry.batch_id.clone() else {
            continue;
        };
        let batch = api.cancel(&id).await?;
        entry.status = batch.status.clone();
        cancelled.push((id, batch.status));
    }
    Ok(cancelled)
}

/// `evalr batch status RUN`: the service's view of the batches of `ledger`.
pub async fn status(api: &BatchApi, mut ledger: BatchLedger) -> Result<BatchLedger, BatchError> {
    for entry in ledger.batches.iter_mut() {
        if entry.state != EntryState::Submitted {
            continue;
        }
        if let Some(id) = &entry.batch_id {
            let batch = api.retrieve(id).await?;
            let counts = batch.request_counts.unwrap_or_default();
            entry.status = batch.status;
            entry.completed = counts.completed;
            entry.failed = counts.failed;
        }
    }
    Ok(ledger)
}
