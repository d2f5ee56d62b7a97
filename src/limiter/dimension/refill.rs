//! The model of a bucket refilled continuously (OpenAI's reset headers say so, and it is the
//! fallback until a window is seen): the refill rate comes from the reset header when there is
//! one (`(C - remaining) / reset`), else from what came back between two answers: with
//! `X = remaining + (what we sent up to that request)`, the slope of `X` over time is the
//! refill rate *minus what others sharing the deployment consumed* - exactly the share left
//! for us. The level is predicted as the last `remaining`, plus the refill since, minus what
//! we sent since, and a request goes only if the level after it stays above a margin. Between
//! answers the headroom is spent over a short horizon rather than all at once, so that several
//! clients reading the same `remaining` do not all spend it together.

use std::time::{Duration, Instant};

use super::{Answer, Check, Dimension};

/// Spend the headroom above the margin over this long, not in one burst.
const HORIZON_SECS: f64 = 2.0;
/// The level kept in reserve by the bucket model, as a share of the capacity (jitter between
/// our clock and the service's, and other clients).
const MARGIN_SHARE: f64 = 0.03;
/// Refill samples are taken over at least this span...
const MIN_SPAN: Duration = Duration::from_secs(1);
/// ...and at most this one (older points are dropped: the share left to us changes).
const MAX_SPAN: Duration = Duration::from_secs(30);
/// Weight of a new refill sample.
const EWMA: f64 = 0.3;

impl Dimension {
    fn margin(&self) -> f64 {
        self.capacity * MARGIN_SHARE
    }

    /// Predicted level now: last remaining + refill since - what we sent since (and what is
    /// still in flight from before: it may have arrived after the answer we know).
    fn level(&self, now: Instant, unseen: f64, factor: f64) -> f64 {
        let Some(last) = self.last else {
            return f64::INFINITY;
        };
        let elapsed = now.saturating_duration_since(last.sent_at).as_secs_f64();
        let refill = self.pace_rate() * factor * elapsed;
        (last.remaining + refill).min(self.capacity) - unseen
    }

    /// The bucket model: the level predicted now, less a margin, must hold the request; the
    /// headroom above it is spent over [`HORIZON_SECS`].
    pub(super) fn check_bucket(&self, cost: f64, now: Instant, unseen: f64, factor: f64) -> Check {
        let level = self.level(now, unseen, factor);
        let margin = self.margin();
        let rate = self.pace_rate() * factor;
        let short = margin + cost - level;
        if short > 0.0 && level < self.capacity {
            return Check::Wait {
                wait: Duration::from_secs_f64((short / rate).min(3600.0)),
                sure: false,
            };
        }
        let spendable = (level - cost - margin).max(0.0);
        let allowed = rate + spendable / HORIZON_SECS;
        Check::Go {
            gap: Duration::from_secs_f64((cost / allowed).min(3600.0)),
        }
    }

    /// The bucket model's refill rate, from the slope of `remaining + what we sent`.
    pub(super) fn learn_refill(&mut self, answer: &Answer) {
        let Answer {
            seq,
            sent_at,
            cost,
            cumulative,
            remaining,
            ..
        } = *answer;
        let x = remaining + cumulative;
        if remaining + cost >= self.capacity - 0.5 {
            // The bucket was full when this request arrived: what refilled before is lost, so
            // the slope starts again from here. What came back since the first point is
            // still a floor under the rate (it may have been full for a while already).
            if let Some(&(_, t0, x0)) = self.points.front() {
                let span = sent_at.saturating_duration_since(t0);
                if span >= MIN_SPAN && x > x0 {
                    let floor = (x - x0) / span.as_secs_f64();
                    if self.rate.is_none_or(|r| r < floor) {
                        self.sample(floor, sent_at);
                    }
                }
            }
            self.points.clear();
            // Full for a while although we kept sending: it refills at least as fast as we
            // sent.
            let (since, at_start) = *self.full_since.get_or_insert((sent_at, cumulative));
            let span = sent_at.saturating_duration_since(since);
            if span >= MIN_SPAN {
                let ours = (cumulative - at_start) / span.as_secs_f64();
                if self.rate.is_none_or(|r| r < ours) {
                    self.rate = Some(ours);
                }
            }
        } else {
            self.full_since = None;
        }
        self.points.push_back((seq, sent_at, x));
        while self.points.len() > 2
            && self
                .points
                .front()
                .is_some_and(|(_, t, _)| sent_at.saturating_duration_since(*t) > MAX_SPAN)
        {
            self.points.pop_front();
        }
        if let Some(&(_, t0, x0)) = self.points.front() {
            let span = sent_at.saturating_duration_since(t0);
            let due = self
                .last_sample
                .is_none_or(|s| sent_at.saturating_duration_since(s) >= MIN_SPAN);
            // Nothing came back yet is news only once the pace so far would have refilled the
            // whole bucket: a window gives a burst's share back all at once, at its end.
            let refill_time = self.capacity / self.pace_rate();
            let news = x > x0 + 0.5 || span.as_secs_f64() >= refill_time;
            if span >= MIN_SPAN && due && news {
                // Others may have taken more than came back: never below a tenth of a
                // per-minute window, so that pacing keeps probing.
                let slope = ((x - x0) / span.as_secs_f64()).max(self.capacity / 600.0);
                self.sample(slope, sent_at);
            }
        }
    }

    pub(super) fn sample(&mut self, value: f64, at: Instant) {
        self.rate = Some(match self.rate {
            Some(rate) => rate * (1.0 - EWMA) + value * EWMA,
            None => value,
        });
        self.last_sample = Some(at);
    }

    /// Whether this dimension, paced as a bucket, had too little left at its last answer for a
    /// request of `cost` (with `unseen` sent since).
    pub(in crate::limiter) fn bucket_short(&self, cost: f64, unseen: f64) -> bool {
        self.windowed().is_none()
            && self
                .last
                .is_some_and(|last| last.remaining - unseen < cost + self.margin())
    }
}
