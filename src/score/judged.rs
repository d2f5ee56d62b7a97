//! Judged metrics: the scoring side of `programs/judges/*.prompty`.
//!
//! A judge run is an ordinary result folder whose rows carry `row.metric` (groundedness,
//! coherence, ...) and whose answer select chose a score option "1".."5". Per metric:
//! mean score, the distribution of scores, and the pass rate (score >= threshold).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::results::OutputRecord;

/// Default pass threshold: a score of 3 or more passes.
pub const DEFAULT_THRESHOLD: u8 = 3;

pub const MIN_SCORE: u8 = 1;
pub const MAX_SCORE: u8 = 5;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgedMetric {
    pub metric: String,
    /// Rows with a score.
    pub n: u64,
    /// Rows of this metric whose judge gave no usable score (unparsed, out of range).
    pub unjudged: u64,
    pub mean: f64,
    /// `distribution[i]`: rows scored `i + 1`.
    pub distribution: [u64; 5],
    pub threshold: u8,
    /// Share of scored rows with score >= threshold.
    pub pass_rate: f64,
}

/// The judge's score of a row: the chosen option of the answer select (or the `score`
/// capture), when it is an integer in 1..=5.
pub fn judge_score(record: &OutputRecord) -> Option<u8> {
    let from_answer = record.answer.as_ref().map(|a| a.option.clone());
    let from_capture = || match record.captures.get("score") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let text = from_answer.or_else(from_capture)?;
    let score: u8 = text.trim().parse().ok()?;
    (MIN_SCORE..=MAX_SCORE).contains(&score).then_some(score)
}

/// The metric a judge row belongs to (`row.metric`).
pub fn judge_metric(record: &OutputRecord) -> Option<&str> {
    record.row.extra.get("metric").and_then(Value::as_str)
}

/// Judged metrics of a judge run's result folder (rows without `row.metric` are ignored).
pub fn score_judge_folder(
    folder: &crate::results::ResultFolder,
    threshold: u8,
) -> Result<Vec<JudgedMetric>, super::ScoreError> {
    let mut accumulator = JudgedAccumulator::default();
    folder.for_each_output(|_, record| {
        accumulator.add(&record);
        Ok::<_, super::ScoreError>(())
    })?;
    Ok(accumulator.finish(threshold))
}

/// Scores per metric, gathered row by row.
#[derive(Debug, Clone, Default)]
pub struct JudgedAccumulator {
    metrics: BTreeMap<String, ([u64; 5], u64)>,
}

impl JudgedAccumulator {
    /// Adds a row if it is a judge row (has `row.metric`); other rows are ignored.
    pub fn add(&mut self, record: &OutputRecord) {
        let Some(metric) = judge_metric(record) else {
            return;
        };
        let entry = self.metrics.entry(metric.to_string()).or_default();
        match judge_score(record) {
            Some(score) => entry.0[usize::from(score - 1)] += 1,
            None => entry.1 += 1,
        }
    }

    pub fn finish(&self, threshold: u8) -> Vec<JudgedMetric> {
        self.metrics
            .iter()
            .map(|(metric, (distribution, unjudged))| {
                summarise(metric, *distribution, *unjudged, threshold)
            })
            .collect()
    }
}

/// Mean, pass rate from a score distribution.
pub fn summarise(
    metric: &str,
    distribution: [u64; 5],
    unjudged: u64,
    threshold: u8,
) -> JudgedMetric {
    let n: u64 = distribution.iter().sum();
    let total: u64 = distribution
        .iter()
        .enumerate()
        .map(|(i, count)| (i as u64 + 1) * count)
        .sum();
    let passed: u64 = distribution
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as u64 + 1 >= u64::from(threshold))
        .map(|(_, count)| count)
        .sum();
    let ratio = |x: u64| if n == 0 { 0.0 } else { x as f64 / n as f64 };
    JudgedMetric {
        metric: metric.to_string(),
        n,
        unjudged,
        mean: ratio(total),
        distribution,
        threshold,
        pass_rate: ratio(passed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(metric: &str, option: Option<&str>) -> OutputRecord {
        let answer = match option {
            Some(o) => serde_json::json!({"capture": "score", "option": o, "index": 0}),
            None => Value::Null,
        };
        serde_json::from_value(serde_json::json!({
            "id": "j/1",
            "row": {"id": "x", "question": "q", "choices": [], "metric": metric},
            "answer": answer,
            "outcome": "unscored",
        }))
        .expect("record")
    }

    #[test]
    fn mean_distribution_and_pass_rate() {
        let mut acc = JudgedAccumulator::default();
        for option in ["5", "4", "3", "2", "5", "1"] {
            acc.add(&record("fluency", Some(option)));
        }
        acc.add(&record("fluency", None));
        acc.add(&record("fluency", Some("7")));
        acc.add(&record("coherence", Some("4")));
        let metrics = acc.finish(DEFAULT_THRESHOLD);
        assert_eq!(metrics.len(), 2);
        let fluency = &metrics[1];
        assert_eq!(fluency.metric, "fluency");
        assert_eq!(fluency.distribution, [1, 1, 1, 1, 2]);
        assert_eq!((fluency.n, fluency.unjudged), (6, 2));
        assert_eq!(fluency.mean, 20.0 / 6.0);
        assert_eq!(fluency.pass_rate, 4.0 / 6.0);
        assert_eq!(summarise("x", [1, 1, 1, 1, 2], 0, 5).pass_rate, 2.0 / 6.0);
    }

    #[test]
    fn rows_without_a_metric_are_not_judge_rows() {
        let mut acc = JudgedAccumulator::default();
        let mut plain = record("fluency", Some("5"));
        plain.row.extra.clear();
        acc.add(&plain);
        assert!(acc.finish(3).is_empty());
    }
}
