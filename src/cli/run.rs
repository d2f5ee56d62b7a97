//! `evalr run` and `evalr programs ...`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::exit::Exit;
use crate::run::{ResumeOverrides, RunOptions};
use crate::say;

/// The flags of a run that `evalr judge` shares (its judge runs are runs): model settings,
/// quota, cache, retries. Defined once, flattened into both commands.
#[derive(Debug, Args)]
pub struct RunFlags {
    /// Model profiles file (default: $EVALR_CONFIG, else ./evalr.toml if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Requests per minute (overrides the profile).
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Tokens per minute (overrides the profile).
    #[arg(long)]
    pub tpm: Option<u32>,
    /// Requests in flight at once per deployment (overrides the profile; default 8).
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Take at most N rows (after --subjects and --sample).
    #[arg(long)]
    pub limit: Option<u64>,
    /// Response cache folder.
    #[arg(long, default_value = crate::run::cache::DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Do not read or write the response cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Stop cleanly (resumable, exit code 4) once the spend reaches this many dollars. Needs
    /// the model's price (profile, the config's [prices], or the shipped table): refused
    /// before the first request otherwise.
    #[arg(long)]
    pub max_cost: Option<f64>,
    /// Stop (exit code 3) once more than N rows have failed for good.
    #[arg(long)]
    pub max_errors: Option<u64>,
    /// Retries of a failed call (429, 5xx, timeouts, connection errors).
    #[arg(long, default_value_t = 6)]
    pub max_retries: u32,
    /// First wait before a retry, in seconds; doubles each retry (with jitter).
    #[arg(long, default_value_t = 0.5)]
    pub retry_interval: f64,
    /// Seconds before a request times out.
    #[arg(long, default_value_t = 120.0)]
    pub request_timeout: f64,
    /// CPU threads for the local model (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Local model: send raw text, no chat template.
    #[arg(long)]
    pub no_chat_template: bool,
    /// Folder of .prompty programs that add to or override the built-in ones.
    #[arg(long, env = "EVALR_PROGRAMS_DIR", default_value = "programs")]
    pub programs_dir: PathBuf,
    /// Folder of named datasets (datasets/NAME.jsonl).
    #[arg(long, default_value = "datasets", env = "EVALR_DATASETS_DIR")]
    pub datasets_dir: PathBuf,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

impl RunFlags {
    /// Run options from these flags, for `program` over `dataset` with `model`; the
    /// selection and example flags only `evalr run` has start empty.
    pub fn options(&self, program: String, dataset: String, model: Option<String>) -> RunOptions {
        RunOptions {
            program,
            programs_dir: self.programs_dir.clone(),
            dataset,
            datasets_dir: self.datasets_dir.clone(),
            examples: None,
            shots: None,
            model,
            config_file: self.config.clone(),
            rpm: self.rpm,
            tpm: self.tpm,
            max_in_flight: self.max_in_flight,
            limit: self.limit,
            subjects: None,
            sample: None,
            seed: 0,
            shard: None,
            run_id: None,
            results_dir: None,
            cache_dir: self.cache_dir.clone(),
            no_cache: self.no_cache,
            max_cost: self.max_cost,
            max_errors: self.max_errors,
            max_retries: self.max_retries,
            retry_interval_secs: self.retry_interval,
            request_timeout_secs: self.request_timeout,
            threads: self.threads,
            no_chat_template: self.no_chat_template,
            pick: None,
            examples_where: None,
            embeddings_model: None,
            pool_embeddings: None,
            row_embeddings: None,
            repeats: None,
            shuffle: None,
            reduce: None,
            batch: Default::default(),
            repeat: 0,
        }
    }

