//! The sliding-window model (Azure, and Microsoft's API simulator): at most the capacity `C`
//! in any window of `W` seconds, so a request's share comes back exactly `W` after it arrived,
//! all at once for a burst. `W` is learned from the answers: a `remaining` count that no
//! longer holds one of our earlier requests says that request has left the window, so `W` is
//! at most its age. Once `W` is known the level is predicted from our own sends (what is
//! inside the window) plus what others held at the last answer (assumed to leave evenly over
//! one window) - so a run paces at the window's rate without a 429 and without waiting for
//! news.

use std::time::{Duration, Instant};

use super::{Answer, Check, Dimension};
use crate::limiter::history::History;

/// A learned window is stretched by this share and this time before pacing by it: the
/// service times a request's arrival, we time its send, and the two differ by the network's
/// jitter.
const WINDOW_SLACK_SHARE: f64 = 0.01;
const WINDOW_SLACK: Duration = Duration::from_millis(30);
/// Our send times stand for the service's arrival times, which differ by up to this much
/// (queues on both sides, a loaded machine).
const JITTER: f64 = 0.1;
/// The windows services count over, in seconds (Azure: 1 or 10; the API simulator: 10 for
/// requests, 60 for tokens; per-minute limits).
const STANDARD_WINDOWS: [f64; 3] = [1.0, 10.0, 60.0];
/// The shortest window a service uses is a second (Azure: 1 or 10 s); a request seen gone
/// sooner (with the network's jitter) was refilled by a bucket.
const MIN_WINDOW: f64 = 0.9;
/// A window bound contradicting an earlier one by more than this factor (beyond the network's
/// jitter) means the service is not a sliding window.
const CONTRADICTION: f64 = 1.05;
/// The share of 429s among answers beyond which a window is given up for a bucket.
const WINDOW_REFUSALS: f64 = 0.02;
/// The level a window of tokens keeps in reserve, as a share of its capacity: our token
/// counts are estimates, corrected at each answer.
const WINDOW_TOKEN_MARGIN_SHARE: f64 = 0.01;
/// A 429 although the window said there was room: the window is taken to reach this much
/// past the age of the youngest request of ours that explains the refusal.
const REFUSAL_STRETCH: f64 = 1.02;

/// A learned window as paced by: stretched by the network's jitter.
fn padded(window: f64) -> Duration {
    Duration::from_secs_f64((window * (1.0 + WINDOW_SLACK_SHARE)).min(3600.0)) + WINDOW_SLACK
}

impl Dimension {
    /// The window model: the window holds what we sent within it, plus what others held at the
    /// last answer, assumed to leave evenly over one window. A request that fits goes at once
    /// (the service allows the whole window in a burst); one that does not waits for the
    /// oldest of ours inside the window to leave it.
    pub(super) fn check_window(
        &self,
        window: f64,
        cost: f64,
        now: Instant,
        history: &History,
        requests: bool,
    ) -> Check {
        // No 429 factor here: a refusal the window did not foresee corrects the window itself
        // (or what others hold), so slowing down on top of it would only waste the quota.
        let window = padded(window);
        let from = now.checked_sub(window).unwrap_or(now);
        let ours = history.between(from, now, requests);
        // Others are taken to go on as they did: what they held at the last answer they hold
        // until an answer says otherwise.
        let others = self.others.map_or(0.0, |(_, held)| held);
        // Token counts are estimates (what others hold corrects them at each answer): a small
        // margin there, none for requests.
        let margin = if requests {
            0.0
        } else {
            self.capacity * WINDOW_TOKEN_MARGIN_SHARE
        };
        let level = self.capacity - margin - ours - others;
        if level >= cost || ours + others == 0.0 {
            // Alone, the whole window may go at once. Shared, spacing our requests at our
            // share's rate keeps clients that read the same room from all spending it
            // together; each then settles at an even share.
            let gap = if others > 0.0 {
                let share = (self.capacity - margin - others).max(cost);
                window.mul_f64(cost / share)
            } else {
                Duration::ZERO
            };
            return Check::Go { gap };
        }
        // Our oldest request inside the window leaves it first.
        let mut freed = level;
        for counted in history.0.iter().filter(|c| c.at > from && c.at <= now) {
            freed += History::cost(counted, requests);
            if freed >= cost {
                return Check::Wait {
                    wait: (counted.at + window).saturating_duration_since(now),
                    sure: true,
                };
            }
        }
        // Only others' share is in the way: when it leaves, only an answer can tell.
        Check::Wait {
            wait: window,
            sure: false,
        }
    }

