//! The rows a page carries: a small index the page filters at once (id, subject, outcome,
//! answer, judge scores, a preview of the question) and the full rows in compressed chunks the
//! page inflates only when one is opened or searched.
//!
//! A row's detail is the record as the results reader gives it (`OutputRecord`, the
//! `errors.jsonl` records of its id, the judge rows that judged it), so the page shows what the
//! run wrote and nothing re-derived. The messages of the calls go into their own chunks: they
//! are most of the bytes and only needed for the row on screen.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::embed;
use super::page_rows::PageRows;
use crate::results::{
    ErrorRecord, Outcome, OutputRecord, ResultFolder, judge_folders, judge_metric, judged_id,
};
use crate::score::{ScoreError, judged};

/// Rows per chunk: opening a row inflates at most this many rows' details.
pub const CHUNK_ROWS: usize = 250;

/// Characters of a question shown in the row list.
const PREVIEW_CHARS: usize = 140;

/// The outcomes the page filters by, in this order (the index stores positions into it).
pub const OUTCOMES: [&str; 6] = [
    "correct", "wrong", "unparsed", "refused", "unscored", "failed",
];
const FAILED: u8 = 5;

fn outcome_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Correct => 0,
        Outcome::Wrong => 1,
        Outcome::Unparsed => 2,
        Outcome::Refused => 3,
        Outcome::Unscored => 4,
    }
}

/// What the page filters and lists by, one array per field (compact for 14,000 rows).
#[derive(Debug, Default, Serialize)]
pub struct RowIndex {
    pub chunk_size: usize,
    pub outcomes: Vec<&'static str>,
    pub subjects: Vec<String>,
    /// Judge metrics, in the order of `judge`.
    pub metrics: Vec<String>,
    /// Whether any call carries its messages (results of older evalr do not).
    pub messages: bool,
    pub id: Vec<String>,
    pub subject: Vec<u32>,
    pub outcome: Vec<u8>,
    pub chosen: Vec<Option<usize>>,
    pub correct: Vec<Option<usize>>,
    pub preview: Vec<String>,
    /// `judge[m][i]`: the score (1..5) metric `m` gave row `i`.
    pub judge: Vec<Vec<Option<u8>>>,
}

/// A judge's verdict on one row of the judged run.
#[derive(Debug, Clone, Serialize)]
pub struct JudgedRow {
    pub metric: String,
    pub score: Option<u8>,
    pub record: Value,
}

/// Splits a record into its detail (everything but the calls' messages) and the messages.
pub fn split_messages(record: &OutputRecord) -> Result<(Value, Value, bool), serde_json::Error> {
    let mut value = serde_json::to_value(record)?;
    let mut messages = Vec::new();
    let mut any = false;
    if let Some(calls) = value.get_mut("calls").and_then(Value::as_array_mut) {
        for call in calls {
            let taken = call
                .as_object_mut()
                .and_then(|c| c.remove("messages"))
                .unwrap_or(Value::Array(Vec::new()));
            any |= taken.as_array().is_some_and(|m| !m.is_empty());
            messages.push(taken);
        }
    }
    Ok((value, Value::Array(messages), any))
}

/// Judge rows by the id of the row they judged.
pub type JudgedById = HashMap<String, Vec<JudgedRow>>;

/// The judge metrics found in `<run>/judge/<metric>/` and their rows by judged row id.
pub fn read_judged(run: &Path) -> Result<(Vec<String>, JudgedById), ScoreError> {
    let mut by_row: JudgedById = HashMap::new();
    let mut metrics: Vec<String> = Vec::new();
    for judge in judge_folders(run)? {
        let path = judge.path;
        let folder = ResultFolder::open(&path)?;
        folder.for_each_output(|_, record| {
            let Some(metric) = judge_metric(&record).map(str::to_string) else {
                return Ok::<_, ScoreError>(());
            };
            let Some(judged_id) = judged_id(&record).map(str::to_string) else {
                return Ok(());
            };
            if !metrics.contains(&metric) {
                metrics.push(metric.clone());
            }
            // Judge scores are whole numbers 1..=5; the page filters on them as such.
            let score = judged::read_judgment(&record)
                .and_then(|judgment| judgment.parsed.score())
                .map(|score| score.round() as u8);
            let (detail, _, _) = split_messages(&record).map_err(|e| json_error(&path, e))?;
            by_row.entry(judged_id).or_default().push(JudgedRow {
                metric,
                score,
                record: detail,
            });
            Ok(())
        })?;
    }
    metrics.sort();
    Ok((metrics, by_row))
}

