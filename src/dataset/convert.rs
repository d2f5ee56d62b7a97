//! Conversions into the row schema: parquet (the hub's format), CSV (the original MMLU
//! layout or any CSV with a header), and JSONL (normalised: ids filled in).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Number, Value};

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
        let problem = |field: &str, message: String| FieldProblem {
            field: Some(field.to_string()),
            message,
        };
        let column_list = record_columns(&record);
        let columns = || column_list.as_str();

        let question_column = self
            .map
            .question
            .clone()
            .unwrap_or_else(|| "question".to_string());
        let question = match record.shift_remove(&question_column) {
            Some(Value::String(text)) => text,
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(problem(
                    &question_column,
                    format!("expected text, found {}", kind_of(&other)),
                ));
            }
            None => {
                return Err(problem(
                    &question_column,
                    format!(
                        "no such column (columns: {}); name it with --map question=COLUMN",
                        columns()
                    ),
                ));
            }
        };

        let choice_columns = match &self.map.choices {
            Some(columns) => columns.clone(),
            None if record.contains_key("choices") => vec!["choices".to_string()],
            None => {
                let letters: Vec<String> = (b'A'..=b'Z')
                    .map(|c| (c as char).to_string())
                    .take_while(|c| record.contains_key(c))
                    .collect();
                if letters.len() < 2 {
                    return Err(problem(
                        "choices",
                        format!(
                            "no `choices` column (columns: {}); name it with --map choices=COLUMN or choices=A+B+C+D",
                            columns()
                        ),
                    ));
                }
                letters
            }
        };
        let choices = if let [column] = choice_columns.as_slice() {
            match record.shift_remove(column) {
                Some(Value::Array(items)) => strings(items).map_err(|m| problem(column, m))?,
                // A list written as text (CSV): `["a", "b"]`.
                Some(Value::String(text)) if text.trim_start().starts_with('[') => {
                    match serde_json::from_str::<Vec<Value>>(&text) {
                        Ok(items) => strings(items).map_err(|m| problem(column, m))?,
                        Err(e) => {
                            return Err(problem(
                                column,
                                format!("not a JSON list of strings: {e}"),
                            ));
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
                        format!("no such column (columns: {})", columns()),
                    ));
                }
            }
        } else {
            let mut choices = Vec::with_capacity(choice_columns.len());
            for column in &choice_columns {
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
                            format!("no such column (columns: {})", columns()),
                        ));
                    }
                }
            }
            choices
        };
        if choices.is_empty() {
            return Err(problem(&choice_columns.join("+"), "no choices".to_string()));
        }

        let answer_column = match &self.map.answer {
            Some(column) => Some(column.clone()),
            None => ["answer", "correct_answer", "label"]
                .iter()
                .find(|c| record.contains_key(**c))
                .map(|c| c.to_string()),
        };
        let correct_answer = match &answer_column {
            None => None,
            Some(column) => match record.shift_remove(column) {
                None if self.map.answer.is_some() => {
                    return Err(problem(
                        column,
                        format!("no such column (columns: {})", columns()),
                    ));
                }
                None | Some(Value::Null) => None,
                Some(value) => {
                    Some(answer_index(&value, &choices).map_err(|m| problem(column, m))?)
                }
            },
        };

        let subject_column = self
            .map
            .subject
            .clone()
            .unwrap_or_else(|| "subject".to_string());
        let subject = match record.shift_remove(&subject_column) {
            Some(Value::String(text)) if !text.is_empty() => Some(text),
            Some(Value::Null) | Some(Value::String(_)) | None => self.subject.clone(),
            Some(other) => {
                return Err(problem(
                    &subject_column,
                    format!("expected text, found {}", kind_of(&other)),
                ));
            }
        };
        let dataset = match record.shift_remove("dataset") {
            Some(Value::String(text)) if !text.is_empty() => text,
            _ => self.dataset.clone(),
        };
        let id_column = self.map.id.clone().unwrap_or_else(|| "id".to_string());
        let given_id = match record.shift_remove(&id_column) {
            Some(Value::String(text)) if !text.is_empty() => Some(text),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let counter = self
            .counters
            .entry(subject.clone().unwrap_or_default())
            .or_insert(0);
        let id = given_id.unwrap_or_else(|| {
            let mut parts = vec![dataset.as_str()];
            parts.extend(subject.as_deref());
            parts.extend(self.split.as_deref());
            format!("{}/{}", parts.join("/"), counter)
        });
        *counter += 1;
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

/// Streams the records of a parquet file as JSON objects; `visit` gets the 1-based record
/// number. Memory: one record batch at a time.
pub(crate) fn read_parquet(
    path: &Path,
    mut visit: impl FnMut(u64, Map<String, Value>) -> Result<(), DatasetError>,
) -> Result<(), DatasetError> {
    let format = |message: String| DatasetError::Format {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        action: "open",
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format(format!("not a readable parquet file: {e}")))?
        .with_batch_size(1024)
        .build()
        .map_err(|e| format(format!("not a readable parquet file: {e}")))?;
    let mut number = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| format(format!("after record {number}: {e}")))?;
        for index in 0..batch.num_rows() {
            number += 1;
            visit(number, batch_record(&batch, index))?;
        }
    }
    Ok(())
}

