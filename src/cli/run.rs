//! `evalr run` and `evalr programs ...`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::exit::Exit;
use crate::run::{
    BatchOptions, EnsembleOptions, ExampleOptions, Folders, LimitOptions, ModelSettings,
    OutputOptions, ResumeOverrides, RetryOptions, RowOptions, RunOptions,
};
use crate::say;

/// The flags of a run that `evalr judge` and `evalr embed` share (their runs are runs): how
/// the model is reached, limits and quota, retries and cache, folders. Each group is one
/// struct of `crate::run`'s options, flattened here.
#[derive(Debug, Args)]
pub struct RunFlags {
    #[command(flatten)]
    pub connection: ModelSettings,
    #[command(flatten)]
    pub limits: LimitOptions,
    #[command(flatten)]
    pub retries: RetryOptions,
    #[command(flatten)]
    pub folders: Folders,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

impl RunFlags {
    /// Run options from these flags, for `program` over `dataset` with `model`; the groups
    /// only `evalr run` has start empty.
    pub fn options(&self, program: String, dataset: String, model: Option<String>) -> RunOptions {
        RunOptions {
            program,
            dataset,
            model,
            folders: self.folders.clone(),
            rows: RowOptions::default(),
            examples: ExampleOptions::default(),
            ensemble: EnsembleOptions::default(),
            connection: self.connection.clone(),
            limits: self.limits.clone(),
            retries: self.retries.clone(),
            output: OutputOptions::default(),
            batch: BatchOptions::default(),
            repeat: 0,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Program name (built in, or NAME.prompty in --programs-dir) or path to a .prompty file.
    #[arg(long, required_unless_present = "resume")]
    pub program: Option<String>,
    /// Dataset name (datasets/NAME.jsonl), a .jsonl file, or a folder of .jsonl files.
    #[arg(long, required_unless_present = "resume")]
    pub dataset: Option<String>,
    /// Model: a profile from the config file, azure:DEPLOYMENT, openai:MODEL, local,
    /// local:PATH.gguf or local:hf:REPO/FILE.gguf. Default: $EVALR_MODEL, the config file's
    /// default_model, azure:$AZURE_OPENAI_DEPLOYMENT when AZURE_OPENAI_ENDPOINT is set too,
    /// else the embedded local model. The first line of the run says which and why.
    #[arg(long)]
    pub model: Option<String>,
    #[command(flatten)]
    pub examples: ExampleOptions,
    #[command(flatten)]
    pub ensemble: EnsembleOptions,
    #[command(flatten)]
    pub rows: RowOptions,
    #[command(flatten)]
    pub output: OutputOptions,
    /// Count requests, tokens and cost without calling the model.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub batch: BatchOptions,
    /// Finish an interrupted run: rows already in its outputs.jsonl are never sent again. Its
    /// run.json gives the options; --max-cost, --max-errors, --rpm, --tpm and --max-in-flight
    /// may be changed.
    #[arg(long, value_name = "RUN_FOLDER", conflicts_with_all = ["program", "dataset"])]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub flags: RunFlags,
}

impl RunArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            examples: self.examples.clone(),
            ensemble: self.ensemble.clone(),
            rows: self.rows.clone(),
            output: self.output.clone(),
            batch: self.batch.clone(),
            ..self.flags.options(
                self.program.clone().unwrap_or_default(),
                self.dataset.clone().unwrap_or_default(),
                self.model.clone(),
            )
        }
    }
}

fn print_dry_run(estimate: &crate::run::DryRunEstimate) -> std::io::Result<()> {
    say!("{}", estimate.model)?;
    say!("rows:               {}", estimate.rows)?;
    if estimate.repeats > 1 {
        say!("repeats per row:    {}", estimate.repeats)?;
    }
    say!("requests:           {}", estimate.requests)?;
    say!("prompt tokens:      {} (estimated)", estimate.prompt_tokens)?;
    say!(
        "completion tokens:  {} (at most)",
        estimate.completion_tokens
    )?;
    match (estimate.cost, &estimate.price) {
        (Some(cost), Some(price)) => say!(
            "cost:               ${cost:.4} (at most{}; ${}/${} per 1M input/output tokens from {})",
            if estimate.batch {
                ", at the batch rate"
            } else {
                ""
            },
            price.input_per_mtok,
            price.output_per_mtok,
            price.source.describe(false)
        )?,
        _ => say!(
            "cost:               unknown ({})",
            crate::prices::no_price_hint(&estimate.model)
        )?,
    }
    if let Some(e) = &estimate.embeddings {
        say!("embeddings model:   {}", e.model)?;
        say!(
            "texts to embed:     {} (not yet in their embeddings files)",
            e.texts
        )?;
        say!("embedding requests: {}", e.requests)?;
        say!("embedding tokens:   {} (estimated)", e.tokens)?;
        match e.cost {
            Some(cost) => say!("embedding cost:     ${cost:.4}")?,
            None => say!(
                "embedding cost:     unknown ({})",
                crate::prices::no_price_hint(&e.model)
            )?,
        }
    }
    Ok(())
}

fn print_run_summary(report: &crate::run::RunReport) -> std::io::Result<()> {
    let s = &report.summary;
    let accuracy = s
        .accuracy
        .as_ref()
        .map(|a| {
            format!(
                "{:.2}% (95% CI {:.2}-{:.2})",
                a.micro.value * 100.0,
                a.micro.ci95[0] * 100.0,
                a.micro.ci95[1] * 100.0
            )
        })
        .unwrap_or_else(|| "n/a".into());
    say!(
        "{}: {} rows, accuracy {accuracy}; {} correct, {} wrong, {} unparsed, {} refused; {} failed; {} requests, {} rate-limited; report: {}",
        report.folder.display(),
        s.rows.outputs,
        s.rows.correct,
        s.rows.wrong,
        s.rows.unparsed,
        s.rows.refused,
        s.rows.failed,
        s.retries.requests,
        s.retries.rate_limited,
        report.folder.join("report.md").display()
    )
}

pub fn execute_run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let options = args.options();
    if args.dry_run {
        print_dry_run(&crate::run::dry_run(&options)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let resume = args
        .resume
        .as_deref()
        .map(|folder| (folder, ResumeOverrides::from_limits(&args.flags.limits)));
    let report = runtime.block_on(crate::run::execute(options, resume, !args.flags.quiet))?;
    // In an AzureML job (or wherever MLFLOW_TRACKING_URI is set) the run is logged to MLflow.
    // A logging failure is reported but does not fail the evaluation that already succeeded.
    if std::env::var_os("MLFLOW_TRACKING_URI").is_some() {
        match runtime.block_on(crate::azureml::mlflow::log_results_from_env(&report.folder)) {
            Ok(_) => eprintln!("logged {} to MLflow", report.folder.display()),
            Err(error) => eprintln!("warning: could not log to MLflow: {error}"),
        }
    }
    print_run_summary(&report)?;
    if let Some(why) = &report.unanswered {
        eprintln!("error: {why}");
    }
    Ok(Exit::of_run(report.status).into())
}
