//! The plan of a run: everything resolved and checked before the first request (program,
//! dataset, rows, model, price, results folder), the way hyperfine builds and validates its
//! options before its scheduler runs. The executor (`super::execute`) only carries a plan
//! out; a dry run only counts one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ensemble::{self, EnsemblePlan};
use super::error::RunError;
use super::options::{ResumeOverrides, RunOptions};
use super::row::row_context;
use super::rows::{RowSelection, stratified_sample};
use crate::backend::Usage;
use crate::config::{
    BatchProfile, ConfigFile, ModelOrigin, QuotaOverrides, ResolvedModel, choose_model,
};
use crate::dataset::{DatasetSource, Row, RowError};
use crate::examples::ExamplePool;
use crate::prices::{Price, PricedModel};
use crate::program::{ExamplePick, Program, load_program};
use crate::results::{
    self, DatasetInfo, ModelInfo, OUTPUTS_FILE, ProgramInfo, RunManifest, RunStatus, ShardInfo,
};

/// The inputs of a run, resolved: what a dry run counts and a run sends.
pub struct Inputs {
    pub program: Arc<Program>,
    pub source: DatasetSource,
    pub selection: RowSelection,
    /// The example pool's rows, when the program shows examples.
    pub pool: Option<Vec<Row>>,
    /// How examples are picked from the pool (random, or nearest by embedding).
    pub pick: ExamplePick,
    pub shots: usize,
    /// Repeats of each row and how they are shuffled and reduced (`None`: one plain play).
    pub ensemble: Option<EnsemblePlan>,
    pub model: ResolvedModel,
    pub model_origin: ModelOrigin,
    /// `None`: no price is known (then `--max-cost` was refused).
    pub price: Option<Price>,
}

impl Inputs {
    /// Resolves and checks the program, dataset, examples, model and price of `options`.
    pub fn resolve(options: &RunOptions) -> Result<Inputs, RunError> {
        let program = Program::compile(load_program(&options.program, &options.programs_dir)?)?;
        let source = DatasetSource::resolve(&options.dataset, &options.datasets_dir)?;
        let shots = options
            .shots
            .or(program.file.examples.as_ref().map(|e| e.count))
            .unwrap_or(0);
        let pool = match (&options.examples, shots) {
            (Some(spec), _) => Some(crate::examples::load_pool(
                spec,
                &options.datasets_dir,
                options.examples_where,
            )?),
            (None, 0) => None,
            // Offline there is no dev split: by default examples are other rows of the dataset
            // itself (same subject, never the row under test).
            (None, _) => Some(source.rows().filter_map(Result::ok).collect()),
        };
        let pick = options
            .pick
            .or(program.file.examples.as_ref().and_then(|e| e.pick))
            .unwrap_or(ExamplePick::Random);
        let ensemble = EnsemblePlan::resolve(
            program.file.ensemble.as_ref(),
            options.repeats,
            options.shuffle,
            options.reduce,
            options.seed,
        )
        .map_err(RunError::Usage)?;
        let (file, _) = ConfigFile::load(options.config_file.as_deref())?;
        let overrides = QuotaOverrides {
            rpm: options.rpm,
            tpm: options.tpm,
            max_in_flight: options.max_in_flight,
        };
        let (spec, chosen) = choose_model(options.model.as_deref(), &file);
        // The program's own model comes after --model and EVALR_MODEL, before the config
        // file's default: it is what the file runs against in any Prompty runtime.
        let explicit = matches!(chosen, ModelOrigin::Flag | ModelOrigin::EvalrModelEnv);
        let (model, model_origin) =
            match super::models::program_model(&program, overrides).filter(|_| !explicit) {
                Some(resolved) => (resolved?, ModelOrigin::Program),
                None => (
                    crate::config::resolve_model(&spec, &file, overrides)?,
                    chosen,
                ),
            };
        let price = price_of(&model, &file);
        if options.max_cost.is_some() && price.is_none() {
            return Err(RunError::Usage(format!(
                "--max-cost needs the model's price, and {}",
                crate::prices::no_price_hint(model.spec())
            )));
        }
        let mut selection = RowSelection {
            subjects: options
                .subjects
                .as_ref()
                .map(|s| s.iter().cloned().collect::<HashSet<_>>()),
            sample: None,
            limit: options.limit,
            shard: options.shard,
        };
        if let Some(n) = options.sample {
            selection.sample = Some(stratified_sample(&source, &selection, n, options.seed));
        }
        Ok(Inputs {
            program: Arc::new(program),
            source,
            selection,
            pool,
            pick,
            shots,
            ensemble,
            model,
            model_origin,
            price,
        })
    }