fn batch_record(batch: &RecordBatch, index: usize) -> Map<String, Value> {
    let schema = batch.schema();
    let mut record = Map::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        record.insert(field.name().clone(), arrow_value(column.as_ref(), index));
    }
    record
}

/// One arrow value as JSON. Types a multiple-choice dataset does not use (binary, dates,
/// decimals...) become their textual form.
fn arrow_value(array: &dyn Array, index: usize) -> Value {
    if index >= array.len() || array.is_null(index) {
        return Value::Null;
    }
    fn float(f: f64) -> Value {
        Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
    macro_rules! primitive {
        ($t:ty, $convert:expr) => {
            match array.as_primitive_opt::<$t>() {
                Some(values) => $convert(values.value(index)),
                None => Value::Null,
            }
        };
    }
    match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => array
            .as_boolean_opt()
            .map(|a| Value::Bool(a.value(index)))
            .unwrap_or(Value::Null),
        DataType::Int8 => primitive!(Int8Type, |v: i8| Value::from(v)),
        DataType::Int16 => primitive!(Int16Type, |v: i16| Value::from(v)),
        DataType::Int32 => primitive!(Int32Type, |v: i32| Value::from(v)),
        DataType::Int64 => primitive!(Int64Type, |v: i64| Value::from(v)),
        DataType::UInt8 => primitive!(UInt8Type, |v: u8| Value::from(v)),
        DataType::UInt16 => primitive!(UInt16Type, |v: u16| Value::from(v)),
        DataType::UInt32 => primitive!(UInt32Type, |v: u32| Value::from(v)),
        DataType::UInt64 => primitive!(UInt64Type, |v: u64| Value::from(v)),
        DataType::Float16 => primitive!(Float16Type, |v: half::f16| float(f64::from(v))),
        DataType::Float32 => primitive!(Float32Type, |v: f32| float(f64::from(v))),
        DataType::Float64 => primitive!(Float64Type, float),
        DataType::Utf8 => array
            .as_string_opt::<i32>()
            .map(|a| Value::from(a.value(index)))
            .unwrap_or(Value::Null),
        DataType::LargeUtf8 => array
            .as_string_opt::<i64>()
            .map(|a| Value::from(a.value(index)))
            .unwrap_or(Value::Null),
        DataType::Utf8View => array
            .as_string_view_opt()
            .map(|a| Value::from(a.value(index)))
            .unwrap_or(Value::Null),
        DataType::List(_) => array
            .as_list_opt::<i32>()
            .map(|a| list_value(a.value(index).as_ref()))
            .unwrap_or(Value::Null),
        DataType::LargeList(_) => array
            .as_list_opt::<i64>()
            .map(|a| list_value(a.value(index).as_ref()))
            .unwrap_or(Value::Null),
        DataType::FixedSizeList(_, _) => array
            .as_fixed_size_list_opt()
            .map(|a| list_value(a.value(index).as_ref()))
            .unwrap_or(Value::Null),
        DataType::Struct(fields) => match array.as_struct_opt() {
            Some(structure) => Value::Object(
                fields
                    .iter()
                    .zip(structure.columns())
                    .map(|(field, column)| {
                        (field.name().clone(), arrow_value(column.as_ref(), index))
                    })
                    .collect(),
            ),
            None => Value::Null,
        },
        DataType::Dictionary(_, _) => match array.as_any_dictionary_opt() {
            Some(dictionary) => match arrow_value(dictionary.keys(), index).as_u64() {
                Some(key) => arrow_value(dictionary.values().as_ref(), key as usize),
                None => Value::Null,
            },
            None => Value::Null,
        },
        _ => match arrow_cast::display::ArrayFormatter::try_new(array, &Default::default()) {
            Ok(formatter) => Value::from(formatter.value(index).to_string()),
            Err(_) => Value::Null,
        },
    }
}

