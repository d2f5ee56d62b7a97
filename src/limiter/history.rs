//! Our requests the service counts, with their send and answer times: what the window model
//! reads to tell what a sliding window holds and when a request of ours has left it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Our sends are remembered this long: longer than any window a service uses (a minute).
const HISTORY: Duration = Duration::from_secs(120);

/// One request the service counts (admitted, or in flight and not yet refused).
#[derive(Debug, Clone, Copy)]
pub(super) struct Counted {
    pub seq: u64,
    pub at: Instant,
    pub tokens: f64,
    /// When its answer came: from then on the service surely counted it.
    pub answered: Option<Instant>,
}

/// Our requests the service counts, oldest first, for the last [`HISTORY`].
#[derive(Debug, Default)]
pub(super) struct History(pub VecDeque<Counted>);

impl History {
    pub fn cost(counted: &Counted, requests: bool) -> f64 {
        if requests { 1.0 } else { counted.tokens }
    }

    /// What we sent in `(from, to]`.
    pub fn between(&self, from: Instant, to: Instant, requests: bool) -> f64 {
        self.0
            .iter()
            .rev()
            .skip_while(|c| c.at > to)
            .take_while(|c| c.at > from)
            .map(|c| Self::cost(c, requests))
            .sum()
    }

    /// The age (seconds, at request `seq`'s send) of our youngest earlier request that cannot
    /// still be counted: the service holds `held` besides request `seq`, and ours younger than
    /// it already add up to more. `None` when every earlier request of ours may still be held.
    pub fn youngest_gone(&self, seq: u64, held: f64, requests: bool) -> Option<f64> {
        let index = self.0.iter().rposition(|c| c.seq == seq)?;
        let at = self.0[index].at;
        // Token counts are estimates: allow a request's worth of difference.
        let tolerance = if requests { 0.5 } else { held * 0.05 + 1.0 };
        let mut younger = 0.0;
        // Only requests answered before this one left surely reached the service before it:
        // one still on its way may simply not be counted yet, which says nothing of the window.
        for earlier in self
            .0
            .range(..index)
            .rev()
            .filter(|c| c.answered.is_some_and(|a| a <= at))
        {
            younger += Self::cost(earlier, requests);
            if younger > held + tolerance {
                return Some(at.saturating_duration_since(earlier.at).as_secs_f64());
            }
        }
        None
    }

    pub fn answered(&mut self, seq: u64, now: Instant) {
        if let Some(counted) = self.0.iter_mut().rev().find(|c| c.seq == seq) {
            counted.answered = Some(now);
        }
    }

    pub fn forget(&mut self, seq: u64) {
        if let Some(index) = self.0.iter().rposition(|c| c.seq == seq) {
            self.0.remove(index);
        }
    }

    pub fn trim(&mut self, now: Instant) {
        while self
            .0
            .front()
            .is_some_and(|c| now.saturating_duration_since(c.at) > HISTORY)
        {
            self.0.pop_front();
        }
    }
}
