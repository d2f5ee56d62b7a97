//! The embedded model: a GGUF file run in-process by llama.cpp (`llama-cpp-2`).
//!
//! `select` is exact here (every option's tokens scored after the prompt, see `score`), and
//! `gen` can be constrained by a regex or a JSON schema through llguidance (see `generate`).
//!
//! llama.cpp work is CPU-bound and blocking, and a context is not shareable between threads,
//! so one worker thread owns the model and its context and answers calls from a channel in
//! arrival order; the async trait methods only send a job and await the reply. Rows that share
//! a prompt prefix reuse the KV cache of the previous call (see `engine`).

mod chat;
mod embed;
mod engine;
mod generate;
mod model;
mod resolve;
mod score;

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use llama_cpp_2::context::params::LlamaContextParams;
use tokio::sync::oneshot;

use super::{
    Backend, BackendError, Capabilities, EmbedReply, EmbedRequest, GenReply, GenRequest, Message,
    SelectReply, SelectRequest,
};
pub use chat::ChatFormatSource;
pub use model::llama_backend;
pub use resolve::{DEFAULT_MODEL_FILE, default_model_dir, default_model_path, resolve_local_model};
pub use score::{OptionScores, SelectScore};

/// How to run the model.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalOptions {
    /// CPU threads for llama.cpp; `None` = all cores.
    pub threads: Option<usize>,
    /// Context size in tokens (prompt plus option or generated text).
    pub context_size: u32,
    /// Raw text: the messages' contents joined by newlines, no chat template.
    pub no_chat_template: bool,
    /// Which score picks a `select` option (the probabilities are always the softmax of the
    /// summed log-likelihoods).
    pub select_score: SelectScore,
    /// Reuse the KV cache of the previous call's prompt prefix (on by default; off only to
    /// measure what it saves).
    pub prefix_cache: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            threads: None,
            context_size: 8192,
            no_chat_template: false,
            select_score: SelectScore::Sum,
            prefix_cache: true,
        }
    }
}

/// Why a local model could not be found, fetched or loaded.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("model file not found: {path}")]
    NotFound { path: PathBuf },
    #[error(
        "the default local model is not installed ({path} does not exist): run \
         scripts/install-default-model.sh, or pass --model local:PATH.gguf"
    )]
    DefaultModelMissing { path: PathBuf },
    #[error("model path is not a file: {path}")]
    NotAFile { path: PathBuf },
    #[error("cannot read model file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable GGUF model: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot use the chat template of {path}: {reason}")]
    ChatTemplate { path: PathBuf, reason: String },
    #[error("cannot create a llama.cpp context for {path}: {reason}")]
    Context { path: PathBuf, reason: String },
    #[error("cannot start llama.cpp: {0}")]
    Init(String),
    #[error("invalid local model {spec:?}: {reason}")]
    BadSpec { spec: String, reason: String },
    #[error(
        "cannot download {file} from the Hugging Face repository {repo} at {endpoint}: {reason}"
    )]
    Download {
        repo: String,
        file: String,
        endpoint: String,
        reason: String,
    },
    #[error("no models directory: set EVALR_MODEL_DIR (or HOME)")]
    NoModelDir,
}

/// Counters of the work done, for the benchmark and for tests of the prefix cache.
#[derive(Debug, Default)]
pub struct LocalStats {
    /// Tokens run through the model (prompts, options, generated tokens).
    pub decoded_tokens: AtomicU64,
    /// Prompt tokens taken from the KV cache instead of being decoded again.
    pub reused_tokens: AtomicU64,
    /// `llama_decode` calls: each is a pass over the model's weights, whatever its size.
    pub decode_calls: AtomicU64,
}

/// A snapshot of `LocalStats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalStatsSnapshot {
    pub decoded_tokens: u64,
    pub reused_tokens: u64,
    pub decode_calls: u64,
}

/// Facts about the loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub chat_format: ChatFormatSource,
    pub context_size: u32,
    pub threads: usize,
    pub n_params: u64,
}

