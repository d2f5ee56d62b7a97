//! Learning a deployment's quota from the rate-limit headers of its answers.
//!
//! Azure OpenAI sends `x-ratelimit-remaining-requests` / `-tokens` on every answer (and the
//! limits on some); OpenAI sends `x-ratelimit-limit-*`, `-remaining-*` and `-reset-*`
//! ([`QuotaHeaders`]). The learner keeps a ledger of what we sent, and one [`Dimension`] for
//! requests and one for tokens, each learning its capacity and whether the service counts
//! over a sliding window or refills a bucket (`dimension/`). Before each request it asks both
//! whether the request fits now; each answer, 429 or transport error is told to both.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::dimension::{Answer, Check, Dimension};
use super::headers::QuotaHeaders;
use super::history::{Counted, History};

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
            let answer = Answer {
                seq,
                sent_at,
                cost: 1.0,
                cumulative: sent.requests_through,
                remaining,
                limit: headers.limit_requests,
                reset: headers.reset_requests,
            };
            self.requests.observe(&answer, &self.history, true);
        }
        if let Some(remaining) = headers.remaining_tokens {
            let answer = Answer {
                seq,
                sent_at,
                cost: sent.tokens,
                cumulative: sent.tokens_through,
                remaining,
                limit: headers.limit_tokens,
                reset: headers.reset_tokens,
            };
            self.tokens.observe(&answer, &self.history, false);
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
        // Whatever the counts said, something binds: both are watched again from scratch. A
        // count that was not binding is not taken to be the one that ran out, though: its
        // level stays what its answers said.
        let binding = [self.requests.binding(), self.tokens.binding()];
        self.requests.bound();
        self.tokens.bound();
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
            dim.stretch_window(age);
        }
        let sent = self.ledger[index];
        if binding[0] {
            self.requests.exhausted(seq, sent_at, sent.requests_through);
        }
        if binding[1] {
            self.tokens.exhausted(seq, sent_at, sent.tokens_through);
        }
        self.trim();
    }

    /// Whether the answers carried a quota the learner understood (binding or not).
    pub fn heard(&self) -> bool {
        self.requests.known() || self.tokens.known()
    }

    /// Whether pacing by headers is in force: a dimension known, and binding.
    pub fn active(&self) -> bool {
        [&self.requests, &self.tokens]
            .iter()
            .any(|dim| dim.known() && dim.binding())
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
    fn a_count_our_requests_never_move_stops_pacing_until_a_429() {
        // A gateway's constant remaining count: a bucket of 101 at first sight, not binding
        // once 8 answers in a row left it where it was although it had room for them.
        let mut learner = HeaderLearner::default();
        let constant = QuotaHeaders {
            remaining_requests: Some(100.0),
            ..QuotaHeaders::default()
        };
        let mut now = Instant::now();
        let mut send = |learner: &mut HeaderLearner| loop {
            match learner.try_send(1.0, now, 1.0, false, Duration::from_secs(1)) {
                Ok(seq) => return (seq, now),
                Err(wait) => now += wait.max(Duration::from_millis(1)),
            }
        };
        for _ in 0..9 {
            let (seq, at) = send(&mut learner);
            assert!(learner.requests.binding());
            learner.answered(seq, at, &constant, at);
        }
        assert_eq!(learner.requests.capacity, 101.0);
        assert!(!learner.requests.binding());
        assert!(
            !learner.active(),
            "a quota that does not bind paces nothing"
        );
        // A 429 after all: the count binds again, to be learned from the next answers.
        let (seq, at) = send(&mut learner);
        learner.rate_limited(seq, at, at);
        assert!(learner.requests.binding());
        assert!(learner.active());
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
