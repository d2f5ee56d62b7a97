//! Judged metrics: the scoring side of `evalr judge`.
//!
//! A judge run is an ordinary result folder whose rows carry `row.metric` (coherence, ...)
//! and `row.judged_id` (the judged run's row). Each row's judgment is read from the judge's
//! answer by [`super::judge_answer`]; per metric this module computes what
//! azure-ai-evaluation reports - the mean score, the pass rate against a threshold (its
//! `binary_aggregate`), and per row `<metric>`, `gpt_<metric>`, `<metric>_result`,
//! `<metric>_threshold`, `<metric>_reason` and token counts - plus a confidence interval, the
//! distribution, and how reliable the judge was (repeats and other judges of the same rows,
//! [`super::agreement`]).
//!
//! The judge folders' layout, manifest and `judged.jsonl` are the results format
//! (`crate::results::judged`): this module reads judgments through it and computes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::ScoreError;
use super::agreement::{Agreement, agreement};
use super::judge_answer::{AnswerRules, AnswerStyle, Parsed, parse_judge_answer};
use crate::results::{
    CallKind, JudgeFolder, JudgeManifest, JudgedRowLine, OutputRecord, ResultFolder, ResultsError,
    judge_folders, judge_metric, judged_id,
};

/// Default pass threshold, as in azure-ai-evaluation: a score of 3 or more passes.
pub const DEFAULT_THRESHOLD: u8 = 3;

pub const MIN_SCORE: u8 = 1;
pub const MAX_SCORE: u8 = 5;

/// One judge row, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgment {
    pub judged_id: String,
    pub metric: String,
    pub parsed: Parsed,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub model: Option<String>,
}

/// Reads a judge row (a row with `row.metric`); `None` for other rows.
///
/// The judge's answer is the text of the row's last generated call (a judge program that
/// reasons then scores, or a plain Prompty judge's completion). Judge runs made before judges
/// reasoned first chose the score with a select: that option is the score.
pub fn read_judgment(record: &OutputRecord) -> Option<Judgment> {
    let metric = judge_metric(record)?.to_string();
    let rules = AnswerRules::for_metric(&metric);
    let selected = record
        .answer
        .as_ref()
        .and_then(|a| a.option.trim().parse::<f64>().ok())
        .filter(|s| (rules.min..=rules.max).contains(s));
    let parsed = match selected {
        Some(score) => Parsed::Scored {
            score,
            reason: record
                .captures
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_string(),
            style: AnswerStyle::Json,
        },
        None => {
            let text = record
                .calls
                .iter()
                .rev()
                .filter(|c| c.kind == CallKind::Gen)
                .find_map(|c| c.text.as_deref());
            match text {
                Some(text) => parse_judge_answer(text, &rules),
                None => Parsed::Unparsed,
            }
        }
    };
    Some(Judgment {
        judged_id: judged_id(record).unwrap_or(&record.id).to_string(),
        metric,
        parsed,
        prompt_tokens: record.usage.prompt_tokens,
        completion_tokens: record.usage.completion_tokens,
        model: Some(record.model.clone()).filter(|m| !m.is_empty()),
    })
}

/// A judged metric in `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgedMetric {
    /// The judge's name: the metric, or `<metric>@<label>` for another judge of it.
    pub metric: String,
    /// Rows with a score.
    pub n: u64,
    /// Rows whose judge gave no score (`unparsed + not_applicable`).
    pub unjudged: u64,
    /// Rows whose answer held no score in range.
    pub unparsed: u64,
    /// Rows the judge declined (`"status": "skipped"`).
    pub not_applicable: u64,
    pub mean: f64,
    /// Sample standard deviation of the scores.
    pub std: Option<f64>,
    /// 95% confidence interval of the mean (Student's t, n - 1 degrees of freedom).
    pub ci95: Option<[f64; 2]>,
    /// `distribution[i]`: rows scored `i + 1` (a fractional score counts at its rounded value).
    pub distribution: [u64; 5],
    pub threshold: u8,
    /// Share of scored rows with score >= threshold.
    pub pass_rate: f64,
    /// azure-ai-evaluation's `<evaluator>.binary_aggregate`: rows that passed over all judged
    /// rows (unparsed and declined rows count as not passed), rounded to 2 decimals as there.
    pub binary_aggregate: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The judge model (`model` of the judge rows).
    pub judge_model: Option<String>,
    /// Agreement of the repeated judgments of each row (`--judge-repeats K`, K >= 2).
    pub reliability: Option<Agreement>,
}

