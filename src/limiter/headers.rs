//! Learning a deployment's quota from the rate-limit headers of its answers.
//!
//! Azure OpenAI sends `x-ratelimit-remaining-requests` / `-tokens` on every answer (and the
//! limits on some); OpenAI sends `x-ratelimit-limit-*`, `-remaining-*` and `-reset-*`. Each
//! dimension (requests, tokens) is modelled as a bucket of capacity `C` that the service refills
//! at a rate `rho`, which we never see directly:
//!
//! - `C` is the limit header when there is one, else the largest `remaining + cost` seen.
//! - `rho` comes from the reset header when there is one (`(C - remaining) / reset`: the time
//!   until the bucket is full again), else from what came back between two answers: with
//!   `X = remaining + (what we sent up to that request)`, the slope of `X` over time is the
//!   refill rate *minus what others sharing the deployment consumed* - exactly the share left
//!   for us, which is why shards of one run need no coordination.
//! - Before a request is sent the level is predicted: the last `remaining`, plus the refill
//!   since, minus what we sent since. A request goes only if the level after it stays above a
//!   margin: the remaining count never reaches zero inside its window.
//!
//! Between answers the headroom is spent over a short horizon rather than all at once, so that
//! several clients reading the same `remaining` do not all spend it together.

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
/// The level kept in reserve, as a share of the capacity (jitter between our clock and the
/// service's, and other clients).
const MARGIN_SHARE: f64 = 0.03;
/// Refill samples are taken over at least this span...
const MIN_SPAN: Duration = Duration::from_secs(1);
/// ...and at most this one (older points are dropped: the share left to us changes).
const MAX_SPAN: Duration = Duration::from_secs(30);
/// Weight of a new refill sample.
const EWMA: f64 = 0.3;

#[derive(Debug, Clone, Copy)]
struct Observation {
    seq: u64,
    sent_at: Instant,
    remaining: f64,
    /// Our cumulative cost up to and including request `seq` (429s excluded).
    cumulative: f64,
}

/// One counted quantity: requests or tokens.
#[derive(Debug, Default)]
pub(super) struct Dimension {
    /// Largest level seen or the limit header; 0 while unknown.
    pub capacity: f64,
    limit_header: bool,
    /// Refill rate in units per second, once measured.
    pub rate: Option<f64>,
    last: Option<Observation>,
    /// (request, send time, remaining + cumulative cost) since the bucket was last seen full.
    points: VecDeque<(u64, Instant, f64)>,
    last_sample: Option<Instant>,
    /// Since when every answer found the bucket full, and our cumulative cost then.
    full_since: Option<(Instant, f64)>,
}

impl Dimension {
    pub fn known(&self) -> bool {
        self.capacity > 0.0 && self.last.is_some()
    }

    /// The refill rate used for pacing: measured, else a window of a minute (the longest any
    /// service uses: the slowest safe guess).
    pub fn pace_rate(&self) -> f64 {
        self.rate.unwrap_or(self.capacity / 60.0).max(1e-6)
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
    fn check(&self, cost: f64, now: Instant, unseen: f64, factor: f64) -> Check {
        if !self.known() {
            return Check::Go {
                gap: Duration::ZERO,
            };
        }
        let level = self.level(now, unseen, factor);
        let margin = self.margin();
        let rate = self.pace_rate() * factor;
        let short = margin + cost - level;
        if short > 0.0 && level < self.capacity {
            return Check::Wait(Duration::from_secs_f64((short / rate).min(3600.0)));
        }
        let spendable = (level - cost - margin).max(0.0);
        let allowed = rate + spendable / HORIZON_SECS;
        Check::Go {
            gap: Duration::from_secs_f64((cost / allowed).min(3600.0)),
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
    ) {
        match limit {
            Some(limit) if limit > 0.0 => {
                self.capacity = limit;
                self.limit_header = true;
            }
            _ if !self.limit_header => self.capacity = self.capacity.max(remaining + cost),
            _ => {}
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
        let x = remaining + cumulative;
        if remaining + cost >= self.capacity - 0.5 {
            // The bucket was full when this request arrived: what refilled before is lost, so
            // the slope starts again from here. Full for a while although we kept sending:
            // it refills at least as fast as we sent.
            self.points.clear();
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
            if span >= MIN_SPAN && due {
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
    Go { gap: Duration },
    Wait(Duration),
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
    /// an answer brings news.
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
        let dims = [
            (&self.requests, 1.0, self.unseen(&self.requests, true)),
            (&self.tokens, tokens, self.unseen(&self.tokens, false)),
        ];
        for (dim, cost, unseen) in dims {
            match dim.check(cost, now, unseen, factor) {
                Check::Go { gap: g } => gap = gap.max(g),
                Check::Wait(w) => wait = wait.max(w),
            }
        }
        let quiet = self
            .last_answer
            .is_none_or(|t| now.saturating_duration_since(t) >= probe);
        if !(wait.is_zero() || idle && quiet && wait > probe) {
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
            );
        }
        self.trim();
    }

    /// Request `seq` ended without an answer from the quota's point of view (a transport
    /// error): it stays counted, but is no longer in flight.
    pub fn abandoned(&mut self, seq: u64) {
        if let Some(index) = self.index(seq) {
            self.ledger[index].in_flight = false;
        }
        self.trim();
    }

    /// Request `seq` was answered 429 although the prediction had room.
    pub fn rate_limited(&mut self, seq: u64, sent_at: Instant, now: Instant) {
        self.last_answer = Some(now);
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
    #[ignore = "known failure (issue 16): a sliding window is learned at ~6% of its rate; see BENCHMARKS.md"]
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
        // The bound is 180 in 300 s. Today 18 are admitted: the first slope is taken while the
        // count has not yet refilled (a sliding window gives a burst's slots back only when
        // the burst leaves the window), so the rate falls to its floor (capacity / 600 s); the
        // bucket is then found full, which clears the slope unmeasured, and the gap set at
        // each send from the empty-looking count (100 s) outlives the refill the answer
        // reports. Taking a raise-only refill sample before clearing gives 93; also clearing
        // the gap on each answer gives 24 (it bursts, and the floor sample wins). Not fixed.
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
