//! Embedding rows: `evalr embed`, and the pool and rows of a `--pick knn` run.
//!
//! A row's text (its question, as promptbase embeds it) is embedded once per model: vectors
//! already in the embeddings file (same id, same text) are reused; the others are asked in
//! batches through the response cache (one entry per text, so a changed batching still hits),
//! under the backend's quota limiter and with the run's retries. The file is rewritten after
//! every batch that added vectors, so an interrupted embedding resumes where it stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use sha2::{Digest, Sha256};

pub use super::error::EmbedError;
use crate::backend::{Backend, EmbedReply, EmbedRequest, Usage};
use crate::dataset::Row;
use crate::examples::vectors::{VectorTable, text_sha256};
use crate::play::{ResponseCache, RetryPolicy, RowFailure, with_retries};

/// Texts per embeddings request (the services take up to 2048; small batches keep a failed
/// request cheap and the token bucket smooth).
pub const EMBED_BATCH: usize = 32;

/// Where embeddings go unless `--output` says otherwise: `results/embeddings/`.
pub const DEFAULT_EMBEDDINGS_DIR: &str = "results/embeddings";

/// What embedding a set of rows did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EmbedStats {
    pub rows: usize,
    /// Vectors found in the embeddings file.
    pub stored: usize,
    /// Vectors answered by the response cache.
    pub cached: usize,
    /// Vectors the model computed.
    pub computed: usize,
    /// Embedding requests sent (retries included).
    pub requests: u64,
    pub prompt_tokens: u64,
}

/// The text of a row that is embedded.
pub fn embedding_text(row: &Row) -> &str {
    &row.question
}

/// The default embeddings file of a dataset (or example run) and a model:
/// `<dir>/<dataset slug>-<12 hex of the model identity's sha256>.parquet`.
pub fn default_embeddings_path(dir: &Path, dataset_spec: &str, model_identity: &str) -> PathBuf {
    let slug: String = dataset_spec
        .trim_end_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let model = hex::encode(Sha256::digest(model_identity.as_bytes()));
    dir.join(format!("{slug}-{}.parquet", &model[..12]))
}