    fn resume_overrides(&self) -> ResumeOverrides {
        ResumeOverrides {
            max_cost: self.max_cost,
            max_errors: self.max_errors,
            rpm: self.rpm,
            tpm: self.tpm,
            max_in_flight: self.max_in_flight,
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
    /// Dataset the few-shot examples come from (default: the evaluated dataset itself, never
    /// the row under test).
    #[arg(long)]
    pub examples: Option<String>,
    /// Number of few-shot examples (default: the program's `examples.count`).
    #[arg(long)]
    pub shots: Option<usize>,
    /// How examples are picked: `knn` (nearest by embedding, see --embeddings-model) or
    /// `random` (default: the program's `examples.pick`, else random).
    #[arg(long)]
    pub pick: Option<crate::program::ExamplePick>,
    /// With --examples results/<run>: which of its rows serve as examples, `correct` (default)
    /// or `all`; their captures (e.g. `explanation`) become example fields.
    #[arg(long)]
    pub examples_where: Option<crate::examples::ExampleFilter>,
    /// The model that embeds pool and rows for --pick knn (same forms as --model; default:
    /// the run's model).
    #[arg(long)]
    pub embeddings_model: Option<String>,
    /// The pool's embeddings file for --pick knn (e.g. from `evalr embed`; default:
    /// results/embeddings/<pool>-<model hash>.parquet, computed when missing).
    #[arg(long)]
    pub pool_embeddings: Option<PathBuf>,
    /// The evaluated rows' embeddings file for --pick knn (default: as for the pool).
    #[arg(long)]
    pub row_embeddings: Option<PathBuf>,
    /// Play each row N times and reduce the answers (default: the program's `ensemble`).
    #[arg(long)]
    pub repeats: Option<u32>,
    /// Order of the choices in each repeat: none, plain-hunt or random (seeded by --seed).
    #[arg(long)]
    pub shuffle: Option<crate::program::Shuffle>,
    /// How repeats become the row's answer: majority, mode, mean, pass-at-k or all-correct.
    #[arg(long)]
    pub reduce: Option<crate::program::Reduce>,
    /// Only these subjects (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub subjects: Option<Vec<String>>,
    /// A random sample of N rows, stratified by subject (reproducible with --seed).
    #[arg(long)]
    pub sample: Option<u64>,
    /// Seed for --sample and few-shot example choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run only shard K of N (0-based), or `auto` from the job's rank and size
    /// (OMPI_COMM_WORLD_RANK/SIZE, RANK/WORLD_SIZE, JOB_COMPLETION_INDEX + EVALR_SHARD_COUNT).
    /// Rows are assigned by a hash of their id; the shard writes into
    /// <results folder>/shard-K-of-N/ and takes 1/N of the quota.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<(u32, u32)>,
    /// Name of the run folder under results/ (default: PROGRAM-DATASET-TIMESTAMP).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Write the run into this folder instead of results/<run-id> (e.g. an AzureML output).
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
    /// Count requests, tokens and cost without calling the model.
    #[arg(long)]
    pub dry_run: bool,
    /// Send the requests through the batch API (Azure OpenAI global batch, OpenAI Batch API):
    /// half the price, answers within 24 hours, resumable (see docs/batch.md).
    #[arg(long)]
    pub batch: bool,
    /// What happens to a line that failed in its batch: `batch` sends it again in the next
    /// round's batch, `live` sends it live at once (at the live price).
    #[arg(long, value_name = "batch|live", default_value = "batch")]
    pub batch_fallback: crate::batch::Fallback,
    /// Requests per batch input file (overrides the profile's batch_max_requests; default 50000).
    #[arg(long)]
    pub batch_max_requests: Option<u64>,
    /// Bytes per batch input file (overrides the profile's batch_max_bytes; default 200 MiB).
    #[arg(long)]
    pub batch_max_bytes: Option<u64>,
    /// The deployment's enqueued-token quota: batches in flight never hold more estimated
    /// tokens; the rest waits (overrides the profile's batch_enqueued_tokens).
    #[arg(long)]
    pub batch_enqueued_tokens: Option<u64>,
    /// Seconds between two looks at running batches at first (grows to 60 while nothing changes).
    #[arg(long)]
    pub batch_poll_interval: Option<f64>,
    /// Finish an interrupted run: rows already in its outputs.jsonl are never sent again. Its
    /// run.json gives the options; --max-cost, --max-errors, --rpm, --tpm and --max-in-flight
    /// may be changed.
    #[arg(long, value_name = "RUN_FOLDER", conflicts_with_all = ["program", "dataset"])]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub flags: RunFlags,
}

/// `K/N` (0-based) or `auto` (the rank and size an AzureML / MPI / PyTorch / Kubernetes job gives).
fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let spec = crate::azureml::shard::ShardSpec::from_arg(text).map_err(|e| e.to_string())?;
    Ok((spec.index, spec.count))
}

impl RunArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            examples: self.examples.clone(),
            shots: self.shots,
            subjects: self.subjects.clone(),
            sample: self.sample,
            seed: self.seed,
            shard: self.shard,
            run_id: self.run_id.clone(),
            results_dir: self.results_dir.clone(),
            pick: self.pick,
            examples_where: self.examples_where,
            embeddings_model: self.embeddings_model.clone(),
            pool_embeddings: self.pool_embeddings.clone(),
            row_embeddings: self.row_embeddings.clone(),
            repeats: self.repeats,
            shuffle: self.shuffle,
            reduce: self.reduce,
            batch: crate::batch::BatchOptions {
                enabled: self.batch,
                fallback: self.batch_fallback,
                max_requests: self.batch_max_requests,
                max_bytes: self.batch_max_bytes,
                enqueued_tokens: self.batch_enqueued_tokens,
                poll_interval_secs: self.batch_poll_interval,
            },
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
        .map(|folder| (folder, args.flags.resume_overrides()));
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
    Ok(Exit::of_run(report.status).into())
}
