//! `outputs.parquet`: the outputs of a run as one flat table, for pandas / DuckDB / Spark.
//!
//! Columns (one row per line of `outputs.jsonl`, in file order):
//! `id`, `dataset`, `subject`, `program`, `model`, `outcome` (as scored), `correct` (bool,
//! null when unscored), `answer_option`, `answer_index`, `correct_answer`, `option_probs`
//! (list<float64>, aligned with the choices), `prompt_tokens`, `completion_tokens`,
//! `cached_prompt_tokens`, `reasoning_tokens`,
//! `latency_ms`, `attempts`, `rate_limited`, `cached`, `finished_at`, `question`,
//! `captures` (JSON text).

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{ExportError, Exporter};
use crate::results::{Outcome, OutputRecord, ResultFolder};

pub struct ParquetExporter;

/// Rows per record batch: bounds memory whatever the size of the run.
const BATCH_ROWS: usize = 8192;

/// Rows per row group. The writer holds a row group's encoded pages until the group is
/// complete (the default group is 1,048,576 rows: a whole million-row run in memory), so a
/// group is a few batches: about 3 MB of `outputs.parquet` for MMLU rows.
const ROW_GROUP_ROWS: usize = 4 * BATCH_ROWS;

pub fn schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let int = |name: &str, nullable: bool| Field::new(name, DataType::Int64, nullable);
    Arc::new(Schema::new(vec![
        text("id", false),
        text("dataset", true),
        text("subject", true),
        text("program", true),
        text("model", true),
        text("outcome", false),
        Field::new("correct", DataType::Boolean, true),
        text("answer_option", true),
        int("answer_index", true),
        int("correct_answer", true),
        Field::new(
            "option_probs",
            DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
            true,
        ),
        int("prompt_tokens", false),
        int("completion_tokens", false),
        int("cached_prompt_tokens", false),
        int("reasoning_tokens", false),
        Field::new("latency_ms", DataType::Float64, false),
        int("attempts", false),
        int("rate_limited", false),
        Field::new("cached", DataType::Boolean, false),
        text("finished_at", true),
        text("question", false),
        text("captures", false),
    ]))
}

#[derive(Default)]
struct Columns {
    id: StringBuilder,
    dataset: StringBuilder,
    subject: StringBuilder,
    program: StringBuilder,
    model: StringBuilder,
    outcome: StringBuilder,
    correct: BooleanBuilder,
    answer_option: StringBuilder,
    answer_index: Int64Builder,
    correct_answer: Int64Builder,
    option_probs: ListBuilder<Float64Builder>,
    prompt_tokens: Int64Builder,
    completion_tokens: Int64Builder,
    cached_prompt_tokens: Int64Builder,
    reasoning_tokens: Int64Builder,
    latency_ms: Float64Builder,
    attempts: Int64Builder,
    rate_limited: Int64Builder,
    cached: BooleanBuilder,
    finished_at: StringBuilder,
    question: StringBuilder,
    captures: StringBuilder,
    rows: usize,
}

impl Columns {
    fn push(&mut self, r: &OutputRecord) {
        let outcome = r.outcome();
        self.id.append_value(&r.id);
        self.dataset.append_option(r.row.dataset.as_deref());
        self.subject.append_option(r.row.subject.as_deref());
        self.program
            .append_option(Some(r.program.as_str()).filter(|p| !p.is_empty()));
        self.model
            .append_option(Some(r.model.as_str()).filter(|m| !m.is_empty()));
        self.outcome.append_value(outcome.as_str());
        self.correct
            .append_option(outcome.is_scored().then_some(outcome == Outcome::Correct));
        self.answer_option
            .append_option(r.answer.as_ref().map(|a| a.option.as_str()));
        self.answer_index
            .append_option(r.answer_index().map(|i| i as i64));
        self.correct_answer
            .append_option(r.row.correct_answer.map(|i| i as i64));
        match r.option_probs() {
            Some(probs) => {
                self.option_probs.values().append_slice(probs);
                self.option_probs.append(true);
            }
            None => self.option_probs.append(false),
        }
        self.prompt_tokens
            .append_value(r.usage.prompt_tokens as i64);
        self.completion_tokens
            .append_value(r.usage.completion_tokens as i64);
        self.cached_prompt_tokens
            .append_value(r.usage.cached_prompt_tokens as i64);
        self.reasoning_tokens
            .append_value(r.usage.reasoning_tokens as i64);
        self.latency_ms.append_value(r.latency_ms);
        self.attempts.append_value(i64::from(r.attempts));
        self.rate_limited.append_value(i64::from(r.rate_limited));
        self.cached.append_value(r.fully_cached());
        self.finished_at
            .append_option(r.finished_at.map(|t| t.to_rfc3339()));
        self.question.append_value(&r.row.question);
        self.captures
            .append_value(serde_json::to_string(&r.captures).unwrap_or_else(|_| "{}".to_string()));
        self.rows += 1;
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, ExportError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.dataset.finish()),
            Arc::new(self.subject.finish()),
            Arc::new(self.program.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.correct.finish()),
            Arc::new(self.answer_option.finish()),
            Arc::new(self.answer_index.finish()),
            Arc::new(self.correct_answer.finish()),
            Arc::new(self.option_probs.finish()),
            Arc::new(self.prompt_tokens.finish()),
            Arc::new(self.completion_tokens.finish()),
            Arc::new(self.cached_prompt_tokens.finish()),
            Arc::new(self.reasoning_tokens.finish()),
            Arc::new(self.latency_ms.finish()),
            Arc::new(self.attempts.finish()),
            Arc::new(self.rate_limited.finish()),
            Arc::new(self.cached.finish()),
            Arc::new(self.finished_at.finish()),
            Arc::new(self.question.finish()),
            Arc::new(self.captures.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| ExportError(e.to_string()))
    }
}

