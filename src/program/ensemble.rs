//! How a program asks to be ensembled (front matter `ensemble:`, or the run's flags): how many
//! repeats of each row, how the choices are permuted per repeat, how the votes are reduced.
//! Only the declaration lives here; `run::ensemble` carries it out.

use serde::{Deserialize, Serialize};

/// How each repeat orders the row's choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shuffle {
    /// Every repeat sees the choices as the dataset has them (sampling at temperature > 0).
    None,
    /// Change ringing's plain hunt, as promptbase's ensemble does: repeat 0 is the dataset's
    /// order, each next one swaps neighbouring pairs, alternating (0,1)(2,3).. and (1,2)(3,4)..,
    /// so every choice moves through every position.
    PlainHunt,
    /// A seeded random permutation per row and repeat (`--seed`).
    Random,
}

/// How the repeats' answers become the row's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reduce {
    /// Most votes wins (ties: see `run::ensemble`); the row's option probabilities are the
    /// vote shares.
    Majority,
    /// The same rule as `majority`, named as statistics names it for repeated sampling.
    Mode,
    /// The option with the highest mean probability over the repeats that measured them.
    Mean,
    /// Correct when any repeat is correct (pass@k with k = repeats).
    PassAtK,
    /// Correct only when every repeat is correct.
    AllCorrect,
}

/// `ensemble:` in a program's front matter; each field may be overridden by a flag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleSpec {
    pub repeats: Option<u32>,
    pub shuffle: Option<Shuffle>,
    pub reduce: Option<Reduce>,
}

impl std::str::FromStr for Shuffle {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(text.to_string()))
            .map_err(|_| format!("unknown shuffle `{text}`: use none, plain-hunt or random"))
    }
}

impl std::str::FromStr for Reduce {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
            format!("unknown reducer `{text}`: use majority, mode, mean, pass-at-k or all-correct")
        })
    }
}
