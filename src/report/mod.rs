//! Reports: one exporter per format, each turning a scored value into bytes (the shape of
//! hyperfine's `export` module). Adding a format is one new file and one line where the
//! files are written.
//!
//! - `markdown.rs`: `report.md` and the compare Markdown;
//! - `json.rs`: `summary.json` and `compare --json`;
//! - `parquet.rs`: `outputs.parquet`, the outputs as a flat table;
//! - `charts.rs`: SVG charts (calibration curve, per-subject accuracy A vs B);
//! - `html/`: `report.html` and `compare.html`, self-contained pages with a row browser.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::results::ResultFolder;
use crate::score::compare::Comparison;
use crate::score::{ScoreError, Summary};

pub mod charts;
pub mod html;
pub mod json;
pub mod markdown;
pub mod parquet;

/// A p-value as every report, page and command prints it: `"p = 0.0063"`, or `"p < 0.0001"`
/// below what four decimals show (never `"p = 0.0000"` nor `"p = < 0.0001"`).
pub fn format_p(p: f64) -> String {
    if p < 0.0001 {
        "p < 0.0001".to_string()
    } else {
        format!("p = {p:.4}")
    }
}

/// Why an exporter could not produce its bytes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExportError(pub String);

/// One output format for values of type `T`.
pub trait Exporter<T: ?Sized> {
    fn serialize(&self, value: &T) -> Result<Vec<u8>, ExportError>;

    /// Writes the bytes to `out`. The exporters whose output grows with the rows (parquet,
    /// HTML) stream here, so the file is never whole in memory; the others write
    /// [`Exporter::serialize`]'s bytes.
    fn write_to(&self, value: &T, out: &mut (dyn Write + Send)) -> Result<(), ExportError> {
        let bytes = self.serialize(value)?;
        out.write_all(&bytes).map_err(ExportError::from)
    }
}

impl From<std::io::Error> for ExportError {
    fn from(error: std::io::Error) -> Self {
        ExportError(error.to_string())
    }
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
    crate::files::write_atomic_with(&path, |out| exporter.write_to(value, out)).map_err(
        |e: ExportError| ScoreError::Write {
            path: path.clone(),
            message: e.0,
        },
    )?;
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

/// Choices of `evalr score` about its reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOptions {
    /// The most rows `report.html` holds (see `html::page_rows`).
    pub html_rows: u64,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            html_rows: html::page_rows::DEFAULT_PAGE_ROWS,
        }
    }
}

/// The reports of `evalr score`, written into the result folder at `path`.
pub fn write_score_reports(path: &Path, summary: &Summary) -> Result<Vec<PathBuf>, ScoreError> {
    write_score_reports_with(path, summary, &ReportOptions::default())
}

/// As [`write_score_reports`], with non-default options.
pub fn write_score_reports_with(
    path: &Path,
    summary: &Summary,
    options: &ReportOptions,
) -> Result<Vec<PathBuf>, ScoreError> {
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
        &html::RunPage {
            row_limit: options.html_rows,
            ..html::RunPage::new(folder, summary)
        },
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

#[cfg(test)]
mod tests {
    use super::format_p;

    #[test]
    fn p_values_read_one_way() {
        assert_eq!(format_p(0.00634765625), "p = 0.0063");
        assert_eq!(format_p(1.0), "p = 1.0000");
        assert_eq!(format_p(0.0001), "p = 0.0001");
        assert_eq!(format_p(0.00009), "p < 0.0001");
        assert_eq!(format_p(0.0), "p < 0.0001");
    }
}
