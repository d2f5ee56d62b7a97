//! `summary.json`: everything `evalr score` computes about one result folder.
//!
//! The schema is stable: fields are only added, never renamed or removed, without raising
//! [`SCHEMA_VERSION`]. It is documented in docs/results.md ("summary.json").

use std::collections::BTreeMap;

use serde::Serialize;

use super::ScoreError;
use super::accuracy::{GroupAccuracy, GroupTallies, PositionAccumulator, PositionBias, Tally};
use super::calibration::{Calibration, CalibrationAccumulator};
use super::judged::{DEFAULT_THRESHOLD, JudgeAgreement, JudgedAccumulator, JudgedMetric};
use super::stats::{self, ClusteredMean, Estimate, Percentiles};
use super::text::{TextAccumulator, TextMetrics};
use crate::backend::Usage;
use crate::prices::{CostParts, Price, PriceSource};
use crate::results::{Outcome, OutputRecord, ResultFolder, RunStatus};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    /// The evalr that scored the folder.
    pub scored_by: String,
    pub run: RunSection,
    pub rows: RowCounts,
    /// `None` when no row could be scored (no `correct_answer`, judge-only data).
    pub accuracy: Option<AccuracySection>,
    pub subjects: Vec<GroupAccuracy>,
    pub datasets: Vec<GroupAccuracy>,
    pub position_bias: Option<PositionBias>,
    /// `None` when no answer call recorded option probabilities.
    pub calibration: Option<Calibration>,
    pub tokens: Tokens,
    /// `None` when the model has no known price (see `cost_note`).
    pub cost: Option<Cost>,
    pub cost_note: Option<String>,
    pub latency_ms: Option<Percentiles>,
    pub throughput: Option<Throughput>,
    pub retries: Retries,
    pub text_metrics: Option<TextMetrics>,
    pub judged: Vec<JudgedMetric>,
    pub quality_index: Option<QualityIndex>,
    /// Agreement of two judges of the same metric (`judge/<metric>` and
    /// `judge/<metric>@<label>`) over the rows both judged.
    pub judge_agreement: Vec<JudgeAgreement>,
    /// How the quota limiter paced each remote deployment (from `run.json`'s `quota`).
    pub quota: Vec<super::quota::QuotaSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSection {
    pub run_id: String,
    pub status: RunStatus,
    pub program: Option<String>,
    pub model: Option<String>,
    pub backend: Option<String>,
    pub deployment: Option<String>,
    pub dataset: Option<String>,
    pub dataset_sha256: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowCounts {
    /// Lines of `outputs.jsonl`.
    pub outputs: u64,
    /// Rows in the accuracy denominator (correct + wrong + unparsed + refused).
    pub scored: u64,
    pub correct: u64,
    pub wrong: u64,
    pub unparsed: u64,
    pub refused: u64,
    pub unscored: u64,
    /// Lines of `errors.jsonl` (rows that failed for good; not in accuracy).
    pub failed: u64,
    pub failed_by_kind: BTreeMap<String, u64>,
    /// `dataset.rows` of `run.json`.
    pub dataset_rows: Option<u64>,
    /// The last line of `outputs.jsonl` was cut mid-write and left out.
    pub torn_last_line: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccuracySection {
    /// Correct / scored rows.
    pub micro: Estimate,
    /// Unweighted mean of per-subject accuracies.
    pub macro_subject: Estimate,
    /// (Unparsed + refused) / scored rows.
    pub invalid_rate: Estimate,
    /// Micro accuracy with its standard error clustered by subject (Miller 2024): the rows of
    /// a subject are not independent draws, so this interval is the honest one.
    pub clustered_by_subject: ClusteredMean,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    /// Of `prompt`, served from the service's prompt cache (billed at the cached rate).
    pub cached_prompt: u64,
    /// Of `completion`, spent thinking by a reasoning model (billed as output).
    pub reasoning: u64,
    /// Mean total tokens per output row.
    pub per_row: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    pub currency: String,
    pub input_per_mtok: f64,
    /// `None`: cached prompt tokens are priced at the input rate.
    pub cached_input_per_mtok: Option<f64>,
    pub output_per_mtok: f64,
    pub price_source: PriceSource,
    pub total: f64,
    /// The total by rate: uncached input, cached input, output.
    pub parts: CostParts,
    pub per_row: f64,
    /// Total cost / correct rows; `None` with no correct row.
    pub per_correct: Option<f64>,
    /// Rows answered by batches, priced at the batch rate (`prices::batch_factor`).
    pub batch_rows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    /// From `run.json` `started_at` to `finished_at` (or the last row's `finished_at`).
    pub wall_seconds: f64,
    pub rows_per_second: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Retries {
    /// Model requests sent (every attempt of every call; answers from the cache not counted).
    pub requests: u64,
    /// Sum over calls sent to the model of `attempts - 1`.
    pub retries: u64,
    /// Rows that needed more than one attempt.
    pub rows_retried: u64,
    /// Sum over rows of `rate_limited` (HTTP 429 answers).
    pub rate_limited: u64,
    /// Rows whose every call came from the cache.
    pub cached_rows: u64,
}

/// One number in 0..1 summing up a run's quality: the unweighted mean of the components the
/// run has - accuracy (micro), exact match, token F1, and each judged metric's mean score
/// mapped from 1..5 to 0..1 as `(mean - 1) / 4`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityIndex {
    pub value: f64,
    pub components: Vec<QualityComponent>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityComponent {
    pub name: String,
    pub value: f64,
}

pub fn quality_index(
    accuracy: Option<&AccuracySection>,
    text: Option<&TextMetrics>,
    judged: &[JudgedMetric],
) -> Option<QualityIndex> {
    let mut components = Vec::new();
    let mut push = |name: String, value: f64| components.push(QualityComponent { name, value });
    if let Some(accuracy) = accuracy {
        push("accuracy".into(), accuracy.micro.value);
    }
    if let Some(text) = text {
        push("exact_match".into(), text.exact_match);
        push("token_f1".into(), text.token_f1);
    }
    for metric in judged.iter().filter(|m| m.n > 0) {
        push(metric.metric.clone(), (metric.mean - 1.0) / 4.0);
    }
    if components.is_empty() {
        return None;
    }
    let value = components.iter().map(|c| c.value).sum::<f64>() / components.len() as f64;
    Some(QualityIndex { value, components })
}

/// Choices of `evalr score` that change figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreOptions {
    /// A judged score passes when it is at least this (1..=5); `None`: the threshold each
    /// judgment was made with (`judge.json`), else 3.
    pub judge_threshold: Option<u8>,
}

impl Summary {
    /// Add judged metrics computed from another folder (a judge run over this run) and
    /// recompute the quality index with them; a metric already present is replaced.
    pub fn attach_judged(&mut self, judged: Vec<JudgedMetric>) {
        for metric in judged {
            self.judged.retain(|m| m.metric != metric.metric);
            self.judged.push(metric);
        }
        self.judged.sort_by(|a, b| a.metric.cmp(&b.metric));
        self.quality_index = quality_index(
            self.accuracy.as_ref(),
            self.text_metrics.as_ref(),
            &self.judged,
        );
    }
}

/// Score a result folder (streaming its outputs once) with the default options.
pub fn summarise_folder(folder: &ResultFolder) -> Result<Summary, ScoreError> {
    summarise_folder_with(folder, &ScoreOptions::default())
}

/// Everything gathered row by row in one pass over `outputs.jsonl`.
#[derive(Default)]
struct RowAccumulator {
    outputs: u64,
    total: Tally,
    subjects: GroupTallies,
    datasets: GroupTallies,
    positions: PositionAccumulator,
    calibration: CalibrationAccumulator,
    text: TextAccumulator,
    judged: JudgedAccumulator,
    latencies: Vec<f64>,
    usage: Usage,
    /// Of `usage`, what batches answered (priced at the batch rate), and in how many rows.
    batch_usage: Usage,
    batch_rows: u64,
    retries: Retries,
    last_finished: Option<chrono::DateTime<chrono::Utc>>,
}

impl RowAccumulator {
    fn add(&mut self, record: &OutputRecord, default_dataset: &str) {
        self.outputs += 1;
        let outcome = record.outcome();
        self.total.add(outcome);
        self.subjects.add(record.subject(), outcome);
        self.datasets.add(
            record.row.dataset.as_deref().unwrap_or(default_dataset),
            outcome,
        );
        if outcome != Outcome::Unscored
            && let (Some(correct), Some(chosen)) =
                (record.row.correct_answer, record.answer_index())
        {
            self.positions.add(correct, chosen);
        }
        if let (Some(correct), Some(probs)) = (record.row.correct_answer, record.option_probs())
            && probs.len() == record.row.choices.len()
        {
            self.calibration.add(probs, correct);
        }
        self.text.add(record);
        self.judged.add(record);
        self.latencies.push(record.latency_ms);
        self.usage.add(record.usage);
        if record.batch {
            self.batch_rows += 1;
            self.batch_usage.add(record.usage);
        }
        // Retries are counted per call: a chain-of-thought row makes two calls in two attempts.
        let extra_attempts: u64 = record
            .calls
            .iter()
            .filter(|c| !c.cached)
            .map(|c| u64::from(c.attempts.saturating_sub(1)))
            .sum();
        self.retries.requests += u64::from(record.attempts);
        self.retries.retries += extra_attempts;
        self.retries.rows_retried += u64::from(extra_attempts > 0);
        self.retries.rate_limited += u64::from(record.rate_limited);
        self.retries.cached_rows += u64::from(record.fully_cached());
        if let Some(at) = record.finished_at {
            self.last_finished = Some(self.last_finished.map_or(at, |l| l.max(at)));
        }
    }

    fn tokens(&self) -> Tokens {
        let usage = &self.usage;
        Tokens {
            prompt: usage.prompt_tokens,
            completion: usage.completion_tokens,
            total: usage.total(),
            cached_prompt: usage.cached_prompt_tokens,
            reasoning: usage.reasoning_tokens,
            per_row: per(usage.total() as f64, self.outputs),
        }
    }

    fn cost(&self, price: &Price) -> Cost {
        // Rows answered by batches cost the batch rate; the others (live) the full one.
        let all = price.cost_parts(&self.usage);
        let batch = price.cost_parts(&self.batch_usage);
        let factor = crate::prices::batch_factor();
        let parts = CostParts {
            input: all.input - batch.input * (1.0 - factor),
            cached_input: all.cached_input - batch.cached_input * (1.0 - factor),
            output: all.output - batch.output * (1.0 - factor),
        };
        let total = parts.total();
        Cost {
            currency: price.currency.clone(),
            input_per_mtok: price.input_per_mtok,
            cached_input_per_mtok: price.cached_input_per_mtok,
            output_per_mtok: price.output_per_mtok,
            price_source: price.source.clone(),
            total,
            parts,
            per_row: per(total, self.outputs),
            per_correct: (self.total.correct > 0).then(|| total / self.total.correct as f64),
            batch_rows: self.batch_rows,
        }
    }
}

/// `value / count`, 0 for no row.
fn per(value: f64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        value / count as f64
    }
}

/// Score a result folder (streaming its outputs once).
pub fn summarise_folder_with(
    folder: &ResultFolder,
    options: &ScoreOptions,
) -> Result<Summary, ScoreError> {
    let run = &folder.manifest;
    let default_dataset = Some(run.dataset.spec.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "(no dataset)".to_string());
    let mut rows = RowAccumulator::default();
    let notes = folder.for_each_output(|_, record| {
        rows.add(&record, &default_dataset);
        Ok::<_, ScoreError>(())
    })?;

    let errors = folder.errors()?;
    let mut failed_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for error in &errors {
        *failed_by_kind
            .entry(error.kind.as_str().to_string())
            .or_default() += 1;
    }

    let total = &rows.total;
    let accuracy = (total.scored() > 0).then(|| AccuracySection {
        micro: total.accuracy(),
        macro_subject: rows.subjects.macro_average(),
        invalid_rate: total.invalid_rate(),
        clustered_by_subject: rows.subjects.clustered_accuracy(),
    });
    let price = run.price();
    let cost_note = match &price {
        Some(_) => None,
        None => Some(crate::prices::no_price_hint(
            run.model_names().first().copied().unwrap_or("(unknown)"),
        )),
    };
    let end = run.finished_at.or(rows.last_finished);
    let throughput = match (run.started_at, end) {
        (Some(start), Some(end)) if end > start && rows.outputs > 0 => {
            let wall = (end - start).num_milliseconds() as f64 / 1000.0;
            Some(Throughput {
                wall_seconds: wall,
                rows_per_second: rows.outputs as f64 / wall,
            })
        }
        _ => None,
    };
    let text_metrics = rows.text.finish();
    let judged = rows
        .judged
        .finish(options.judge_threshold.unwrap_or(DEFAULT_THRESHOLD));
    let quality_index = quality_index(accuracy.as_ref(), text_metrics.as_ref(), &judged);
    let known = |text: &str| Some(text.to_string()).filter(|t| !t.is_empty());
    Ok(Summary {
        schema_version: SCHEMA_VERSION,
        scored_by: format!("evalr {}", env!("CARGO_PKG_VERSION")),
        run: RunSection {
            run_id: folder.name(),
            status: run.status,
            program: known(&run.program.name),
            model: known(&run.model.identity),
            backend: known(&run.model.backend),
            deployment: run.model.deployment.clone(),
            dataset: known(&run.dataset.spec),
            dataset_sha256: known(&run.dataset.sha256),
            started_at: run.started_at.map(|t| t.to_rfc3339()),
            finished_at: run.finished_at.map(|t| t.to_rfc3339()),
        },
        rows: RowCounts {
            outputs: rows.outputs,
            scored: total.scored(),
            correct: total.correct,
            wrong: total.wrong,
            unparsed: total.unparsed,
            refused: total.refused,
            unscored: total.unscored,
            failed: errors.len() as u64,
            failed_by_kind,
            dataset_rows: run.dataset.rows,
            torn_last_line: notes.torn_last_line,
        },
        accuracy,
        subjects: rows.subjects.table(),
        datasets: rows.datasets.table(),
        position_bias: rows.positions.finish(),
        calibration: rows.calibration.finish(),
        tokens: rows.tokens(),
        cost: price.as_ref().map(|p| rows.cost(p)),
        cost_note,
        latency_ms: stats::percentiles(&rows.latencies),
        throughput,
        retries: rows.retries.clone(),
        text_metrics,
        judged,
        quality_index,
        judge_agreement: Vec::new(),
        quota: super::quota::summarise(&run.quota),
    })
}