/// The vectors of `rows` (in order), from `path` or computed and added to it.
pub async fn embed_rows(
    backend: &dyn Backend,
    cache: Option<&ResponseCache>,
    retry: RetryPolicy,
    concurrency: usize,
    rows: &[Row],
    path: &Path,
) -> Result<(Vec<Vec<f32>>, EmbedStats), EmbedError> {
    let identity = backend.identity();
    let mut table =
        VectorTable::read(path, &identity)?.unwrap_or_else(|| VectorTable::new(&identity));
    let mut stats = EmbedStats {
        rows: rows.len(),
        ..EmbedStats::default()
    };
    // Texts still to embed, each once even when several rows share it.
    let mut missing: Vec<(String, String)> = Vec::new();
    let mut wanted: HashMap<String, Vec<usize>> = HashMap::new();
    let mut found: Vec<Option<Vec<f32>>> = vec![None; rows.len()];
    for (i, row) in rows.iter().enumerate() {
        let text = embedding_text(row);
        let sha = text_sha256(text);
        if let Some(vector) = table.get(&row.id, &sha) {
            found[i] = Some(vector.to_vec());
            stats.stored += 1;
            continue;
        }
        let waiting = wanted.entry(sha.clone()).or_default();
        if waiting.is_empty() {
            missing.push((sha, text.to_string()));
        }
        waiting.push(i);
    }
    // The cache first, one entry per text.
    let cache_key =
        |text: &str| ResponseCache::key(&identity, "embed", &serde_json::json!({ "input": text }));
    let mut to_ask: Vec<(String, String)> = Vec::new();
    let mut fresh: Vec<(String, Vec<f32>)> = Vec::new();
    for (sha, text) in missing {
        match cache.and_then(|c| c.get::<Vec<f32>>(&cache_key(&text))) {
            Some(vector) => {
                stats.cached += wanted[&sha].len();
                fresh.push((sha, vector));
            }
            None => to_ask.push((sha, text)),
        }
    }
    let add = |table: &mut VectorTable,
               found: &mut Vec<Option<Vec<f32>>>,
               sha: &str,
               vector: Vec<f32>| {
        for &i in &wanted[sha] {
            table.insert(&rows[i].id, sha.to_string(), vector.clone());
            found[i] = Some(vector.clone());
        }
    };
    for (sha, vector) in fresh {
        add(&mut table, &mut found, &sha, vector);
    }
    // The file lists the rows in dataset order, whatever order the batches come back in.
    let position: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| (row.id.as_str(), i))
        .collect();
    let write = |table: &mut VectorTable| {
        table
            .order
            .sort_by_key(|id| position.get(id.as_str()).copied().unwrap_or(usize::MAX));
        table.write(path)
    };
    if stats.cached > 0 {
        write(&mut table)?;
    }
    let batches: Vec<Vec<(String, String)>> = to_ask
        .chunks(EMBED_BATCH)
        .map(<[(String, String)]>::to_vec)
        .collect();
    let mut answers = futures::stream::iter(batches)
        .map(|batch| async move {
            let request = EmbedRequest {
                inputs: batch.iter().map(|(_, text)| text.clone()).collect(),
            };
            let attempted = with_retries(retry, || backend.embed(&request)).await;
            (batch, attempted)
        })
        .buffer_unordered(concurrency.max(1));
    let mut failure: Option<RowFailure> = None;
    while let Some((batch, attempted)) = answers.next().await {
        let attempted = match attempted {
            Ok(attempted) => attempted,
            Err(error) => {
                failure.get_or_insert(error);
                continue;
            }
        };
        let reply: EmbedReply = attempted.value;
        stats.requests += u64::from(attempted.attempts);
        stats.prompt_tokens += reply.usage.prompt_tokens;
        for ((sha, text), vector) in batch.iter().zip(reply.vectors) {
            if let Some(cache) = cache {
                // A cache that cannot be written costs money later, not correctness now.
                let _ = cache.put(&cache_key(text), &vector);
            }
            stats.computed += wanted[sha].len();
            add(&mut table, &mut found, sha, vector);
        }
        write(&mut table)?;
    }
    if let Some(error) = failure {
        return Err(EmbedError::Backend(error));
    }
    let vectors = found.into_iter().map(Option::unwrap_or_default).collect();
    Ok((vectors, stats))
}

/// Usage of an embedding pass, for cost accounting.
pub fn stats_usage(stats: &EmbedStats) -> Usage {
    Usage {
        prompt_tokens: stats.prompt_tokens,
        completion_tokens: 0,
        ..Usage::default()
    }
}

/// `evalr embed`: what to embed, with which model, into which file.
#[derive(Debug, Clone)]
pub struct EmbedJob {
    /// A dataset (name, file, folder) or a run folder (its rows).
    pub dataset: String,
    /// `None`: the default file under `results/embeddings/`.
    pub output: Option<PathBuf>,
    /// Model, quota, cache, retries and datasets folder, as `evalr run` takes them.
    pub options: super::RunOptions,
}

/// Embeds every row of a dataset into its embeddings file; returns the file and what it took.
pub async fn embed_dataset(job: EmbedJob) -> Result<(PathBuf, EmbedStats), super::RunError> {
    let options = &job.options;
    let rows = crate::examples::load_pool(
        &job.dataset,
        &options.folders.datasets_dir,
        crate::examples::is_run_folder(&job.dataset).then_some(crate::examples::ExampleFilter::All),
    )?;
    let (file, _) = crate::config::ConfigFile::load(options.connection.config_file.as_deref())?;
    let (spec, _) = crate::config::choose_model(options.model.as_deref(), &file);
    let resolved = crate::config::resolve_model(&spec, &file, options.limits.quota)?;
    let backend = super::build_backend(&resolved, options).await?;
    let path = job.output.clone().unwrap_or_else(|| {
        default_embeddings_path(
            Path::new(DEFAULT_EMBEDDINGS_DIR),
            &job.dataset,
            &backend.identity(),
        )
    });
    let cache = options.retries.cache();
    let retry = options.retries.policy();
    let concurrency = super::models::concurrency(&resolved, options);
    let (_, stats) = embed_rows(
        backend.as_ref(),
        cache.as_ref(),
        retry,
        concurrency,
        &rows,
        &path,
    )
    .await?;
    Ok((path, stats))
}