fn list_value(values: &dyn Array) -> Value {
    Value::Array((0..values.len()).map(|i| arrow_value(values, i)).collect())
}

/// Streams a CSV file as records. Without a header (the original MMLU layout
/// `question,A,B,C,D,answer`) the record is `question`, `choices` (the middle fields) and
/// `answer` (the last field, a letter); with a header (detected by a `question` column, or
/// forced by a `--map`) each record maps header -> text.
fn read_csv(
    path: &Path,
    has_header: bool,
    mut visit: impl FnMut(u64, Map<String, Value>) -> Result<(), DatasetError>,
) -> Result<(), DatasetError> {
    let format = |message: String| DatasetError::Format {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        action: "open",
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(file);
    let mut header: Option<Vec<String>> = None;
    let mut first = true;
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => return Err(format(e.to_string())),
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let mut fields: Vec<&str> = record.iter().collect();
        if first {
            if let Some(cell) = fields.first_mut() {
                *cell = cell.strip_prefix('\u{feff}').unwrap_or(cell);
            }
            first = false;
            if has_header
                || fields
                    .iter()
                    .any(|f| f.trim().eq_ignore_ascii_case("question"))
            {
                header = Some(fields.iter().map(|f| f.trim().to_string()).collect());
                continue;
            }
        }
        let object = match &header {
            Some(names) => {
                if fields.len() != names.len() {
                    return Err(format(format!(
                        "line {line}: {} fields, but the header has {}",
                        fields.len(),
                        names.len()
                    )));
                }
                names
                    .iter()
                    .zip(&fields)
                    .map(|(n, f)| (n.clone(), Value::from(*f)))
                    .collect()
            }
            None => {
                if fields.len() < 3 {
                    return Err(format(format!(
                        "line {line}: {} fields; a CSV without a header must be question,choice,...,answer \
                         (the MMLU layout question,A,B,C,D,answer)",
                        fields.len()
                    )));
                }
                let last = fields.len() - 1;
                let mut object = Map::new();
                object.insert("question".to_string(), Value::from(fields[0]));
                object.insert(
                    "choices".to_string(),
                    Value::Array(fields[1..last].iter().map(|f| Value::from(*f)).collect()),
                );
                object.insert("answer".to_string(), Value::from(fields[last].trim()));
                object
            }
        };
        visit(line, object)?;
    }
}

/// Streams a JSONL file as raw JSON objects (for `--map`), line numbers 1-based.
fn read_jsonl_objects(
    path: &Path,
    mut visit: impl FnMut(u64, Map<String, Value>) -> Result<(), DatasetError>,
) -> Result<(), DatasetError> {
    use std::io::BufRead;
    let io = |source| DatasetError::Io {
        path: path.to_path_buf(),
        action: "read",
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::new(file);
    let mut buffer = Vec::new();
    let mut line = 0u64;
    loop {
        buffer.clear();
        if reader.read_until(b'\n', &mut buffer).map_err(io)? == 0 {
            return Ok(());
        }
        line += 1;
        let mut bytes: &[u8] = &buffer;
        if line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(object)) => visit(line, object)?,
            Ok(other) => {
                return Err(DatasetError::Format {
                    path: path.to_path_buf(),
                    message: format!(
                        "line {line}: expected a JSON object, found {}",
                        kind_of(&other)
                    ),
                });
            }
            Err(e) => {
                return Err(DatasetError::Format {
                    path: path.to_path_buf(),
                    message: format!(
                        "line {line}: invalid JSON: {}",
                        super::reader::json_problem(&e)
                    ),
                });
            }
        }
    }
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
