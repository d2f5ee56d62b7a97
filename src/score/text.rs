//! Text metrics against a ground truth: exact match and token F1, with the SQuAD v1.1
//! normalisation (lower case, ASCII punctuation removed, the articles a/an/the removed,
//! whitespace collapsed) - the same definitions as the official `evaluate-v1.1.py`.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use crate::results::OutputRecord;

static ARTICLES: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern; it compiles.
    Regex::new(r"\b(a|an|the)\b").unwrap_or_else(|_| unreachable!())
});

/// SQuAD's `normalize_answer`.
pub fn normalise_answer(text: &str) -> String {
    let lower = text.to_lowercase();
    let without_punctuation: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    let without_articles = ARTICLES.replace_all(&without_punctuation, " ");
    without_articles
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn exact_match(prediction: &str, ground_truth: &str) -> bool {
    normalise_answer(prediction) == normalise_answer(ground_truth)
}

/// Harmonic mean of token precision and recall after normalisation (0 when no token is
/// shared, including when either side normalises to nothing).
pub fn token_f1(prediction: &str, ground_truth: &str) -> f64 {
    let prediction = normalise_answer(prediction);
    let truth = normalise_answer(ground_truth);
    let predicted: Vec<&str> = prediction.split_whitespace().collect();
    let expected: Vec<&str> = truth.split_whitespace().collect();
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for token in &expected {
        *counts.entry(token).or_default() += 1;
    }
    let mut same = 0i64;
    for token in &predicted {
        if let Some(count) = counts.get_mut(token)
            && *count > 0
        {
            *count -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / predicted.len() as f64;
    let recall = same as f64 / expected.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// The answer text of a row: the `response` capture, else the row's `response` field (a judge
/// row carries the answer under judgement there), else the `answer` capture, when a string.
pub fn response_text(record: &OutputRecord) -> Option<&str> {
    let capture = |key: &str| record.captures.get(key).and_then(Value::as_str);
    capture("response")
        .or_else(|| record.row.extra.get("response").and_then(Value::as_str))
        .or_else(|| capture("answer"))
}

/// The ground truths of a row: `row.ground_truth`, a string or a list of strings.
pub fn ground_truths(record: &OutputRecord) -> Vec<&str> {
    match record.row.extra.get("ground_truth") {
        Some(Value::String(text)) => vec![text.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TextMetrics {
    /// Rows with a ground truth and a response.
    pub n: u64,
    /// Share of rows whose response matches a ground truth exactly after normalisation.
    pub exact_match: f64,
    /// Mean over rows of the best token F1 over the ground truths.
    pub token_f1: f64,
}

#[derive(Debug, Clone, Default)]
pub struct TextAccumulator {
    n: u64,
    exact: u64,
    f1_sum: f64,
}

impl TextAccumulator {
    pub fn add(&mut self, record: &OutputRecord) {
        let truths = ground_truths(record);
        let Some(response) = response_text(record) else {
            return;
        };
        if truths.is_empty() {
            return;
        }
        self.n += 1;
        self.exact += u64::from(truths.iter().any(|t| exact_match(response, t)));
        self.f1_sum += truths
            .iter()
            .map(|t| token_f1(response, t))
            .fold(0.0, f64::max);
    }

    pub fn finish(&self) -> Option<TextMetrics> {
        (self.n > 0).then(|| TextMetrics {
            n: self.n,
            exact_match: self.exact as f64 / self.n as f64,
            token_f1: self.f1_sum / self.n as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_official_squad_script() {
        for (prediction, truth, em, f1) in crate::score::reference::reference().text {
            assert_eq!(exact_match(&prediction, &truth), em, "{prediction:?}");
            assert!(
                (token_f1(&prediction, &truth) - f1).abs() < 1e-12,
                "{prediction:?} vs {truth:?}"
            );
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise_answer("  The  Eiffel-Tower!! "), "eiffeltower");
        assert_eq!(normalise_answer("Theory of a thing"), "theory of thing");
    }
}