    /// The selected rows in dataset order, minus `done`, with invalid lines as errors.
    pub fn rows<'a>(
        &'a self,
        done: &'a HashSet<String>,
    ) -> impl Iterator<Item = Result<Row, RowError>> + 'a {
        let mut taken = 0u64;
        self.source
            .rows()
            .filter(move |item| match item {
                Ok(row) => self.selection.takes(row),
                Err(_) => true,
            })
            .take_while(move |item| {
                if item.is_ok() {
                    taken += 1;
                }
                self.selection.limit.is_none_or(|limit| taken <= limit)
            })
            .filter(move |item| {
                item.as_ref()
                    .map(|row| !done.contains(&row.id))
                    .unwrap_or(true)
            })
    }

    /// The model's batch settings (a local model has none).
    pub fn batch_profile(&self) -> BatchProfile {
        match &self.model {
            ResolvedModel::Remote { batch, .. } => *batch,
            ResolvedModel::Local { .. } => BatchProfile::default(),
        }
    }

    /// A model setting the program asks for and the backend cannot send is refused before
    /// any request, never dropped silently.
    pub fn check_program_settings(
        &self,
        capabilities: crate::backend::Capabilities,
    ) -> Result<(), RunError> {
        use crate::program::ResponseFormat;
        let program = &self.program;
        let p = &program.file.parameters;
        let path = program.file.path.display();
        if !capabilities.images
            && let Some(source) = program.image_sources().first()
        {
            return Err(RunError::Usage(format!(
                "{path}: {source} is sent as an image, which this model cannot read (the embedded model and AzureML endpoints take text only); run the program against a chat API model that takes images (--model azure:DEPLOYMENT or openai:MODEL)"
            )));
        }
        if !p.unknown.is_empty() {
            return Err(RunError::Usage(format!(
                "{path}: evalr cannot send the model settings {}; remove them from the file",
                p.unknown.join(", ")
            )));
        }
        // A zero penalty changes nothing (azure-ai-evaluation's judges write `0`): only a real
        // one needs a backend that sends it.
        let penalty = |v: Option<f64>| v.is_some_and(|v| v != 0.0);
        if (penalty(p.presence_penalty) || penalty(p.frequency_penalty)) && !capabilities.penalties
        {
            return Err(RunError::Usage(format!(
                "{path}: presence_penalty/frequency_penalty cannot be honoured by this model's backend; remove them or use a chat API model"
            )));
        }
        let wants_schema = matches!(p.response_format, Some(ResponseFormat::JsonSchema { .. }))
            || (program.is_plain_completion() && program.file.outputs_schema.is_some());
        // Chat APIs take a schema in `response_format` whether or not the profile says selects
        // may use one (as `gen(..., json_schema=...)` does); only backends with no JSON mode
        // at all refuse.
        if wants_schema && !capabilities.json_schema && !capabilities.json_object {
            return Err(RunError::Usage(format!(
                "{path}: the program asks for JSON against a schema, which this model's backend does not support"
            )));
        }
        // A backend with schemas but no JSON mode (the embedded model) gets the schema of any
        // object instead: the same constraint (see `run_row`).
        if p.response_format == Some(ResponseFormat::JsonObject)
            && !wants_schema
            && !capabilities.json_object
            && !capabilities.json_schema
        {
            return Err(RunError::Usage(format!(
                "{path}: response_format json_object cannot be honoured by this model's backend; use a chat API model, or declare `outputs:` for a JSON schema"
            )));
        }
        Ok(())
    }

    /// The first line of a run: which model, and why that one.
    pub fn model_line(&self) -> String {
        format!(
            "model: {} ({})",
            self.model.spec(),
            self.model_origin.describe()
        )
    }
}

/// The one price lookup (`crate::prices`) applied to a resolved model.
pub(super) fn price_of(model: &ResolvedModel, file: &ConfigFile) -> Option<Price> {
    let names: Vec<&str> = [model.model_name(), model.deployment(), Some(model.spec())]
        .into_iter()
        .flatten()
        .collect();
    crate::prices::lookup(
        PricedModel {
            profile: model.profile_price(),
            local: model.is_local(),
            names: &names,
        },
        &file.prices,
    )
}