enum Job {
    Select(
        SelectRequest,
        oneshot::Sender<Result<SelectReply, BackendError>>,
    ),
    Score(
        Vec<Message>,
        Vec<String>,
        oneshot::Sender<Result<OptionScores, BackendError>>,
    ),
    Generate(GenRequest, oneshot::Sender<Result<GenReply, BackendError>>),
    Embed(
        EmbedRequest,
        oneshot::Sender<Result<EmbedReply, BackendError>>,
    ),
    Render(
        Vec<Message>,
        oneshot::Sender<Result<RenderedPrompt, BackendError>>,
    ),
}

/// A conversation as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPrompt {
    /// The prompt text after the chat template (or the plain join).
    pub text: String,
    /// Its tokens, BOS included when the model wants one.
    pub tokens: usize,
}

/// A GGUF model run in-process; see the module documentation.
pub struct LocalBackend {
    identity: String,
    info: ModelInfo,
    jobs: Option<mpsc::Sender<Job>>,
    worker: Option<JoinHandle<()>>,
    stats: Arc<LocalStats>,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend")
            .field("identity", &self.identity)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Options a `select` may be asked to choose between in one batch (MMLU-Pro has 10).
const SCRATCH_SEQUENCES: u32 = 10;

impl LocalBackend {
    /// Loads the model at `path`. A missing, unreadable or corrupt file is an error naming
    /// the path; nothing is loaded lazily later.
    pub fn load(path: &Path, options: LocalOptions) -> Result<LocalBackend, LocalError> {
        model::check_model_file(path)?;
        let threads = options.threads.filter(|t| *t > 0).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let stats = Arc::new(LocalStats::default());
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<ModelInfo, LocalError>>();
        let worker_path = path.to_path_buf();
        let worker_stats = stats.clone();
        let worker = std::thread::Builder::new()
            .name("evalr-llama".into())
            .spawn(move || {
                worker_main(
                    worker_path,
                    options,
                    threads,
                    worker_stats,
                    ready_tx,
                    jobs_rx,
                )
            })
            .map_err(|e| LocalError::Init(format!("cannot start the model thread: {e}")))?;
        // Hash the file while the worker loads it.
        let identity = model::identity(path);
        let info = match ready_rx.recv() {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => {
                let _ = worker.join();
                return Err(e);
            }
            Err(_) => {
                let _ = worker.join();
                return Err(LocalError::Init(format!(
                    "the model thread stopped while loading {}",
                    path.display()
                )));
            }
        };
        Ok(LocalBackend {
            identity: identity?,
            info,
            jobs: Some(jobs_tx),
            worker: Some(worker),
            stats,
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn stats(&self) -> LocalStatsSnapshot {
        LocalStatsSnapshot {
            decoded_tokens: self.stats.decoded_tokens.load(Ordering::Relaxed),
            reused_tokens: self.stats.reused_tokens.load(Ordering::Relaxed),
            decode_calls: self.stats.decode_calls.load(Ordering::Relaxed),
        }
    }

    /// The log-likelihood of every option after the conversation (what `select` decides on),
    /// with the length-normalised values.
    pub async fn score_options(
        &self,
        messages: &[Message],
        options: &[String],
    ) -> Result<OptionScores, BackendError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Score(messages.to_vec(), options.to_vec(), tx))?;
        rx.await.map_err(|_| worker_gone())?
    }

    /// The prompt text and token count the model gets for `messages`.
    pub async fn render_prompt(
        &self,
        messages: &[Message],
    ) -> Result<RenderedPrompt, BackendError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Render(messages.to_vec(), tx))?;
        rx.await.map_err(|_| worker_gone())?
    }

    fn send(&self, job: Job) -> Result<(), BackendError> {
        self.jobs
            .as_ref()
            .ok_or_else(worker_gone)?
            .send(job)
            .map_err(|_| worker_gone())
    }
}

fn worker_gone() -> BackendError {
    BackendError::Fatal("the local model's thread has stopped".into())
}

impl Drop for LocalBackend {
    fn drop(&mut self) {
        // Closing the channel ends the worker's loop after the job in hand; joining frees the
        // model before `drop` returns.
        self.jobs.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn identity(&self) -> String {
        self.identity.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            exact_loglikelihood: true,
            logprobs: false,
            json_schema: true,
            regex: true,
            penalties: false,
            json_object: false,
            images: false,
        }
    }

