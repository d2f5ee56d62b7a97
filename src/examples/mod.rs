//! Few-shot examples: where they come from (a dataset, or a run whose rows carry captures such
//! as a chain-of-thought `explanation`), and how a row's examples are picked from that pool
//! (seeded at random, or its k nearest neighbours by embedding).
//!
//! This module makes no model call: embeddings are computed by `run` (under the quota, the
//! retries and the cache) and handed over as vectors.

pub mod knn;
mod pool;
pub mod vectors;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dataset::{DatasetSource, Row};
use knn::KnnIndex;
pub use pool::ExamplePool;

/// Why a pool could not be loaded or searched.
#[derive(Debug, thiserror::Error)]
pub enum ExamplesError {
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error("examples from the run {}: {message}", folder.display())]
    Run { folder: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
}

/// Which rows of a run folder serve as examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExampleFilter {
    /// Rows the run answered correctly (self-generated chain of thought that reached the
    /// right answer, as promptbase keeps).
    Correct,
    /// Every finished row.
    All,
}

impl std::str::FromStr for ExampleFilter {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "correct" => Ok(ExampleFilter::Correct),
            "all" => Ok(ExampleFilter::All),
            _ => Err(format!(
                "unknown --examples-where `{text}`: use correct or all"
            )),
        }
    }
}

/// Whether `spec` names a run folder (it holds a `run.json`) rather than a dataset.
pub fn is_run_folder(spec: &str) -> bool {
    Path::new(spec)
        .join(crate::results::MANIFEST_FILE)
        .is_file()
}

/// The dataset whose embeddings file serves the pool `spec`: a run folder's rows are its
/// dataset's rows (same ids, same questions), so a CoT run over a split reuses that split's
/// embeddings.
pub fn embeddings_spec(spec: &str) -> String {
    if !is_run_folder(spec) {
        return spec.to_string();
    }
    crate::results::ResultFolder::open(Path::new(spec))
        .ok()
        .map(|folder| folder.manifest.dataset.spec)
        .filter(|dataset| !dataset.is_empty())
        .unwrap_or_else(|| spec.to_string())
}

/// The example pool named by `spec`: a dataset (name, file or folder), or a run folder whose
/// rows become examples carrying the run's captures as fields (`explanation`, `answer`...),
/// kept by `filter` (default: correct rows only).
pub fn load_pool(
    spec: &str,
    datasets_dir: &Path,
    filter: Option<ExampleFilter>,
) -> Result<Vec<Row>, ExamplesError> {
    if is_run_folder(spec) {
        return load_run_pool(Path::new(spec), filter.unwrap_or(ExampleFilter::Correct));
    }
    if filter.is_some() {
        return Err(ExamplesError::Usage(format!(
            "--examples-where applies to a run folder, and `{spec}` is a dataset: pass --examples results/<run>"
        )));
    }
    let source = DatasetSource::resolve(spec, datasets_dir)?;
    Ok(source.rows().filter_map(Result::ok).collect())
}

fn load_run_pool(folder: &Path, filter: ExampleFilter) -> Result<Vec<Row>, ExamplesError> {
    let run_error = |message: String| ExamplesError::Run {
        folder: folder.to_path_buf(),
        message,
    };
    let results =
        crate::results::ResultFolder::open(folder).map_err(|e| run_error(e.to_string()))?;
    let mut rows = Vec::new();
    results
        .for_each_output(|_, record| {
            let keep = match filter {
                ExampleFilter::All => true,
                ExampleFilter::Correct => record.outcome() == crate::results::Outcome::Correct,
            };
            if keep {
                let mut row = record.row.clone();
                // Captures become fields of the example; a row field of the same name stays
                // (the dataset's own data wins over what a model wrote).
                for (name, value) in record.captures {
                    row.extra.entry(name).or_insert(value);
                }
                rows.push(row);
            }
            Ok::<_, crate::results::ResultsError>(())
        })
        .map_err(|e| run_error(e.to_string()))?;
    if rows.is_empty() {
        return Err(run_error(match filter {
            ExampleFilter::Correct => {
                "no row was answered correctly, so there is no example to show; check the run's report, or pass --examples-where all".into()
            }
            ExampleFilter::All => "no finished row".into(),
        }));
    }
    Ok(rows)
}

