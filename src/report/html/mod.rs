//! HTML: `report.html` of `evalr score` and `compare.html` of `evalr compare --out`.
//!
//! Each page is one self-contained file (CSS, script, charts and data inside; it loads
//! nothing, and its Content-Security-Policy forbids loading anything): it opens from disk, from
//! an AzureML job's outputs or as a CI artifact. The figures and charts are rendered here, so
//! they show before any script runs; the script adds sorting and the row browser.
//!
//! Escaping: the templates are minijinja `.html` templates with HTML auto-escaping on, so every
//! value from data is escaped where it is written; data for the script is JSON inside
//! `<script type="application/json">` with `<`, `>`, `&` escaped ([`embed`]); the script puts
//! data on the page only as text. Row details travel gzip-compressed and base64-encoded
//! ([`rows`]), inflated by the browser when a row is opened.

use std::io::Write;

use minijinja::{Environment, UndefinedBehavior, Value, context};

use super::{ExportError, Exporter};
use crate::results::ResultFolder;
use crate::score::Summary;
use crate::score::compare::Comparison;

pub mod embed;
pub mod flipped;
pub mod format;
pub mod listing;
pub mod page_rows;
pub mod rows;

pub const REPORT_HTML: &str = "report.html";
pub const COMPARE_HTML: &str = "compare.html";

const LAYOUT: &str = include_str!("assets/layout.html");
const MACROS: &str = include_str!("assets/macros.html");
const RUN_TEMPLATE: &str = include_str!("assets/run.html");
const COMPARE_TEMPLATE: &str = include_str!("assets/compare.html");
const STYLE: &str = include_str!("assets/page.css");
const COMMON_JS: &str = include_str!("assets/common.js");
const RUN_JS: &str = include_str!("assets/run.js");
const COMPARE_JS: &str = include_str!("assets/compare.js");

/// A run's page: its summary, the folder its rows are read from, and how many rows it holds
/// at most ([`page_rows`]).
pub struct RunPage<'a> {
    pub folder: &'a ResultFolder,
    pub summary: &'a Summary,
    pub row_limit: u64,
}

impl<'a> RunPage<'a> {
    /// A page holding at most [`page_rows::DEFAULT_PAGE_ROWS`] rows.
    pub fn new(folder: &'a ResultFolder, summary: &'a Summary) -> Self {
        RunPage {
            folder,
            summary,
            row_limit: page_rows::DEFAULT_PAGE_ROWS,
        }
    }
}

/// Writes the HTML pages.
pub struct HtmlExporter;

/// Where the data elements go in the rendered run page: the page is rendered around them,
/// then the rows stream in between. Values from data are escaped, so none can be this text.
const DATA_MARKER: &str = "<!--evalr-data-blocks-->";

impl Exporter<RunPage<'_>> for HtmlExporter {
    fn serialize(&self, page: &RunPage<'_>) -> Result<Vec<u8>, ExportError> {
        let mut bytes = Vec::new();
        self.write_to(page, &mut bytes)?;
        Ok(bytes)
    }

    /// Streams the page: the figures, then the row chunks as they are read from the folder
    /// (never all in memory), then the row index the page's script reads first.
    fn write_to(
        &self,
        page: &RunPage<'_>,
        out: &mut (dyn Write + Send),
    ) -> Result<(), ExportError> {
        let plan = page_rows::PageRows::plan(&page.summary.rows, page.row_limit);
        let html = render(
            "run.html",
            &[COMMON_JS, RUN_JS],
            DATA_MARKER.to_string(),
            context! {
                s => Value::from_serialize(page.summary),
                page_rows => Value::from_serialize(&plan),
            },
        )?;
        let html = String::from_utf8(html).map_err(|e| ExportError(e.to_string()))?;
        let (head, tail) = match html.split(DATA_MARKER).collect::<Vec<_>>()[..] {
            [head, tail] => (head, tail),
            _ => {
                return Err(ExportError(
                    "the run page template lost its data marker".into(),
                ));
            }
        };
        out.write_all(head.as_bytes())?;
        let mut blocks = String::new();
        json_block(&mut blocks, "evalr-summary", page.summary)?;
        out.write_all(blocks.as_bytes())?;
        let index =
            rows::write_run_rows(page.folder, plan, out).map_err(|e| ExportError(e.to_string()))?;
        let mut blocks = String::new();
        json_block(&mut blocks, "evalr-index", &index)?;
        out.write_all(blocks.as_bytes())?;
        out.write_all(tail.as_bytes())?;
        Ok(())
    }
}

