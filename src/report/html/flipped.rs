//! The flipped rows of a comparison, side by side: for each pair of runs, the rows right in one
//! and not in the other, with both runs' records (answers, captures, every call's messages).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::rows::{CHUNK_ROWS, compress, preview, split_messages};
use crate::results::{OutputRecord, ResultFolder};
use crate::score::ScoreError;
use crate::score::compare::{Comparison, PairComparison};

/// Directions of a flip, as the index stores them.
pub const DIRECTIONS: [&str; 2] = ["right_to_wrong", "wrong_to_right"];

#[derive(Debug, Default, Serialize)]
pub struct FlippedIndex {
    pub chunk_size: usize,
    pub directions: Vec<&'static str>,
    pub subjects: Vec<String>,
    pub id: Vec<String>,
    pub subject: Vec<u32>,
    pub direction: Vec<u8>,
    pub preview: Vec<String>,
    pub chosen_a: Vec<Option<usize>>,
    pub chosen_b: Vec<Option<usize>>,
    pub correct: Vec<Option<usize>>,
}

/// One pair's flipped rows, ready to embed.
#[derive(Debug, Default)]
pub struct FlippedRows {
    pub index: FlippedIndex,
    /// gzip + base64 JSON arrays of `{id, a, b}` (each side `{record, messages}`).
    pub chunks: Vec<String>,
}

/// Reads the records of the flipped ids from a run folder.
fn records_of(
    path: &Path,
    ids: &HashSet<&str>,
) -> Result<HashMap<String, OutputRecord>, ScoreError> {
    let folder = ResultFolder::open(path)?;
    let mut records = HashMap::new();
    folder.for_each_output(|_, record| {
        if ids.contains(record.id.as_str()) {
            records.insert(record.id.clone(), record);
        }
        Ok::<_, ScoreError>(())
    })?;
    Ok(records)
}

fn side(path: &Path, record: Option<&OutputRecord>) -> Result<Value, ScoreError> {
    let Some(record) = record else {
        return Ok(Value::Null);
    };
    let (detail, messages, _) = split_messages(record).map_err(|e| ScoreError::Write {
        path: path.to_path_buf(),
        message: format!("cannot embed a row in the HTML report: {e}"),
    })?;
    Ok(serde_json::json!({
        "record": detail,
        "messages": messages,
        "outcome": record.outcome().as_str(),
    }))
}

/// The flipped rows of every pair of the comparison, reading each run folder once.
pub fn embed_flipped(comparison: &Comparison) -> Result<Vec<FlippedRows>, ScoreError> {
    let baseline_path = Path::new(&comparison.baseline.path);
    let all: HashSet<&str> = comparison
        .pairs
        .iter()
        .flat_map(|p| {
            p.flipped
                .right_to_wrong
                .iter()
                .chain(&p.flipped.wrong_to_right)
        })
        .map(String::as_str)
        .collect();
    let baseline = records_of(baseline_path, &all)?;
    comparison
        .pairs
        .iter()
        .map(|pair| embed_pair(baseline_path, &baseline, pair))
        .collect()
}

fn embed_pair(
    baseline_path: &Path,
    baseline: &HashMap<String, OutputRecord>,
    pair: &PairComparison,
) -> Result<FlippedRows, ScoreError> {
    let candidate_path = Path::new(&pair.candidate.path);
    let ids: HashSet<&str> = pair
        .flipped
        .right_to_wrong
        .iter()
        .chain(&pair.flipped.wrong_to_right)
        .map(String::as_str)
        .collect();
    let candidate = records_of(candidate_path, &ids)?;
    let mut rows = FlippedRows {
        index: FlippedIndex {
            chunk_size: CHUNK_ROWS,
            directions: DIRECTIONS.to_vec(),
            ..FlippedIndex::default()
        },
        chunks: Vec::new(),
    };
    let mut subjects: HashMap<String, u32> = HashMap::new();
    let mut chunk: Vec<Value> = Vec::with_capacity(CHUNK_ROWS);
    let flips = pair
        .flipped
        .right_to_wrong
        .iter()
        .map(|id| (id, 0u8))
        .chain(pair.flipped.wrong_to_right.iter().map(|id| (id, 1u8)));
    for (id, direction) in flips {
        let a = baseline.get(id);
        let b = candidate.get(id);
        let subject_name = a.or(b).map(|r| r.subject()).unwrap_or("(no subject)");
        let next = subjects.len() as u32;
        let subject = *subjects.entry(subject_name.to_string()).or_insert_with(|| {
            rows.index.subjects.push(subject_name.to_string());
            next
        });
        let index = &mut rows.index;
        index.id.push(id.clone());
        index.subject.push(subject);
        index.direction.push(direction);
        index.preview.push(
            a.or(b)
                .map(|r| preview(&r.row.question))
                .unwrap_or_default(),
        );
        index.chosen_a.push(a.and_then(OutputRecord::answer_index));
        index.chosen_b.push(b.and_then(OutputRecord::answer_index));
        index
            .correct
            .push(a.or(b).and_then(|r| r.row.correct_answer));
        chunk.push(serde_json::json!({
            "id": id,
            "a": side(baseline_path, a)?,
            "b": side(candidate_path, b)?,
        }));
        if chunk.len() >= CHUNK_ROWS {
            rows.chunks
                .push(compress(candidate_path, &std::mem::take(&mut chunk))?);
        }
    }
    if !chunk.is_empty() {
        rows.chunks.push(compress(candidate_path, &chunk)?);
    }
    Ok(rows)
}
