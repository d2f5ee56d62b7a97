//! Reading a result folder: `run.json`, then `outputs.jsonl` and `errors.jsonl` streamed line
//! by line (a folder of a million rows never has to fit in memory).
//!
//! The format is the contract written by `evalr run` (see the README, "Results format").
//! Only the fields the scorer needs are typed here; everything else is kept as JSON.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ScoreError;
use crate::dataset::Row;

/// `run.json`: what the run was.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunInfo {
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub evalr_version: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub program: Option<ProgramInfo>,
    #[serde(default)]
    pub dataset: Option<DatasetInfo>,
    #[serde(default)]
    pub model: Option<ModelInfo>,
    #[serde(default)]
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProgramInfo {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DatasetInfo {
    #[serde(default)]
    pub spec: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub rows: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelInfo {
    #[serde(default)]
    pub identity: Option<String>,
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub deployment: Option<String>,
    #[serde(default)]
    pub prices: Option<RunPrices>,
}

/// Prices the user gave in the config file, copied into `run.json` by the run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunPrices {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    #[serde(default = "usd")]
    pub currency: String,
}

fn usd() -> String {
    "USD".to_string()
}

/// How a row ended, as the scorer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Correct,
    Wrong,
    /// No option could be read from the answer.
    Unparsed,
    /// The model declined to answer.
    Refused,
    /// Nothing to score against (no `correct_answer`, or no answer select).
    Unscored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Correct => "correct",
            Outcome::Wrong => "wrong",
            Outcome::Unparsed => "unparsed",
            Outcome::Refused => "refused",
            Outcome::Unscored => "unscored",
        }
    }

    /// Counted in the accuracy denominator.
    pub fn is_scored(self) -> bool {
        self != Outcome::Unscored
    }

    /// An answer that could not be used (kept apart from wrong answers).
    pub fn is_invalid(self) -> bool {
        matches!(self, Outcome::Unparsed | Outcome::Refused)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AnswerRef {
    #[serde(default)]
    pub capture: Option<String>,
    #[serde(default)]
    pub option: Option<String>,
    #[serde(default)]
    pub index: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CallRecord {
    #[serde(default)]
    pub capture: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub options: Option<Vec<String>>,
    #[serde(default)]
    pub chosen: Option<usize>,
    #[serde(default)]
    pub option_probs: Option<Vec<f64>>,
    #[serde(default)]
    pub text: Option<String>,
    /// Requests sent for this call (0 when the cache answered).
    #[serde(default = "one")]
    pub attempts: u32,
    #[serde(default)]
    pub cached: bool,
}

/// One line of `outputs.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputRecord {
    pub id: String,
    pub row: Row,
    #[serde(default)]
    pub program: Option<String>,
    #[serde(default)]
    pub captures: Map<String, Value>,
    #[serde(default)]
    pub answer: Option<AnswerRef>,
    #[serde(rename = "outcome")]
    pub recorded_outcome: Outcome,
    /// Answered by batches: priced at the batch rate.
    #[serde(default)]
    pub batch: bool,
    #[serde(default)]
    pub calls: Vec<CallRecord>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default)]
    pub latency_ms: f64,
    #[serde(default = "one")]
    pub attempts: u32,
    #[serde(default)]
    pub rate_limited: u32,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Present when the row was ensembled (repeats with shuffled choices).
    #[serde(default)]
    pub ensemble: Option<EnsembleRef>,
}

/// What the scorer reads of an ensembled row: its option probabilities (the vote shares), in
/// the dataset's choice order. The answer calls of its repeats saw permuted choices, so their
/// own probabilities are not aligned with `row.choices`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EnsembleRef {
    #[serde(default)]
    pub option_probs: Vec<f64>,
}

fn one() -> u32 {
    1
}

impl OutputRecord {
    /// The outcome the scorer uses. A row with no `correct_answer` is unscored whatever the run
    /// wrote; an unparsed or refused answer stays so; otherwise the answer index is compared
    /// with `correct_answer` again, so a results file is scored by the same rule everywhere.
    pub fn outcome(&self) -> Outcome {
        let Some(correct) = self.row.correct_answer else {
            return Outcome::Unscored;
        };
        if self.recorded_outcome.is_invalid() {
            return self.recorded_outcome;
        }
        match self.answer.as_ref().and_then(|a| a.index) {
            Some(index) if index == correct => Outcome::Correct,
            Some(_) => Outcome::Wrong,
            None if self.recorded_outcome == Outcome::Unscored => Outcome::Unscored,
            None => Outcome::Unparsed,
        }
    }

