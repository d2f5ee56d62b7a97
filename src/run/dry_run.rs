//! `evalr run --dry-run`: what a run would send and cost, counted without calling the model.

use std::collections::HashSet;

use serde::Serialize;

use super::error::RunError;
use super::options::RunOptions;
use super::plan::Inputs;
use crate::backend::Usage;
use crate::examples::ExamplePool;
use crate::play::ensemble;
use crate::play::row_context;
use crate::prices::Price;
use crate::program::ExamplePick;

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
        .map(|rows| ExamplePool::new(rows, options.rows.seed));
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
