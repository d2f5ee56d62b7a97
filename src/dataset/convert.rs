//! Conversions into the row schema: parquet (the hub's format), CSV (the original MMLU
//! layout or any CSV with a header), and JSONL (normalised: ids filled in).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::records::{read_csv, read_jsonl_objects, read_parquet};
use super::row::{FieldProblem, Row, kind_of};
use super::{DatasetError, JsonlWriter, RowReader};

/// Which source columns hold the row fields: `--map question=q,choices=A+B+C+D,answer=label`.
///
/// `choices` names one list column, or several text columns joined with `+`. Columns not
/// named here (and not used by the defaults) are kept as extra keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnMap {
    pub id: Option<String>,
    pub question: Option<String>,
    pub choices: Option<Vec<String>>,
    pub answer: Option<String>,
    pub subject: Option<String>,
}

impl ColumnMap {
    /// Parses `key=column,key=column`; keys: id, question, choices, answer (or
    /// correct_answer), subject.
    pub fn parse(text: &str) -> Result<ColumnMap, DatasetError> {
        let mut map = ColumnMap::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, column)) = pair.split_once('=') else {
                return Err(DatasetError::Map(format!("`{pair}` is not KEY=COLUMN")));
            };
            let column = column.trim();
            if column.is_empty() {
                return Err(DatasetError::Map(format!("`{pair}` names no column")));
            }
            match key.trim() {
                "id" => map.id = Some(column.to_string()),
                "question" => map.question = Some(column.to_string()),
                "choices" => {
                    map.choices = Some(column.split('+').map(|c| c.trim().to_string()).collect())
                }
                "answer" | "correct_answer" => map.answer = Some(column.to_string()),
                "subject" => map.subject = Some(column.to_string()),
                other => {
                    return Err(DatasetError::Map(format!(
                        "unknown key `{other}` (known: id, question, choices, answer, subject)"
                    )));
                }
            }
        }
        Ok(map)
    }

    pub fn is_empty(&self) -> bool {
        *self == ColumnMap::default()
    }
}

/// What `convert_file` needs besides the input and output paths.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    pub map: ColumnMap,
    /// `dataset` written on rows that have none; default: the first `_`-separated part of
    /// the output file name (`mmlu` for `mmlu_anatomy_test.jsonl`).
    pub dataset: Option<String>,
    /// `subject` written on rows that have no subject column; default: from the input file
    /// name for MMLU CSVs (`anatomy_test.csv`).
    pub subject: Option<String>,
    /// Split used in positional ids; default: from the input file name (`test-00000-of-00001.parquet`,
    /// `anatomy_test.csv`).
    pub split: Option<String>,
    /// Skip records that do not fit the schema (counted) instead of stopping at the first.
    pub skip_invalid: bool,
}

/// What a conversion wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertSummary {
    pub path: PathBuf,
    pub rows: u64,
    pub skipped: u64,
    /// Rows per subject (`""` for rows without a subject).
    pub subjects: BTreeMap<String, u64>,
}