/// An example chosen for a row.
#[derive(Debug, Clone)]
pub struct Picked<'a> {
    pub row: &'a Row,
    /// Cosine similarity to the row (`knn` only).
    pub similarity: Option<f64>,
}

/// Picks each row's examples from a pool.
pub enum ExamplePicker {
    /// Seeded per subject, same subject first (see `ExamplePool`).
    Random(ExamplePool),
    /// The nearest pool rows by embedding.
    Knn(KnnPicker),
}

impl ExamplePicker {
    pub fn pick<'a>(&'a self, row: &Row, k: usize) -> Vec<Picked<'a>> {
        match self {
            ExamplePicker::Random(pool) => pool
                .examples_for(row, k)
                .into_iter()
                .map(|row| Picked {
                    row,
                    similarity: None,
                })
                .collect(),
            ExamplePicker::Knn(picker) => picker.pick(row, k),
        }
    }
}

/// The pool and its index, with the embeddings of the rows to be answered.
pub struct KnnPicker {
    pool: Vec<Row>,
    index: KnnIndex,
    /// Embedding of each evaluated row, by id.
    queries: HashMap<String, Vec<f32>>,
}

impl KnnPicker {
    /// `pool_vectors[i]` embeds `pool[i]`; `queries` embeds the evaluated rows by id.
    pub fn new(
        pool: Vec<Row>,
        pool_vectors: Vec<Vec<f32>>,
        queries: HashMap<String, Vec<f32>>,
    ) -> Result<KnnPicker, ExamplesError> {
        let entries = pool
            .iter()
            .zip(pool_vectors)
            .map(|(row, vector)| (row.id.clone(), vector))
            .collect();
        let index = KnnIndex::new(entries).map_err(ExamplesError::Usage)?;
        if let Some((id, v)) = queries.iter().find(|(_, v)| v.len() != index.dims()) {
            return Err(ExamplesError::Usage(format!(
                "row `{id}` has a {}-dimensional embedding and the pool {}: embed both with one model",
                v.len(),
                index.dims()
            )));
        }
        Ok(KnnPicker {
            pool,
            index,
            queries,
        })
    }

    /// The `k` nearest pool rows, never the row itself (same id) nor a row with the same
    /// question. A row without an embedding gets none (it cannot be placed).
    pub fn pick<'a>(&'a self, row: &Row, k: usize) -> Vec<Picked<'a>> {
        let Some(query) = self.queries.get(&row.id) else {
            return Vec::new();
        };
        let question = row.question.trim();
        self.index
            .nearest(query, k, |i| {
                self.pool[i].id == row.id || self.pool[i].question.trim() == question
            })
            .into_iter()
            .map(|n| Picked {
                row: &self.pool[n.index],
                similarity: Some(n.similarity),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, question: &str) -> Row {
        Row {
            id: id.into(),
            dataset: None,
            subject: None,
            question: question.into(),
            choices: vec!["a".into(), "b".into()],
            correct_answer: Some(0),
            extra: Default::default(),
        }
    }

    #[test]
    fn knn_never_picks_the_row_or_its_question() {
        let pool = vec![
            row("p1", "same question"),
            row("q", "the row itself"),
            row("p2", "far away"),
            row("p3", "close"),
        ];
        let vectors = vec![
            vec![1.0, 0.0],
            vec![1.0, 0.0],
            vec![0.0, 1.0],
            vec![0.9, 0.1],
        ];
        let queries = HashMap::from([("q".to_string(), vec![1.0, 0.0])]);
        let picker = KnnPicker::new(pool, vectors, queries).unwrap();
        let picked = picker.pick(&row("q", " same question "), 2);
        let ids: Vec<&str> = picked.iter().map(|p| p.row.id.as_str()).collect();
        assert_eq!(ids, ["p3", "p2"]);
        assert!(picked[0].similarity.unwrap() > picked[1].similarity.unwrap());
    }
}