/// Agreement of two judges of the same metric over the rows both scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeAgreement {
    pub metric: String,
    pub judges: [String; 2],
    #[serde(flatten)]
    pub agreement: Agreement,
}

/// Scores per metric, gathered row by row.
#[derive(Debug, Clone, Default)]
pub struct JudgedAccumulator {
    metrics: BTreeMap<String, Tally>,
}

#[derive(Debug, Clone, Default)]
struct Tally {
    scores: Vec<f64>,
    unparsed: u64,
    not_applicable: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    model: Option<String>,
}

impl JudgedAccumulator {
    /// Adds a row if it is a judge row (has `row.metric`); other rows are ignored.
    pub fn add(&mut self, record: &OutputRecord) {
        if let Some(judgment) = read_judgment(record) {
            self.add_judgment(&judgment.metric.clone(), &judgment);
        }
    }

    fn add_judgment(&mut self, name: &str, judgment: &Judgment) {
        let tally = self.metrics.entry(name.to_string()).or_default();
        match &judgment.parsed {
            Parsed::Scored { score, .. } => tally.scores.push(*score),
            Parsed::NotApplicable { .. } => tally.not_applicable += 1,
            Parsed::Unparsed => tally.unparsed += 1,
        }
        tally.prompt_tokens += judgment.prompt_tokens;
        tally.completion_tokens += judgment.completion_tokens;
        if tally.model.is_none() {
            tally.model.clone_from(&judgment.model);
        }
    }

    pub fn finish(&self, threshold: u8) -> Vec<JudgedMetric> {
        self.metrics
            .iter()
            .map(|(metric, tally)| summarise(metric, tally, threshold))
            .collect()
    }
}

fn summarise(metric: &str, tally: &Tally, threshold: u8) -> JudgedMetric {
    let scores = &tally.scores;
    let n = scores.len() as u64;
    let mut distribution = [0u64; 5];
    for score in scores {
        let bucket = score
            .round()
            .clamp(f64::from(MIN_SCORE), f64::from(MAX_SCORE)) as usize;
        distribution[bucket - 1] += 1;
    }
    let passed = scores
        .iter()
        .filter(|s| **s >= f64::from(threshold))
        .count() as u64;
    let judged = n + tally.unparsed + tally.not_applicable;
    let (mean, std, ci95) = mean_ci95(scores);
    JudgedMetric {
        metric: metric.to_string(),
        n,
        unjudged: tally.unparsed + tally.not_applicable,
        unparsed: tally.unparsed,
        not_applicable: tally.not_applicable,
        mean,
        std,
        ci95,
        distribution,
        threshold,
        pass_rate: if n == 0 {
            0.0
        } else {
            passed as f64 / n as f64
        },
        binary_aggregate: if judged == 0 {
            0.0
        } else {
            (passed as f64 / judged as f64 * 100.0).round() / 100.0
        },
        prompt_tokens: tally.prompt_tokens,
        completion_tokens: tally.completion_tokens,
        judge_model: tally.model.clone(),
        reliability: None,
    }
}

/// Mean, sample standard deviation and the 95% Student's t interval of the mean.
pub fn mean_ci95(scores: &[f64]) -> (f64, Option<f64>, Option<[f64; 2]>) {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let n = scores.len();
    if n == 0 {
        return (0.0, None, None);
    }
    let mean = scores.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, None, None);
    }
    let variance = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
    let std = variance.sqrt();
    let t = StudentsT::new(0.0, 1.0, n as f64 - 1.0)
        .map(|d| d.inverse_cdf(0.975))
        .unwrap_or(f64::NAN);
    let half = t * std / (n as f64).sqrt();
    (mean, Some(std), Some([mean - half, mean + half]))
}

