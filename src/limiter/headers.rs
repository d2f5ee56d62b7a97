//! Learning a deployment's quota from the rate-limit headers of its answers.
//!
//! Azure OpenAI sends `x-ratelimit-remaining-requests` / `-tokens` on every answer (and the
//! limits on some); OpenAI sends `x-ratelimit-limit-*`, `-remaining-*` and `-reset-*`. Each
//! dimension (requests, tokens) has a capacity `C`: the limit header when there is one, else
//! the largest `remaining + cost` seen. What comes back after a request is spent depends on the
//! service, and there are two ways:
//!
//! - **A sliding window** (Azure, and Microsoft's API simulator): at most `C` in any window of
//!   `W` seconds, so a request's share comes back exactly `W` after it arrived, all at once for
//!   a burst. `W` is learned from the answers: a `remaining` count that no longer holds one of
//!   our earlier requests says that request has left the window, so `W` is at most its age.
//!   Once `W` is known the level is predicted from our own sends (what is inside the window)
//!   plus what others held at the last answer (assumed to leave evenly over one window) - so
//!   a run paces at the window's rate without a 429 and without waiting for news.
//! - **A bucket refilled continuously** (OpenAI's reset headers say so, and it is the fallback
//!   until a window is seen): the refill rate `rho` comes from the reset header when there is
//!   one (`(C - remaining) / reset`), else from what came back between two answers: with
//!   `X = remaining + (what we sent up to that request)`, the slope of `X` over time is the
//!   refill rate *minus what others sharing the deployment consumed* - exactly the share left
//!   for us. The level is predicted as the last `remaining`, plus the refill since, minus what
//!   we sent since, and a request goes only if the level after it stays above a margin.
//!
//! Either way others sharing the deployment show up in `remaining`, which is why shards of one
//! run need no coordination. Between answers the bucket's headroom is spent over a short
//! horizon rather than all at once, so that several clients reading the same `remaining` do
//! not all spend it together.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What one answer said about the quota, in the units the service counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QuotaHeaders {
    pub limit_requests: Option<f64>,
    pub limit_tokens: Option<f64>,
    pub remaining_requests: Option<f64>,
    pub remaining_tokens: Option<f64>,
    /// Time until the request (token) bucket is full again (OpenAI's `x-ratelimit-reset-*`).
    pub reset_requests: Option<Duration>,
    pub reset_tokens: Option<Duration>,
}

impl QuotaHeaders {
    /// Whether the answer carried anything to learn from.
    pub fn any(&self) -> bool {
        self.remaining_requests.is_some() || self.remaining_tokens.is_some()
    }
}

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
/// Our sends are remembered this long: longer than any window a service uses (a minute).
const HISTORY: Duration = Duration::from_secs(120);
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

#[derive(Debug, Clone, Copy)]
struct Observation {
    seq: u64,
    sent_at: Instant,
    remaining: f64,
    /// Our cumulative cost up to and including request `seq` (429s excluded).
    cumulative: f64,
}

/// A learned window as paced by: stretched by the network's jitter.
fn padded(window: f64) -> Duration {
    Duration::from_secs_f64((window * (1.0 + WINDOW_SLACK_SHARE)).min(3600.0)) + WINDOW_SLACK
}

/// One request the service counts (admitted, or in flight and not yet refused).
#[derive(Debug, Clone, Copy)]
struct Counted {
    seq: u64,
    at: Instant,
    tokens: f64,
    /// When its answer came: from then on the service surely counted it.
    answered: Option<Instant>,
}

/// Our requests the service counts, oldest first, for the last [`HISTORY`].
#[derive(Debug, Default)]
struct History(VecDeque<Counted>);

impl History {
    fn cost(counted: &Counted, requests: bool) -> f64 {
        if requests { 1.0 } else { counted.tokens }
    }

