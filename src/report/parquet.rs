//! `outputs.parquet`: the outputs of a run as one flat table, for pandas / DuckDB / Spark.
//!
//! Columns (one row per line of `outputs.jsonl`, in file order):
//! `id`, `dataset`, `subject`, `program`, `model`, `outcome` (as scored), `correct` (bool,
//! null when unscored), `answer_option`, `answer_index`, `correct_answer`, `option_probs`
//! (list<float64>, aligned with the choices), `prompt_tokens`, `completion_tokens`,
//! `cached_prompt_tokens`, `reasoning_tokens`,
//! `latency_ms`, `attempts`, `rate_limited`, `cached`, `finished_at`, `question`,
//! `captures` (JSON text).

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
        let schema = schema();
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))
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
        writer.into_inner().map_err(|e| ExportError(e.to_string()))
    }
}
