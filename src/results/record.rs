//! The lines of `outputs.jsonl` and `errors.jsonl`.
//!
//! Fields added after the first format carry `#[serde(default)]`, so older folders read; the
//! writer always writes every field.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backend::{Message, SelectPath, Usage};
use crate::dataset::Row;

/// The time stamps of a results folder: UTC, to the millisecond.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// How a row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Correct,
    Wrong,
    /// The model's answer matched no option (kept apart from `wrong` in every count).
    Unparsed,
    /// The service's content filter refused the request.
    Refused,
    /// The row has no correct answer (or the program no answer select): nothing to score.
    Unscored,
}

/// What the answer select of a row gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSelect {
    /// The program made no call into its answer capture.
    None,
    /// The answer select ran and matched no option.
    Unmatched,
    /// The answer select chose this option (index into the row's choices).
    Chosen(usize),
}

impl Outcome {
    /// The outcome rule, the one place it is written: a refusal is `refused`; a row without
    /// correct answer or without answer select is `unscored`; an answer that matched no
    /// option is `unparsed`; otherwise the chosen index is compared with the correct one.
    pub fn decide(refused: bool, answer: AnswerSelect, correct: Option<usize>) -> Outcome {
        match (refused, answer, correct) {
            (true, _, _) => Outcome::Refused,
            (_, AnswerSelect::None, _) | (_, _, None) => Outcome::Unscored,
            (_, AnswerSelect::Unmatched, Some(_)) => Outcome::Unparsed,
            (_, AnswerSelect::Chosen(i), Some(correct)) if i == correct => Outcome::Correct,
            (_, AnswerSelect::Chosen(_), Some(_)) => Outcome::Wrong,
        }
    }

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

/// The chosen option of the answer select.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRecord {
    /// The capture the answer select filled (the program's `answer_capture`).
    pub capture: String,
    /// The option's text as the program offered it (e.g. `B`).
    pub option: String,
    /// Index into the row's choices.
    pub index: usize,
}

/// The two kinds of model call a program makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    Select,
    Gen,
}

/// One model call of a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub capture: String,
    pub kind: CallKind,
    /// How a select was decided (`None` for gen, and for a call the service refused).
    #[serde(default)]
    pub path: Option<SelectPath>,
    #[serde(default)]
    pub options: Option<Vec<String>>,
    #[serde(default)]
    pub chosen: Option<usize>,
    /// Each option's probability, aligned with `options`, when the path measures them.
    #[serde(default)]
    pub option_probs: Option<Vec<f64>>,
    /// The generated text (gen; select on the generate-and-match paths).
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default)]
    pub latency_ms: f64,
    /// Requests sent for this call (0 when the cache answered).
    #[serde(default = "one")]
    pub attempts: u32,
    /// Of those, answered with HTTP 429.
    #[serde(default)]
    pub rate_limited: u32,
    /// Answered from the response cache.
    #[serde(default)]
    pub cached: bool,
    /// Which repeat of the row this call belongs to, when a row is rendered several times
    /// (ensembles); absent for rows rendered once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// The exact conversation the program rendered for this call (what the model was sent;
    /// a re-ask adds the backend's own follow-up turn). Absent in results of older evalr.
    #[serde(default)]
    pub messages: Vec<Message>,
}

fn one() -> u32 {
    1
}

/// One line of `outputs.jsonl`: a finished row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub id: String,
    /// The dataset row as the program saw it.
    pub row: Row,
    /// The program's name.
    #[serde(default)]
    pub program: String,
    /// Every capture the program made, by name.
    #[serde(default)]
    pub captures: Map<String, Value>,
    #[serde(default)]
    pub answer: Option<AnswerRecord>,
    /// The outcome the run recorded; scorers use [`OutputRecord::outcome`].
    #[serde(rename = "outcome")]
    pub recorded_outcome: Outcome,
    #[serde(default)]
    pub calls: Vec<CallRecord>,
    /// The sum of the calls' usage.
    #[serde(default)]
    pub usage: Usage,
    /// Wall time of the whole row.
    #[serde(default)]
    pub latency_ms: f64,
    /// Requests sent for the row (sum over its calls).
    #[serde(default = "one")]
    pub attempts: u32,
    #[serde(default)]
    pub rate_limited: u32,
    /// The backend's identity (`azure:https://.../gpt-4o`, `local:FILE@SHA`).
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Every request of the row was answered by a batch (`evalr run --batch`): the report
    /// prices it at the batch rate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
    /// The few-shot examples the row was shown, in prompt order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<PickedExample>,
    /// Repeats, votes and their reduction, when the row was ensembled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleRecord>,
}