fn json_error(path: &Path, error: serde_json::Error) -> ScoreError {
    ScoreError::Write {
        path: path.to_path_buf(),
        message: format!("cannot embed a row in the HTML report: {error}"),
    }
}

/// Writes a page's rows from a result folder into `out`, as the chunk elements of the page,
/// a chunk at a time (what is held is the index and one chunk): every output row in file
/// order, then the rows that failed for good (`errors.jsonl`) and never reached the outputs,
/// each only when `plan` holds it. Returns the index of the rows written.
pub fn write_run_rows(
    folder: &ResultFolder,
    mut plan: PageRows,
    out: &mut (dyn Write + Send),
) -> Result<RowIndex, ScoreError> {
    let (metrics, mut judged) = read_judged(&folder.path)?;
    let mut errors: BTreeMap<String, Vec<ErrorRecord>> = BTreeMap::new();
    let mut anonymous_errors = Vec::new();
    for error in folder.errors()? {
        match error.id.clone() {
            Some(id) => errors.entry(id).or_default().push(error),
            None => anonymous_errors.push(error),
        }
    }
    let mut builder = Builder::new(metrics, &folder.path, out);
    folder.for_each_output(|_, record| {
        let row_errors = errors.remove(&record.id).unwrap_or_default();
        let row_judged = judged.remove(&record.id).unwrap_or_default();
        if plan.take_output(record.outcome()) {
            builder.push_record(&record, row_errors, row_judged)?;
        }
        Ok::<_, ScoreError>(())
    })?;
    for (id, row_errors) in errors {
        if plan.take_failed() {
            builder.push_failed(id, row_errors)?;
        }
    }
    for (k, error) in anonymous_errors.into_iter().enumerate() {
        if !plan.take_failed() {
            continue;
        }
        let id = match error.line {
            Some(line) => format!("(line {line} of the dataset)"),
            None => format!("(error {})", k + 1),
        };
        builder.push_failed(id, vec![error])?;
    }
    builder.finish()
}

struct Builder<'a> {
    index: RowIndex,
    subjects: HashMap<String, u32>,
    details: Vec<Value>,
    messages: Vec<Value>,
    /// Whether a row of the chunk being filled carries messages.
    chunk_has_messages: bool,
    chunks: usize,
    path: &'a Path,
    out: &'a mut (dyn Write + Send),
}

impl<'a> Builder<'a> {
    fn new(metrics: Vec<String>, path: &'a Path, out: &'a mut (dyn Write + Send)) -> Self {
        let judge = vec![Vec::new(); metrics.len()];
        Builder {
            index: RowIndex {
                chunk_size: CHUNK_ROWS,
                outcomes: OUTCOMES.to_vec(),
                metrics,
                judge,
                ..RowIndex::default()
            },
            subjects: HashMap::new(),
            details: Vec::with_capacity(CHUNK_ROWS),
            messages: Vec::with_capacity(CHUNK_ROWS),
            chunk_has_messages: false,
            chunks: 0,
            path,
            out,
        }
    }

    fn subject(&mut self, name: &str) -> u32 {
        if let Some(&k) = self.subjects.get(name) {
            return k;
        }
        let k = self.index.subjects.len() as u32;
        self.index.subjects.push(name.to_string());
        self.subjects.insert(name.to_string(), k);
        k
    }

    fn push_record(
        &mut self,
        record: &OutputRecord,
        errors: Vec<ErrorRecord>,
        judged: Vec<JudgedRow>,
    ) -> Result<(), ScoreError> {
        let subject = self.subject(record.subject());
        let index = &mut self.index;
        index.id.push(record.id.clone());
        index.subject.push(subject);
        index.outcome.push(outcome_code(record.outcome()));
        index.chosen.push(record.answer_index());
        index.correct.push(record.row.correct_answer);
        index.preview.push(preview(&record.row.question));
        for (m, metric) in index.metrics.iter().enumerate() {
            let score = judged
                .iter()
                .find(|j| &j.metric == metric)
                .and_then(|j| j.score);
            index.judge[m].push(score);
        }
        let (detail, messages, any) =
            split_messages(record).map_err(|e| json_error(self.path, e))?;
        index.messages |= any;
        self.chunk_has_messages |= any;
        self.details.push(serde_json::json!({
            "id": record.id,
            "record": detail,
            "errors": errors,
            "judged": judged,
        }));
        self.messages.push(messages);
        self.flush_if_full()
    }

