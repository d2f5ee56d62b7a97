//! One counted quantity (requests or tokens) and what the answers taught of it. Each has a
//! capacity `C`: the limit header when there is one, else the largest `remaining + cost` seen.
//! What comes back after a request is spent depends on the service, and there are two ways,
//! each a model of its own: a sliding window (`window.rs`) and a bucket refilled continuously
//! (`refill.rs`). Either way others sharing the deployment show up in `remaining`, which is
//! why shards of one run need no coordination.

mod binding;
mod refill;
mod window;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::history::History;
use binding::Streak;

/// The last answer a dimension's predictions start from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Observation {
    pub seq: u64,
    pub sent_at: Instant,
    pub remaining: f64,
    /// Our cumulative cost up to and including request `seq` (429s excluded).
    pub cumulative: f64,
}

/// What one answer said about one dimension, with what we know of the request it answers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answer {
    pub seq: u64,
    pub sent_at: Instant,
    /// What the request cost (1 for requests, its estimate for tokens).
    pub cost: f64,
    /// Our cumulative cost up to and including this request (429s excluded).
    pub cumulative: f64,
    pub remaining: f64,
    pub limit: Option<f64>,
    /// Time until the bucket is full again, when the service says.
    pub reset: Option<Duration>,
}

/// One counted quantity: requests or tokens.
#[derive(Debug, Default)]
pub(super) struct Dimension {
    /// Largest level seen or the limit header; 0 while unknown.
    pub capacity: f64,
    limit_header: bool,
    /// Refill rate in units per second, once measured (bucket model).
    pub rate: Option<f64>,
    pub last: Option<Observation>,
    /// (request, send time, remaining + cumulative cost) since the bucket was last seen full.
    points: VecDeque<(u64, Instant, f64)>,
    last_sample: Option<Instant>,
    /// Since when every answer found the bucket full, and our cumulative cost then.
    full_since: Option<(Instant, f64)>,
    /// The service said when its bucket is full again: a bucket, never a window.
    bucket: bool,
    /// The window paced by, in seconds, once an answer showed one of our requests leaving it.
    pub window: Option<f64>,
    /// What the answers and 429s said of the window: at most `window_hi` (an earlier request
    /// of ours seen gone), at least `window_lo` (a 429 to explain).
    window_hi: Option<f64>,
    window_lo: f64,
    /// What others held at the last answer, and when that request was sent.
    others: Option<(Instant, f64)>,
    /// Answers that said the window is shorter than a 429 said it must be.
    contradictions: u32,
    /// Answers and 429s while paced by the window.
    window_answers: u32,
    window_refusals: u32,
    /// The answers since the count last fell: whether our requests move it (`binding.rs`).
    streak: Option<Streak>,
}

impl Dimension {
    pub fn known(&self) -> bool {
        self.capacity > 0.0 && self.last.is_some()
    }

    /// The window to pace by, once learned (never for a bucket).
    pub fn windowed(&self) -> Option<f64> {
        self.window.filter(|_| !self.bucket)
    }

    /// The rate our share of the quota allows, per second: the window's capacity less what
    /// others hold, per window; else the bucket's measured refill, else a window of a minute
    /// (the longest any service uses: the slowest safe guess).
    pub fn pace_rate(&self) -> f64 {
        if let Some(window) = self.windowed() {
            let others = self.others.map_or(0.0, |(_, held)| held);
            return ((self.capacity - others).max(1.0) / window).max(1e-6);
        }
        self.rate.unwrap_or(self.capacity / 60.0).max(1e-6)
    }

    /// The pace per minute, with `factor` (the 429 feedback) applied where it applies: not
    /// to a window, which corrects itself.
    pub fn pace_per_minute(&self, factor: f64) -> f64 {
        let factor = if self.windowed().is_some() {
            1.0
        } else {
            factor
        };
        self.pace_rate() * factor * 60.0
    }

    /// How long a request of `cost` must wait, and the spacing to the next one if it goes now.
    pub(super) fn check(
        &self,
        cost: f64,
        now: Instant,
        unseen: f64,
        factor: f64,
        history: &History,
        requests: bool,
    ) -> Check {
        if !self.known() {
            return Check::Go {
                gap: Duration::ZERO,
            };
        }
        let model = match self.windowed() {
            Some(window) => self.check_window(window, cost, now, history, requests),
            None => self.check_bucket(cost, now, unseen, factor),
        };
        // Not binding: the model holds us back no more than the probe's pace (which doubles
        // while the count stays put); never more than the model alone would.
        match (self.probe_pace(), model) {
            (Some(pace), Check::Go { gap }) => Check::Go {
                gap: gap.min(Duration::from_secs_f64((cost / pace).min(3600.0))),
            },
            (Some(pace), Check::Wait { .. }) => Check::Go {
                gap: Duration::from_secs_f64((cost / pace).min(3600.0)),
            },
            (None, model) => model,
        }
    }

    /// What an answer said of this dimension: the capacity, then whichever model the service
    /// follows learns from it.
    pub(super) fn observe(&mut self, answer: &Answer, history: &History, requests: bool) {
        let Answer {
            seq,
            sent_at,
            cost,
            cumulative,
            remaining,
            limit,
            reset,
        } = *answer;
        match limit {
            Some(limit) if limit > 0.0 => {
                self.capacity = limit;
                self.limit_header = true;
            }
            _ if !self.limit_header => self.capacity = self.capacity.max(remaining + cost),
            _ => {}
        }
        if reset.is_some() {
            self.bucket = true;
        }
        if !self.bucket {
            if self.windowed().is_some() {
                self.window_answers += 1;
            }
            self.learn_window(answer, history, requests);
        }
        if self.last.is_some_and(|l| l.seq > seq) {
            // An older request answered late: newer news is already in.
            return;
        }
        self.last = Some(Observation {
            seq,
            sent_at,
            remaining,
            cumulative,
        });
        self.watch_binding(answer);
        if let Some(reset) = reset.filter(|r| !r.is_zero())
            && self.capacity - remaining >= 1.0
        {
            self.sample((self.capacity - remaining) / reset.as_secs_f64(), sent_at);
            return;
        }
        self.learn_refill(answer);
    }

    /// A 429 to request `seq`: the bucket was empty when it arrived.
    pub(super) fn exhausted(&mut self, seq: u64, sent_at: Instant, cumulative: f64) {
        if !self.known() || self.last.is_some_and(|l| l.seq > seq) {
            return;
        }
        self.last = Some(Observation {
            seq,
            sent_at,
            remaining: 0.0,
            cumulative,
        });
    }

    /// Request `seq`, costing `cost`, was not admitted: it counts in no cumulative cost.
    pub(super) fn forget(&mut self, seq: u64, cost: f64) {
        if let Some(last) = self.last.as_mut()
            && last.seq >= seq
        {
            last.cumulative -= cost;
        }
        for point in self.points.iter_mut().filter(|p| p.0 >= seq) {
            point.2 -= cost;
        }
    }
}

pub(super) enum Check {
    Go {
        gap: Duration,
    },
    /// `sure`: the wait is predicted from what we know will happen (our own requests leaving
    /// a window), not from a guess that only news can correct.
    Wait {
        wait: Duration,
        sure: bool,
    },
}
