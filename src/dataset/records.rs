//! Source files read as records (column name -> JSON value), one at a time: parquet (the
//! hub's format), CSV (the original MMLU layout or with a header), raw JSONL objects.

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Number, Value};

use super::DatasetError;
use super::row::kind_of;

fn open(path: &Path) -> Result<File, DatasetError> {
    File::open(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        action: "open",
        source,
    })
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
    let file = open(path)?;
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
pub(crate) fn read_csv(
    path: &Path,
    has_header: bool,
    mut visit: impl FnMut(u64, Map<String, Value>) -> Result<(), DatasetError>,
) -> Result<(), DatasetError> {
    let format = |message: String| DatasetError::Format {
        path: path.to_path_buf(),
        message,
    };
    let file = open(path)?;
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
pub(crate) fn read_jsonl_objects(
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
