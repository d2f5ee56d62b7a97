//! Prices: one lookup for dry run, budget (`--max-cost`) and report.
//!
//! A model's price is, in this order: the `prices` of its profile in the config file; the
//! config file's top-level `[prices]` table (keyed by model name); 0 for the embedded local
//! model; the shipped dated table (`prices.toml`). Otherwise there is no price, and a run
//! that asks for `--max-cost` is refused before the first request. `evalr run` records the
//! price it used in `run.json` (`model.prices`), so the report prices a run as its budget did.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backend::Usage;

const SHIPPED_TABLE: &str = include_str!("prices.toml");

/// $ per million tokens, as a config file gives it (a profile's `prices`, or an entry of
/// the top-level `[prices]` table).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredPrice {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Rate of prompt tokens the service served from its prompt cache; the input rate when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
}

/// Where a price came from, as `run.json` and the reports show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PriceSource {
    /// The `prices` of the model's profile (what run.json files without a source held).
    #[default]
    Profile,
    /// The top-level `[prices]` table of the config file, entry `key`.
    Config { key: String },
    /// The shipped table, entry `key`; `note` says where its figures come from and when.
    DefaultTable { key: String, note: String },
    /// The embedded local model: no per-token price.
    Local,
}

impl PriceSource {
    /// Where the price came from, in words, for the dry run and the reports; `with_note` adds
    /// the shipped table's source and date.
    pub fn describe(&self, with_note: bool) -> String {
        match self {
            PriceSource::Profile => "the model's profile".into(),
            PriceSource::Config { key } => format!("the config file's [prices] {key}"),
            PriceSource::Local => "the local model (free)".into(),
            PriceSource::DefaultTable { key, note } if with_note => {
                format!("the shipped price table ({key}): {note}")
            }
            PriceSource::DefaultTable { key, .. } => format!("the shipped price table ({key})"),
        }
    }
}

/// The price of a model and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub input_per_mtok: f64,
    /// `None`: cached prompt tokens are priced at the input rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
    pub output_per_mtok: f64,
    #[serde(default = "usd")]
    pub currency: String,
    #[serde(default)]
    pub source: PriceSource,
}

fn usd() -> String {
    "USD".to_string()
}

/// What a cost is made of, in the price's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CostParts {
    /// Prompt tokens not served from the cache, at the input rate.
    pub input: f64,
    /// Cached prompt tokens, at the cached input rate.
    pub cached_input: f64,
    /// Completion tokens (reasoning tokens included: they are billed as output).
    pub output: f64,
}

impl CostParts {
    pub fn total(&self) -> f64 {
        self.input + self.cached_input + self.output
    }
}

impl Price {
    fn from_configured(price: &ConfiguredPrice, source: PriceSource) -> Price {
        Price {
            input_per_mtok: price.input_per_mtok,
            cached_input_per_mtok: price.cached_input_per_mtok,
            output_per_mtok: price.output_per_mtok,
            currency: usd(),
            source,
        }
    }

    fn free() -> Price {
        Price {
            input_per_mtok: 0.0,
            cached_input_per_mtok: None,
            output_per_mtok: 0.0,
            currency: usd(),
            source: PriceSource::Local,
        }
    }

    /// The cost of `usage`, split by rate.
    pub fn cost_parts(&self, usage: &Usage) -> CostParts {
        let cached = usage.cached_prompt_tokens.min(usage.prompt_tokens);
        let per_token = |rate: f64| rate / 1_000_000.0;
        CostParts {
            input: (usage.prompt_tokens - cached) as f64 * per_token(self.input_per_mtok),
            cached_input: cached as f64
                * per_token(self.cached_input_per_mtok.unwrap_or(self.input_per_mtok)),
            output: usage.completion_tokens as f64 * per_token(self.output_per_mtok),
        }
    }

    /// The cost of `usage`.
    pub fn cost(&self, usage: &Usage) -> f64 {
        self.cost_parts(usage).total()
    }
}

/// What a model is known by, for the price lookup.
#[derive(Debug, Clone, Copy, Default)]
pub struct PricedModel<'a> {
    /// The `prices` of its profile.
    pub profile: Option<&'a ConfiguredPrice>,
    /// The embedded local model.
    pub local: bool,
    /// Names matched against the `[prices]` table and the shipped table, in order: the model
    /// name, the deployment, the identity.
    pub names: &'a [&'a str],
}

/// The one price lookup: profile, then the config's `[prices]`, then 0 for a local model,
/// then the shipped table; `None` when none of them knows the model.
pub fn lookup(model: PricedModel<'_>, config: &BTreeMap<String, ConfiguredPrice>) -> Option<Price> {
    if let Some(price) = model.profile {
        return Some(Price::from_configured(price, PriceSource::Profile));
    }
    let configured = model.names.iter().find_map(|name| {
        let (key, price) = best_key(config.iter(), name)?;
        Some(Price::from_configured(
            price,
            PriceSource::Config { key: key.clone() },
        ))
    });
    if configured.is_some() {
        return configured;
    }
    if model.local {
        return Some(Price::free());
    }
    model.names.iter().find_map(|name| shipped_price(name))
}

