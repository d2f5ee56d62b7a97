//! `evalr judge`: LLM-as-judge metrics over a finished run. A judge is itself a run: for each
//! metric, the rows of the judged run become the rows of a judge dataset (`query`, the
//! `response` under judgement, `context`, `ground_truth`, with `question` and `answer` as
//! aliases of the first two), and the judge program - a built-in `programs/judges/<metric>`
//! or any `.prompty` file - runs over them against the judge model, rate-limited, cached and
//! resumable like any run. Each judge's run lives in `<run>/judge/<name>/` (repeats in
//! `repeats/<k>/`); `score::judged` reads the answers and folds the figures into the judged
//! run's summary.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{ResumeOverrides, RunError, RunOptions, execute};
use crate::dataset::{JsonlWriter, Row};
use crate::program::load_program;
use crate::results::{
    CallKind, JUDGE_FOLDER, JudgeManifest, OUTPUTS_FILE, OutputRecord, REPEATS_FOLDER, ResultFolder,
};

/// The metrics `evalr judge` has built-in programs for, in `programs/judges/`.
pub const METRICS: [&str; 6] = [
    "groundedness",
    "coherence",
    "fluency",
    "relevance",
    "retrieval",
    "similarity",
];

/// The most judgments of one row `--judge-repeats` may ask for.
pub const MAX_REPEATS: u32 = 20;

