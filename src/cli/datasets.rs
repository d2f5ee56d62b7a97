//! `evalr datasets ...`: fetch, convert, list, show.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::dataset::{ColumnMap, ConvertOptions, DatasetSource, FetchOptions, list_names};

use super::UsageError;
use crate::say;

#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// Download a dataset's parquet files from the Hugging Face hub and write JSONL datasets.
    ///
    /// Uses the hub cache and HF_HOME, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE=1.
    Fetch(FetchArgs),
    /// Convert a local .parquet, .csv (MMLU layout question,A,B,C,D,answer, or with a header) or
    /// .jsonl file into a JSONL dataset.
    Convert(ConvertArgs),
    /// List the datasets in the datasets folder with row counts and subjects.
    List(ListArgs),
    /// Show one row of a dataset (or a summary of the dataset without --row/--id).
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Dataset repository on the hub, `owner/name` (e.g. cais/mmlu, tasksource/mmlu).
    pub repo: String,
    /// Subject (config folder) to fetch, or `all` for one file per subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Split to fetch.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Branch, tag or commit of the repository.
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Source columns for the row fields: question=COL,choices=COL (or A+B+C+D),answer=COL,subject=COL,id=COL.
    #[arg(long)]
    pub map: Option<String>,
    /// Name written in the `dataset` field and used as file name prefix [default: the repository name].
    #[arg(long)]
    pub dataset: Option<String>,
    /// Folder the JSONL files are written to.
    #[arg(long, default_value = "datasets", env = "EVALR_DATASETS_DIR")]
    pub datasets_dir: PathBuf,
    /// Seconds allowed for each hub request (the listing, each file).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Input file: .parquet, .csv or .jsonl.
    pub input: PathBuf,
    /// Output JSONL file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Source columns for the row fields: question=COL,choices=COL (or A+B+C+D),answer=COL,subject=COL,id=COL.
    #[arg(long)]
    pub map: Option<String>,
    /// `dataset` field for rows without one [default: the output name up to its first `_`].
    #[arg(long)]
    pub dataset: Option<String>,
    /// `subject` for rows without a subject column [default: from an MMLU CSV name, anatomy_test.csv].
    #[arg(long)]
    pub subject: Option<String>,
    /// Split used in generated ids [default: from the input name, test-00000-of-00001.parquet or anatomy_test.csv].
    #[arg(long)]
    pub split: Option<String>,
    /// Skip records that do not fit the row schema (each reported on stderr) instead of stopping.
    #[arg(long)]
    pub skip_invalid: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Folder holding the datasets.
    #[arg(long, default_value = "datasets", env = "EVALR_DATASETS_DIR")]
    pub datasets_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Dataset: NAME (datasets/NAME.jsonl), a .jsonl path, or a folder of .jsonl files.
    pub dataset: String,
    /// Row to print, counting from 0 in file order (blank lines not counted).
    #[arg(long, conflicts_with = "id")]
    pub row: Option<u64>,
    /// Row to print, by id.
    #[arg(long)]
    pub id: Option<String>,
    /// Folder holding the datasets.
    #[arg(long, default_value = "datasets", env = "EVALR_DATASETS_DIR")]
    pub datasets_dir: PathBuf,
}

pub fn execute(command: DatasetsCommand) -> anyhow::Result<ExitCode> {
    match command {
        DatasetsCommand::Fetch(args) => fetch(args),
        DatasetsCommand::Convert(args) => convert(args),
        DatasetsCommand::List(args) => list(args),
        DatasetsCommand::Show(args) => show(args),
    }
}

fn parse_map(map: Option<&str>) -> anyhow::Result<ColumnMap> {
    Ok(match map {
        Some(text) => ColumnMap::parse(text)?,
        None => ColumnMap::default(),
    })
}