/// The hint a user gets when a model has no price.
pub fn no_price_hint(model: &str) -> String {
    format!(
        "no price known for model {model}: set `prices = {{ input_per_mtok = ..., output_per_mtok = ... }}` in its profile, or an entry under the top-level [prices] table of the config file"
    )
}

#[derive(Debug, Deserialize)]
struct Table {
    source: String,
    currency: String,
    #[serde(default = "half")]
    batch_factor: f64,
    models: BTreeMap<String, TableEntry>,
}

#[derive(Debug, Deserialize)]
struct TableEntry {
    input: f64,
    #[serde(default)]
    cached_input: Option<f64>,
    output: f64,
}

fn shipped_table() -> Option<Table> {
    toml::from_str(SHIPPED_TABLE).ok()
}

fn half() -> f64 {
    0.5
}

/// What batch tokens cost relative to live ones (Azure OpenAI Global Batch, OpenAI Batch API).
pub fn batch_factor() -> f64 {
    shipped_table().map_or(half(), |t| t.batch_factor)
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

/// The longest key found in `name` as a whole word (case-insensitive).
fn best_key<'a, V>(
    entries: impl Iterator<Item = (&'a String, &'a V)>,
    name: &str,
) -> Option<(&'a String, &'a V)> {
    let name = name.to_ascii_lowercase();
    entries
        .filter(|(key, _)| contains_word(&name, &key.to_ascii_lowercase()))
        .max_by_key(|(key, _)| key.len())
}

/// The shipped table's price of a model by name.
pub fn shipped_price(name: &str) -> Option<Price> {
    let table = shipped_table()?;
    let (key, entry) = best_key(table.models.iter(), name)?;
    Some(Price {
        input_per_mtok: entry.input,
        cached_input_per_mtok: entry.cached_input,
        output_per_mtok: entry.output,
        currency: table.currency.clone(),
        source: PriceSource::DefaultTable {
            key: key.clone(),
            note: table.source.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(name: &str) -> Option<String> {
        match shipped_price(name)?.source {
            PriceSource::DefaultTable { key, .. } => Some(key),
            _ => None,
        }
    }

    fn usage(prompt: u64, cached: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_prompt_tokens: cached,
            reasoning_tokens: 0,
        }
    }

    #[test]
    fn the_shipped_table_parses_and_is_dated() {
        let table = shipped_table().expect("prices.toml parses");
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
    fn cost_is_per_million_tokens_with_cached_prompt_tokens_apart() {
        let price = shipped_price("gpt-4o-mini").expect("priced");
        // 1M prompt tokens at 0.15 + 200k completion tokens at 0.60
        assert!((price.cost(&usage(1_000_000, 0, 200_000)) - 0.27).abs() < 1e-12);
        // Half the prompt served from the cache at 0.075: 0.075 + 0.0375 + 0.12
        let parts = price.cost_parts(&usage(1_000_000, 500_000, 200_000));
        assert!((parts.input - 0.075).abs() < 1e-12);
        assert!((parts.cached_input - 0.0375).abs() < 1e-12);
        assert!((parts.output - 0.12).abs() < 1e-12);
        // Without a cached rate, cached tokens cost the input rate.
        let flat = shipped_price("gpt-4").expect("priced");
        assert_eq!(
            flat.cost(&usage(1_000_000, 500_000, 0)),
            flat.cost(&usage(1_000_000, 0, 0))
        );
    }

    #[test]
    fn profile_then_config_table_then_local_then_shipped_table() {
        let profile = ConfiguredPrice {
            input_per_mtok: 1.0,
            output_per_mtok: 2.0,
            cached_input_per_mtok: None,
        };
        let mut config = BTreeMap::new();
        config.insert(
            "gpt-4o".to_string(),
            ConfiguredPrice {
                input_per_mtok: 3.0,
                output_per_mtok: 4.0,
                cached_input_per_mtok: Some(0.3),
            },
        );
        let names = ["gpt-4o", "azure:https://x/gpt-4o"];
        let with = |profile, local| PricedModel {
            profile,
            local,
            names: &names,
        };
        let price = lookup(with(Some(&profile), false), &config).expect("profile");
        assert_eq!(
            (price.input_per_mtok, price.source),
            (1.0, PriceSource::Profile)
        );
        let price = lookup(with(None, false), &config).expect("config");
        assert_eq!(
            (price.input_per_mtok, price.source),
            (
                3.0,
                PriceSource::Config {
                    key: "gpt-4o".into()
                }
            )
        );
        let price = lookup(with(None, false), &BTreeMap::new()).expect("table");
        assert!(matches!(price.source, PriceSource::DefaultTable { .. }));
        let local = PricedModel {
            local: true,
            names: &["local"],
            ..PricedModel::default()
        };
        assert_eq!(
            lookup(local, &BTreeMap::new()).expect("local").source,
            PriceSource::Local
        );
        let unknown = PricedModel {
            names: &["llama-3-8b"],
            ..PricedModel::default()
        };
        assert_eq!(lookup(unknown, &BTreeMap::new()), None);
    }

    #[test]
    fn run_json_prices_without_a_source_read_as_the_profiles() {
        let price: Price =
            serde_json::from_str(r#"{"input_per_mtok": 1.0, "output_per_mtok": 2.0}"#).unwrap();
        assert_eq!(price.source, PriceSource::Profile);
        assert_eq!(price.currency, "USD");
    }
}
