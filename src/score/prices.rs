//! Prices: `$ per 1M input/output tokens` per model, from the run (the user's config file,
//! copied into `run.json`) or else the shipped default table (`prices.toml`, dated, sourced).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::folder::RunInfo;

const DEFAULT_TABLE: &str = include_str!("prices.toml");

/// Where a price came from, as reports show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PriceSource {
    /// `model.prices` in `run.json` (the user's config file).
    Run,
    /// The default table; carries its `source` line.
    DefaultTable { key: String, note: String },
    /// A local model: no per-token price.
    Local,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub currency: String,
    pub source: PriceSource,
}

impl Price {
    /// Cost of a number of prompt and completion tokens.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.input_per_mtok
            + completion_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

#[derive(Debug, Deserialize)]
struct Table {
    source: String,
    currency: String,
    #[serde(default = "half")]
    batch_factor: f64,
    models: BTreeMap<String, Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    input: f64,
    output: f64,
}

fn half() -> f64 {
    0.5
}

/// What batch tokens cost relative to live ones (Azure OpenAI Global Batch, OpenAI Batch API).
pub fn batch_factor() -> f64 {
    default_table().map_or(half(), |t| t.batch_factor)
}

fn default_table() -> Option<Table> {
    toml::from_str(DEFAULT_TABLE).ok()
}

/// Whether `key` occurs in `name` as a whole word: not preceded or followed by an alphanumeric
/// character or a dot (so "gpt-4" does not match "gpt-4.1", "o1" does not match "gpt-4o1").
fn contains_word(name: &str, key: &str) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '.'));
    name.match_indices(key).any(|(start, _)| {
        boundary(name[..start].chars().next_back())
            && boundary(name[start + key.len()..].chars().next())
    })
}

/// Price of a model by name from the default table: the longest key found in `name`.
pub fn default_price(name: &str) -> Option<Price> {
    let table = default_table()?;
    let name = name.to_ascii_lowercase();
    let (key, entry) = table
        .models
        .iter()
        .filter(|(key, _)| contains_word(&name, key))
        .max_by_key(|(key, _)| key.len())?;
    Some(Price {
        input_per_mtok: entry.input,
        output_per_mtok: entry.output,
        currency: table.currency.clone(),
        source: PriceSource::DefaultTable {
            key: key.clone(),
            note: table.source.clone(),
        },
    })
}

/// Whether the run used the embedded local model.
pub fn is_local(run: &RunInfo) -> bool {
    let Some(model) = &run.model else {
        return false;
    };
    model.backend.as_deref() == Some("local")
        || model
            .identity
            .as_deref()
            .is_some_and(|i| i.starts_with("local:"))
}

/// The price of a run's model: the run's own prices, else 0 for a local model, else the
/// default table matched on the deployment name then the identity. `None`: unknown model.
pub fn price_for_run(run: &RunInfo) -> Option<Price> {
    let model = run.model.as_ref()?;
    if let Some(prices) = &model.prices {
        return Some(Price {
            input_per_mtok: prices.input_per_mtok,
            output_per_mtok: prices.output_per_mtok,
            currency: prices.currency.clone(),
            source: PriceSource::Run,
        });
    }
    if is_local(run) {
        return Some(Price {
            input_per_mtok: 0.0,
            output_per_mtok: 0.0,
            currency: "USD".to_string(),
            source: PriceSource::Local,
        });
    }
    [model.deployment.as_deref(), model.identity.as_deref()]
        .into_iter()
        .flatten()
        .find_map(default_price)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::folder::{ModelInfo, RunPrices};

    fn key_of(name: &str) -> Option<String> {
        match default_price(name)?.source {
            PriceSource::DefaultTable { key, .. } => Some(key),
            _ => None,
        }
    }

    #[test]
    fn the_default_table_parses_and_is_dated() {
        let table = default_table().expect("prices.toml parses");
        assert!(table.source.contains("as of 2025-08"));
        assert!(table.models.len() >= 10);
    }

    #[test]
    fn the_longest_whole_word_key_wins() {
        assert_eq!(key_of("gpt-4o-mini").as_deref(), Some("gpt-4o-mini"));
        assert_eq!(
            key_of("azure:https://x.openai.azure.com/gpt-4o").as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(key_of("GPT-4o-2024-08-06").as_deref(), Some("gpt-4o"));
        assert_eq!(key_of("gpt-4.1-mini").as_deref(), Some("gpt-4.1-mini"));
        assert_eq!(key_of("gpt-4.1").as_deref(), Some("gpt-4.1"));
        assert_eq!(key_of("my-o3-mini-deployment").as_deref(), Some("o3-mini"));
        assert_eq!(key_of("llama-3-8b"), None);
    }

    #[test]
    fn cost_is_per_million_tokens() {
        let price = default_price("gpt-4o-mini").expect("priced");
        // 1M prompt tokens at 0.15 + 200k completion tokens at 0.60
        assert!((price.cost(1_000_000, 200_000) - 0.27).abs() < 1e-12);
    }

    #[test]
    fn run_prices_win_and_local_is_free() {
        let mut run = RunInfo {
            model: Some(ModelInfo {
                identity: Some("azure:https://x/gpt-4o".into()),
                prices: Some(RunPrices {
                    input_per_mtok: 1.0,
                    output_per_mtok: 2.0,
                    currency: "EUR".into(),
                }),
                ..ModelInfo::default()
            }),
            ..RunInfo::default()
        };
        let price = price_for_run(&run).expect("priced");
        assert_eq!(
            (price.input_per_mtok, price.currency.as_str()),
            (1.0, "EUR")
        );
        run.model = Some(ModelInfo {
            identity: Some("local:gemma.gguf@abc".into()),
            ..ModelInfo::default()
        });
        assert_eq!(
            price_for_run(&run).expect("local").source,
            PriceSource::Local
        );
    }
}
