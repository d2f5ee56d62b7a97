//! Few-shot example picking for a run: at random from the pool, or the pool's nearest rows
//! by embedding (`--pick knn`). The embeddings of pool and rows are computed once per file
//! (`results/embeddings/`, named by dataset and model) and read back by later runs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::build_backend;
use super::embed::{self, EmbedError};
use super::error::RunError;
use super::options::RunOptions;
use super::plan::{Inputs, price_of};
use crate::backend::{Backend, Usage};
use crate::config::ResolvedModel;
use crate::dataset::Row;

use crate::examples::vectors::{VectorTable, text_sha256};
use crate::examples::{ExamplePicker, ExamplePool, KnnPicker};
use crate::program::ExamplePick;

/// The embedding part of a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingEstimate {
    pub model: String,
    pub texts: u64,
    pub requests: u64,
    pub tokens: u64,
    pub cost: Option<f64>,
}

/// The model `--pick knn` embeds with: `--embeddings-model`, else the run's model.
fn embeddings_model(inputs: &Inputs) -> ResolvedModel {
    inputs
        .embeddings_model
        .clone()
        .unwrap_or_else(|| inputs.model.clone())
}

/// Where the embeddings of a dataset (or example run) by a model are kept: beside the
/// results, `results/embeddings/` (or `embeddings/` in the parent of --results-dir).
fn embeddings_path(options: &RunOptions, spec: &str, identity: &str) -> PathBuf {
    let dir = match &options.output.results_dir {
        Some(dir) => dir.parent().unwrap_or(Path::new(".")).join("embeddings"),
        None => PathBuf::from(embed::DEFAULT_EMBEDDINGS_DIR),
    };
    embed::default_embeddings_path(&dir, spec, identity)
}

/// The embeddings files of a knn run, (pool, rows): `--pool-embeddings` / `--row-embeddings`,
/// else named by dataset and model beside the results. A run folder's rows are its dataset's,
/// so a CoT run over a split shares that split's file.
fn embeddings_files(options: &RunOptions, identity: &str) -> (PathBuf, PathBuf) {
    let pool_spec = crate::examples::embeddings_spec(
        options
            .examples
            .examples
            .as_deref()
            .unwrap_or(&options.dataset),
    );
    (
        options
            .examples
            .pool_embeddings
            .clone()
            .unwrap_or_else(|| embeddings_path(options, &pool_spec, identity)),
        options
            .examples
            .row_embeddings
            .clone()
            .unwrap_or_else(|| embeddings_path(options, &options.dataset, identity)),
    )
}

/// Texts a knn run still has to embed (pool and rows not in their embeddings files), the
/// requests and tokens that takes, and their cost.
pub fn estimate_embeddings(
    inputs: &Inputs,
    options: &RunOptions,
) -> Result<EmbeddingEstimate, RunError> {
    let resolved = embeddings_model(inputs);
    let runtime = tokio::runtime::Runtime::new().map_err(|source| RunError::Io {
        path: PathBuf::from("."),
        source,
    })?;
    // The backend names the model exactly as the embeddings files do (a local model's
    // identity includes its file's hash).
    let identity = runtime
        .block_on(build_backend(&resolved, options))?
        .identity();
    let counter = crate::backend::tokens::TokenCounter::for_model(resolved.model_name());
    let rows: Vec<Row> = inputs
        .rows(&HashSet::new())
        .filter_map(Result::ok)
        .collect();
    let (mut texts, mut tokens, mut requests) = (0u64, 0u64, 0u64);
    let (pool_path, rows_path) = embeddings_files(options, &identity);
    // A text is embedded once per file (the pool and the rows may share one).
    let mut seen: HashSet<(PathBuf, String)> = HashSet::new();
    let mut count = |path: &Path, rows: &[Row]| -> Result<(), RunError> {
        let table =
            VectorTable::read(path, &identity).map_err(|e| RunError::Embed(EmbedError::File(e)))?;
        let mut missing = 0u64;
        for row in rows {
            let text = embed::embedding_text(row);
            let sha = text_sha256(text);
            let stored = table
                .as_ref()
                .is_some_and(|t| t.get(&row.id, &sha).is_some());
            if !stored && seen.insert((path.to_path_buf(), sha)) {
                missing += 1;
                tokens += counter.count(text);
            }
        }
        // Pool and rows are embedded in passes of their own, each in batches.
        texts += missing;
        requests += missing.div_ceil(embed::EMBED_BATCH as u64);
        Ok(())
    };
    count(&pool_path, inputs.pool.as_deref().unwrap_or_default())?;
    count(&rows_path, &rows)?;
    let cost = price_of(&resolved, &inputs.config).map(|p| {
        p.cost(&Usage {
            prompt_tokens: tokens,
            ..Usage::default()
        })
    });
    Ok(EmbeddingEstimate {
        model: identity,
        texts,
        requests,
        tokens,
        cost,
    })
}

/// The examples picker of a run: the pool picked at random, or indexed by embeddings (pool
/// and selected rows embedded now, or read back from their embeddings files).
pub async fn build_picker(
    inputs: &Inputs,
    options: &RunOptions,
    embedder: Option<&(Arc<dyn Backend>, usize)>,
    show_progress: bool,
) -> Result<Option<ExamplePicker>, RunError> {
    let Some(pool) = inputs.pool.clone() else {
        return Ok(None);
    };
    let (backend, concurrency) = match embedder {
        Some((backend, concurrency)) if inputs.pick == ExamplePick::Knn => (backend, *concurrency),
        _ => {
            return Ok(Some(ExamplePicker::Random(ExamplePool::new(
                pool,
                options.rows.seed,
            ))));
        }
    };
    let identity = backend.identity();
    let cache = options.retries.cache();
    let retry = options.retries.policy();
    let (pool_path, rows_path) = embeddings_files(options, &identity);
    let (pool_vectors, pool_stats) = embed::embed_rows(
        backend.as_ref(),
        cache.as_ref(),
        retry,
        concurrency,
        &pool,
        &pool_path,
    )
    .await?;
    let rows: Vec<Row> = inputs
        .rows(&HashSet::new())
        .filter_map(Result::ok)
        .collect();
    let (row_vectors, row_stats) = embed::embed_rows(
        backend.as_ref(),
        cache.as_ref(),
        retry,
        concurrency,
        &rows,
        &rows_path,
    )
    .await?;
    if show_progress {
        eprintln!(
            "embeddings ({identity}): pool {} rows ({} computed, {} from {}), rows {} ({} computed, {} from {})",
            pool_stats.rows,
            pool_stats.computed,
            pool_stats.stored + pool_stats.cached,
            pool_path.display(),
            row_stats.rows,
            row_stats.computed,
            row_stats.stored + row_stats.cached,
            rows_path.display()
        );
    }
    let queries = rows.iter().map(|r| r.id.clone()).zip(row_vectors).collect();
    Ok(Some(ExamplePicker::Knn(KnnPicker::new(
        pool,
        pool_vectors,
        queries,
    )?)))
}