/// Judged metrics of a judge run's result folder (rows without `row.metric` are ignored).
pub fn score_judge_folder(
    folder: &crate::results::ResultFolder,
    threshold: u8,
) -> Result<Vec<JudgedMetric>, ScoreError> {
    let mut accumulator = JudgedAccumulator::default();
    folder.for_each_output(|_, record| {
        accumulator.add(&record);
        Ok::<_, super::ScoreError>(())
    })?;
    Ok(accumulator.finish(threshold))
}

/// A judge folder of a run, read: its manifest and judgments (repeat 1 first).
#[derive(Debug, Clone)]
pub struct JudgeRead {
    pub folder: JudgeFolder,
    pub manifest: Option<JudgeManifest>,
    /// The judgments of each repeat, by judged row id.
    pub repeats: Vec<BTreeMap<String, Judgment>>,
}

impl JudgeRead {
    /// `coherence`, or `coherence@<label>`.
    pub fn name(&self) -> &str {
        &self.folder.name
    }

    /// The metric judged (the part of the name before `@`).
    pub fn metric(&self) -> &str {
        self.folder.metric()
    }

    fn threshold(&self, options_threshold: Option<u8>) -> u8 {
        options_threshold
            .or(self.manifest.as_ref().map(|m| m.threshold))
            .unwrap_or(DEFAULT_THRESHOLD)
    }
}

fn read_judgments(path: &Path) -> Result<BTreeMap<String, Judgment>, ScoreError> {
    let folder = ResultFolder::open(path)?;
    let mut judgments = BTreeMap::new();
    folder.for_each_output(|_, record| {
        if let Some(judgment) = read_judgment(&record) {
            judgments.insert(judgment.judged_id.clone(), judgment);
        }
        Ok::<_, ScoreError>(())
    })?;
    Ok(judgments)
}

/// The judge folders of `run` (sorted by name), read.
pub fn read_judges(run: &Path) -> Result<Vec<JudgeRead>, ScoreError> {
    let mut judges = Vec::new();
    for folder in judge_folders(run)? {
        let repeats = folder
            .repeats()?
            .iter()
            .map(|path| read_judgments(path))
            .collect::<Result<_, _>>()?;
        judges.push(JudgeRead {
            manifest: folder.manifest()?,
            folder,
            repeats,
        });
    }
    Ok(judges)
}

/// Everything the judge folders of a run add to its summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JudgesSummary {
    pub metrics: Vec<JudgedMetric>,
    pub agreement: Vec<JudgeAgreement>,
}

/// Scores every judge folder of `run`: per judge its metric figures (from repeat 1, the
/// judgment comparable with a single azure-ai-evaluation run) with the agreement of its
/// repeats, and the agreement of each pair of judges of the same metric. `threshold`
/// overrides the one each judgment was made with.
pub fn score_judges(run: &Path, threshold: Option<u8>) -> Result<JudgesSummary, ScoreError> {
    let folders = read_judges(run)?;
    let mut summary = JudgesSummary::default();
    for folder in &folders {
        let mut accumulator = JudgedAccumulator::default();
        for judgment in folder.repeats[0].values() {
            accumulator.add_judgment(folder.name(), judgment);
        }
        let mut metrics = accumulator.finish(folder.threshold(threshold));
        if folder.repeats.len() > 1 {
            for metric in &mut metrics {
                metric.reliability = Some(agreement(&repeat_units(folder)));
            }
        }
        summary.metrics.extend(metrics);
    }
    for (i, a) in folders.iter().enumerate() {
        for b in folders
            .iter()
            .skip(i + 1)
            .filter(|b| b.metric() == a.metric())
        {
            let units: Vec<Vec<Option<f64>>> = a.repeats[0]
                .iter()
                .filter_map(|(id, ja)| {
                    let jb = b.repeats[0].get(id)?;
                    Some(vec![ja.parsed.score(), jb.parsed.score()])
                })
                .collect();
            summary.agreement.push(JudgeAgreement {
                metric: a.metric().to_string(),
                judges: [a.name().to_string(), b.name().to_string()],
                agreement: agreement(&units),
            });
        }
    }
    Ok(summary)
}

/// Each judged row's scores over the repeats of a judge (`None` where a repeat gave none).
fn repeat_units(folder: &JudgeRead) -> Vec<Vec<Option<f64>>> {
    folder.repeats[0]
        .keys()
        .map(|id| {
            folder
                .repeats
                .iter()
                .map(|r| r.get(id).and_then(|j| j.parsed.score()))
                .collect()
        })
        .collect()
}