fn fetch(args: FetchArgs) -> anyhow::Result<ExitCode> {
    if !args.repo.contains('/') || args.repo.starts_with('/') || args.repo.ends_with('/') {
        return Err(UsageError(format!(
            "`{}` is not a repository name: expected OWNER/NAME, e.g. cais/mmlu",
            args.repo
        ))
        .into());
    }
    let options = FetchOptions {
        repo: args.repo.clone(),
        subject: args.subject,
        split: args.split,
        revision: args.revision,
        map: parse_map(args.map.as_deref())?,
        dataset: args.dataset,
        datasets_dir: args.datasets_dir,
        timeout: Duration::from_secs(args.timeout.max(1)),
        progress: std::io::stderr().is_terminal(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The errors name the repository, URL or file themselves.
    let written = runtime.block_on(crate::dataset::fetch(&options))?;
    let mut out = std::io::stdout().lock();
    for file in &written {
        writeln!(out, "{}: {} rows", file.path.display(), file.rows)?;
    }
    let total: u64 = written.iter().map(|f| f.rows).sum();
    if written.len() > 1 {
        writeln!(out, "{} files, {total} rows", written.len())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn convert(args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let options = ConvertOptions {
        map: parse_map(args.map.as_deref())?,
        dataset: args.dataset,
        subject: args.subject,
        split: args.split,
        skip_invalid: args.skip_invalid,
    };
    let summary = crate::dataset::convert_file(&args.input, &args.out, &options)
        .with_context(|| format!("cannot convert {}", args.input.display()))?;
    let subjects = summary.subjects.keys().filter(|s| !s.is_empty()).count();
    let skipped = if summary.skipped > 0 {
        format!(", {} skipped", summary.skipped)
    } else {
        String::new()
    };
    say!(
        "{}: {} rows, {subjects} subjects{skipped}",
        summary.path.display(),
        summary.rows
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Rows, invalid lines and rows per subject of one dataset.
struct Census {
    rows: u64,
    invalid: u64,
    subjects: BTreeMap<String, u64>,
}

fn census(source: &DatasetSource) -> Census {
    let mut census = Census {
        rows: 0,
        invalid: 0,
        subjects: BTreeMap::new(),
    };
    for item in source.rows() {
        match item {
            Ok(row) => {
                census.rows += 1;
                if let Some(subject) = row.subject {
                    *census.subjects.entry(subject).or_insert(0) += 1;
                }
            }
            Err(_) => census.invalid += 1,
        }
    }
    census
}

fn describe_subjects(subjects: &BTreeMap<String, u64>) -> String {
    match subjects.len() {
        0 => "-".to_string(),
        1..=3 => subjects.keys().cloned().collect::<Vec<_>>().join(", "),
        n => format!("{n} subjects"),
    }
}

fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let names = list_names(&args.datasets_dir)?;
    if names.is_empty() {
        eprintln!(
            "no datasets in {} (fetch one: evalr datasets fetch cais/mmlu --subject anatomy --split test)",
            args.datasets_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let width = names
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("total".len());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<width$}  {:>7}  {:>7}  SUBJECTS",
        "NAME", "ROWS", "INVALID"
    )?;
    let (mut rows, mut invalid) = (0u64, 0u64);
    for name in &names {
        let source = DatasetSource::resolve(name, &args.datasets_dir)?;
        let census = census(&source);
        rows += census.rows;
        invalid += census.invalid;
        writeln!(
            out,
            "{name:<width$}  {:>7}  {:>7}  {}",
            census.rows,
            census.invalid,
            describe_subjects(&census.subjects)
        )?;
    }
    writeln!(
        out,
        "{:<width$}  {rows:>7}  {invalid:>7}  {} datasets",
        "total",
        names.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let source = DatasetSource::resolve(&args.dataset, &args.datasets_dir)?;
    if args.row.is_none() && args.id.is_none() {
        return show_summary(&source);
    }
    let mut index = 0u64;
    for item in source.rows() {
        let matches = match (&item, args.row, &args.id) {
            (_, Some(wanted), _) => index == wanted,
            (Ok(row), None, Some(id)) => &row.id == id,
            _ => false,
        };
        if matches {
            let row = item?;
            say!("{}", serde_json::to_string_pretty(&row)?)?;
            return Ok(ExitCode::SUCCESS);
        }
        index += 1;
    }
    let missing = match (args.row, args.id) {
        (Some(row), _) => format!(
            "{} has {index} rows; there is no row {row} (rows count from 0)",
            source.name()
        ),
        (None, Some(id)) => format!("{} has no row with id `{id}`", source.name()),
        (None, None) => unreachable!("handled above"),
    };
    Err(UsageError(missing).into())
}

fn show_summary(source: &DatasetSource) -> anyhow::Result<ExitCode> {
    let census = census(source);
    let mut out = std::io::stdout().lock();
    writeln!(out, "name: {}", source.name())?;
    writeln!(out, "files:")?;
    for file in source.files() {
        writeln!(out, "  {}", display(file))?;
    }
    writeln!(out, "sha256: {}", source.content_sha256()?)?;
    writeln!(out, "rows: {}", census.rows)?;
    writeln!(out, "invalid lines: {}", census.invalid)?;
    writeln!(out, "subjects: {}", census.subjects.len())?;
    for (subject, rows) in &census.subjects {
        writeln!(out, "  {subject}: {rows}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
