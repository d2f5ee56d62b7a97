//! `evalr view`: the runs and comparisons under a results folder, and the page listing them.

use std::path::{Path, PathBuf};

use minijinja::context;
use serde::Serialize;

use super::{COMPARE_HTML, REPORT_HTML};
use crate::report::{ExportError, SUMMARY_FILE};
use crate::results::JUDGE_FOLDER;
use crate::results::{MANIFEST_FILE, OUTPUTS_FILE, ResultFolder};

/// Folders below the results folder searched for runs (results/<run>/, results/<group>/<run>/).
const MAX_DEPTH: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct RunEntry {
    /// The folder, relative to the results folder.
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub run_id: String,
    pub status: Option<String>,
    pub model: Option<String>,
    pub program: Option<String>,
    pub dataset: Option<String>,
    pub started_at: Option<String>,
    /// Micro accuracy from `summary.json`, when the run was scored.
    pub accuracy: Option<f64>,
    /// Whether `report.html` exists (otherwise the page is rendered when asked for).
    pub has_report: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompareEntry {
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Listing {
    pub root: String,
    pub runs: Vec<RunEntry>,
    pub comparisons: Vec<CompareEntry>,
}

/// Finds the run folders (with `run.json` and `outputs.jsonl`) and the comparison pages under
/// `root` (or `root` itself when it is a run), sorted by name. Judge runs inside a run are part
/// of that run's page and are not listed apart.
pub fn find_pages(root: &Path) -> std::io::Result<Listing> {
    let mut listing = Listing {
        root: root.display().to_string(),
        ..Listing::default()
    };
    walk(root, root, 0, &mut listing)?;
    listing.runs.sort_by(|a, b| a.name.cmp(&b.name));
    listing.comparisons.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listing)
}

fn walk(root: &Path, dir: &Path, depth: usize, listing: &mut Listing) -> std::io::Result<()> {
    let name = relative_name(root, dir);
    if dir.join(MANIFEST_FILE).is_file() && dir.join(OUTPUTS_FILE).is_file() {
        // A folder that does not open as a run (bad run.json) is left out of the list, as
        // `evalr score` would refuse it with the reason.
        if let Ok(folder) = ResultFolder::open(dir) {
            listing.runs.push(run_entry(name, &folder));
        }
        return Ok(());
    }
    if dir.join(COMPARE_HTML).is_file() {
        listing.comparisons.push(CompareEntry {
            name,
            path: dir.join(COMPARE_HTML),
        });
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != JUDGE_FOLDER))
        .collect();
    children.sort();
    for child in children {
        walk(root, &child, depth + 1, listing)?;
    }
    Ok(())
}

fn relative_name(root: &Path, dir: &Path) -> String {
    match dir.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string()),
    }
}

fn run_entry(name: String, folder: &ResultFolder) -> RunEntry {
    let run = &folder.manifest;
    let known = |text: &str| Some(text.to_string()).filter(|t| !t.is_empty());
    // summary.json is evalr score's output; only its headline figure is read here.
    let accuracy = std::fs::read_to_string(folder.path.join(SUMMARY_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|summary| summary["accuracy"]["micro"]["value"].as_f64());
    RunEntry {
        name,
        path: folder.path.clone(),
        run_id: folder.name(),
        status: Some(run.status.as_str().to_string()),
        model: known(&run.model.identity),
        program: known(&run.program.name),
        dataset: known(&run.dataset.spec),
        started_at: run.started_at.map(|t| t.to_rfc3339()),
        accuracy,
        has_report: folder.path.join(REPORT_HTML).is_file(),
    }
}

/// The listing as a page: links `runs/<k>/` and `compare/<k>/` to the pages `evalr view`
/// serves.
pub fn render_listing(listing: &Listing) -> Result<String, ExportError> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    super::format::register(&mut env);
    env.add_template("view.html", include_str!("assets/view.html"))
        .and_then(|_| env.get_template("view.html"))
        .and_then(|t| {
            t.render(context! {
                listing => listing,
                style => minijinja::Value::from_safe_string(include_str!("assets/page.css").to_string()),
                generator => format!("evalr {}", env!("CARGO_PKG_VERSION")),
            })
        })
        .map_err(|e| ExportError(format!("rendering the run list: {e:#}")))
}