/// Converts a `.parquet`, `.csv` or `.jsonl` file into a JSONL dataset at `out` (atomic:
/// `out` is replaced only when everything was written).
pub fn convert_file(
    input: &Path,
    out: &Path,
    options: &ConvertOptions,
) -> Result<ConvertSummary, DatasetError> {
    let extension = input
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (name_subject, name_split) = subject_and_split_from_file_name(input);
    let dataset = options
        .dataset
        .clone()
        .unwrap_or_else(|| dataset_from_output(out));
    let split = options.split.clone().or(name_split);
    let mut sink = RowSink::create(out, options.skip_invalid)?;
    match extension.as_str() {
        "parquet" => {
            let mut builder =
                RowBuilder::new(options.map.clone(), dataset, options.subject.clone(), split);
            read_parquet(input, |number, record| {
                sink.push(input, "record", number, builder.build(record))
            })?;
        }
        "csv" => {
            let subject = options.subject.clone().or(name_subject);
            let mut builder = RowBuilder::new(options.map.clone(), dataset, subject, split);
            read_csv(input, !options.map.is_empty(), |number, record| {
                sink.push(input, "line", number, builder.build(record))
            })?;
        }
        "jsonl" | "json" | "ndjson" => {
            if options.map.is_empty() {
                // Already in the row schema: copy, filling in ids the way the reader derives them.
                for item in RowReader::new(vec![input.to_path_buf()]) {
                    match item {
                        Ok(mut row) => {
                            if row.dataset.is_none() {
                                row.dataset = Some(dataset.clone());
                            }
                            if row.subject.is_none() {
                                row.subject = options.subject.clone();
                            }
                            sink.write(row)?;
                        }
                        Err(error) if options.skip_invalid && error.line > 0 => {
                            eprintln!("skipped: {error}");
                            sink.skipped += 1;
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            } else {
                let mut builder =
                    RowBuilder::new(options.map.clone(), dataset, options.subject.clone(), split);
                read_jsonl_objects(input, |number, record| {
                    sink.push(input, "line", number, builder.build(record))
                })?;
            }
        }
        _ => {
            return Err(DatasetError::Format {
                path: input.to_path_buf(),
                message: "unknown format: expected a .parquet, .csv or .jsonl file".to_string(),
            });
        }
    }
    sink.finish()
}

/// Collects rows into an atomic writer and counts them.
pub(crate) struct RowSink {
    writer: JsonlWriter,
    summary: ConvertSummary,
    skip_invalid: bool,
    skipped: u64,
}

impl RowSink {
    pub(crate) fn create(out: &Path, skip_invalid: bool) -> Result<RowSink, DatasetError> {
        Ok(RowSink {
            writer: JsonlWriter::create(out)?,
            summary: ConvertSummary {
                path: out.to_path_buf(),
                ..ConvertSummary::default()
            },
            skip_invalid,
            skipped: 0,
        })
    }

    /// `number` is the 1-based record number (`unit` "record") or line number (`unit` "line").
    pub(crate) fn push(
        &mut self,
        input: &Path,
        unit: &str,
        number: u64,
        built: Result<Row, FieldProblem>,
    ) -> Result<(), DatasetError> {
        match built {
            Ok(row) => self.write(row),
            Err(problem) => {
                let field = problem
                    .field
                    .map(|f| format!("field `{f}`: "))
                    .unwrap_or_default();
                let error = DatasetError::Format {
                    path: input.to_path_buf(),
                    message: format!("{unit} {number}: {field}{}", problem.message),
                };
                if self.skip_invalid {
                    eprintln!("skipped: {error}");
                    self.skipped += 1;
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }

    fn write(&mut self, row: Row) -> Result<(), DatasetError> {
        self.writer.write_row(&row)?;
        self.summary.rows += 1;
        *self
            .summary
            .subjects
            .entry(row.subject.unwrap_or_default())
            .or_insert(0) += 1;
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<ConvertSummary, DatasetError> {
        self.writer.finish()?;
        Ok(ConvertSummary {
            skipped: self.skipped,
            ..self.summary
        })
    }
}

/// Turns source records (column -> JSON value) into rows with the column map, and numbers
/// them: `dataset/subject/split/N`, N counting from 0 within each subject, in file order
/// (the ids MMLU users know: `mmlu/anatomy/test/17`).
pub(crate) struct RowBuilder {
    map: ColumnMap,
    dataset: String,
    subject: Option<String>,
    split: Option<String>,
    counters: HashMap<String, u64>,
}

impl RowBuilder {
    pub(crate) fn new(
        map: ColumnMap,
        dataset: String,
        subject: Option<String>,
        split: Option<String>,
    ) -> RowBuilder {
        RowBuilder {
            map,
            dataset,
            subject,
            split,
            counters: HashMap::new(),
        }
    }

    pub(crate) fn build(&mut self, mut record: Map<String, Value>) -> Result<Row, FieldProblem> {
        // Errors name the record's columns as they were before any was taken.
        let columns = record_columns(&record);
        let question = self.take_question(&mut record, &columns)?;
        let choice_columns = self.choice_columns(&record, &columns)?;
        let choices = take_choices(&mut record, &choice_columns, &columns)?;
        let correct_answer = self.take_answer(&mut record, &choices, &columns)?;
        let subject = self.take_subject(&mut record)?;
        let dataset = match record.shift_remove("dataset") {
            Some(Value::String(text)) if !text.is_empty() => text,
            _ => self.dataset.clone(),
        };
        let id = self.take_id(&mut record, &dataset, subject.as_deref());
        Ok(Row {
            id,
            dataset: Some(dataset),
            subject,
            question,
            choices,
            correct_answer,
            extra: record,
        })
    }

    fn take_question(
        &self,
        record: &mut Map<String, Value>,
        columns: &str,
    ) -> Result<String, FieldProblem> {
        let column = self
            .map
            .question
            .clone()
            .unwrap_or_else(|| "question".to_string());
        match record.shift_remove(&column) {
            Some(Value::String(text)) => Ok(text),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(other) => Err(problem(
                &column,
                format!("expected text, found {}", kind_of(&other)),
            )),
            None => Err(problem(
                &column,
                format!("no such column (columns: {columns}); name it with --map question=COLUMN"),
            )),
        }
    }

    /// The mapped choice columns, else a `choices` column, else letter columns `A`, `B`, ...
    fn choice_columns(
        &self,
        record: &Map<String, Value>,
        columns: &str,
    ) -> Result<Vec<String>, FieldProblem> {
        match &self.map.choices {
            Some(columns) => Ok(columns.clone()),
            None if record.contains_key("choices") => Ok(vec!["choices".to_string()]),
            None => {
                let letters: Vec<String> = (b'A'..=b'Z')
                    .map(|c| (c as char).to_string())
                    .take_while(|c| record.contains_key(c))
                    .collect();
                if letters.len() < 2 {
                    return Err(problem(
                        "choices",
                        format!(
                            "no `choices` column (columns: {columns}); name it with --map choices=COLUMN or choices=A+B+C+D"
                        ),
                    ));
                }
                Ok(letters)
            }
        }
    }

    fn take_answer(
        &self,
        record: &mut Map<String, Value>,
        choices: &[String],
        columns: &str,
    ) -> Result<Option<usize>, FieldProblem> {
        let answer_column = match &self.map.answer {
            Some(column) => Some(column.clone()),
            None => ["answer", "correct_answer", "label"]
                .iter()
                .find(|c| record.contains_key(**c))
                .map(|c| c.to_string()),
        };
        let Some(column) = answer_column else {
            return Ok(None);
        };
        match record.shift_remove(&column) {
            None if self.map.answer.is_some() => Err(problem(
                &column,
                format!("no such column (columns: {columns})"),
            )),
            None | Some(Value::Null) => Ok(None),
            Some(value) => Ok(Some(
                answer_index(&value, choices).map_err(|m| problem(&column, m))?,
            )),
        }
    }

    fn take_subject(
        &self,
        record: &mut Map<String, Value>,
    ) -> Result<Option<String>, FieldProblem> {
        let column = self
            .map
            .subject
            .clone()
            .unwrap_or_else(|| "subject".to_string());
        match record.shift_remove(&column) {
            Some(Value::String(text)) if !text.is_empty() => Ok(Some(text)),
            Some(Value::Null) | Some(Value::String(_)) | None => Ok(self.subject.clone()),
            Some(other) => Err(problem(
                &column,
                format!("expected text, found {}", kind_of(&other)),
            )),
        }
    }

    /// The record's own id, else `dataset/subject/split/N` counted within the subject (the
    /// counter moves either way, so positional ids do not depend on which rows had ids).
    fn take_id(
        &mut self,
        record: &mut Map<String, Value>,
        dataset: &str,
        subject: Option<&str>,
    ) -> String {
        let id_column = self.map.id.clone().unwrap_or_else(|| "id".to_string());
        let given_id = match record.shift_remove(&id_column) {
            Some(Value::String(text)) if !text.is_empty() => Some(text),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let counter = self
            .counters
            .entry(subject.unwrap_or_default().to_string())
            .or_insert(0);
        let id = given_id.unwrap_or_else(|| {
            let mut parts = vec![dataset];
            parts.extend(subject);
            parts.extend(self.split.as_deref());
            format!("{}/{}", parts.join("/"), counter)
        });
        *counter += 1;
        id
    }
}

fn problem(field: &str, message: String) -> FieldProblem {
    FieldProblem {
        field: Some(field.to_string()),
        message,
    }
}

/// The choices from one list column (a list, or a JSON list written as text in a CSV) or
/// from several text columns.
fn take_choices(
    record: &mut Map<String, Value>,
    choice_columns: &[String],
    columns: &str,
) -> Result<Vec<String>, FieldProblem> {
    let choices = if let [column] = choice_columns {
        match record.shift_remove(column) {
            Some(Value::Array(items)) => strings(items).map_err(|m| problem(column, m))?,
            // A list written as text (CSV): `["a", "b"]`.
            Some(Value::String(text)) if text.trim_start().starts_with('[') => {
                match serde_json::from_str::<Vec<Value>>(&text) {
                    Ok(items) => strings(items).map_err(|m| problem(column, m))?,
                    Err(e) => {
                        return Err(problem(column, format!("not a JSON list of strings: {e}")));
                    }
                }
            }
            Some(other) => {
                return Err(problem(
                    column,
                    format!("expected a list of strings, found {}", kind_of(&other)),
                ));
            }
            None => {
                return Err(problem(
                    column,
                    format!("no such column (columns: {columns})"),
                ));
            }
        }
    } else {
        let mut choices = Vec::with_capacity(choice_columns.len());
        for column in choice_columns {
            match record.shift_remove(column) {
                Some(Value::String(text)) => choices.push(text),
                Some(Value::Number(n)) => choices.push(n.to_string()),
                Some(other) => {
                    return Err(problem(
                        column,
                        format!("expected text, found {}", kind_of(&other)),
                    ));
                }
                None => {
                    return Err(problem(
                        column,
                        format!("no such column (columns: {columns})"),
                    ));
                }
            }
        }
        choices
    };
    if choices.is_empty() {
        return Err(problem(&choice_columns.join("+"), "no choices".to_string()));
    }
    Ok(choices)
}

fn record_columns(record: &Map<String, Value>) -> String {
    record
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn strings(items: Vec<Value>) -> Result<Vec<String>, String> {
    items
        .into_iter()
        .map(|item| match item {
            Value::String(text) => Ok(text),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(format!(
                "expected a list of strings, found a list holding {}",
                kind_of(&other)
            )),
        })
        .collect()
}

/// The answer as an index into `choices`: an integer index, a letter (`B`), a digit string
/// (`"1"`), or the text of one of the choices.
fn answer_index(value: &Value, choices: &[String]) -> Result<usize, String> {
    let range = format!("0..={}", choices.len() - 1);
    let index = match value {
        Value::Number(n) => match n.as_u64() {
            Some(i) => i,
            None => {
                return Err(format!(
                    "expected an index ({range}), a letter or a choice's text, found {n}"
                ));
            }
        },
        Value::String(text) => {
            let trimmed = text.trim();
            let bytes = trimmed.as_bytes();
            if bytes.len() == 1 && bytes[0].is_ascii_uppercase() {
                u64::from(bytes[0] - b'A')
            } else if let Ok(i) = trimmed.parse::<u64>() {
                i
            } else if let Some(i) = choices.iter().position(|c| c == text) {
                i as u64
            } else {
                return Err(format!(
                    "`{text}` is neither an index ({range}), a letter, nor the text of a choice"
                ));
            }
        }
        other => {
            return Err(format!(
                "expected an index ({range}), a letter or a choice's text, found {}",
                kind_of(other)
            ));
        }
    };
    if index >= choices.len() as u64 {
        let shown = match value {
            Value::String(text) if text.trim().parse::<u64>().is_err() => {
                format!("`{text}` (index {index})")
            }
            _ => index.to_string(),
        };
        return Err(format!(
            "{shown} is out of range: there are {} choices",
            choices.len()
        ));
    }
    Ok(index as usize)
}

/// `anatomy_test.csv` -> (anatomy, test); `test-00000-of-00001.parquet` -> (None, test).
fn subject_and_split_from_file_name(path: &Path) -> (Option<String>, Option<String>) {
    const SPLITS: [&str; 5] = ["test", "dev", "val", "validation", "train"];
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    for split in SPLITS {
        if let Some(subject) = stem.strip_suffix(&format!("_{split}"))
            && !subject.is_empty()
        {
            return (Some(subject.to_string()), Some(split.to_string()));
        }
        if stem == split || stem.starts_with(&format!("{split}-")) {
            return (None, Some(split.to_string()));
        }
    }
    (None, None)
}

/// `datasets/mmlu_anatomy_test.jsonl` -> `mmlu`.
fn dataset_from_output(out: &Path) -> String {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem.split('_')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("dataset")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_map_is_parsed_and_checked() {
        let map =
            ColumnMap::parse("question=q, choices=A+B+C+D,answer=label,subject=topic").unwrap();
        assert_eq!(map.question.as_deref(), Some("q"));
        assert_eq!(
            map.choices,
            Some(vec!["A".into(), "B".into(), "C".into(), "D".into()])
        );
        assert_eq!(map.answer.as_deref(), Some("label"));
        assert_eq!(
            ColumnMap::parse("q").unwrap_err().to_string(),
            "--map: `q` is not KEY=COLUMN"
        );
        assert_eq!(
            ColumnMap::parse("foo=bar").unwrap_err().to_string(),
            "--map: unknown key `foo` (known: id, question, choices, answer, subject)"
        );
    }

    #[test]
    fn records_become_rows_with_positional_ids_per_subject() {
        let mut builder = RowBuilder::new(
            ColumnMap::default(),
            "mmlu".into(),
            None,
            Some("test".into()),
        );
        let record = |subject: &str| {
            object(
                json!({"question": "q", "subject": subject, "choices": ["a", "b"], "answer": 1, "extra": [1]}),
            )
        };
        let a0 = builder.build(record("anatomy")).unwrap();
        let v0 = builder.build(record("virology")).unwrap();
        let a1 = builder.build(record("anatomy")).unwrap();
        assert_eq!(
            [a0.id.as_str(), v0.id.as_str(), a1.id.as_str()],
            [
                "mmlu/anatomy/test/0",
                "mmlu/virology/test/0",
                "mmlu/anatomy/test/1"
            ]
        );
        assert_eq!(a0.correct_answer, Some(1));
        assert_eq!(a0.extra, object(json!({"extra": [1]})));
    }

    #[test]
    fn answers_may_be_letters_digits_or_choice_text() {
        let choices: Vec<String> = ["x", "y", "z"].iter().map(|s| s.to_string()).collect();
        assert_eq!(answer_index(&json!("C"), &choices), Ok(2));
        assert_eq!(answer_index(&json!(" 1 "), &choices), Ok(1));
        assert_eq!(answer_index(&json!("y"), &choices), Ok(1));
        assert_eq!(
            answer_index(&json!("D"), &choices),
            Err("`D` (index 3) is out of range: there are 3 choices".into())
        );
        assert_eq!(
            answer_index(&json!(-1), &choices),
            Err("expected an index (0..=2), a letter or a choice's text, found -1".into())
        );
    }

    #[test]
    fn mapped_columns_and_letter_columns() {
        let map = ColumnMap::parse("question=prompt,choices=opa+opb,answer=cop").unwrap();
        let mut builder = RowBuilder::new(map, "medmcqa".into(), None, None);
        let row = builder
            .build(object(
                json!({"prompt": "p", "opa": "1", "opb": "2", "cop": 1, "id": "x7"}),
            ))
            .unwrap();
        assert_eq!(
            (row.id.as_str(), row.choices.len(), row.correct_answer),
            ("x7", 2, Some(1))
        );
        let mut builder = RowBuilder::new(ColumnMap::default(), "d".into(), None, None);
        let row = builder
            .build(object(
                json!({"question": "p", "A": "1", "B": "2", "answer": "B"}),
            ))
            .unwrap();
        assert_eq!((row.id.as_str(), row.correct_answer), ("d/0", Some(1)));
        let problem = builder
            .build(object(json!({"question": "p", "opts": []})))
            .unwrap_err();
        assert_eq!(problem.field.as_deref(), Some("choices"));
        assert_eq!(
            problem.message,
            "no `choices` column (columns: question, opts); name it with --map choices=COLUMN or choices=A+B+C+D"
        );
    }

    #[test]
    fn file_names_give_subject_and_split() {
        assert_eq!(
            subject_and_split_from_file_name(Path::new("data/anatomy_test.csv")),
            (Some("anatomy".into()), Some("test".into()))
        );
        assert_eq!(
            subject_and_split_from_file_name(Path::new("x/test-00000-of-00001.parquet")),
            (None, Some("test".into()))
        );
        assert_eq!(
            subject_and_split_from_file_name(Path::new("foo.csv")),
            (None, None)
        );
        assert_eq!(
            dataset_from_output(Path::new("datasets/mmlu_all_test.jsonl")),
            "mmlu"
        );
    }
}
