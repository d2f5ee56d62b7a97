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
    /// Empty when the row has none: rows of any shape are valid (a judge or RAG dataset of
    /// `{query, response, context}` rows); only programs that read `question` need it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub question: String,
    /// Empty when the row has none; accuracy needs it (and `correct_answer`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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

/// Why one JSON object is not a valid row: the field at fault (if any) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldProblem {
    pub field: Option<String>,
    pub message: String,
}

impl FieldProblem {
    fn field(field: &str, message: impl Into<String>) -> Self {
        FieldProblem {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }
}

impl Row {
    /// Validates one decoded JSON value against the row schema.
    ///
    /// `id` may be absent: the caller derives one from the content (see
    /// [`Row::content_id`]); an empty `id` here means "not given". Unknown keys go to
    /// `extra` in their original order.
    pub(crate) fn from_json_value(value: Value) -> Result<Row, FieldProblem> {
        let Value::Object(mut object) = value else {
            return Err(FieldProblem {
                field: None,
                message: format!("expected a JSON object, found {}", kind_of(&value)),
            });
        };
        let id = match object.shift_remove("id") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) if !text.is_empty() => text,
            Some(Value::Number(number)) => number.to_string(),
            Some(other) => {
                return Err(FieldProblem::field(
                    "id",
                    format!("expected a non-empty string, found {}", kind_of(&other)),
                ));
            }
        };
        let dataset = optional_string(&mut object, "dataset")?;
        let subject = optional_string(&mut object, "subject")?;
        let question = match object.shift_remove("question") {
            Some(Value::String(text)) => text,
            None | Some(Value::Null) => String::new(),
            Some(other) => {
                return Err(FieldProblem::field(
                    "question",
                    format!("expected a string, found {}", kind_of(&other)),
                ));
            }
        };
        let choices = match object.shift_remove("choices") {
            Some(Value::Array(items)) => {
                let mut choices = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(text) => choices.push(text),
                        other => {
                            return Err(FieldProblem::field(
                                "choices",
                                format!(
                                    "expected an array of strings, found an array holding {}",
                                    kind_of(&other)
                                ),
                            ));
                        }
                    }
                }
                if choices.is_empty() {
                    return Err(FieldProblem::field("choices", "must not be empty"));
                }
                choices
            }
            None | Some(Value::Null) => Vec::new(),
            Some(other) => {
                return Err(FieldProblem::field(
                    "choices",
                    format!("expected an array of strings, found {}", kind_of(&other)),
                ));
            }
        };
        let correct_answer = match object.shift_remove("correct_answer") {
            None | Some(Value::Null) => None,
            // An answer index needs choices to point into (and `len() - 1` below needs one).
            Some(Value::Number(_)) if choices.is_empty() => {
                return Err(FieldProblem::field(
                    "correct_answer",
                    "the row has an answer index but no `choices` to index: add `choices` or drop `correct_answer`",
                ));
            }
            Some(Value::Number(number)) => match number.as_u64() {
                Some(index) if (index as usize) < choices.len() && index <= usize::MAX as u64 => {
                    Some(index as usize)
                }
                Some(index) => {
                    return Err(FieldProblem::field(
                        "correct_answer",
                        format!(
                            "{index} is out of range: there are {} choices (valid: 0..={})",
                            choices.len(),
                            choices.len() - 1
                        ),
                    ));
                }
                None => {
                    return Err(FieldProblem::field(
                        "correct_answer",
                        format!(
                            "expected an index into `choices` (0..={}), found {number}",
                            choices.len() - 1
                        ),
                    ));
                }
            },
            Some(other) => {
                return Err(FieldProblem::field(
                    "correct_answer",
                    format!(
                        "expected an index into `choices` (0..={}), found {}",
                        choices.len() - 1,
                        kind_of(&other)
                    ),
                ));
            }
        };
        Ok(Row {
            id,
            dataset,
            subject,
            question,
            choices,
            correct_answer,
            extra: object,
        })
    }

    /// An id derived from what the row asks: stable across files, re-orderings and
    /// conversions, so that a dataset without ids still resumes and compares by id.
    /// `occurrence` (1 for the first) tells apart exact duplicates within one dataset
    /// (MMLU's test split has a few).
    pub fn content_id(&self, occurrence: u64) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        // Length-prefixed fields: no two different rows hash the same bytes.
        for part in [
            self.subject.as_deref().unwrap_or(""),
            self.question.as_str(),
        ]
        .into_iter()
        .chain(self.choices.iter().map(String::as_str))
        {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        // A row without question and choices (judge, RAG) is identified by its other fields.
        if self.question.is_empty() && self.choices.is_empty() {
            let extra = serde_json::to_string(&self.extra).unwrap_or_default();
            hasher.update((extra.len() as u64).to_le_bytes());
            hasher.update(extra.as_bytes());
        }
        let digest = hex::encode(&hasher.finalize()[..8]);
        if occurrence <= 1 {
            format!("sha256:{digest}")
        } else {
            format!("sha256:{digest}-{occurrence}")
        }
    }
}

