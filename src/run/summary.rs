//! The first `summary.json` a run writes as it ends (rows, accuracy, tokens, latency,
//! requests, 429s). `evalr score` replaces it with the full report.

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::RunError;
use super::journal::{ERRORS_FILE, OUTPUTS_FILE};
use super::record::{Outcome, OutputRecord};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FirstSummary {
    pub rows: u64,
    pub correct: u64,
    pub wrong: u64,
    pub unparsed: u64,
    pub refused: u64,
    pub unscored: u64,
    /// correct / (correct + wrong + unparsed + refused): an invalid answer counts as not correct.
    pub accuracy: Option<f64>,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    /// Model requests sent (attempts), not counting answers from the cache.
    pub requests: u64,
    pub rate_limited: u64,
    pub cached_calls: u64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

pub fn summarise(folder: &Path) -> Result<FirstSummary, RunError> {
    let mut summary = FirstSummary::default();
    let mut latencies = Vec::new();
    let path = folder.join(OUTPUTS_FILE);
    let file = std::fs::File::open(&path).map_err(|source| RunError::Io {
        path: path.clone(),
        source,
    })?;
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| RunError::Io {
            path: path.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record: OutputRecord = serde_json::from_str(&line).map_err(|e| RunError::Io {
            path: path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {}: {e}", index + 1),
            ),
        })?;
        summary.rows += 1;
        match record.outcome {
            Outcome::Correct => summary.correct += 1,
            Outcome::Wrong => summary.wrong += 1,
            Outcome::Unparsed => summary.unparsed += 1,
            Outcome::Refused => summary.refused += 1,
            Outcome::Unscored => summary.unscored += 1,
        }
        summary.prompt_tokens += record.usage.prompt_tokens;
        summary.completion_tokens += record.usage.completion_tokens;
        summary.requests += u64::from(record.attempts);
        summary.rate_limited += u64::from(record.rate_limited);
        summary.cached_calls += record.calls.iter().filter(|c| c.cached).count() as u64;
        latencies.push(record.latency_ms);
    }
    let scored = summary.correct + summary.wrong + summary.unparsed + summary.refused;
    summary.accuracy = (scored > 0).then(|| summary.correct as f64 / scored as f64);
    latencies.sort_by(f64::total_cmp);
    summary.latency_p50_ms = percentile(&latencies, 50.0);
    summary.latency_p95_ms = percentile(&latencies, 95.0);
    summary.errors = std::fs::read_to_string(folder.join(ERRORS_FILE))
        .map(|text| text.lines().filter(|l| !l.trim().is_empty()).count() as u64)
        .unwrap_or(0);
    Ok(summary)
}

pub fn write_first_summary(folder: &Path) -> Result<FirstSummary, RunError> {
    let summary = summarise(folder)?;
    let path = folder.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    std::fs::write(&path, text + "\n").map_err(|source| RunError::Io { path, source })?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(10.0));
        assert_eq!(percentile(&values, 95.0), Some(19.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
