//! `evalr run` and `evalr programs ...`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::UsageError;
use crate::run::record::RunStatus;
use crate::run::{ResumeOverrides, RunError, RunOptions};

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
    /// default_model, else the embedded local model.
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
    /// Response cache folder.
    #[arg(long, default_value = crate::run::cache::DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Do not read or write the response cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Stop cleanly (resumable) once the spend reaches this many dollars (needs prices).
    #[arg(long)]
    pub max_cost: Option<f64>,
    /// Stop once more than N rows have failed for good.
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
    /// Folder of .prompty programs that add to or override the built-in ones.
    #[arg(long, env = "EVALR_PROGRAMS_DIR", default_value = "programs")]
    pub programs_dir: PathBuf,
    #[arg(long, default_value = "datasets")]
    pub datasets_dir: PathBuf,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `K/N` (0-based) or `auto` (the rank and size an AzureML / MPI / PyTorch / Kubernetes job gives).
fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let spec = crate::azureml::shard::ShardSpec::from_arg(text).map_err(|e| e.to_string())?;
    Ok((spec.index, spec.count))
}

impl RunArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            program: self.program.clone().unwrap_or_default(),
            programs_dir: self.programs_dir.clone(),
            dataset: self.dataset.clone().unwrap_or_default(),
            datasets_dir: self.datasets_dir.clone(),
            examples: self.examples.clone(),
            shots: self.shots,
            model: self.model.clone(),
            config_file: self.config.clone(),
            rpm: self.rpm,
            tpm: self.tpm,
            max_in_flight: self.max_in_flight,
            limit: self.limit,
            subjects: self.subjects.clone(),
            sample: self.sample,
            seed: self.seed,
            shard: self.shard,
            run_id: self.run_id.clone(),
            results_dir: self.results_dir.clone(),
            cache_dir: self.cache_dir.clone(),
            no_cache: self.no_cache,
            max_cost: self.max_cost,
            max_errors: self.max_errors,
            max_retries: self.max_retries,
            retry_interval_secs: self.retry_interval,
            request_timeout_secs: self.request_timeout,
            threads: self.threads,
            no_chat_template: self.no_chat_template,
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
        }
    }
}

/// Input and configuration problems exit with 2, like any usage error.
fn classify(error: RunError) -> anyhow::Error {
    if error.is_usage() {
        anyhow::Error::new(UsageError(error.to_string()))
    } else {
        anyhow::Error::new(error)
    }
}

