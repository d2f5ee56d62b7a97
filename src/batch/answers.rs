//! The answers a run's batches gave, and the transport that serves them to the chat backend.
//!
//! A batch run plays each row's program as a live run does, through the same `ChatBackend`
//! (so its bodies and the reading of answers are the live ones), but the backend's transport
//! answers from the batches' output files. A body with no answer yet is *deferred*: the row
//! stops there, and the body becomes a line of the next batch. When that batch is back, the
//! row is played again from the start: earlier calls are answered from the files, and the
//! program goes one call further. Answers are keyed by the body itself (its SHA-256), so a
//! row's second play finds exactly the answer to the request it makes.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::BatchError;
use crate::backend::BackendError;
use crate::backend::http::error_for_status;
use crate::backend::openai::ChatTransport;
use crate::play::RetryPolicy;
use crate::results::batch_ledger::{BatchLedger, EntryState};

/// The key of a request body: SHA-256 of its JSON text (field order is fixed by the backend).
pub fn body_key(body: &Value) -> String {
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

/// One line of an input file, as evalr writes it.
#[derive(Debug, Deserialize)]
struct InputLine {
    custom_id: String,
    body: Value,
}

/// One line of an output or error file.
#[derive(Debug, Deserialize)]
struct OutputLine {
    custom_id: String,
    #[serde(default)]
    response: Option<LineResponse>,
    #[serde(default)]
    error: Option<LineError>,
}

#[derive(Debug, Deserialize)]
struct LineResponse {
    status_code: u16,
    #[serde(default)]
    body: Value,
}

#[derive(Debug, Deserialize)]
struct LineError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// What a batch said about one request.
#[derive(Debug, Clone)]
enum Answer {
    /// HTTP 200: the chat completion's JSON text.
    Ok(String),
    /// The status and error body the live request would have had.
    Status { status: u16, body: String },
    /// The line did not run (`batch_expired`, `batch_cancelled`, a failed batch...).
    NotRun(String),
}

/// Everything the run's downloaded batch files answer, and what is still out.
#[derive(Debug, Default)]
pub struct AnswerBook {
    answers: HashMap<String, Answer>,
    /// How many batches that ran held each body.
    submissions: HashMap<String, u32>,
    /// Bodies in batches that have not come back yet (never to be sent again meanwhile).
    in_flight: HashSet<String>,
    /// Where errors point (the chat-completions route, no secret).
    url: String,
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, BatchError> {
    let text = std::fs::read_to_string(path).map_err(|source| BatchError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| BatchError::File {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

impl AnswerBook {
    /// Reads the input, output and error files of every batch in the ledger.
    pub fn load(folder: &Path, ledger: &BatchLedger, url: &str) -> Result<AnswerBook, BatchError> {
        let mut book = AnswerBook {
            url: url.to_string(),
            ..AnswerBook::default()
        };
        for entry in &ledger.batches {
            if entry.state == EntryState::Split {
                continue;
            }
            let inputs: Vec<InputLine> = read_lines(&folder.join(&entry.input))?;
            let keys: HashMap<String, String> = inputs
                .into_iter()
                .map(|l| {
                    (
                        l.custom_id,
                        body_key(&strip_model(l.body, &entry.model_added)),
                    )
                })
                .collect();
            match entry.state {
                EntryState::Done => {
                    for key in keys.values() {
                        *book.submissions.entry(key.clone()).or_default() += 1;
                    }
                    let mut answered = HashSet::new();
                    for file in [&entry.output_file, &entry.error_file]
                        .into_iter()
                        .flatten()
                    {
                        for line in read_lines::<OutputLine>(&folder.join(file))? {
                            let Some(key) = keys.get(&line.custom_id) else {
                                continue;
                            };
                            answered.insert(key.clone());
                            book.record(key, answer_of(line));
                        }
                    }
                    let reason = format!(
                        "batch {} ended {} without an answer for this request{}",
                        entry.batch_id.as_deref().unwrap_or("?"),
                        entry.status,
                        entry
                            .note
                            .as_ref()
                            .map(|n| format!(" ({n})"))
                            .unwrap_or_default()
                    );
                    for key in keys.values() {
                        if !answered.contains(key) {
                            book.record(key, Answer::NotRun(reason.clone()));
                        }
                    }
                }
                EntryState::Queued | EntryState::Submitted => {
                    book.in_flight.extend(keys.into_values());
                }
                EntryState::Split => {}
            }
        }
        Ok(book)
    }

    /// A success is never replaced; a later failure replaces an earlier one.
    fn record(&mut self, key: &str, answer: Answer) {
        match self.answers.get(key) {
            Some(Answer::Ok(_)) => {}
            _ => {
                self.answers.insert(key.to_string(), answer);
            }
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// Input lines carry the deployment as `model` on Azure; the key is of the live body.
fn strip_model(mut body: Value, model_added: &bool) -> Value {
    if *model_added && let Value::Object(map) = &mut body {
        map.shift_remove("model");
    }
    body
}

fn answer_of(line: OutputLine) -> Answer {
    match (line.response, line.error) {
        (Some(response), _) if response.status_code == 200 => Answer::Ok(response.body.to_string()),
        (Some(response), _) => Answer::Status {
            status: response.status_code,
            body: response.body.to_string(),
        },
        (None, Some(error)) => Answer::NotRun(format!(
            "{}: {}",
            error.code.unwrap_or_else(|| "error".into()),
            error.message.unwrap_or_default()
        )),
        (None, None) => Answer::NotRun("the line has neither a response nor an error".into()),
    }
}

/// A request the batches have not answered: the next batch's line.
#[derive(Debug, Clone)]
pub struct DeferredLine {
    pub key: String,
    pub body: Value,
    /// What the request counts against the enqueued-token quota (prompt + max tokens).
    pub tokens: u64,
    /// The request's place among the row's requests (1-based): the `custom_id` suffix.
    pub call: u32,
}

/// Live requests for failed lines (`--batch-fallback live`), retried as live runs retry.
pub struct LiveFallback {
    pub transport: Arc<dyn ChatTransport>,
    pub retry: RetryPolicy,
}

/// The transport of one row's play: answers from the book, defers what it lacks.
pub struct RowTransport {
    book: Arc<AnswerBook>,
    live: Option<Arc<LiveFallback>>,
    /// A body that failed in this many batches is not sent again: its error is the row's.
    max_submissions: u32,
    sent: AtomicU32,
    live_answers: AtomicU32,
    deferred: Mutex<Option<DeferredLine>>,
}

/// What `RowTransport::send` returns for a deferred body; the row's failure is then ignored
/// (the driver sees the deferred line) and the row is played again after the batch.
const DEFERRED: &str = "the answer is in a batch that has not come back yet";

impl RowTransport {
    pub fn new(
        book: Arc<AnswerBook>,
        live: Option<Arc<LiveFallback>>,
        max_submissions: u32,
    ) -> RowTransport {
        RowTransport {
            book,
            live,
            max_submissions,
            sent: AtomicU32::new(0),
            live_answers: AtomicU32::new(0),
            deferred: Mutex::new(None),
        }
    }

    /// The body this row is waiting for, if its play stopped at one.
    pub fn take_deferred(&self) -> Option<DeferredLine> {
        self.deferred.lock().ok().and_then(|mut d| d.take())
    }

    /// Requests of this row answered live (by `--batch-fallback live`).
    pub fn live_answers(&self) -> u32 {
        self.live_answers.load(Ordering::Relaxed)
    }

    fn defer(&self, key: String, body: &Value, tokens: u64, call: u32) -> BackendError {
        if let Ok(mut slot) = self.deferred.lock() {
            *slot = Some(DeferredLine {
                key,
                body: body.clone(),
                tokens,
                call,
            });
        }
        BackendError::Transient(DEFERRED.into())
    }

    async fn send_live(
        &self,
        live: &LiveFallback,
        body: &Value,
        tokens: u64,
    ) -> Result<String, BackendError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match live.transport.send(body, tokens).await {
                Ok(text) => {
                    self.live_answers.fetch_add(1, Ordering::Relaxed);
                    return Ok(text);
                }
                Err(error) if error.is_retryable() && attempt <= live.retry.max_retries => {
                    let wait = match &error {
                        BackendError::RateLimited {
                            retry_after: Some(wait),
                        } => *wait,
                        _ => live.retry.backoff(attempt),
                    };
                    tokio::time::sleep(wait).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

#[async_trait]
impl ChatTransport for RowTransport {
    async fn send(&self, body: &Value, estimated_tokens: u64) -> Result<String, BackendError> {
        let call = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let key = body_key(body);
        let submissions = self.book.submissions.get(&key).copied().unwrap_or(0);
        let failure = match self.book.answers.get(&key) {
            Some(Answer::Ok(text)) => return Ok(text.clone()),
            Some(Answer::Status { status, body }) => {
                error_for_status(&self.book.url, *status, body)
            }
            Some(Answer::NotRun(reason)) => {
                BackendError::Transient(format!("{}: {reason}", self.book.url))
            }
            None => return Err(self.defer(key, body, estimated_tokens, call)),
        };
        if !failure.is_retryable() {
            return Err(failure);
        }
        if let Some(live) = &self.live {
            return self.send_live(live, body, estimated_tokens).await;
        }
        if self.book.in_flight.contains(&key) || submissions < self.max_submissions {
            return Err(self.defer(key, body, estimated_tokens, call));
        }
        // Given up: the row fails with the line's own error, as a live row after its retries.
        Err(match failure {
            BackendError::Transient(message) => {
                BackendError::Transient(format!("{message} (in {submissions} batches)"))
            }
            other => other,
        })
    }

    fn url_for_errors(&self) -> String {
        self.book.url.clone()
    }
}