impl Exporter<ResultFolder> for ParquetExporter {
    fn serialize(&self, folder: &ResultFolder) -> Result<Vec<u8>, ExportError> {
        let mut bytes = Vec::new();
        self.write_to(folder, &mut bytes)?;
        Ok(bytes)
    }

    /// Streams the rows into the file a record batch at a time, each batch its own row group:
    /// what is held is one batch's columns, whatever the size of the run.
    fn write_to(
        &self,
        folder: &ResultFolder,
        out: &mut (dyn Write + Send),
    ) -> Result<(), ExportError> {
        let schema = schema();
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_size(ROW_GROUP_ROWS)
            .build();
        let mut writer = ArrowWriter::try_new(out, schema.clone(), Some(properties))
            .map_err(|e| ExportError(e.to_string()))?;
        let mut columns = Columns::default();
        let mut failure: Option<ExportError> = None;
        folder
            .for_each_output(|_, record| {
                columns.push(&record);
                if columns.rows >= BATCH_ROWS && failure.is_none() {
                    let written = columns.finish(&schema).and_then(|batch| {
                        writer.write(&batch).map_err(|e| ExportError(e.to_string()))
                    });
                    failure = written.err();
                }
                Ok::<_, crate::results::ResultsError>(())
            })
            .map_err(|e| ExportError(e.to_string()))?;
        if let Some(e) = failure {
            return Err(e);
        }
        if columns.rows > 0 {
            let batch = columns.finish(&schema)?;
            writer
                .write(&batch)
                .map_err(|e| ExportError(e.to_string()))?;
        }
        writer.close().map_err(|e| ExportError(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn a_large_run_streams_into_bounded_row_groups_holding_every_row_in_order() {
        let rows = 2 * ROW_GROUP_ROWS + 5;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut outputs = String::new();
        for i in 0..rows {
            outputs.push_str(
                &serde_json::json!({
                    "id": format!("t/{i}"),
                    "row": {"id": format!("t/{i}"), "question": "q", "choices": ["a", "b"], "correct_answer": 1},
                    "answer": {"capture": "answer", "option": "B", "index": i % 2},
                    "outcome": if i % 2 == 1 { "correct" } else { "wrong" },
                })
                .to_string(),
            );
            outputs.push('\n');
        }
        std::fs::write(dir.path().join("run.json"), r#"{"run_id": "t"}"#).expect("run.json");
        std::fs::write(dir.path().join("outputs.jsonl"), outputs).expect("outputs");
        let folder = ResultFolder::open(dir.path()).expect("opens");
        let path = dir.path().join("outputs.parquet");
        let mut file = std::fs::File::create(&path).expect("file");
        ParquetExporter
            .write_to(&folder, &mut file)
            .expect("written");
        drop(file);

        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
            .expect("a parquet file");
        // Three row groups (the writer's default would make one of the whole run).
        assert_eq!(reader.metadata().num_row_groups(), 3);
        let mut ids = Vec::new();
        let mut correct = 0;
        for batch in reader.build().expect("reader") {
            let batch = batch.expect("batch");
            let column = batch.column_by_name("id").expect("id column");
            let column = column.as_any().downcast_ref::<StringArray>().unwrap();
            ids.extend(column.iter().map(|v| v.unwrap().to_string()));
            let outcome = batch.column_by_name("outcome").expect("outcome column");
            let outcome = outcome.as_any().downcast_ref::<StringArray>().unwrap();
            correct += outcome.iter().filter(|v| *v == Some("correct")).count();
        }
        let expected: Vec<String> = (0..rows).map(|i| format!("t/{i}")).collect();
        assert_eq!(ids, expected);
        assert_eq!(correct, rows / 2);
    }
}