/// The text a row's response is judged on: the chosen choice's text, after the program's
/// free-text captures (an explanation) when it made any; for a program without a choice,
/// the text it generated last (its output).
fn response_text(record: &OutputRecord) -> Option<String> {
    let generated: Vec<String> = record
        .calls
        .iter()
        .filter(|c| c.kind == CallKind::Gen)
        .filter_map(|c| c.text.clone())
        .collect();
    let Some(index) = record.answer_index() else {
        return generated.last().cloned();
    };
    let choice = record.row.choices.get(index)?.clone();
    Some(if generated.is_empty() {
        choice
    } else {
        format!("{}\nAnswer: {choice}", generated.join("\n"))
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
        let query = match record.row.extra.get("query") {
            Some(Value::String(query)) => query.clone(),
            _ => record.row.question.clone(),
        };
        let mut extra = Map::new();
        extra.insert("metric".into(), Value::String(metric.into()));
        extra.insert("judged_id".into(), Value::String(record.id.clone()));
        extra.insert("query".into(), Value::String(query.clone()));
        extra.insert("response".into(), Value::String(response.clone()));
        // The names older judges and azure-ai-evaluation's first versions used.
        extra.insert("answer".into(), Value::String(response));
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
            question: query,
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
    /// Built-in metric names or paths to judge programs.
    pub metrics: Vec<String>,
    /// A score at or above this passes.
    pub threshold: u8,
    /// Judgments per row (1 = judge once).
    pub repeats: u32,
    /// Another judge of metrics already judged: its runs go to `judge/<metric>@<label>/`.
    pub label: Option<String>,
    /// Options of each judge run (model, quota, cache...); program, dataset and folder are set
    /// per metric.
    pub options: RunOptions,
}

/// One judge to run: its metric name and program.
#[derive(Debug, Clone)]
struct Judge {
    metric: String,
    program: String,
    folder: PathBuf,
}

/// The metric a judge program measures: a built-in metric's name, else the program's
/// `name:` (lower case, words joined by `_`: an official `name: Groundedness` judges
/// `groundedness`), else the file's name.
fn metric_of(spec: &str, programs_dir: &Path) -> Result<(String, String), RunError> {
    if METRICS.contains(&spec) {
        return Ok((spec.to_string(), format!("judges/{spec}")));
    }
    let file = load_program(spec, programs_dir)?;
    let path = file.path.clone();
    let name: String = file
        .name
        .trim()
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if name.is_empty() {
        return Err(RunError::Usage(format!(
            "judge program {}: no name to call its metric by; give it `name:` in its front matter",
            path.display()
        )));
    }
    Ok((name, path.display().to_string()))
}

fn resolve_judges(request: &JudgeRequest) -> Result<Vec<Judge>, RunError> {
    if let Some(label) = &request.label
        && (label.is_empty()
            || !label
                .chars()
                .all(|c| c.is_alphanumeric() || "-_.".contains(c)))
    {
        return Err(RunError::Usage(format!(
            "--judge-name {label:?}: use letters, digits, `-`, `_` or `.` (it names a folder)"
        )));
    }
    if request.repeats == 0 || request.repeats > MAX_REPEATS {
        return Err(RunError::Usage(format!(
            "--judge-repeats {}: choose 1 to {MAX_REPEATS}",
            request.repeats
        )));
    }
    let mut judges: Vec<Judge> = Vec::new();
    for spec in &request.metrics {
        let (metric, program) = metric_of(spec, &request.options.folders.programs_dir).map_err(|e| {
            match e {
                RunError::Program(crate::program::ProgramError::NotFound { .. }) => {
                    RunError::Usage(format!(
                        "unknown metric `{spec}`: choose from {}, or give the path of a judge .prompty file",
                        METRICS.join(", ")
                    ))
                }
                other => other,
            }
        })?;
        let name = match &request.label {
            Some(label) => format!("{metric}@{label}"),
            None => metric.clone(),
        };
        if judges.iter().any(|j| j.metric == metric) {
            return Err(RunError::Usage(format!(
                "metric {metric} is asked twice (`{spec}`); judge it once per command"
            )));
        }
        judges.push(Judge {
            folder: request.run_folder.join(JUDGE_FOLDER).join(name),
            metric,
            program,
        });
    }
    Ok(judges)
}

/// A judge folder that already holds a judgment by another judge model or program cannot be
/// resumed by this one: say how to keep both.
fn check_same_judge(judge: &Judge, options: &RunOptions) -> Result<(), RunError> {
    let Ok(Some(manifest)) = JudgeManifest::read(&judge.folder) else {
        return Ok(());
    };
    if manifest.model != options.model || manifest.program != judge.program {
        return Err(RunError::Usage(format!(
            "{} holds a judgment of {} by {} ({}); to judge it again with {} ({}), add --judge-name LABEL (kept apart in judge/{}@LABEL, and the two judges' agreement is reported), or delete that folder",
            judge.folder.display(),
            judge.metric,
            manifest.model.as_deref().unwrap_or("the default model"),
            manifest.program,
            options.model.as_deref().unwrap_or("the default model"),
            judge.program,
            judge.metric,
        )));
    }
    Ok(())
}

/// Judges a run for each metric; returns the judge runs' folders (repeats included).
pub async fn judge(request: JudgeRequest, show_progress: bool) -> Result<Vec<PathBuf>, RunError> {
    let judges = resolve_judges(&request)?;
    // Everything is checked before the first judge call: rows, required fields, folders.
    let mut planned = Vec::new();
    for judge in &judges {
        let rows = judge_rows(&request.run_folder, &judge.metric)?;
        let program = load_program(&judge.program, &request.options.folders.programs_dir)?;
        for input in program
            .inputs
            .iter()
            .filter(|i| i.required && i.default.is_none())
        {
            let field = &input.name;
            if !rows
                .iter()
                .any(|r| r.to_json().get(field).is_some_and(|v| !v.is_null()))
            {
                return Err(RunError::Usage(format!(
                    "metric {} needs a `{field}` field in the rows of {}, and none has one",
                    judge.metric,
                    request.run_folder.display()
                )));
            }
        }
        check_same_judge(judge, &request.options)?;
        planned.push((judge, rows));
    }
    let mut folders = Vec::new();
    let mut unanswered: Option<String> = None;
    for (judge, rows) in planned {
        std::fs::create_dir_all(&judge.folder).map_err(|source| RunError::Io {
            path: judge.folder.clone(),
            source,
        })?;
        // Rebuilt identically each time, so a resumed judge run finds the same dataset.
        let dataset = judge.folder.join("rows.jsonl");
        let mut writer = JsonlWriter::create(&dataset)?;
        for row in &rows {
            writer.write_row(row)?;
        }
        writer.finish()?;
        let previous_repeats = JudgeManifest::read(&judge.folder)
            .ok()
            .flatten()
            .map_or(1, |m| m.repeats);
        JudgeManifest {
            metric: judge.metric.clone(),
            program: judge.program.clone(),
            threshold: request.threshold,
            repeats: request.repeats.max(previous_repeats),
            model: request.options.model.clone(),
        }
        .write(&judge.folder)?;
        for repeat in 0..request.repeats {
            let folder = if repeat == 0 {
                judge.folder.clone()
            } else {
                judge
                    .folder
                    .join(REPEATS_FOLDER)
                    .join((repeat + 1).to_string())
            };
            let mut options = request.options.clone();
            options.program = judge.program.clone();
            options.dataset = dataset.display().to_string();
            options.output.results_dir = Some(folder.clone());
            options.rows.shard = None;
            options.output.run_id = None;
            options.repeat = repeat;
            let resume = folder
                .join(OUTPUTS_FILE)
                .exists()
                .then(|| (folder.as_path(), ResumeOverrides::default()));
            let report = execute(options, resume, show_progress).await?;
            if let Some(why) = report.unanswered {
                unanswered.get_or_insert(format!("judge {}: {why}", report.folder.display()));
            }
            folders.push(report.folder);
        }
    }
    // Fold the judged metrics into the judged run's own summary and report.
    let summary = crate::score::score_folder(&request.run_folder)?;
    crate::report::write_score_reports(&request.run_folder, &summary)?;
    // A judge that judged nothing fails the command (exit 1), as a run that answered nothing.
    if let Some(why) = unanswered {
        return Err(RunError::NothingAnswered(why));
    }
    Ok(folders)
}