    /// What we sent in `(from, to]`.
    fn between(&self, from: Instant, to: Instant, requests: bool) -> f64 {
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
    fn youngest_gone(&self, seq: u64, held: f64, requests: bool) -> Option<f64> {
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

    fn answered(&mut self, seq: u64, now: Instant) {
        if let Some(counted) = self.0.iter_mut().rev().find(|c| c.seq == seq) {
            counted.answered = Some(now);
        }
    }

    fn forget(&mut self, seq: u64) {
        if let Some(index) = self.0.iter().rposition(|c| c.seq == seq) {
            self.0.remove(index);
        }
    }

    fn trim(&mut self, now: Instant) {
        while self
            .0
            .front()
            .is_some_and(|c| now.saturating_duration_since(c.at) > HISTORY)
        {
            self.0.pop_front();
        }
    }
}

/// One counted quantity: requests or tokens.
#[derive(Debug, Default)]
pub(super) struct Dimension {
    /// Largest level seen or the limit header; 0 while unknown.
    pub capacity: f64,
    limit_header: bool,
    /// Refill rate in units per second, once measured (bucket model).
    pub rate: Option<f64>,
    last: Option<Observation>,
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

    /// How long a request of `cost` must wait, and the spacing to the next one if it goes now.
    fn check(
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
        if let Some(window) = self.windowed() {
            return self.check_window(window, cost, now, history, requests);
        }
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

    /// The window model: the window holds what we sent within it, plus what others held at the
    /// last answer, assumed to leave evenly over one window. A request that fits goes at once
    /// (the service allows the whole window in a burst); one that does not waits for the
    /// oldest of ours inside the window to leave it.
    fn check_window(
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

    /// An answer to request `seq` (sent at `sent_at`, costing `cost`) said `remaining`.
    #[allow(clippy::too_many_arguments)]
    fn observe(
        &mut self,
        seq: u64,
        sent_at: Instant,
        cost: f64,
        cumulative: f64,
        remaining: f64,
        limit: Option<f64>,
        reset: Option<Duration>,
        history: &History,
        requests: bool,
    ) {
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
            self.learn_window(seq, sent_at, cost, remaining, history, requests);
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
        if let Some(reset) = reset.filter(|r| !r.is_zero())
            && self.capacity - remaining >= 1.0
        {
            self.sample((self.capacity - remaining) / reset.as_secs_f64(), sent_at);
            return;
        }
        self.learn_refill(seq, sent_at, cost, cumulative, remaining);
    }

    /// What a sliding window's answer says: the window is no longer than the age of our
    /// youngest request it no longer holds, and whatever it holds beyond ours is others'.
    fn learn_window(
        &mut self,
        seq: u64,
        sent_at: Instant,
        cost: f64,
        remaining: f64,
        history: &History,
        requests: bool,
    ) {
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
    fn settle_window(&mut self) {
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

    /// The bucket model's refill rate, from the slope of `remaining + what we sent`.
    fn learn_refill(
        &mut self,
        seq: u64,
        sent_at: Instant,
        cost: f64,
        cumulative: f64,
        remaining: f64,
    ) {
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

    fn sample(&mut self, value: f64, at: Instant) {
        self.rate = Some(match self.rate {
            Some(rate) => rate * (1.0 - EWMA) + value * EWMA,
            None => value,
        });
        self.last_sample = Some(at);
    }

    /// A 429 to request `seq`: the bucket was empty when it arrived.
    fn exhausted(&mut self, seq: u64, sent_at: Instant, cumulative: f64) {
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

    /// A 429 while paced by the window. More than a few, and more than [`WINDOW_REFUSALS`] of
    /// the answers: the service is not a sliding window after all (a bucket refilled
    /// continuously makes the window look ever shorter); pace it as a bucket.
    fn refused(&mut self) {
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

    /// Whether this dimension, paced as a bucket, had too little left at its last answer for a
    /// request of `cost` (with `unseen` sent since).
    fn bucket_short(&self, cost: f64, unseen: f64) -> bool {
        self.windowed().is_none()
            && self
                .last
                .is_some_and(|last| last.remaining - unseen < cost + self.margin())
    }

    /// How much longer than learned the window must be for a request of `cost`, refused at
    /// `at`, to have found it full (alone with what others held): the age of our youngest
    /// request that would then still be inside it. `None`: the window as learned explains
    /// the refusal, or nothing can (others took more than they held).
    fn refusal_needs(
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

    /// Request `seq`, costing `cost`, was not admitted: it counts in no cumulative cost.
    fn forget(&mut self, seq: u64, cost: f64) {
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

/// One request we sent.
#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u64,
    tokens: f64,
    /// Cumulative requests and tokens up to and including this one (429s excluded).
    requests_through: f64,
    tokens_through: f64,
    in_flight: bool,
}

/// Both dimensions and the ledger of what we sent.
#[derive(Debug)]
pub(super) struct HeaderLearner {
    pub requests: Dimension,
    pub tokens: Dimension,
    /// What we sent, by sequence number, from the oldest request still needed.
    ledger: VecDeque<Sent>,
    /// When we sent what the service counts, for the window model.
    history: History,
    next_seq: u64,
    requests_sent: f64,
    tokens_sent: f64,
    next_allowed: Option<Instant>,
    /// Whether answers carry rate-limit headers; `None` until the first answer.
    pub headers_seen: Option<bool>,
    first_sent: Option<Instant>,
    last_answer: Option<Instant>,
}

impl Default for HeaderLearner {
    fn default() -> Self {
        HeaderLearner {
            requests: Dimension::default(),
            tokens: Dimension::default(),
            ledger: VecDeque::new(),
            history: History::default(),
            next_seq: 1,
            requests_sent: 0.0,
            tokens_sent: 0.0,
            next_allowed: None,
            headers_seen: None,
            first_sent: None,
            last_answer: None,
        }
    }
}

/// Until the first answer tells whether the service sends headers, one request probes alone
/// (for at most this long: a slow first answer must not stall the run).
const FIRST_ANSWER_WAIT: Duration = Duration::from_secs(2);

impl HeaderLearner {
    fn index(&self, seq: u64) -> Option<usize> {
        self.ledger.binary_search_by_key(&seq, |s| s.seq).ok()
    }

    /// What the service has not seen yet in `dim`'s last answer: our sends after it, and
    /// older ones still in flight.
    fn unseen(&self, dim: &Dimension, requests: bool) -> f64 {
        let Some(last) = dim.last else {
            return 0.0;
        };
        let total = if requests {
            self.requests_sent
        } else {
            self.tokens_sent
        };
        let older_in_flight: f64 = self
            .ledger
            .iter()
            .take_while(|s| s.seq < last.seq)
            .filter(|s| s.in_flight)
            .map(|s| if requests { 1.0 } else { s.tokens })
            .sum();
        total - last.cumulative + older_in_flight
    }

    /// Reserves a send of `tokens` now (returns its sequence number), or says how long to wait.
    /// `factor` scales the learned rates (429 feedback); `idle` means nothing is in flight, so
    /// a wait longer than `probe` becomes a probe once nothing was heard for that long: only
    /// an answer brings news (unless the wait is sure: a window's own requests leaving it).
    pub fn try_send(
        &mut self,
        tokens: f64,
        now: Instant,
        factor: f64,
        idle: bool,
        probe: Duration,
    ) -> Result<u64, Duration> {
        if self.headers_seen.is_none()
            && let Some(first) = self.first_sent
        {
            let waited = now.saturating_duration_since(first);
            if waited < FIRST_ANSWER_WAIT && !idle {
                return Err(Duration::from_millis(20).min(FIRST_ANSWER_WAIT - waited));
            }
        }
        let mut wait = self
            .next_allowed
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or_default();
        let mut gap = Duration::ZERO;
        let mut sure = false;
        let dims = [
            (&self.requests, 1.0, self.unseen(&self.requests, true), true),
            (
                &self.tokens,
                tokens,
                self.unseen(&self.tokens, false),
                false,
            ),
        ];
        for (dim, cost, unseen, requests) in dims {
            match dim.check(cost, now, unseen, factor, &self.history, requests) {
                Check::Go { gap: g } => gap = gap.max(g),
                Check::Wait { wait: w, sure: s } => {
                    if w > wait {
                        wait = w;
                        sure = s;
                    }
                }
            }
        }
        let quiet = self
            .last_answer
            .is_none_or(|t| now.saturating_duration_since(t) >= probe);
        if !(wait.is_zero() || idle && quiet && wait > probe && !sure) {
            return Err(wait);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.requests_sent += 1.0;
        self.tokens_sent += tokens;
        self.ledger.push_back(Sent {
            seq,
            tokens,
            requests_through: self.requests_sent,
            tokens_through: self.tokens_sent,
            in_flight: true,
        });
        self.history.0.push_back(Counted {
            seq,
            at: now,
            tokens,
            answered: None,
        });
        self.history.trim(now);
        self.first_sent.get_or_insert(now);
        self.next_allowed = Some(now + gap);
        Ok(seq)
    }

    fn trim(&mut self) {
        let keep_from = [self.requests.last, self.tokens.last]
            .iter()
            .flatten()
            .map(|o| o.seq)
            .min()
            .unwrap_or(0);
        // Keep what is in flight and what the next prediction starts from.
        while self.ledger.len() > 1
            && self
                .ledger
                .front()
                .is_some_and(|s| s.seq < keep_from && !s.in_flight)
        {
            self.ledger.pop_front();
        }
        // Bounded even if no answer carries headers.
        while self.ledger.len() > 100_000 {
            self.ledger.pop_front();
        }
    }

    /// The answer to request `seq` arrived with `headers`.
    pub fn answered(&mut self, seq: u64, sent_at: Instant, headers: &QuotaHeaders, now: Instant) {
        self.last_answer = Some(now);
        self.history.answered(seq, now);
        let Some(index) = self.index(seq) else {
            return;
        };
        self.ledger[index].in_flight = false;
        let sent = self.ledger[index];
        let any = headers.any();
        self.headers_seen = Some(self.headers_seen.unwrap_or(false) || any);
        if let Some(remaining) = headers.remaining_requests {
            self.requests.observe(
                seq,
                sent_at,
                1.0,
                sent.requests_through,
                remaining,
                headers.limit_requests,
                headers.reset_requests,
                &self.history,
                true,
            );
        }
        if let Some(remaining) = headers.remaining_tokens {
            self.tokens.observe(
                seq,
                sent_at,
                sent.tokens,
                sent.tokens_through,
                remaining,
                headers.limit_tokens,
                headers.reset_tokens,
                &self.history,
                false,
            );
        }
        self.trim();
    }

    /// Request `seq` ended without an answer from the quota's point of view (a transport
    /// error): it stays counted, but is no longer in flight.
    pub fn abandoned(&mut self, seq: u64) {
        // It may or may not have reached the service: never count it as surely seen.
        if let Some(index) = self.index(seq) {
            self.ledger[index].in_flight = false;
        }
        self.trim();
    }

    /// Request `seq` was answered 429 although the prediction had room.
    pub fn rate_limited(&mut self, seq: u64, sent_at: Instant, now: Instant) {
        self.last_answer = Some(now);
        self.history.forget(seq);
        let Some(index) = self.index(seq) else {
            return;
        };
        let tokens = self.ledger[index].tokens;
        self.ledger[index].in_flight = false;
        // Not admitted: it takes nothing from the quota, so it counts in no cumulative cost.
        for later in self.ledger.iter_mut().skip(index) {
            later.requests_through -= 1.0;
            later.tokens_through -= tokens;
        }
        self.requests_sent -= 1.0;
        self.tokens_sent -= tokens;
        self.requests.forget(seq, 1.0);
        self.tokens.forget(seq, tokens);
        self.requests.refused();
        self.tokens.refused();
        // A window that let the request through as learned is longer than learned: stretch
        // the one that needs the least stretching to explain the refusal - unless a dimension
        // paced as a bucket already explains it.
        let unseen = [
            self.unseen(&self.requests, true),
            self.unseen(&self.tokens, false),
        ];
        let bucket_short = [
            (&self.requests, 1.0, unseen[0]),
            (&self.tokens, tokens, unseen[1]),
        ]
        .iter()
        .any(|(dim, cost, unseen)| dim.bucket_short(*cost, *unseen));
        let needs = [
            self.requests
                .refusal_needs(1.0, sent_at, &self.history, true)
                .zip(self.requests.window)
                .map(|(age, window)| (age / window, age, true)),
            self.tokens
                .refusal_needs(tokens, sent_at, &self.history, false)
                .zip(self.tokens.window)
                .map(|(age, window)| (age / window, age, false)),
        ];
        if let Some((_, age, requests)) = needs
            .into_iter()
            .flatten()
            .filter(|_| !bucket_short)
            .min_by(|a, b| a.0.total_cmp(&b.0))
        {
            let dim = if requests {
                &mut self.requests
            } else {
                &mut self.tokens
            };
            dim.window_lo = dim.window_lo.max(age * REFUSAL_STRETCH);
            dim.settle_window();
        }
        let sent = self.ledger[index];
        self.requests.exhausted(seq, sent_at, sent.requests_through);
        self.tokens.exhausted(seq, sent_at, sent.tokens_through);
        self.trim();
    }

    /// Whether pacing by headers is in force.
    pub fn active(&self) -> bool {
        self.requests.known() || self.tokens.known()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(remaining_requests: f64, remaining_tokens: f64) -> QuotaHeaders {
        QuotaHeaders {
            remaining_requests: Some(remaining_requests),
            remaining_tokens: Some(remaining_tokens),
            ..QuotaHeaders::default()
        }
    }

    #[test]
    fn never_spends_the_last_of_the_remaining_count() {
        let mut learner = HeaderLearner::default();
        let t0 = Instant::now();
        let probe = Duration::from_secs(1);
        let seq = learner.try_send(10.0, t0, 1.0, true, probe).unwrap();
        // A 10-request window: 9 left after the first.
        learner.answered(seq, t0, &headers(9.0, 990.0), t0);
        assert_eq!(learner.requests.capacity, 10.0);
        assert_eq!(learner.tokens.capacity, 1_000.0);
        // With no answer coming back, the headroom is spent over a couple of seconds (short
        // waits between requests), then the prediction says wait for the refill: the margin
        // is kept.
        let mut sent = 0;
        let mut now = t0;
        for _ in 0..40 {
            match learner.try_send(10.0, now, 1.0, false, probe) {
                Ok(_) => sent += 1,
                Err(wait) if wait < Duration::from_secs(1) => now += wait,
                Err(_) => break,
            }
        }
        assert!((7..=9).contains(&sent), "sent {sent}");
    }

    #[test]
    fn learns_the_refill_rate_from_remaining_counts() {
        let mut learner = HeaderLearner::default();
        let t0 = Instant::now();
        // A service refilling 10 requests/s, bucket of 20, and we send 12/s: the remaining
        // count falls by 2 each second.
        let mut remaining = 20.0;
        let mut now = t0;
        for i in 0..60u64 {
            let seq = learner
                .try_send(1.0, now, 1.0, true, Duration::ZERO)
                .unwrap();
            assert_eq!(seq, i + 1);
            remaining = f64::min(remaining - 1.0 + 10.0 / 12.0, 20.0);
            learner.answered(seq, now, &headers(remaining.floor().max(0.0), 1e6), now);
            now += Duration::from_secs_f64(1.0 / 12.0);
        }
        let rate = learner.requests.rate.expect("measured");
        assert!((rate - 10.0).abs() < 1.5, "rate {rate}");
    }

    /// Microsoft's Azure OpenAI API Simulator: at most `limit` requests in any `window`
    /// (sliding), `remaining` = limit - requests in the window (this one included).
    struct SlidingWindow {
        limit: usize,
        window: Duration,
        admitted: VecDeque<Instant>,
    }

    impl SlidingWindow {
        fn arrive(&mut self, now: Instant) -> Option<f64> {
            while self
                .admitted
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
            {
                self.admitted.pop_front();
            }
            (self.admitted.len() < self.limit).then(|| {
                self.admitted.push_back(now);
                (self.limit - self.admitted.len()) as f64
            })
        }
    }

    #[test]
    fn a_sliding_window_is_learned_up_to_its_rate() {
        // 6 requests per 10 s (the simulator's 6,000 TPM deployment), answered at once, with
        // several requests always waiting (not idle: no probes). Its remaining count does not
        // refill smoothly: a burst's slots all come back when the burst leaves the window, and
        // the pace must learn that rate (0.6/s) rather than stay at its first guess.
        let mut service = SlidingWindow {
            limit: 6,
            window: Duration::from_secs(10),
            admitted: VecDeque::new(),
        };
        let mut learner = HeaderLearner::default();
        let t0 = Instant::now();
        let mut now = t0;
        let (mut admitted, mut limited) = (0, 0);
        while now < t0 + Duration::from_secs(300) {
            match learner.try_send(1.0, now, 1.0, false, Duration::from_secs(1)) {
                Ok(seq) => match service.arrive(now) {
                    Some(remaining) => {
                        admitted += 1;
                        learner.answered(seq, now, &headers(remaining, 1e6), now);
                    }
                    None => {
                        limited += 1;
                        learner.rate_limited(seq, now, now);
                        now += Duration::from_secs(1);
                    }
                },
                Err(wait) => now += wait.max(Duration::from_millis(1)),
            }
        }
        // The bound is 180 in 300 s. Before the window model 18 were admitted: the first
        // slope was taken while the count had not yet refilled (a sliding window gives a
        // burst's slots back only when the burst leaves the window), so the refill rate fell
        // to its floor (capacity / 600 s).
        assert!(
            admitted >= 150,
            "admitted {admitted} of 180 ({limited} 429s)"
        );
        assert!(
            limited * 20 <= admitted,
            "{limited} 429s for {admitted} admitted"
        );
    }

    #[test]
    fn reset_headers_give_the_rate_directly() {
        let mut learner = HeaderLearner::default();
        let t0 = Instant::now();
        let seq = learner
            .try_send(1.0, t0, 1.0, true, Duration::ZERO)
            .unwrap();
        learner.answered(
            seq,
            t0,
            &QuotaHeaders {
                limit_requests: Some(600.0),
                remaining_requests: Some(599.0),
                reset_requests: Some(Duration::from_millis(100)),
                ..QuotaHeaders::default()
            },
            t0,
        );
        // 1 request comes back in 100 ms: 10 per second (600 per minute).
        assert!((learner.requests.rate.unwrap() - 10.0).abs() < 1e-9);
    }
}
