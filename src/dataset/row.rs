//! The row schema every dataset is read into.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One multiple-choice item, as the promptbase AzureML pipelines write them:
/// `{"id", "dataset", "subject", "question", "choices", "correct_answer", ...extra}`.
///
/// Keys the schema does not know are kept in `extra`, untouched, and passed through to
/// results (few-shot examples, contexts for judged metrics, ground truth text...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub question: String,
    pub choices: Vec<String>,
    /// Index into `choices`; `None` for rows that are not scored by accuracy (judge-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct_answer: Option<usize>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Row {
    /// The row as a JSON object, as templates and result files see it.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