    /// The index of the chosen option, when there is one.
    pub fn answer_index(&self) -> Option<usize> {
        self.answer.as_ref().and_then(|a| a.index)
    }

    /// The answer call (the select that filled `answer.capture`).
    pub fn answer_call(&self) -> Option<&CallRecord> {
        let capture = self.answer.as_ref()?.capture.as_deref()?;
        self.calls
            .iter()
            .rev()
            .find(|c| c.capture.as_deref() == Some(capture))
    }

    /// Option probabilities of the answer call, aligned with `row.choices`.
    pub fn option_probs(&self) -> Option<&[f64]> {
        if let Some(ensemble) = &self.ensemble {
            return Some(ensemble.option_probs.as_slice()).filter(|p| !p.is_empty());
        }
        self.answer_call()?.option_probs.as_deref()
    }

    /// Whether every call of the row was answered from the cache.
    pub fn fully_cached(&self) -> bool {
        !self.calls.is_empty() && self.calls.iter().all(|c| c.cached)
    }

    pub fn subject(&self) -> &str {
        self.row.subject.as_deref().unwrap_or("(no subject)")
    }
}

/// One line of `errors.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorRecord {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
    pub kind: String,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub attempts: u32,
}

/// An opened result folder: `run.json` read, the JSONL files ready to stream.
#[derive(Debug, Clone)]
pub struct ResultFolder {
    pub path: PathBuf,
    pub run: RunInfo,
}

/// What reading `outputs.jsonl` noticed besides the rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadNotes {
    /// The last line had no newline and did not parse: a run interrupted mid-write. It is
    /// left out, as resume does.
    pub torn_last_line: bool,
}

impl ResultFolder {
    pub const RUN_FILE: &'static str = "run.json";
    pub const OUTPUTS_FILE: &'static str = "outputs.jsonl";
    pub const ERRORS_FILE: &'static str = "errors.jsonl";

    /// Open a folder; fails when it is missing, has no `run.json`, or `run.json` is not the
    /// expected JSON.
    pub fn open(path: &Path) -> Result<Self, ScoreError> {
        if !path.is_dir() {
            return Err(ScoreError::NotAFolder(path.to_path_buf()));
        }
        let run_path = path.join(Self::RUN_FILE);
        let text = std::fs::read_to_string(&run_path).map_err(|source| ScoreError::Io {
            path: run_path.clone(),
            source,
        })?;
        let run: RunInfo = serde_json::from_str(&text).map_err(|source| ScoreError::Json {
            path: run_path.clone(),
            line: source.line() as u64,
            source,
        })?;
        if !path.join(Self::OUTPUTS_FILE).is_file() {
            return Err(ScoreError::Io {
                path: path.join(Self::OUTPUTS_FILE),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
            });
        }
        Ok(ResultFolder {
            path: path.to_path_buf(),
            run,
        })
    }

    pub fn outputs_path(&self) -> PathBuf {
        self.path.join(Self::OUTPUTS_FILE)
    }

    pub fn errors_path(&self) -> PathBuf {
        self.path.join(Self::ERRORS_FILE)
    }