pub fn execute_run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let options = args.options();
    if args.dry_run {
        let estimate = crate::run::dry_run(&options).map_err(classify)?;
        println!("rows:               {}", estimate.rows);
        if estimate.repeats > 1 {
            println!("repeats per row:    {}", estimate.repeats);
        }
        println!("requests:           {}", estimate.requests);
        println!("prompt tokens:      {} (estimated)", estimate.prompt_tokens);
        println!(
            "completion tokens:  {} (at most)",
            estimate.completion_tokens
        );
        match estimate.cost {
            Some(cost) if estimate.batch => {
                println!("cost:               ${cost:.4} (at most, at the batch rate)")
            }
            Some(cost) => println!("cost:               ${cost:.4} (at most)"),
            None => println!("cost:               unknown (no prices in the model profile)"),
        }
        if let Some(e) = &estimate.embeddings {
            println!("embeddings model:   {}", e.model);
            println!(
                "texts to embed:     {} (not yet in their embeddings files)",
                e.texts
            );
            println!("embedding requests: {}", e.requests);
            println!("embedding tokens:   {} (estimated)", e.tokens);
            match e.cost {
                Some(cost) => println!("embedding cost:     ${cost:.4}"),
                None => println!("embedding cost:     unknown (no prices in the model profile)"),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime
        .block_on(crate::run::execute(
            options,
            args.resume.as_deref().map(|folder| {
                (
                    folder,
                    ResumeOverrides {
                        max_cost: args.max_cost,
                        max_errors: args.max_errors,
                        rpm: args.rpm,
                        tpm: args.tpm,
                        max_in_flight: args.max_in_flight,
                    },
                )
            }),
            !args.quiet,
        ))
        .map_err(classify)?;
    // In an AzureML job (or wherever MLFLOW_TRACKING_URI is set) the run is logged to MLflow.
    // A logging failure is reported but does not fail the evaluation that already succeeded.
    if std::env::var_os("MLFLOW_TRACKING_URI").is_some() {
        match runtime.block_on(crate::azureml::mlflow::log_results_from_env(&report.folder)) {
            Ok(_) => eprintln!("logged {} to MLflow", report.folder.display()),
            Err(error) => eprintln!("warning: could not log to MLflow: {error}"),
        }
    }
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
    println!(
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
    );
    Ok(match report.status {
        RunStatus::Finished | RunStatus::Running => ExitCode::SUCCESS,
        RunStatus::StoppedMaxErrors | RunStatus::Failed => ExitCode::from(1),
        RunStatus::StoppedMaxCost => ExitCode::from(3),
        RunStatus::Interrupted => ExitCode::from(130),
    })
}

#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// The result folder of the run to judge.
    pub run: PathBuf,
    /// Metrics to judge (comma-separated): groundedness, coherence, fluency, relevance,
    /// similarity. Groundedness needs a `context` field in the rows.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "coherence,fluency,relevance,similarity"
    )]
    pub metric: Vec<String>,
    /// The judge model (same forms as `evalr run --model`).
    #[arg(long)]
    pub judge_model: Option<String>,
    /// A score at or above this passes (for the pass rate).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub threshold: u8,
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub rpm: Option<u32>,
    #[arg(long)]
    pub tpm: Option<u32>,
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    #[arg(long)]
    pub limit: Option<u64>,
    #[arg(long, default_value = crate::run::cache::DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    #[arg(long)]
    pub no_cache: bool,
    #[arg(long, default_value_t = 6)]
    pub max_retries: u32,
    #[arg(long, default_value_t = 120.0)]
    pub request_timeout: f64,
    #[arg(long)]
    pub threads: Option<usize>,
    /// Folder of .prompty programs that add to or override the built-in ones.
    #[arg(long, env = "EVALR_PROGRAMS_DIR", default_value = "programs")]
    pub programs_dir: PathBuf,
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn execute_judge(args: JudgeArgs) -> anyhow::Result<ExitCode> {
    let options = RunOptions {
        program: String::new(),
        programs_dir: args.programs_dir.clone(),
        dataset: String::new(),
        datasets_dir: PathBuf::from("datasets"),
        examples: None,
        shots: None,
        model: args.judge_model.clone(),
        config_file: args.config.clone(),
        rpm: args.rpm,
        tpm: args.tpm,
        max_in_flight: args.max_in_flight,
        limit: args.limit,
        subjects: None,
        sample: None,
        seed: 0,
        shard: None,
        run_id: None,
        results_dir: None,
        cache_dir: args.cache_dir.clone(),
        no_cache: args.no_cache,
        max_cost: None,
        max_errors: None,
        max_retries: args.max_retries,
        retry_interval_secs: 0.5,
        request_timeout_secs: args.request_timeout,
        threads: args.threads,
        no_chat_template: false,
        pick: None,
        examples_where: None,
        embeddings_model: None,
        pool_embeddings: None,
        row_embeddings: None,
        repeats: None,
        shuffle: None,
        reduce: None,
        batch: Default::default(),
    };
    let request = crate::run::judge::JudgeRequest {
        run_folder: args.run.clone(),
        metrics: args.metric.clone(),
        threshold: args.threshold,
        options,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime
        .block_on(crate::run::judge::judge(request, !args.quiet))
        .map_err(classify)?;
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(args.run.join("summary.json")).context("summary.json")?,
    )?;
    for metric in summary["judged"].as_array().into_iter().flatten() {
        println!(
            "{}: mean {:.2} over {} rows, pass rate {:.1}% (score >= {})",
            metric["metric"].as_str().unwrap_or("?"),
            metric["mean"].as_f64().unwrap_or(f64::NAN),
            metric["n"].as_u64().unwrap_or(0),
            metric["pass_rate"].as_f64().unwrap_or(f64::NAN) * 100.0,
            metric["threshold"].as_u64().unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}