/// A run ready to execute: its inputs, its folder, and the rows already done.
pub struct Plan {
    pub options: RunOptions,
    pub inputs: Inputs,
    pub folder: PathBuf,
    /// Rows already in `outputs.jsonl` (resume): never sent again.
    pub done: HashSet<String>,
    pub started_at: DateTime<Utc>,
    pub dataset_sha256: String,
    /// Rows selected (done ones included).
    pub selected: u64,
    /// A resumed batch run's batches (from its `run.json`).
    pub ledger: Option<crate::batch::ledger::BatchLedger>,
}

impl Plan {
    /// A new run of `options`, or the resumption of the run in `resume` (whose `run.json`
    /// gives the options).
    pub fn new(
        options: RunOptions,
        resume: Option<(&Path, ResumeOverrides)>,
    ) -> Result<Plan, RunError> {
        let (options, folder, started_at, done, previous) = match resume {
            Some((folder, overrides)) => {
                let manifest = results::read_manifest(folder)?;
                let mut options: RunOptions = serde_json::from_value(manifest.config.clone())
                    .map_err(|e| RunError::Resume {
                        folder: folder.to_path_buf(),
                        message: format!("run.json has no usable options ({e})"),
                    })?;
                overrides.apply(&mut options);
                let done = results::finished_ids(folder)?;
                let started_at = manifest.started_at.unwrap_or_else(results::now);
                (
                    options,
                    folder.to_path_buf(),
                    started_at,
                    done,
                    Some(manifest),
                )
            }
            None => {
                let folder = new_run_folder(&options)?;
                (options, folder, results::now(), HashSet::new(), None)
            }
        };
        let inputs = Inputs::resolve(&options)?;
        // Hashed once: it pins the run in run.json and guards a resume against a changed dataset.
        let dataset_sha256 = inputs.source.content_sha256()?;
        if let Some(previous) = &previous {
            check_unchanged(&folder, previous, &inputs, &dataset_sha256)?;
        }
        let selected = inputs.rows(&HashSet::new()).filter(Result::is_ok).count() as u64;
        let ledger = previous.as_ref().and_then(|m| m.batch.clone());
        Ok(Plan {
            options,
            inputs,
            folder,
            done,
            started_at,
            dataset_sha256,
            selected,
            ledger,
        })
    }

    /// `run.json` of this run, for a backend of this identity.
    pub fn manifest(&self, identity: String) -> RunManifest {
        let program = &self.inputs.program.file;
        let model = &self.inputs.model;
        RunManifest {
            run_id: self
                .folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into()),
            status: RunStatus::Running,
            program: ProgramInfo {
                name: program.name.clone(),
                path: program.path.display().to_string(),
                sha256: program.sha256.clone(),
            },
            dataset: DatasetInfo {
                spec: self.options.dataset.clone(),
                files: self
                    .inputs
                    .source
                    .files()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
                sha256: self.dataset_sha256.clone(),
                rows: Some(self.selected),
            },
            model: ModelInfo {
                identity,
                backend: model.backend_name().to_string(),
                spec: model.spec().to_string(),
                deployment: model.deployment().map(str::to_string),
                prices: self.inputs.price.clone(),
            },
            config: serde_json::to_value(&self.options).unwrap_or_default(),
            shard: self
                .options
                .shard
                .map(|(index, count)| ShardInfo { index, count }),
            started_at: Some(self.started_at),
            batch: self.ledger.clone(),
            ..RunManifest::default()
        }
    }
}

/// The folder of a new run, which must not hold a run yet: `--results-dir` as given, else
/// `results/<run-id>`; a shard writes into `shard-K-of-N/` inside it, because every node of
/// a distributed job gets the same folder.
fn new_run_folder(options: &RunOptions) -> Result<PathBuf, RunError> {
    let run_id = options
        .run_id
        .clone()
        .unwrap_or_else(|| default_run_id(&options.program, &options.dataset));
    let base = options
        .results_dir
        .clone()
        .unwrap_or_else(|| Path::new("results").join(run_id));
    let folder = match options.shard {
        Some((index, count)) => base.join(format!("shard-{index}-of-{count}")),
        None => base,
    };
    if folder.join(OUTPUTS_FILE).exists() {
        return Err(RunError::Usage(format!(
            "{} already holds a run: resume it with `evalr run --resume {}`, or choose another --run-id/--results-dir",
            folder.display(),
            folder.display()
        )));
    }
    Ok(folder)
}

fn default_run_id(program: &str, dataset: &str) -> String {
    let program = program
        .rsplit('/')
        .next()
        .unwrap_or(program)
        .trim_end_matches(".prompty");
    format!(
        "{}-{}-{}",
        program,
        dataset,
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    )
}

