//! What the quota limiter learned during a run (`run.json`'s `quota`), condensed for the
//! summary and the report: per deployment how it was paced, what it learned, how many
//! requests were refused with 429, and the pace over time in a few steps.

use serde::Serialize;

use crate::limiter::{DeploymentQuota, PaceSample, PacingMode};

/// The timeline of a deployment keeps at most this many steps (the trace holds up to 240).
pub const TIMELINE_STEPS: usize = 8;

/// One deployment's pacing, for `summary.json` and the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaSummary {
    pub deployment: String,
    pub mode: PacingMode,
    pub configured_rpm: Option<u32>,
    pub configured_tpm: Option<u32>,
    /// The pace learned by the end of the run, per minute.
    pub learned_rpm: Option<f64>,
    pub learned_tpm: Option<f64>,
    pub requests: u64,
    pub rate_limited: u64,
    /// Of the requests, the share answered 429.
    pub rate_limited_share: f64,
    /// The requests in flight: the cap it started with, and the lowest and highest it took.
    pub max_in_flight: usize,
    pub in_flight_range: Option<[usize; 2]>,
    pub in_flight_changes: u64,
    /// The pace over time, in at most [`TIMELINE_STEPS`] steps.
    pub timeline: Vec<TimelineStep>,
}

/// A stretch of the run: what was sent in it and the pace allowed at its end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineStep {
    pub from_s: f64,
    pub to_s: f64,
    /// Requests and estimated tokens sent, per minute over the stretch.
    pub sent_rpm: f64,
    pub sent_tpm: f64,
    pub rate_limited: u64,
    pub pace_rpm: Option<f64>,
    pub pace_tpm: Option<f64>,
    pub in_flight_cap: usize,
}

/// The summary of each deployment's trace.
pub fn summarise(traces: &[DeploymentQuota]) -> Vec<QuotaSummary> {
    traces.iter().map(summarise_one).collect()
}

fn summarise_one(quota: &DeploymentQuota) -> QuotaSummary {
    let trace = &quota.trace;
    let caps = trace.samples.iter().map(|s| s.in_flight_cap);
    let in_flight_range = caps.clone().min().zip(caps.max()).map(|(lo, hi)| [lo, hi]);
    QuotaSummary {
        deployment: quota.deployment.clone(),
        mode: trace.mode,
        configured_rpm: trace.configured_rpm,
        configured_tpm: trace.configured_tpm,
        learned_rpm: trace.learned_rpm,
        learned_tpm: trace.learned_tpm,
        requests: trace.requests,
        rate_limited: trace.rate_limited,
        rate_limited_share: if trace.requests == 0 {
            0.0
        } else {
            trace.rate_limited as f64 / trace.requests as f64
        },
        max_in_flight: trace.max_in_flight,
        in_flight_range,
        in_flight_changes: trace.in_flight_changes,
        timeline: timeline(&trace.samples, TIMELINE_STEPS),
    }
}

/// The samples merged into at most `steps` consecutive stretches of about equal length.
fn timeline(samples: &[PaceSample], steps: usize) -> Vec<TimelineStep> {
    if samples.is_empty() || steps == 0 {
        return Vec::new();
    }
    let per_step = samples.len().div_ceil(steps);
    samples
        .chunks(per_step)
        .map(|chunk| {
            let first = &chunk[0];
            let last = &chunk[chunk.len() - 1];
            let span: f64 = chunk.iter().map(|s| s.span_s).sum();
            let per_minute = |n: u64| {
                if span > 0.0 {
                    n as f64 * 60.0 / span
                } else {
                    0.0
                }
            };
            TimelineStep {
                from_s: first.at_s,
                to_s: last.at_s + last.span_s,
                sent_rpm: per_minute(chunk.iter().map(|s| s.requests).sum()),
                sent_tpm: per_minute(chunk.iter().map(|s| s.tokens).sum()),
                rate_limited: chunk.iter().map(|s| s.rate_limited).sum(),
                pace_rpm: last.pace_rpm,
                pace_tpm: last.pace_tpm,
                in_flight_cap: last.in_flight_cap,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::QuotaTrace;

    fn sample(at_s: f64, requests: u64, rate_limited: u64, cap: usize) -> PaceSample {
        PaceSample {
            at_s,
            span_s: 1.0,
            requests,
            tokens: requests * 100,
            rate_limited,
            pace_rpm: Some(600.0),
            pace_tpm: None,
            in_flight_cap: cap,
            remaining_requests: None,
            remaining_tokens: None,
        }
    }

    #[test]
    fn a_trace_becomes_totals_a_range_and_a_short_timeline() {
        let samples: Vec<PaceSample> = (0..20)
            .map(|i| sample(f64::from(i), 10, u64::from(i == 5), 8 - (i as usize % 3)))
            .collect();
        let quota = DeploymentQuota {
            deployment: "azure:https://x/gpt-4o".into(),
            trace: QuotaTrace {
                mode: PacingMode::RateLimits,
                configured_rpm: None,
                configured_tpm: None,
                max_in_flight: 8,
                learned_rpm: Some(590.0),
                learned_tpm: None,
                request_capacity: None,
                request_window_s: None,
                token_window_s: None,
                token_capacity: None,
                requests: 200,
                rate_limited: 1,
                in_flight_changes: 13,
                samples,
                events: Vec::new(),
                events_dropped: 0,
            },
        };
        let summary = &summarise(&[quota])[0];
        assert_eq!(summary.rate_limited_share, 0.005);
        assert_eq!(summary.in_flight_range, Some([6, 8]));
        // 20 one-second samples in stretches of 3: 7 steps, the last one of 2 seconds.
        assert_eq!(summary.timeline.len(), 7);
        assert_eq!(summary.timeline[0].sent_rpm, 600.0);
        assert_eq!(summary.timeline[1].rate_limited, 1);
        assert_eq!(summary.timeline[6].from_s, 18.0);
        assert_eq!(summary.timeline[6].to_s, 20.0);
        let total: u64 = summary.timeline.iter().map(|s| s.rate_limited).sum();
        assert_eq!(total, 1);
    }
}