    /// A short name for reports: the run id, or the folder name.
    pub fn name(&self) -> String {
        if !self.run.run_id.is_empty() {
            return self.run.run_id.clone();
        }
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    /// Stream `outputs.jsonl`: `visit(line_number, record)` for each row, in file order.
    /// A line that is not a valid output record is an error naming the file and line, except
    /// a torn last line (no trailing newline), which is skipped and reported in the notes.
    /// The same id twice is an error naming both lines.
    pub fn for_each_output(
        &self,
        mut visit: impl FnMut(u64, OutputRecord) -> Result<(), ScoreError>,
    ) -> Result<ReadNotes, ScoreError> {
        let path = self.outputs_path();
        let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let notes = read_jsonl(&path, |line_no, record: OutputRecord| {
            if let Some(first) = seen.insert(record.id.clone(), line_no) {
                return Err(ScoreError::DuplicateId {
                    path: path.clone(),
                    line: line_no,
                    id: record.id,
                    first_line: first,
                });
            }
            visit(line_no, record)
        })?;
        Ok(notes)
    }

    /// Read `errors.jsonl` (absent means no errors).
    pub fn errors(&self) -> Result<Vec<ErrorRecord>, ScoreError> {
        let path = self.errors_path();
        if !path.exists() {
            return Ok(Vec::new());
        }
        let mut errors = Vec::new();
        read_jsonl(&path, |_, record: ErrorRecord| {
            errors.push(record);
            Ok(())
        })?;
        Ok(errors)
    }
}

fn read_jsonl<T: serde::de::DeserializeOwned>(
    path: &Path,
    mut visit: impl FnMut(u64, T) -> Result<(), ScoreError>,
) -> Result<ReadNotes, ScoreError> {
    let file = File::open(path).map_err(|source| ScoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let mut buffer = String::new();
    let mut line_no = 0u64;
    let mut notes = ReadNotes::default();
    loop {
        buffer.clear();
        let read = reader
            .read_line(&mut buffer)
            .map_err(|source| ScoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let complete = buffer.ends_with('\n');
        let text = buffer.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<T>(text) {
            Ok(record) => visit(line_no, record)?,
            Err(_) if !complete => {
                notes.torn_last_line = true;
                break;
            }
            Err(source) => {
                return Err(ScoreError::Json {
                    path: path.to_path_buf(),
                    line: line_no,
                    source,
                });
            }
        }
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record_line(i: usize) -> String {
        serde_json::json!({
            "id": format!("t/{i}"),
            "row": {"id": format!("t/{i}"), "question": "q", "choices": ["a", "b"], "correct_answer": 1},
            "answer": {"capture": "answer", "option": "B", "index": 1},
            "outcome": "correct",
        })
        .to_string()
    }

    fn folder_with(outputs: &str) -> (tempfile::TempDir, ResultFolder) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("run.json"), r#"{"run_id": "t"}"#).expect("run.json");
        std::fs::write(dir.path().join("outputs.jsonl"), outputs).expect("outputs");
        let folder = ResultFolder::open(dir.path()).expect("opens");
        (dir, folder)
    }

    proptest! {
        /// Whatever a bad line holds, the error names its line (or, as the unterminated last
        /// line, it is cut off as torn), and the rows before it were all read.
        #[test]
        fn a_bad_line_is_named_by_its_number(
            good_before in 0usize..6,
            garbage in "[^\n]{0,40}",
            terminated in any::<bool>(),
        ) {
            let mut text: String = (0..good_before).map(|i| record_line(i) + "\n").collect();
            text.push_str(&garbage);
            if terminated {
                text.push('\n');
            }
            let (_dir, folder) = folder_with(&text);
            let mut seen = 0usize;
            let result = folder.for_each_output(|_, _| { seen += 1; Ok(()) });
            let blank = garbage.trim().is_empty();
            let valid = serde_json::from_str::<OutputRecord>(garbage.trim()).is_ok();
            match result {
                Ok(notes) => {
                    prop_assert!(blank || valid || (!terminated && notes.torn_last_line));
                }
                Err(ScoreError::Json { line, .. }) => {
                    prop_assert!(terminated && !blank && !valid);
                    prop_assert_eq!(line, good_before as u64 + 1);
                    prop_assert_eq!(seen, good_before);
                }
                Err(other) => prop_assert!(false, "unexpected error {}", other),
            }
        }
    }

    #[test]
    fn outcome_is_recomputed_from_the_answer_index() {
        let mut record: OutputRecord = serde_json::from_str(&record_line(0)).expect("record");
        assert_eq!(record.outcome(), Outcome::Correct);
        record.answer = Some(AnswerRef {
            capture: Some("answer".into()),
            option: Some("A".into()),
            index: Some(0),
        });
        // The journal said "correct"; the index says otherwise.
        assert_eq!(record.outcome(), Outcome::Wrong);
        record.answer = None;
        assert_eq!(record.outcome(), Outcome::Unparsed);
        record.row.correct_answer = None;
        assert_eq!(record.outcome(), Outcome::Unscored);
    }
}
