//! `evalr score` and `evalr compare`: read result folders, write reports.
//!
//! Exit codes (see `super::exit`): 0 done; 3 `compare --fail-if-worse` found a regression;
//! 2 bad input (missing or corrupt result folder, a bad line, runs over different rows
//! without `--intersect`); 1 a report that could not be written.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::UsageError;
use super::exit::Exit;
use crate::report::{self, Exporter};
use crate::results::ResultFolder;
use crate::score::{self, RunRows, ScoreError};

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The result folder of a run (results/<run-id>).
    pub folder: PathBuf,
    /// Judged metrics: a score passes when it is at least N (1 to 5). Default: the threshold
    /// each judgment was made with (`evalr judge --threshold`), else 3.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    pub judge_threshold: Option<u8>,
    /// The most rows report.html holds. A larger run's page holds its wrong, unparsed,
    /// refused and failed rows first and an even sample of the others, and says so; every
    /// row stays in outputs.parquet and outputs.jsonl.
    #[arg(long, value_name = "N", default_value_t = report::html::page_rows::DEFAULT_PAGE_ROWS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub html_rows: u64,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Two or more result folders: the first is the baseline A, each other one is compared
    /// with it.
    #[arg(required = true, num_args = 2.., value_name = "FOLDER")]
    pub folders: Vec<PathBuf>,
    /// Compare only the rows all runs share (otherwise runs over different rows are refused).
    #[arg(long)]
    pub intersect: bool,
    /// Exit with code 3 when a run is worse than the baseline by more than PP percentage
    /// points with 95% confidence: the upper bound of the paired bootstrap interval of
    /// (B - A) is below -PP/100.
    #[arg(long, value_name = "PP", value_parser = parse_points)]
    pub fail_if_worse: Option<f64>,
    /// Also write the comparison as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write compare.md, compare.json, compare.html and the per-subject charts into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

fn parse_points(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(format!(
            "expected a number of percentage points >= 0 (e.g. 1.5), got {text:?}"
        )),
    }
}

pub fn execute_score(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    let options = score::ScoreOptions {
        judge_threshold: args.judge_threshold,
    };
    let summary = score::score_folder_with(&args.folder, &options)?;
    let reports = report::ReportOptions {
        html_rows: args.html_rows,
    };
    let written = report::write_score_reports_with(&args.folder, &summary, &reports)?;
    let mut out = std::io::stdout().lock();
    match &summary.accuracy {
        Some(accuracy) => {
            let m = &accuracy.micro;
            let _ = writeln!(
                out,
                "{}: accuracy {:.1}% (95% CI {:.1}% – {:.1}%) over {} scored rows, {} invalid",
                summary.run.run_id,
                m.value * 100.0,
                m.ci95[0] * 100.0,
                m.ci95[1] * 100.0,
                m.n,
                summary.rows.unparsed + summary.rows.refused
            );
        }
        None => {
            let _ = writeln!(
                out,
                "{}: no row to score by accuracy ({} rows without correct_answer)",
                summary.run.run_id, summary.rows.unscored
            );
        }
    }
    for path in written {
        let _ = writeln!(out, "wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn execute_compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    // A report path that cannot be written fails before any folder is read.
    if let Some(path) = &args.json {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent.filter(|p| !p.is_dir()) {
            return Err(UsageError(format!(
                "--json {}: folder {} does not exist",
                path.display(),
                parent.display()
            ))
            .into());
        }
    }
    if let Some(dir) = args.out.as_ref().filter(|d| d.exists() && !d.is_dir()) {
        return Err(UsageError(format!("--out {}: not a folder", dir.display())).into());
    }
    let mut runs = Vec::with_capacity(args.folders.len());
    for path in &args.folders {
        let folder = ResultFolder::open(path).map_err(ScoreError::from)?;
        runs.push(RunRows::load(&folder)?);
    }
    let comparison = score::compare(&runs, args.intersect, args.fail_if_worse)?;
    let markdown = report::markdown::MarkdownExporter
        .serialize(&comparison)
        .map_err(|e| anyhow::anyhow!(UsageError(e.0)))?;
    std::io::stdout()
        .lock()
        .write_all(&markdown)
        .context("writing the comparison to standard output")?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(&markdown)
                    .and_then(|_| file.write_all(b"\n"))
            });
        appended.map_err(|e| UsageError(format!("GITHUB_STEP_SUMMARY {}: {e}", path.display())))?;
    }
    if let Some(path) = &args.json {
        let bytes = report::json::JsonExporter
            .serialize(&comparison)
            .map_err(|e| anyhow::anyhow!(UsageError(e.0)))?;
        report::write_file(path, &bytes)?;
    }
    if let Some(dir) = &args.out {
        report::write_compare_reports(dir, &comparison)?;
    }
    if comparison.gate_failed() {
        for pair in comparison
            .pairs
            .iter()
            .filter(|p| p.gate.as_ref().is_some_and(|g| g.failed))
        {
            eprintln!(
                "gate failed: {} is worse than {} by more than {} points (B - A = {:+.1} pp, 95% CI upper bound {:+.1} pp)",
                pair.candidate.name,
                comparison.baseline.name,
                args.fail_if_worse.unwrap_or(0.0),
                pair.difference * 100.0,
                pair.ci95[1] * 100.0
            );
        }
        return Ok(Exit::NegativeVerdict.into());
    }
    Ok(ExitCode::SUCCESS)
}