    async fn select(&self, request: &SelectRequest) -> Result<SelectReply, BackendError> {
        crate::backend::refuse_images(&request.messages, "the embedded model")?;
        let (tx, rx) = oneshot::channel();
        self.send(Job::Select(request.clone(), tx))?;
        rx.await.map_err(|_| worker_gone())?
    }

    async fn generate(&self, request: &GenRequest) -> Result<GenReply, BackendError> {
        crate::backend::refuse_images(&request.messages, "the embedded model")?;
        let (tx, rx) = oneshot::channel();
        self.send(Job::Generate(request.clone(), tx))?;
        rx.await.map_err(|_| worker_gone())?
    }

    async fn embed(&self, request: &EmbedRequest) -> Result<EmbedReply, BackendError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Embed(request.clone(), tx))?;
        rx.await.map_err(|_| worker_gone())?
    }
}

fn worker_main(
    path: PathBuf,
    options: LocalOptions,
    threads: usize,
    stats: Arc<LocalStats>,
    ready: mpsc::Sender<Result<ModelInfo, LocalError>>,
    jobs: mpsc::Receiver<Job>,
) {
    let backend = match llama_backend() {
        Ok(backend) => backend,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let model = match model::load_model(backend, &path) {
        Ok(model) => model,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let chat = match chat::ChatFormat::for_model(&model, options.no_chat_template) {
        Ok(chat) => chat,
        Err(reason) => {
            let _ = ready.send(Err(LocalError::ChatTemplate { path, reason }));
            return;
        }
    };
    let context_size = options.context_size.max(64);
    let n_seq = 1 + SCRATCH_SEQUENCES;
    let threads_i32 = i32::try_from(threads).unwrap_or(i32::MAX);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(context_size))
        .with_n_batch(context_size.min(2048))
        .with_n_ubatch(512)
        .with_n_seq_max(n_seq)
        // One cache shared by all sequences, so that copying the prompt to an option's
        // sequence shares its cells instead of copying them.
        .with_kv_unified(true)
        // Keep the sliding-window layers' whole cache (Gemma 3): without it the cache
        // cannot be cut back to a shared prefix, which is what prefix reuse does.
        .with_swa_full(true)
        .with_n_threads(threads_i32)
        .with_n_threads_batch(threads_i32);
    let ctx = match model.new_context(backend, params) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(LocalError::Context {
                path,
                reason: e.to_string(),
            }));
            return;
        }
    };
    let info = ModelInfo {
        path: path.clone(),
        chat_format: chat.source.clone(),
        context_size: ctx.n_ctx(),
        threads,
        n_params: model.n_params(),
    };
    let mut engine = engine::Engine::new(&model, ctx, chat, options.prefix_cache, n_seq, stats);
    let mut constraints = generate::Constraints::default();
    let mut embedder: Option<embed::Embedder> = None;
    if ready.send(Ok(info)).is_err() {
        return;
    }
    for job in jobs {
        match job {
            Job::Select(request, reply) => {
                let result = engine.select(&request, options.select_score);
                let _ = reply.send(result);
            }
            Job::Score(messages, opts, reply) => {
                let result = engine.score_options(&messages, &opts);
                let _ = reply.send(result);
            }
            Job::Generate(request, reply) => {
                let result = engine.generate(&request, &mut constraints);
                let _ = reply.send(result);
            }
            Job::Embed(request, reply) => {
                if embedder.is_none() {
                    match embed::Embedder::new(backend, &model, threads_i32) {
                        Ok(created) => embedder = Some(created),
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                    }
                }
                let result = match embedder.as_mut() {
                    Some(embedder) => embedder.embed(&request),
                    None => Err(worker_gone()),
                };
                let _ = reply.send(result);
            }
            Job::Render(messages, reply) => {
                let result = engine
                    .prompt_tokens(&messages)
                    .map(|(text, tokens)| RenderedPrompt {
                        text,
                        tokens: tokens.len(),
                    });
                let _ = reply.send(result);
            }
        }
    }
}