fn optional_string(
    object: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<String>, FieldProblem> {
    match object.shift_remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(FieldProblem::field(
            field,
            format!("expected a string, found {}", kind_of(&other)),
        )),
    }
}

/// "a string", "a number", ... for messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problem(value: Value) -> FieldProblem {
        Row::from_json_value(value).unwrap_err()
    }

    #[test]
    fn a_full_row_round_trips_with_extra_keys_in_order() {
        let value = json!({"id": "mmlu/anatomy/test/0", "dataset": "mmlu", "subject": "anatomy",
            "question": "Q?", "choices": ["a", "b"], "correct_answer": 1,
            "zeta": {"nested": [1, 2]}, "alpha": "kept"});
        let row = Row::from_json_value(value.clone()).unwrap();
        assert_eq!(row.correct_answer, Some(1));
        assert_eq!(row.extra.keys().collect::<Vec<_>>(), ["zeta", "alpha"]);
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
    }

    #[test]
    fn problems_name_the_field() {
        assert_eq!(
            problem(json!([1])).message,
            "expected a JSON object, found an array"
        );
        let p = problem(json!({"question": "q", "choices": "abcd"}));
        assert_eq!(p.field.as_deref(), Some("choices"));
        assert_eq!(p.message, "expected an array of strings, found a string");
        let p = problem(json!({"question": "q", "choices": ["a", 2]}));
        assert_eq!(
            p.message,
            "expected an array of strings, found an array holding a number"
        );
        let p = problem(json!({"question": "q", "choices": ["a", "b"], "correct_answer": 2}));
        assert_eq!(p.field.as_deref(), Some("correct_answer"));
        assert_eq!(
            p.message,
            "2 is out of range: there are 2 choices (valid: 0..=1)"
        );
        let p = problem(json!({"question": "q", "choices": ["a", "b"], "correct_answer": "B"}));
        assert_eq!(
            p.message,
            "expected an index into `choices` (0..=1), found a string"
        );
        let p = problem(json!({"question": "q", "choices": ["a", "b"], "correct_answer": -1}));
        assert_eq!(
            p.message,
            "expected an index into `choices` (0..=1), found -1"
        );
        // Rows of any shape: without question and choices a row is still a row.
        let judge_row = Row::from_json_value(json!({"query": "q", "response": "r"})).unwrap();
        assert!(judge_row.question.is_empty() && judge_row.choices.is_empty());
        assert_eq!(
            judge_row.to_json(),
            json!({"id": "", "query": "q", "response": "r"})
        );
        assert_ne!(
            judge_row.content_id(1),
            Row::from_json_value(json!({"query": "q2", "response": "r"}))
                .unwrap()
                .content_id(1)
        );
        assert_eq!(
            problem(json!({"question": 3, "choices": ["a"]})).message,
            "expected a string, found a number"
        );
        assert_eq!(
            problem(json!({"question": "q", "choices": []})).message,
            "must not be empty"
        );
        assert_eq!(
            problem(json!({"id": "", "question": "q", "choices": ["a"]}))
                .field
                .as_deref(),
            Some("id")
        );
    }

    #[test]
    fn content_ids_depend_on_content_only() {
        let a =
            Row::from_json_value(json!({"question": "q", "choices": ["a", "b"], "x": 1})).unwrap();
        let b = Row::from_json_value(
            json!({"question": "q", "choices": ["a", "b"], "correct_answer": 0}),
        )
        .unwrap();
        let c = Row::from_json_value(json!({"question": "q", "choices": ["ab"]})).unwrap();
        assert_eq!(a.content_id(1), b.content_id(1));
        assert_ne!(a.content_id(1), c.content_id(1));
        assert!(a.content_id(1).starts_with("sha256:") && a.content_id(1).len() == 7 + 16);
        assert_eq!(a.content_id(2), format!("{}-2", a.content_id(1)));
    }
}