/// The fields azure-ai-evaluation gives a row for a metric, under the judge's `name`.
pub fn row_fields(name: &str, judgment: &Judgment, threshold: u8) -> Map<String, Value> {
    let (score, reason, result, status) = match &judgment.parsed {
        Parsed::Scored { score, reason, .. } => {
            let result = if *score >= f64::from(threshold) {
                "pass"
            } else {
                "fail"
            };
            (json!(score), reason.clone(), result, "completed")
        }
        Parsed::NotApplicable { reason } => (
            Value::Null,
            format!("Not applicable: {reason}"),
            "not_applicable",
            "skipped",
        ),
        Parsed::Unparsed => (Value::Null, String::new(), "unknown", "unparsed"),
    };
    let mut fields = Map::new();
    fields.insert(name.to_string(), score.clone());
    fields.insert(format!("gpt_{name}"), score);
    fields.insert(format!("{name}_result"), json!(result));
    fields.insert(format!("{name}_threshold"), json!(threshold));
    fields.insert(format!("{name}_reason"), json!(reason));
    fields.insert(format!("{name}_status"), json!(status));
    fields.insert(
        format!("{name}_prompt_tokens"),
        json!(judgment.prompt_tokens),
    );
    fields.insert(
        format!("{name}_completion_tokens"),
        json!(judgment.completion_tokens),
    );
    fields.insert(
        format!("{name}_total_tokens"),
        json!(judgment.prompt_tokens + judgment.completion_tokens),
    );
    fields.insert(format!("{name}_model"), json!(judgment.model));
    fields
}

