//! Reports: one exporter per format, each turning a scored value into bytes (the shape of
//! hyperfine's `export` module). Adding a format is one new file and one line where the
//! files are written.
//!
//! - `markdown.rs`: `report.md` and the compare Markdown;
//! - `json.rs`: `summary.json` and `compare --json`;
//! - `parquet.rs`: `outputs.parquet`, the outputs as a flat table;
//! - `charts.rs`: SVG charts (calibration curve, per-subject accuracy A vs B);
//! - `html/`: `report.html` and `compare.html`, self-contained pages with a row browser.

use std::path::{Path, PathBuf};

use crate::results::ResultFolder;
use crate::score::compare::Comparison;
use crate::score::{ScoreError, Summary};

pub mod charts;
pub mod html;
pub mod json;
pub mod markdown;
pub mod parquet;

/// Why an exporter could not produce its bytes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExportError(pub String);

/// One output format for values of type `T`.
pub trait Exporter<T: ?Sized> {
    fn serialize(&self, value: &T) -> Result<Vec<u8>, ExportError>;
}

pub const SUMMARY_FILE: &str = "summary.json";
pub const REPORT_FILE: &str = "report.md";
pub const PARQUET_FILE: &str = "outputs.parquet";
pub const CALIBRATION_CHART: &str = "calibration.svg";

pub const COMPARE_MARKDOWN: &str = "compare.md";
pub const COMPARE_JSON: &str = "compare.json";

/// File name of the per-subject chart of the `index`-th candidate (0-based) in a comparison.
pub fn subject_chart_name(index: usize) -> String {
    format!("compare-subjects-{}.svg", index + 1)
}

fn export<T: ?Sized>(
    exporter: &dyn Exporter<T>,
    value: &T,
    path: PathBuf,
    written: &mut Vec<PathBuf>,
) -> Result<(), ScoreError> {
    let bytes = exporter.serialize(value).map_err(|e| ScoreError::Write {
        path: path.clone(),
        message: e.0,
    })?;
    write_file(&path, &bytes)?;
    written.push(path);
    Ok(())
}

/// Write a file whole (through a temporary file, so a reader never sees half a report), with
/// the user's umask.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ScoreError> {
    crate::files::write_atomic(path, bytes).map_err(|e| ScoreError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The reports of `evalr score`, written into the result folder at `path`.
pub fn write_score_reports(path: &Path, summary: &Summary) -> Result<Vec<PathBuf>, ScoreError> {
    let folder = &ResultFolder::open(path)?;
    let mut written = Vec::new();
    let dir = &folder.path;
    export(
        &json::JsonExporter,
        summary,
        dir.join(SUMMARY_FILE),
        &mut written,
    )?;
    export(
        &markdown::MarkdownExporter,
        summary,
        dir.join(REPORT_FILE),
        &mut written,
    )?;
    export(
        &parquet::ParquetExporter,
        folder,
        dir.join(PARQUET_FILE),
        &mut written,
    )?;
    if summary.calibration.is_some() {
        export(
            &charts::CalibrationChart,
            summary,
            dir.join(CALIBRATION_CHART),
            &mut written,
        )?;
    }
    export(
        &html::HtmlExporter,
        &html::RunPage { folder, summary },
        dir.join(html::REPORT_HTML),
        &mut written,
    )?;
    written.extend(crate::score::judged::write_judged_rows(
        path,
        &summary.judged,
    )?);
    Ok(written)
}

/// The reports of `evalr compare --out DIR`: Markdown, JSON and one chart per candidate.
pub fn write_compare_reports(
    dir: &Path,
    comparison: &Comparison,
) -> Result<Vec<PathBuf>, ScoreError> {
    std::fs::create_dir_all(dir).map_err(|e| ScoreError::Write {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut written = Vec::new();
    export(
        &markdown::MarkdownExporter,
        comparison,
        dir.join(COMPARE_MARKDOWN),
        &mut written,
    )?;
    export(
        &json::JsonExporter,
        comparison,
        dir.join(COMPARE_JSON),
        &mut written,
    )?;
    export(
        &html::HtmlExporter,
        comparison,
        dir.join(html::COMPARE_HTML),
        &mut written,
    )?;
    for (index, pair) in comparison.pairs.iter().enumerate() {
        let chart = charts::SubjectChart {
            baseline: &comparison.baseline.name,
        };
        export(
            &chart,
            pair,
            dir.join(subject_chart_name(index)),
            &mut written,
        )?;
    }
    Ok(written)
}