    fn push_failed(&mut self, id: String, errors: Vec<ErrorRecord>) -> Result<(), ScoreError> {
        let subject = self.subject("(failed rows)");
        let index = &mut self.index;
        index.id.push(id.clone());
        index.subject.push(subject);
        index.outcome.push(FAILED);
        index.chosen.push(None);
        index.correct.push(None);
        index.preview.push(
            errors
                .first()
                .map(|e| preview(&e.error))
                .unwrap_or_default(),
        );
        for scores in &mut index.judge {
            scores.push(None);
        }
        self.details.push(serde_json::json!({
            "id": id,
            "record": Value::Null,
            "errors": errors,
            "judged": [],
        }));
        self.messages.push(Value::Array(Vec::new()));
        self.flush_if_full()
    }

    fn flush_if_full(&mut self) -> Result<(), ScoreError> {
        if self.details.len() >= CHUNK_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the chunk filled so far. A chunk of messages is written only when one of its
    /// rows has any (the page reads a missing one as "no messages").
    fn flush(&mut self) -> Result<(), ScoreError> {
        if self.details.is_empty() {
            return Ok(());
        }
        let k = self.chunks;
        let details = compress(self.path, &self.details)?;
        chunk_element(self.out, "rows", k, &details).map_err(|e| write_error(self.path, e))?;
        if self.chunk_has_messages {
            let messages = compress(self.path, &self.messages)?;
            chunk_element(self.out, "msgs", k, &messages).map_err(|e| write_error(self.path, e))?;
        }
        self.details.clear();
        self.messages.clear();
        self.chunk_has_messages = false;
        self.chunks += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<RowIndex, ScoreError> {
        self.flush()?;
        Ok(self.index)
    }
}

/// One compressed chunk as an element of the page, `evalr-<kind>-<k>`.
pub fn chunk_element(
    out: &mut (dyn Write + Send),
    kind: &str,
    k: usize,
    chunk: &str,
) -> std::io::Result<()> {
    writeln!(
        out,
        "<script type=\"application/x-evalr-chunk\" id=\"evalr-{kind}-{k}\">{chunk}</script>"
    )
}

fn write_error(path: &Path, error: std::io::Error) -> ScoreError {
    ScoreError::Write {
        path: path.to_path_buf(),
        message: format!("writing the HTML report: {error}"),
    }
}

/// A chunk as the page holds it. Plain JSON (not the script-escaped form): base64 hides it.
pub fn compress<T: Serialize>(path: &Path, value: &T) -> Result<String, ScoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| json_error(path, e))?;
    embed::gzip_base64(&bytes).map_err(|e| ScoreError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The first characters of a text, on one line.
pub fn preview(text: &str) -> String {
    let mut out: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(PREVIEW_CHARS + 1)
        .collect();
    if out.chars().count() > PREVIEW_CHARS {
        out = out.chars().take(PREVIEW_CHARS).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_is_one_short_line() {
        assert_eq!(preview("a\n  b\tc"), "a b c");
        let long = "é".repeat(300);
        let short = preview(&long);
        assert_eq!(short.chars().count(), PREVIEW_CHARS + 1);
        assert!(short.ends_with('…'));
    }

    #[test]
    fn messages_are_split_from_the_record() {
        let record: OutputRecord = serde_json::from_value(serde_json::json!({
            "id": "r1",
            "row": {"id": "r1", "question": "q", "choices": ["a", "b"], "correct_answer": 0},
            "outcome": "wrong",
            "answer": {"capture": "answer", "option": "B", "index": 1},
            "calls": [{"capture": "answer", "kind": "select", "messages": [{"role": "user", "content": "<b>hi</b>"}]}],
        }))
        .expect("record");
        let (detail, messages, any) = split_messages(&record).expect("splits");
        assert!(any);
        assert!(detail["calls"][0].get("messages").is_none());
        assert_eq!(messages[0][0]["content"], "<b>hi</b>");
    }
}
