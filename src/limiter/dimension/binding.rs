//! Whether the quota a dimension reports binds us at all.
//!
//! Gateways and proxies in front of OpenAI-compatible servers send a constant
//! `x-ratelimit-remaining-requests` (no limit, no reset): taken at its word, it is a quota of
//! about that many requests, and the models would pace the run by it. But a count that does
//! not fall while our own requests are answered - requests it had room for, so that a window
//! or a bucket would have shown them - says the quota is not binding at the pace we went: a
//! bucket refilled at least that fast, or no quota at all. The dimension then stops holding us
//! back, probing upward as TCP's slow start does rather than jumping blindly: it lets us go at
//! twice the pace it was seen not to bind at (or faster, where its model allows more), doubled
//! again every few answers that still do not move the count. A real bucket is found out when
//! the count falls (our pace passed its refill), long before it is empty, and a 429 ends the
//! probe as well; either way the dimension goes back to pacing by what its model learned
//! meanwhile.

use std::time::Instant;

use super::{Answer, Dimension};

/// Answers in a row that must not move the count before it is taken as not binding...
const STREAK: u32 = 8;
/// ...and answers that still do not move it before the probing pace doubles again.
const ROUND: u32 = 4;

/// A run of answers whose count never fell below the first one's.
#[derive(Debug, Clone, Copy)]
pub(super) struct Streak {
    sent_at: Instant,
    remaining: f64,
    /// Our cumulative cost through the first answer's request.
    cumulative: f64,
    answers: u32,
    /// Not binding: the pace allowed while probing upward (units per second), and the answers
    /// since it last doubled.
    probe: Option<(f64, u32)>,
}

impl Streak {
    fn start(answer: &Answer) -> Streak {
        Streak {
            sent_at: answer.sent_at,
            remaining: answer.remaining,
            cumulative: answer.cumulative,
            answers: 0,
            probe: None,
        }
    }
}

impl Dimension {
    /// Whether the quota binds: `false` once the count was seen to stay put under our own
    /// requests (and until it falls, or a 429 arrives).
    pub fn binding(&self) -> bool {
        self.probe_pace().is_none()
    }

    /// The pace (units per second) a dimension found not binding allows while probing.
    pub(super) fn probe_pace(&self) -> Option<f64> {
        self.streak.and_then(|s| s.probe).map(|(pace, _)| pace)
    }

    /// Follows the count over the answers, newest first seen: a fall ends the streak (and a
    /// probe); a count that stayed put over [`STREAK`] answers, although it had room for what
    /// we sent meanwhile, starts one at twice the pace we went.
    pub(super) fn watch_binding(&mut self, answer: &Answer) {
        let Some(streak) = self.streak.as_mut() else {
            self.streak = Some(Streak::start(answer));
            return;
        };
        if answer.remaining < streak.remaining {
            self.streak = Some(Streak::start(answer));
            return;
        }
        streak.answers += 1;
        match streak.probe.as_mut() {
            Some((pace, since)) => {
                *since += 1;
                if *since >= ROUND {
                    *pace *= 2.0;
                    *since = 0;
                }
            }
            None => {
                let moved = answer.cumulative - streak.cumulative;
                if streak.answers >= STREAK && moved > 0.0 && streak.remaining >= moved {
                    let span = answer
                        .sent_at
                        .saturating_duration_since(streak.sent_at)
                        .as_secs_f64();
                    let pace = if span > 0.0 {
                        2.0 * moved / span
                    } else {
                        f64::INFINITY
                    };
                    streak.probe = Some((pace, 0));
                }
            }
        }
    }

    /// A 429: whatever the count said, the quota binds; watch it again from the next answer.
    pub(in crate::limiter) fn bound(&mut self) {
        self.streak = None;
    }
}