/// Writes `<run>/judged.jsonl`: per judged row (in id order) its id and the fields of every
/// judge ([`row_fields`]), with `<name>_repeats` (each repeat's score) and `<name>_spread`
/// when the judgment was repeated; each judge's threshold is the one its summary entry in
/// `judged` was scored with. Nothing is written when the run has no judge folder.
pub fn write_judged_rows(
    run: &Path,
    judged: &[JudgedMetric],
) -> Result<Option<PathBuf>, ScoreError> {
    let folders = read_judges(run)?;
    if folders.is_empty() {
        return Ok(None);
    }
    let mut rows: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for folder in &folders {
        let scored_with = judged.iter().find(|m| m.metric == folder.name());
        let threshold = folder.threshold(scored_with.map(|m| m.threshold));
        for (id, judgment) in &folder.repeats[0] {
            let row = rows.entry(id.clone()).or_default();
            row.extend(row_fields(folder.name(), judgment, threshold));
            if folder.repeats.len() > 1 {
                let scores: Vec<Option<f64>> = folder
                    .repeats
                    .iter()
                    .map(|r| r.get(id).and_then(|j| j.parsed.score()))
                    .collect();
                let present: Vec<f64> = scores.iter().flatten().copied().collect();
                let spread = (present.len() >= 2).then(|| {
                    present.iter().copied().fold(f64::MIN, f64::max)
                        - present.iter().copied().fold(f64::MAX, f64::min)
                });
                row.insert(format!("{}_repeats", folder.name()), json!(scores));
                row.insert(format!("{}_spread", folder.name()), json!(spread));
            }
        }
    }
    let lines = rows
        .into_iter()
        .map(|(id, fields)| JudgedRowLine { id, fields });
    let path = crate::results::write_judged_rows(run, lines).map_err(|e| match e {
        // Said as the scorer's other files are when they cannot be written.
        ResultsError::Io { path, source } => ScoreError::Write {
            path,
            message: source.to_string(),
        },
        other => other.into(),
    })?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    fn record(metric: &str, option: Option<&str>, text: Option<&str>) -> OutputRecord {
        let answer = match option {
            Some(o) => json!({"capture": "score", "option": o, "index": 0}),
            None => Value::Null,
        };
        let calls = match text {
            Some(t) => json!([{"capture": "judgment", "kind": "gen", "text": t}]),
            None => json!([]),
        };
        serde_json::from_value(json!({
            "id": "j/1",
            "row": {"id": "x", "question": "q", "choices": [], "metric": metric, "judged_id": "x"},
            "answer": answer,
            "calls": calls,
            "usage": {"prompt_tokens": 100, "completion_tokens": 20},
            "outcome": "unscored",
        }))
        .expect("record")
    }

    #[test]
    fn mean_distribution_pass_rate_and_binary_aggregate() {
        let mut acc = JudgedAccumulator::default();
        for option in ["5", "4", "3", "2", "5", "1"] {
            acc.add(&record("fluency", Some(option), None));
        }
        acc.add(&record("fluency", None, Some("no score here")));
        acc.add(&record("fluency", Some("7"), None));
        acc.add(&record(
            "fluency",
            None,
            Some(r#"{"reason": "empty", "score": null, "status": "skipped"}"#),
        ));
        acc.add(&record(
            "coherence",
            None,
            Some(r#"{"reason": "ok", "score": 4}"#),
        ));
        let metrics = acc.finish(DEFAULT_THRESHOLD);
        assert_eq!(metrics.len(), 2);
        assert_eq!(metrics[0].metric, "coherence");
        assert_eq!(metrics[0].distribution, [0, 0, 0, 1, 0]);
        let fluency = &metrics[1];
        assert_eq!(fluency.distribution, [1, 1, 1, 1, 2]);
        assert_eq!((fluency.n, fluency.unjudged), (6, 3));
        assert_eq!((fluency.unparsed, fluency.not_applicable), (2, 1));
        assert_eq!(fluency.mean, 20.0 / 6.0);
        assert_eq!(fluency.pass_rate, 4.0 / 6.0);
        // azure-ai-evaluation counts every judged row in the pass rate's denominator.
        assert_eq!(fluency.binary_aggregate, 0.44);
        assert_eq!(fluency.prompt_tokens, 900);
    }

    #[test]
    fn rows_without_a_metric_are_not_judge_rows() {
        let mut acc = JudgedAccumulator::default();
        let mut plain = record("fluency", Some("5"), None);
        plain.row.extra.clear();
        acc.add(&plain);
        assert!(acc.finish(3).is_empty());
    }

    #[test]
    fn the_interval_of_the_mean_matches_scipy() {
        #[derive(Deserialize)]
        struct Case {
            scores: Vec<f64>,
            mean: f64,
            ci95: [f64; 2],
        }
        #[derive(Deserialize)]
        struct Reference {
            mean_ci95: Vec<Case>,
        }
        let reference: Reference =
            serde_json::from_str(include_str!("../../tests/fixtures/judge_reference.json"))
                .expect("reference");
        for case in reference.mean_ci95 {
            let (mean, _, ci) = mean_ci95(&case.scores);
            let ci = ci.expect("n >= 2");
            assert!((mean - case.mean).abs() < 1e-12);
            assert!(
                (ci[0] - case.ci95[0]).abs() < 1e-9,
                "{ci:?} {:?}",
                case.ci95
            );
            assert!(
                (ci[1] - case.ci95[1]).abs() < 1e-9,
                "{ci:?} {:?}",
                case.ci95
            );
        }
        assert_eq!(mean_ci95(&[4.0]), (4.0, None, None));
    }

    #[test]
    fn row_fields_are_named_as_azure_names_them() {
        let judgment = read_judgment(&record(
            "coherence",
            None,
            Some("<S0>think</S0><S1>Flows well.</S1><S2>4</S2>"),
        ))
        .unwrap();
        let fields = row_fields("coherence", &judgment, 3);
        assert_eq!(
            Value::Object(fields),
            json!({
                "coherence": 4.0,
                "gpt_coherence": 4.0,
                "coherence_result": "pass",
                "coherence_threshold": 3,
                "coherence_reason": "Flows well.",
                "coherence_status": "completed",
                "coherence_prompt_tokens": 100,
                "coherence_completion_tokens": 20,
                "coherence_total_tokens": 120,
                "coherence_model": null,
            })
        );
        let unparsed = read_judgment(&record("coherence", None, Some("Fine, 4."))).unwrap();
        let fields = row_fields("coherence", &unparsed, 5);
        assert_eq!(fields["coherence"], Value::Null);
        assert_eq!(fields["coherence_result"], "unknown");
        assert_eq!(fields["coherence_status"], "unparsed");
    }
}