/// One few-shot example chosen for a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickedExample {
    pub id: String,
    /// Cosine similarity of the example's embedding to the row's (`knn` picks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
}

/// How an ensembled row was decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleRecord {
    pub shuffle: crate::program::Shuffle,
    pub reduce: crate::program::Reduce,
    /// Votes per choice of the row (dataset order).
    pub votes: Vec<u32>,
    /// The row's option probabilities, in dataset order: the vote shares (`mean`: the mean
    /// option probabilities).
    pub option_probs: Vec<f64>,
    /// How the winner was found among tied choices, when there was a tie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_break: Option<String>,
    pub repeats: Vec<RepeatRecord>,
}

/// One repeat of an ensembled row: what it was shown and what it answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepeatRecord {
    pub repeat: u32,
    /// `permutation[i]` is the dataset index of the choice shown at position `i`.
    pub permutation: Vec<usize>,
    /// The option index the model chose among the shown options.
    pub chosen: Option<usize>,
    /// `chosen` mapped back to the dataset's choice order.
    pub answer: Option<usize>,
    /// The answer select's probabilities mapped back to the dataset's choice order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option_probs: Option<Vec<f64>>,
    pub outcome: Outcome,
    pub captures: Map<String, Value>,
    pub usage: Usage,
    pub requests: u32,
    pub cached: bool,
}

/// One line of `repeats.jsonl`: a finished repeat of an ensembled row and the calls it made,
/// journaled as it finishes so a resumed run never asks it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepeatLine {
    pub id: String,
    pub record: RepeatRecord,
    pub calls: Vec<CallRecord>,
}

/// What a row's program did, before the totals and the outcome are derived from it.
#[derive(Debug, Clone)]
pub struct FinishedRow {
    pub row: Row,
    pub program: String,
    pub captures: Map<String, Value>,
    /// The program's answer capture and what the select into it gave.
    pub answer_capture: String,
    pub answer: AnswerSelect,
    /// The service refused one of the calls (the row stopped there).
    pub refused: bool,
    pub calls: Vec<CallRecord>,
    pub latency_ms: f64,
    pub model: String,
    /// Answered by batches rather than live requests.
    pub batch: bool,
}

impl OutputRecord {
    /// The record of a finished row: totals summed over the calls, the outcome decided by
    /// the rule. Live runs and batch imports build their lines here alike.
    pub fn from_finished(finished: FinishedRow) -> OutputRecord {
        let FinishedRow {
            row,
            program,
            captures,
            answer_capture,
            answer,
            refused,
            calls,
            latency_ms,
            model,
            batch,
        } = finished;
        let answer_record = match answer {
            AnswerSelect::Chosen(index) => captures
                .get(&answer_capture)
                .and_then(Value::as_str)
                .map(|option| AnswerRecord {
                    capture: answer_capture.clone(),
                    option: option.to_string(),
                    index,
                }),
            _ => None,
        };
        let mut usage = Usage::default();
        for call in &calls {
            usage.add(call.usage);
        }
        OutputRecord {
            id: row.id.clone(),
            recorded_outcome: Outcome::decide(refused, answer, row.correct_answer),
            row,
            program,
            captures,
            answer: answer_record,
            usage,
            latency_ms,
            attempts: calls.iter().map(|c| c.attempts).sum(),
            rate_limited: calls.iter().map(|c| c.rate_limited).sum(),
            calls,
            model,
            finished_at: Some(now()),
            batch,
            examples: Vec::new(),
            ensemble: None,
        }
    }

