//! What the limiter learned during a run, for the results and the report: the pace over time,
//! changes of the requests in flight, and the 429s.
//!
//! Memory stays bounded however long the run: samples are one a second until there are
//! `MAX_SAMPLES`, then neighbours are merged and the interval doubles; events stop being kept
//! (but are still counted) after `MAX_EVENTS`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

const MAX_SAMPLES: usize = 240;
const MAX_EVENTS: usize = 200;

/// How the limiter paced a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PacingMode {
    /// Only the configured quota (no header, no 429 seen).
    Configured,
    /// From the rate-limit headers of the answers.
    Headers,
    /// From 429s alone (the answers carry no rate-limit headers).
    RateLimits,
    /// Nothing limited the run.
    Unlimited,
}

/// One interval of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaceSample {
    /// Seconds since the limiter started (start of the interval).
    pub at_s: f64,
    pub span_s: f64,
    /// Requests and estimated tokens sent in the interval.
    pub requests: u64,
    pub tokens: u64,
    pub rate_limited: u64,
    /// The pace allowed at the end of the interval, per minute (`None`: not limited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace_rpm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace_tpm: Option<f64>,
    pub in_flight_cap: usize,
    /// The last remaining counts the service reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_requests: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_tokens: Option<f64>,
}

/// Something the limiter decided or was told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceEvent {
    RateLimited {
        at_s: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_s: Option<f64>,
    },
    InFlight {
        at_s: f64,
        from: usize,
        to: usize,
    },
    /// The learner found a reported quota not binding (its remaining count stayed put while
    /// our requests were answered: no pacing by it), or binding again (the count fell, or a
    /// 429 came).
    Binding {
        at_s: f64,
        quantity: Quantity,
        binding: bool,
    },
}

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    Requests,
    Tokens,
}

/// The limiter's record of one deployment, as it goes into the run's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaTrace {
    pub mode: PacingMode,
    /// The quota as configured (`None`: not told).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_tpm: Option<u32>,
    pub max_in_flight: usize,
    /// What was learned by the end: the pace in requests and tokens per minute, and the
    /// capacity of each bucket (the remaining count when full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_rpm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_tpm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_capacity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_capacity: Option<f64>,
    /// The sliding windows learned (seconds), when the service counts over windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_window_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_window_s: Option<f64>,
    pub requests: u64,
    pub rate_limited: u64,
    pub in_flight_changes: u64,
    pub samples: Vec<PaceSample>,
    pub events: Vec<TraceEvent>,
    /// Events not kept (beyond the cap), still counted above.
    pub events_dropped: u64,
}

/// One deployment's trace, named by the backend's identity (no secrets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentQuota {
    pub deployment: String,
    #[serde(flatten)]
    pub trace: QuotaTrace,
}

/// What the pace is at a moment, for a sample.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PaceNow {
    pub pace_rpm: Option<f64>,
    pub pace_tpm: Option<f64>,
    pub in_flight_cap: usize,
}

#[derive(Debug)]
pub(super) struct Recorder {
    remaining: (Option<f64>, Option<f64>),
    started: Instant,
    interval: Duration,
    current: PaceSample,
    pub samples: Vec<PaceSample>,
    pub events: Vec<TraceEvent>,
    pub events_dropped: u64,
    pub requests: u64,
    pub rate_limited: u64,
    pub in_flight_changes: u64,
}

fn empty_sample(at_s: f64) -> PaceSample {
    PaceSample {
        at_s,
        span_s: 0.0,
        requests: 0,
        tokens: 0,
        rate_limited: 0,
        pace_rpm: None,
        pace_tpm: None,
        in_flight_cap: 0,
        remaining_requests: None,
        remaining_tokens: None,
    }
}

impl Recorder {
    pub fn new(now: Instant) -> Recorder {
        Recorder {
            remaining: (None, None),
            started: now,
            interval: Duration::from_secs(1),
            current: empty_sample(0.0),
            samples: Vec::new(),
            events: Vec::new(),
            events_dropped: 0,
            requests: 0,
            rate_limited: 0,
            in_flight_changes: 0,
        }
    }

