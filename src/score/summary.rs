//! `summary.json`: everything `evalr score` computes about one result folder.
//!
//! The schema is stable: fields are only added, never renamed or removed, without raising
//! [`SCHEMA_VERSION`]. It is documented in the README ("summary.json").

use std::collections::BTreeMap;

use serde::Serialize;

use super::ScoreError;
use super::accuracy::{GroupAccuracy, GroupTallies, PositionAccumulator, PositionBias, Tally};
use super::calibration::{Calibration, CalibrationAccumulator};
use super::folder::{Outcome, ResultFolder};
use super::judged::{DEFAULT_THRESHOLD, JudgedAccumulator, JudgedMetric};
use super::prices::{self, PriceSource};
use super::stats::{self, Estimate, Percentiles};
use super::text::{TextAccumulator, TextMetrics};

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
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSection {
    pub run_id: String,
    pub status: Option<String>,
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
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    /// Mean total tokens per output row.
    pub per_row: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    pub currency: String,
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub price_source: PriceSource,
    pub total: f64,
    pub per_row: f64,
    /// Total cost / correct rows; `None` with no correct row.
    pub per_correct: Option<f64>,
    /// Rows answered by batches, priced at the batch rate (`prices::batch_factor`).
    #[serde(skip_serializing_if = "is_zero")]
    pub batch_rows: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    /// From `run.json` `started_at` to `finished_at` (or the last row's `finished_at`).
    pub wall_seconds: f64,
    pub rows_per_second: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreOptions {
    /// A judged score passes when it is at least this (1..=5).
    pub judge_threshold: u8,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            judge_threshold: DEFAULT_THRESHOLD,
        }
    }
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