    /// The outcome, by the rule of [`Outcome::decide`] applied to what the line holds: a
    /// results file is scored the same way everywhere, whatever its writer concluded (a line
    /// edited by hand, a `correct_answer` fixed after the run).
    pub fn outcome(&self) -> Outcome {
        let answer = match (self.recorded_outcome, self.answer_index()) {
            (Outcome::Unparsed, _) => AnswerSelect::Unmatched,
            (_, Some(index)) => AnswerSelect::Chosen(index),
            (Outcome::Unscored, None) => AnswerSelect::None,
            (_, None) => AnswerSelect::Unmatched,
        };
        Outcome::decide(
            self.recorded_outcome == Outcome::Refused,
            answer,
            self.row.correct_answer,
        )
    }

    /// The index of the chosen option, when there is one.
    pub fn answer_index(&self) -> Option<usize> {
        self.answer.as_ref().map(|a| a.index)
    }

    /// The answer call (the last call into `answer.capture`).
    pub fn answer_call(&self) -> Option<&CallRecord> {
        let capture = &self.answer.as_ref()?.capture;
        self.calls.iter().rev().find(|c| &c.capture == capture)
    }

    /// Option probabilities of the row, aligned with `row.choices`: the answer call's, or for
    /// an ensembled row the vote shares (its repeats' calls saw permuted choices).
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

/// Why a line of `errors.jsonl` was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A dataset line that is not a valid row (`file`, `line` say which).
    InvalidRow,
    /// A row whose calls failed for good (after the retries).
    Failed,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRow => "invalid_row",
            ErrorKind::Failed => "failed",
        }
    }
}

/// One line of `errors.jsonl`: a row that did not finish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The row id (absent for a dataset line that could not be read as a row).
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub kind: ErrorKind,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(correct: Option<usize>) -> Row {
        serde_json::from_value(serde_json::json!({
            "id": "t/0", "question": "q", "choices": ["a", "b"], "correct_answer": correct,
        }))
        .expect("row")
    }

    fn finished(answer: AnswerSelect, refused: bool, correct: Option<usize>) -> OutputRecord {
        let mut captures = Map::new();
        captures.insert("answer".into(), Value::String("B".into()));
        OutputRecord::from_finished(FinishedRow {
            row: row(correct),
            program: "p".into(),
            captures,
            answer_capture: "answer".into(),
            answer,
            refused,
            calls: Vec::new(),
            latency_ms: 1.0,
            model: "m".into(),
            batch: false,
        })
    }

    /// The writer's outcome and the reader's agree on every case: the rule is one function.
    #[test]
    fn the_written_outcome_reads_back_the_same() {
        for answer in [
            AnswerSelect::None,
            AnswerSelect::Unmatched,
            AnswerSelect::Chosen(0),
            AnswerSelect::Chosen(1),
        ] {
            for refused in [false, true] {
                for correct in [None, Some(0), Some(1)] {
                    let record = finished(answer, refused, correct);
                    let line = serde_json::to_string(&record).unwrap();
                    let back: OutputRecord = serde_json::from_str(&line).unwrap();
                    assert_eq!(
                        back.outcome(),
                        record.recorded_outcome,
                        "{answer:?} refused={refused} correct={correct:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn outcome_is_recomputed_from_the_answer_index() {
        let mut record = finished(AnswerSelect::Chosen(1), false, Some(1));
        assert_eq!(record.outcome(), Outcome::Correct);
        record.answer.as_mut().unwrap().index = 0;
        // The journal said "correct"; the index says otherwise.
        assert_eq!(record.outcome(), Outcome::Wrong);
        record.answer = None;
        assert_eq!(record.outcome(), Outcome::Unparsed);
        record.row.correct_answer = None;
        assert_eq!(record.outcome(), Outcome::Unscored);
    }
}