    /// What a sliding window's answer says: the window is no longer than the age of our
    /// youngest request it no longer holds, and whatever it holds beyond ours is others'.
    pub(super) fn learn_window(&mut self, answer: &Answer, history: &History, requests: bool) {
        let Answer {
            seq,
            sent_at,
            cost,
            remaining,
            ..
        } = *answer;
        let held = (self.capacity - remaining - cost).max(0.0);
        if let Some(gone) = history.youngest_gone(seq, held, requests)
            && gone > 0.0
        {
            if gone < MIN_WINDOW {
                // No service counts over less than a second: what came back this soon was
                // refilled, not released by a window.
                self.bucket = true;
                return;
            }
            if self.window_hi.is_none_or(|w| gone < w) {
                self.window_hi = Some(gone);
            }
        }
        if self
            .window_hi
            .is_some_and(|hi| hi * CONTRADICTION + JITTER < self.window_lo)
        {
            // Refused at an age past the age a request was seen gone: no window behaves so, a
            // bucket refilled continuously (or others coming and going) does. Twice, to be
            // sure.
            self.window_lo = 0.0;
            self.window_hi = None;
            self.window = None;
            self.contradictions += 1;
            if self.contradictions >= 2 {
                self.bucket = true;
                return;
            }
        }
        self.settle_window();
        if let Some(window) = self.window
            && self.last.is_none_or(|l| l.seq < seq)
        {
            let from = sent_at.checked_sub(padded(window)).unwrap_or(sent_at);
            let ours = history.between(from, sent_at, requests) - cost;
            // For tokens this is also the difference between the service's count of our
            // requests and our estimate of it. Negative means some of ours had not reached the
            // service yet (or we overestimate tokens): nothing to correct, to stay safe.
            let others = held - ours;
            self.others = (others > 0.5).then_some((sent_at, others));
        }
    }

    /// The window to pace by, from its bounds: services count over a second, ten seconds or a
    /// minute, so the longest of those the bounds allow (the upper bound may be loose by up to
    /// the spacing of our requests); otherwise the upper bound, the safe end. A 429 the window
    /// did not foresee raises the lower bound.
    pub(super) fn settle_window(&mut self) {
        let Some(hi) = self.window_hi else {
            return;
        };
        let lo = self.window_lo;
        let standard = STANDARD_WINDOWS
            .iter()
            .copied()
            .filter(|&w| w <= hi * (1.0 + WINDOW_SLACK_SHARE * 2.0) && w >= hi / 2.0 && w >= lo)
            .reduce(f64::max);
        self.window = Some(standard.unwrap_or(hi.max(lo)));
    }

    /// A 429 the window did not foresee, to request of ours `age` seconds old when it was
    /// refused: the window reaches at least a little past that age.
    pub(in crate::limiter) fn stretch_window(&mut self, age: f64) {
        self.window_lo = self.window_lo.max(age * REFUSAL_STRETCH);
        self.settle_window();
    }

    /// A 429 while paced by the window. More than a few, and more than [`WINDOW_REFUSALS`] of
    /// the answers: the service is not a sliding window after all (a bucket refilled
    /// continuously makes the window look ever shorter); pace it as a bucket.
    pub(in crate::limiter) fn refused(&mut self) {
        if self.windowed().is_none() {
            return;
        }
        self.window_refusals += 1;
        if self.window_refusals > 3
            && f64::from(self.window_refusals) > WINDOW_REFUSALS * f64::from(self.window_answers)
        {
            self.bucket = true;
        }
    }

    /// How much longer than learned the window must be for a request of `cost`, refused at
    /// `at`, to have found it full (alone with what others held): the age of our youngest
    /// request that would then still be inside it. `None`: the window as learned explains
    /// the refusal, or nothing can (others took more than they held).
    pub(in crate::limiter) fn refusal_needs(
        &self,
        cost: f64,
        at: Instant,
        history: &History,
        requests: bool,
    ) -> Option<f64> {
        let window = self.windowed()?;
        let others = self.others.map_or(0.0, |(_, held)| held);
        if others > self.capacity * WINDOW_TOKEN_MARGIN_SHARE + 0.5 {
            // Others share the window: what they took since the last answer explains it.
            return None;
        }
        let room = self.capacity - cost - others;
        let mut younger = 0.0;
        for earlier in history.0.iter().rev().filter(|c| c.at <= at) {
            younger += History::cost(earlier, requests);
            if younger > room {
                let age = at.saturating_duration_since(earlier.at).as_secs_f64();
                return (age >= window).then_some(age);
            }
        }
        None
    }
}