impl Exporter<Comparison> for HtmlExporter {
    fn serialize(&self, comparison: &Comparison) -> Result<Vec<u8>, ExportError> {
        let flipped = flipped::embed_flipped(comparison).map_err(|e| ExportError(e.to_string()))?;
        let mut blocks = String::new();
        json_block(&mut blocks, "evalr-comparison", comparison)?;
        for (p, rows) in flipped.iter().enumerate() {
            json_block(&mut blocks, &format!("evalr-flipped-{p}"), &rows.index)?;
            chunk_blocks(&mut blocks, &format!("flip{p}"), &rows.chunks);
        }
        // The per-subject chart of each pair spans the largest interval bound of its subjects.
        let scales: Vec<f64> = comparison
            .pairs
            .iter()
            .map(|pair| {
                pair.subjects
                    .iter()
                    .flat_map(|s| [s.ci95[0].abs(), s.ci95[1].abs(), s.difference.abs()])
                    .fold(0.05, f64::max)
            })
            .collect();
        render(
            "compare.html",
            &[COMMON_JS, COMPARE_JS],
            blocks,
            context! { c => Value::from_serialize(comparison), scales => scales },
        )
    }
}

fn render(
    template: &str,
    scripts: &[&str],
    data_blocks: String,
    page: Value,
) -> Result<Vec<u8>, ExportError> {
    let env = environment().map_err(|e| ExportError(format!("HTML templates: {e:#}")))?;
    let script: String = scripts.concat();
    // The script is ours, but a stray "</script" in it would end the element early.
    if script.contains("</script") {
        return Err(ExportError("the page script contains </script".into()));
    }
    let context = context! {
        generator => format!("evalr {}", env!("CARGO_PKG_VERSION")),
        style => Value::from_safe_string(STYLE.to_string()),
        script_hash => Value::from_safe_string(embed::script_hash(&script)),
        script => Value::from_safe_string(script),
        data_blocks => Value::from_safe_string(data_blocks),
        ..page
    };
    let html = env
        .get_template(template)
        .and_then(|t| t.render(context))
        .map_err(|e| ExportError(format!("rendering {template}: {e:#}")))?;
    Ok(html.into_bytes())
}

fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    // A misspelt field fails the render (and the tests) instead of printing nothing.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_template("layout.html", LAYOUT)?;
    env.add_template("macros.html", MACROS)?;
    env.add_template("run.html", RUN_TEMPLATE)?;
    env.add_template("compare.html", COMPARE_TEMPLATE)?;
    format::register(&mut env);
    Ok(env)
}

fn json_block<T: serde::Serialize + ?Sized>(
    out: &mut String,
    id: &str,
    value: &T,
) -> Result<(), ExportError> {
    let json = embed::json_for_script(value).map_err(|e| ExportError(e.to_string()))?;
    out.push_str(&format!(
        "<script type=\"application/json\" id=\"{id}\">{json}</script>\n"
    ));
    Ok(())
}

fn chunk_blocks(out: &mut String, kind: &str, chunks: &[String]) {
    let mut bytes = Vec::new();
    for (k, chunk) in chunks.iter().enumerate() {
        // Writing into memory cannot fail.
        let _ = rows::chunk_element(&mut bytes, kind, k, chunk);
    }
    out.push_str(&String::from_utf8_lossy(&bytes));
}
