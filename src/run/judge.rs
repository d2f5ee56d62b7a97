//! `evalr judge`: LLM-as-judge metrics over a finished run. A judge is itself a run: for each
//! metric, the rows of the judged run become the rows of a judge dataset (question, the
//! response under judgement, context, ground truth), and `programs/judges/<metric>.prompty`
//! runs over them against the judge model - rate-limited, cached and resumable like any run.
//! Each metric's run lives in `<run>/judge/<metric>/`; `evalr score` folds their scores into
//! the run's summary.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{ResumeOverrides, RunError, RunOptions, execute};
use crate::dataset::{JsonlWriter, Row};
use crate::results::{CallKind, OUTPUTS_FILE, OutputRecord, ResultFolder};
use crate::score::{JUDGE_FOLDER, Summary};

/// The metrics `evalr judge` knows, each a program in `programs/judges/`.
pub const METRICS: [&str; 5] = [
    "groundedness",
    "coherence",
    "fluency",
    "relevance",
    "similarity",
];

/// The text a row's response is judged on: the chosen choice's text, after the program's
/// free-text captures (an explanation) when it made any.
fn response_text(record: &OutputRecord) -> Option<String> {
    let index = record.answer_index()?;
    let choice = record.row.choices.get(index)?.clone();
    let explanation: Vec<String> = record
        .calls
        .iter()
        .filter(|c| c.kind == CallKind::Gen)
        .filter_map(|c| c.text.clone())
        .collect();
    Some(if explanation.is_empty() {
        choice
    } else {
        format!("{}\nAnswer: {choice}", explanation.join("\n"))
    })
}

/// The judge rows of one metric, from the judged run's outputs.
fn judge_rows(folder: &Path, metric: &str) -> Result<Vec<Row>, RunError> {
    let results = ResultFolder::open(folder)?;
    let mut rows = Vec::new();
    results.for_each_output(|_, record| {
        let Some(response) = response_text(&record) else {
            return Ok(());
        };
        let mut extra = Map::new();
        extra.insert("metric".into(), Value::String(metric.into()));
        extra.insert("judged_id".into(), Value::String(record.id.clone()));
        extra.insert("response".into(), Value::String(response));
        if let Some(context) = record.row.extra.get("context") {
            extra.insert("context".into(), context.clone());
        }
        // Ground truth: the row's own, else the text of its correct choice.
        let ground_truth = record.row.extra.get("ground_truth").cloned().or_else(|| {
            record
                .row
                .correct_answer
                .and_then(|i| record.row.choices.get(i))
                .map(|c| Value::String(c.clone()))
        });
        if let Some(truth) = ground_truth {
            extra.insert("ground_truth".into(), truth);
        }
        rows.push(Row {
            id: format!("{}#{metric}", record.id),
            dataset: record.row.dataset.clone(),
            subject: record.row.subject.clone(),
            question: record.row.question.clone(),
            choices: record.row.choices.clone(),
            correct_answer: None,
            extra,
        });
        Ok::<_, RunError>(())
    })?;
    Ok(rows)
}

/// What `evalr judge` was asked.
#[derive(Debug, Clone)]
pub struct JudgeRequest {
    pub run_folder: PathBuf,
    pub metrics: Vec<String>,
    /// Pass rate threshold (a score >= threshold passes).
    pub threshold: u8,
    /// Options of each judge run (model, quota, cache...); program, dataset and folder are set
    /// per metric.
    pub options: RunOptions,
}

/// Judges a run for each metric; returns the judged run's summary, judged metrics included.
pub async fn judge(request: JudgeRequest, show_progress: bool) -> Result<Summary, RunError> {
    for metric in &request.metrics {
        if !METRICS.contains(&metric.as_str()) {
            return Err(RunError::Usage(format!(
                "unknown metric `{metric}`: choose from {}",
                METRICS.join(", ")
            )));
        }
    }
    for metric in &request.metrics {
        let rows = judge_rows(&request.run_folder, metric)?;
        let needs = match metric.as_str() {
            "groundedness" => Some("context"),
            "similarity" => Some("ground_truth"),
            _ => None,
        };
        if let Some(field) = needs
            && !rows.iter().any(|r| r.extra.contains_key(field))
        {
            return Err(RunError::Usage(format!(
                "metric {metric} needs a `{field}` field in the rows of {}, and none has one",
                request.run_folder.display()
            )));
        }
        let folder = request.run_folder.join(JUDGE_FOLDER).join(metric);
        std::fs::create_dir_all(&folder).map_err(|source| RunError::Io {
            path: folder.clone(),
            source,
        })?;
        // Rebuilt identically each time, so a resumed judge run finds the same dataset.
        let dataset = folder.join("rows.jsonl");
        let mut writer = JsonlWriter::create(&dataset)?;
        for row in &rows {
            writer.write_row(row)?;
        }
        writer.finish()?;
        let mut options = request.options.clone();
        options.program = format!("judges/{metric}");
        options.dataset = dataset.display().to_string();
        options.results_dir = Some(folder.clone());
        options.shard = None;
        options.run_id = None;
        let resume = folder
            .join(OUTPUTS_FILE)
            .exists()
            .then(|| (folder.as_path(), ResumeOverrides::default()));
        execute(options, resume, show_progress).await?;
    }
    // Fold the judged metrics into the judged run's own summary and report.
    let summary = crate::score::score_folder_with(
        &request.run_folder,
        &crate::score::ScoreOptions {
            judge_threshold: request.threshold,
        },
    )?;
    crate::report::write_score_reports(&request.run_folder, &summary)?;
    Ok(summary)
}