/// A resumed run must run the program and dataset it started with.
fn check_unchanged(
    folder: &Path,
    previous: &RunManifest,
    inputs: &Inputs,
    dataset_sha256: &str,
) -> Result<(), RunError> {
    let resume_error = |message: String| RunError::Resume {
        folder: folder.to_path_buf(),
        message,
    };
    if previous.program.sha256 != inputs.program.file.sha256 {
        return Err(resume_error(format!(
            "the program {} changed since the run started; start a new run",
            inputs.program.file.path.display()
        )));
    }
    if previous.dataset.sha256 != dataset_sha256 {
        return Err(resume_error(
            "the dataset changed since the run started; start a new run".into(),
        ));
    }
    Ok(())
}

/// What a dry run found.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunEstimate {
    pub model: String,
    pub rows: u64,
    /// Plays of each row (ensemble repeats; 1 otherwise).
    pub repeats: u32,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// At most, at `price`; `None` when no price is known.
    pub cost: Option<f64>,
    pub price: Option<Price>,
    /// The run would go through batches: `cost` is at the batch rate.
    pub batch: bool,
    /// Embeddings a `--pick knn` run still has to compute (pool and rows not in their files).
    pub embeddings: Option<super::picker::EmbeddingEstimate>,
}

/// Counts what a run would send, without calling the model: each row's program is played with
/// placeholder answers (first option, `max_tokens` of text), once per ensemble repeat with the
/// repeat's choice order. A `--pick knn` run also counts the embeddings it still has to
/// compute (its examples are then estimated with a random pick of the same size).
pub fn dry_run(options: &RunOptions) -> Result<DryRunEstimate, RunError> {
    use crate::program::{CallKind, Captures, Step};
    let inputs = Inputs::resolve(options)?;
    let counter = crate::backend::tokens::TokenCounter::for_model(inputs.model.model_name());
    let repeats = inputs.ensemble.map_or(1, |plan| plan.repeats);
    let picker = inputs
        .pool
        .clone()
        .map(|rows| ExamplePool::new(rows, options.seed));
    let mut usage = Usage::default();
    let (mut rows, mut requests) = (0u64, 0u64);
    for row in inputs.rows(&HashSet::new()).filter_map(Result::ok) {
        let examples = picker
            .as_ref()
            .map(|p| p.examples_for(&row, inputs.shots))
            .unwrap_or_default();
        // A row that lacks a required input fails without a request: nothing to count.
        let mut context = row_context(&row, &examples);
        if crate::program::complete_inputs(&inputs.program.file.inputs, &mut context).is_err() {
            continue;
        }
        rows += 1;
        for repeat in 0..repeats {
            let shown = match &inputs.ensemble {
                Some(plan) => ensemble::permuted_row(
                    &row,
                    &plan.permutation(&row.id, row.choices.len(), repeat),
                ),
                None => row.clone(),
            };
            let mut context = row_context(&shown, &examples);
            // Checked above on the dataset's order; the shown order has the same fields.
            let _ = crate::program::complete_inputs(&inputs.program.file.inputs, &mut context);
            let mut captures = Captures::new();
            while let Step::Call(call) = inputs.program.next_step(&context, &captures)? {
                requests += 1;
                usage.prompt_tokens += counter.count_messages(&call.messages);
                let (value, completion) = match &call.kind {
                    CallKind::Select { options, .. } => (options[0].clone(), 1),
                    CallKind::Gen { max_tokens, .. } => {
                        let n = max_tokens
                            .or(inputs.program.file.parameters.max_tokens)
                            .unwrap_or(256);
                        (String::new(), u64::from(n))
                    }
                };
                usage.completion_tokens += completion;
                captures.insert(call.capture.clone(), serde_json::Value::String(value));
            }
        }
    }
    let batch = options.batch.wanted(&inputs.batch_profile());
    let factor = if batch {
        crate::prices::batch_factor()
    } else {
        1.0
    };
    let embeddings = match (inputs.pick, &inputs.pool) {
        (ExamplePick::Knn, Some(_)) => Some(super::picker::estimate_embeddings(&inputs, options)?),
        _ => None,
    };
    Ok(DryRunEstimate {
        model: inputs.model_line(),
        batch,
        rows,
        repeats,
        requests,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        cost: inputs.price.as_ref().map(|p| p.cost(&usage) * factor),
        price: inputs.price,
        embeddings,
    })
}
