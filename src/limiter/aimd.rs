//! Feedback from 429s: additive increase, multiplicative decrease, as TCP does - of the
//! requests in flight always, and of the request rate when no header says what the quota is.
//!
//! A burst of 429s is one signal (at most one decrease a second); a second without one gives
//! back one request in flight and a step of rate. The step is a fixed share of the rate at the
//! last decrease, so that the climb back is linear (probing the quota gently) rather than
//! geometric (which would run into it again at once).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Each decrease multiplies the rate by this...
const DECREASE: f64 = 0.7;
/// ...and the requests in flight by this.
const IN_FLIGHT_DECREASE: f64 = 0.5;
/// Each second without a 429 adds this share of the rate at the last decrease.
const INCREASE_SHARE: f64 = 0.05;
/// One decision per this long.
const ROUND: Duration = Duration::from_secs(1);
/// Admitted requests are counted over this long to measure the rate the service allowed.
const MEASURE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(super) struct Aimd {
    max_in_flight: usize,
    pub in_flight_cap: usize,
    /// Requests per second the 429s taught, when pacing by rate (no headers).
    pub rate: Option<f64>,
    step: f64,
    /// Share of the learned header rates we use (1 until 429s arrive despite the headers).
    pub factor: f64,
    last_decrease: Option<Instant>,
    last_increase: Instant,
    admitted: VecDeque<Instant>,
}

/// What a 429 changed, for the trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Decrease {
    pub in_flight: (usize, usize),
    pub rate: Option<f64>,
}

impl Aimd {
    pub fn new(max_in_flight: usize, now: Instant) -> Aimd {
        Aimd {
            max_in_flight: max_in_flight.max(1),
            in_flight_cap: max_in_flight.max(1),
            rate: None,
            step: 0.0,
            factor: 1.0,
            last_decrease: None,
            last_increase: now,
            admitted: VecDeque::new(),
        }
    }

    fn measured_rate(&mut self, now: Instant) -> Option<f64> {
        while self
            .admitted
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > MEASURE)
        {
            self.admitted.pop_front();
        }
        let first = *self.admitted.front()?;
        let span = now.saturating_duration_since(first).as_secs_f64().max(1.0);
        Some(self.admitted.len() as f64 / span)
    }

    /// A 429 arrived; `by_rate` when no header paces us (the rate itself must come down).
    pub fn on_rate_limited(&mut self, now: Instant, by_rate: bool) -> Option<Decrease> {
        if self
            .last_decrease
            .is_some_and(|t| now.saturating_duration_since(t) < ROUND)
        {
            return None;
        }
        self.last_decrease = Some(now);
        self.last_increase = now;
        let before = self.in_flight_cap;
        self.in_flight_cap = ((before as f64 * IN_FLIGHT_DECREASE).ceil() as usize).max(1);
        if by_rate {
            // What the service let through lately, less a margin: the rate lives below it.
            let current = self
                .rate
                .into_iter()
                .chain(self.measured_rate(now))
                .reduce(f64::min)
                .unwrap_or(1.0);
            let rate = (current * DECREASE).max(0.05);
            self.rate = Some(rate);
            self.step = rate * INCREASE_SHARE;
        } else {
            self.factor = (self.factor * DECREASE).max(0.1);
        }
        Some(Decrease {
            in_flight: (before, self.in_flight_cap),
            rate: self.rate,
        })
    }

    /// A request was admitted (answered without a 429). Returns the in-flight change, if any.
    pub fn on_admitted(&mut self, now: Instant) -> Option<(usize, usize)> {
        self.admitted.push_back(now);
        if self.admitted.len() > 100_000 {
            self.admitted.pop_front();
        }
        if now.saturating_duration_since(self.last_increase) < ROUND {
            return None;
        }
        self.last_increase = now;
        if let Some(rate) = self.rate.as_mut() {
            *rate += self.step;
        }
        self.factor = (self.factor + INCREASE_SHARE).min(1.0);
        let before = self.in_flight_cap;
        self.in_flight_cap = (before + 1).min(self.max_in_flight);
        (before != self.in_flight_cap).then_some((before, self.in_flight_cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_in_flight_and_cuts_the_rate_then_climbs_linearly() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(8, t0);
        // 10 requests/s admitted for 3 s, then a 429.
        for i in 0..30 {
            aimd.admitted.push_back(t0 + Duration::from_millis(100 * i));
        }
        let now = t0 + Duration::from_secs(3);
        let decrease = aimd.on_rate_limited(now, true).unwrap();
        assert_eq!(decrease.in_flight, (8, 4));
        let rate = aimd.rate.unwrap();
        assert!((rate - 7.0).abs() < 0.5, "rate {rate}");
        // A burst of 429s is one signal.
        assert!(
            aimd.on_rate_limited(now + Duration::from_millis(10), true)
                .is_none()
        );
        // Two quiet seconds: +1 in flight and +5% of the decreased rate each.
        aimd.on_admitted(now + Duration::from_millis(1_100));
        aimd.on_admitted(now + Duration::from_millis(2_200));
        assert_eq!(aimd.in_flight_cap, 6);
        assert!((aimd.rate.unwrap() - rate * 1.1).abs() < 1e-9);
        // With headers, the share of the learned rate comes down instead.
        let mut with_headers = Aimd::new(8, t0);
        with_headers.on_rate_limited(t0, false);
        assert!((with_headers.factor - 0.7).abs() < 1e-9);
        assert_eq!(with_headers.rate, None);
    }
}