    fn at(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.started).as_secs_f64()
    }

    /// Closes the current interval if it is over.
    pub fn tick(&mut self, now: Instant, pace: PaceNow) {
        let at = self.at(now);
        if at - self.current.at_s < self.interval.as_secs_f64() {
            return;
        }
        let mut done = std::mem::replace(&mut self.current, empty_sample(at));
        done.span_s = at - done.at_s;
        done.pace_rpm = pace.pace_rpm;
        done.pace_tpm = pace.pace_tpm;
        done.in_flight_cap = pace.in_flight_cap;
        (done.remaining_requests, done.remaining_tokens) = self.remaining;
        self.samples.push(done);
        if self.samples.len() >= MAX_SAMPLES {
            self.samples = self
                .samples
                .chunks(2)
                .map(|pair| {
                    let mut merged = pair[pair.len() - 1].clone();
                    merged.at_s = pair[0].at_s;
                    merged.span_s = pair.iter().map(|s| s.span_s).sum();
                    merged.requests = pair.iter().map(|s| s.requests).sum();
                    merged.tokens = pair.iter().map(|s| s.tokens).sum();
                    merged.rate_limited = pair.iter().map(|s| s.rate_limited).sum();
                    merged
                })
                .collect();
            self.interval *= 2;
        }
    }

    /// The remaining counts an answer reported (kept for the next sample).
    pub fn remaining(&mut self, requests: Option<f64>, tokens: Option<f64>) {
        self.remaining = (requests.or(self.remaining.0), tokens.or(self.remaining.1));
    }

    pub fn sent(&mut self, tokens: u64) {
        self.requests += 1;
        self.current.requests += 1;
        self.current.tokens += tokens;
    }

    fn event(&mut self, event: TraceEvent) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(event);
        } else {
            self.events_dropped += 1;
        }
    }

    pub fn rate_limited(&mut self, now: Instant, retry_after: Option<Duration>) {
        self.rate_limited += 1;
        self.current.rate_limited += 1;
        let at_s = self.at(now);
        self.event(TraceEvent::RateLimited {
            at_s,
            retry_after_s: retry_after.map(|d| d.as_secs_f64()),
        });
    }

    pub fn binding(&mut self, now: Instant, quantity: Quantity, binding: bool) {
        let at_s = self.at(now);
        self.event(TraceEvent::Binding {
            at_s,
            quantity,
            binding,
        });
    }

    pub fn in_flight(&mut self, now: Instant, from: usize, to: usize) {
        self.in_flight_changes += 1;
        let at_s = self.at(now);
        self.event(TraceEvent::InFlight { at_s, from, to });
    }

    /// The samples so far, the open interval included.
    pub fn samples_now(&self, now: Instant, pace: PaceNow) -> Vec<PaceSample> {
        let mut samples = self.samples.clone();
        if self.current.requests > 0 || self.current.rate_limited > 0 {
            let mut open = self.current.clone();
            open.span_s = self.at(now) - open.at_s;
            open.pace_rpm = pace.pace_rpm;
            open.pace_tpm = pace.pace_tpm;
            open.in_flight_cap = pace.in_flight_cap;
            (open.remaining_requests, open.remaining_tokens) = self.remaining;
            samples.push(open);
        }
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_stay_bounded_and_keep_the_totals() {
        let t0 = Instant::now();
        let mut recorder = Recorder::new(t0);
        for second in 0..1_000u64 {
            let now = t0 + Duration::from_secs(second);
            recorder.tick(now, PaceNow::default());
            recorder.sent(10);
        }
        assert!(recorder.samples.len() < MAX_SAMPLES);
        let total: u64 = recorder
            .samples_now(t0 + Duration::from_secs(1_000), PaceNow::default())
            .iter()
            .map(|s| s.requests)
            .sum();
        assert_eq!(total, 1_000);
        for _ in 0..(MAX_EVENTS + 5) {
            recorder.rate_limited(t0, None);
        }
        assert_eq!(recorder.events.len(), MAX_EVENTS);
        assert_eq!(recorder.events_dropped, 5);
        assert_eq!(recorder.rate_limited, (MAX_EVENTS + 5) as u64);
    }
}