/// Score a result folder (streaming its outputs once).
pub fn summarise_folder_with(
    folder: &ResultFolder,
    options: &ScoreOptions,
) -> Result<Summary, ScoreError> {
    let mut total = Tally::default();
    let mut subjects = GroupTallies::default();
    let mut datasets = GroupTallies::default();
    let mut positions = PositionAccumulator::default();
    let mut calibration = CalibrationAccumulator::default();
    let mut text = TextAccumulator::default();
    let mut judged = JudgedAccumulator::default();
    let mut latencies: Vec<f64> = Vec::new();
    let (mut prompt, mut completion) = (0u64, 0u64);
    let (mut batch_rows, mut batch_prompt, mut batch_completion) = (0u64, 0u64, 0u64);
    let mut retries = Retries {
        requests: 0,
        retries: 0,
        rows_retried: 0,
        rate_limited: 0,
        cached_rows: 0,
    };
    let mut outputs = 0u64;
    let mut last_finished: Option<chrono::DateTime<chrono::Utc>> = None;
    let default_dataset = folder
        .run
        .dataset
        .as_ref()
        .and_then(|d| d.spec.clone())
        .unwrap_or_else(|| "(no dataset)".to_string());

    let notes = folder.for_each_output(|_, record| {
        outputs += 1;
        let outcome = record.outcome();
        total.add(outcome);
        subjects.add(record.subject(), outcome);
        datasets.add(
            record.row.dataset.as_deref().unwrap_or(&default_dataset),
            outcome,
        );
        if outcome != Outcome::Unscored
            && let (Some(correct), Some(chosen)) =
                (record.row.correct_answer, record.answer_index())
        {
            positions.add(correct, chosen);
        }
        if let (Some(correct), Some(probs)) = (record.row.correct_answer, record.option_probs())
            && probs.len() == record.row.choices.len()
        {
            calibration.add(probs, correct);
        }
        text.add(&record);
        judged.add(&record);
        latencies.push(record.latency_ms);
        prompt += record.usage.prompt_tokens;
        completion += record.usage.completion_tokens;
        if record.batch {
            batch_rows += 1;
            batch_prompt += record.usage.prompt_tokens;
            batch_completion += record.usage.completion_tokens;
        }
        // Retries are counted per call: a chain-of-thought row makes two calls in two attempts.
        let extra_attempts: u64 = record
            .calls
            .iter()
            .filter(|c| !c.cached)
            .map(|c| u64::from(c.attempts.saturating_sub(1)))
            .sum();
        retries.requests += u64::from(record.attempts);
        retries.retries += extra_attempts;
        retries.rows_retried += u64::from(extra_attempts > 0);
        retries.rate_limited += u64::from(record.rate_limited);
        retries.cached_rows += u64::from(record.fully_cached());
        if let Some(at) = record.finished_at {
            last_finished = Some(last_finished.map_or(at, |l| l.max(at)));
        }
        Ok(())
    })?;

    let errors = folder.errors()?;
    let mut failed_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for error in &errors {
        *failed_by_kind.entry(error.kind.clone()).or_default() += 1;
    }

    let accuracy = (total.scored() > 0).then(|| AccuracySection {
        micro: total.accuracy(),
        macro_subject: subjects.macro_average(),
        invalid_rate: total.invalid_rate(),
    });
    let tokens = Tokens {
        prompt,
        completion,
        total: prompt + completion,
        per_row: if outputs == 0 {
            0.0
        } else {
            (prompt + completion) as f64 / outputs as f64
        },
    };
    let price = prices::price_for_run(&folder.run);
    let cost_note = match &price {
        Some(_) => None,
        None => Some(format!(
            "no price known for model {}: set input_per_mtok/output_per_mtok under prices in the config file",
            model_name(folder)
        )),
    };
    let cost = price.map(|price| {
        // Rows answered by batches cost the batch rate; the others (live) the full one.
        let total_cost = price.cost(prompt - batch_prompt, completion - batch_completion)
            + price.cost(batch_prompt, batch_completion) * prices::batch_factor();
        Cost {
            currency: price.currency.clone(),
            input_per_mtok: price.input_per_mtok,
            output_per_mtok: price.output_per_mtok,
            price_source: price.source.clone(),
            total: total_cost,
            per_row: if outputs == 0 {
                0.0
            } else {
                total_cost / outputs as f64
            },
            per_correct: (total.correct > 0).then(|| total_cost / total.correct as f64),
            batch_rows,
        }
    });
    let end = folder.run.finished_at.or(last_finished);
    let throughput = match (folder.run.started_at, end) {
        (Some(start), Some(end)) if end > start && outputs > 0 => {
            let wall = (end - start).num_milliseconds() as f64 / 1000.0;
            Some(Throughput {
                wall_seconds: wall,
                rows_per_second: outputs as f64 / wall,
            })
        }
        _ => None,
    };
    let text_metrics = text.finish();
    let judged = judged.finish(options.judge_threshold);
    let quality_index = quality_index(accuracy.as_ref(), text_metrics.as_ref(), &judged);
    let run = &folder.run;
    let model = run.model.as_ref();
    Ok(Summary {
        schema_version: SCHEMA_VERSION,
        scored_by: format!("evalr {}", env!("CARGO_PKG_VERSION")),
        run: RunSection {
            run_id: folder.name(),
            status: run.status.clone(),
            program: run.program.as_ref().and_then(|p| p.name.clone()),
            model: model.and_then(|m| m.identity.clone()),
            backend: model.and_then(|m| m.backend.clone()),
            deployment: model.and_then(|m| m.deployment.clone()),
            dataset: run.dataset.as_ref().and_then(|d| d.spec.clone()),
            dataset_sha256: run.dataset.as_ref().and_then(|d| d.sha256.clone()),
            started_at: run.started_at.map(|t| t.to_rfc3339()),
            finished_at: run.finished_at.map(|t| t.to_rfc3339()),
        },
        rows: RowCounts {
            outputs,
            scored: total.scored(),
            correct: total.correct,
            wrong: total.wrong,
            unparsed: total.unparsed,
            refused: total.refused,
            unscored: total.unscored,
            failed: errors.len() as u64,
            failed_by_kind,
            dataset_rows: run.dataset.as_ref().and_then(|d| d.rows),
            torn_last_line: notes.torn_last_line,
        },
        accuracy,
        subjects: subjects.table(),
        datasets: datasets.table(),
        position_bias: positions.finish(),
        calibration: calibration.finish(),
        tokens,
        cost,
        cost_note,
        latency_ms: stats::percentiles(&latencies),
        throughput,
        retries,
        text_metrics,
        judged,
        quality_index,
    })
}

fn model_name(folder: &ResultFolder) -> String {
    folder
        .run
        .model
        .as_ref()
        .and_then(|m| m.deployment.clone().or_else(|| m.identity.clone()))
        .unwrap_or_else(|| "(unknown)".to_string())
}
