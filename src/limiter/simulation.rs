//! Services that enforce a quota the ways real ones do, in simulated time, and a client loop
//! driving the header learner the way `QuotaLimiter::acquire` does: the learner's behaviour
//! over minutes of traffic, checked in milliseconds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::aimd::Aimd;
use super::headers::QuotaHeaders;
use super::learner::HeaderLearner;
use super::{PROBE_AFTER, RECHECK};

/// What a service said to one request.
pub enum Verdict {
    Admitted(QuotaHeaders),
    Limited { retry_after: Duration },
}

pub trait Service {
    fn arrive(&mut self, now: Instant, tokens: f64) -> Verdict;
}

/// Azure's way (and Microsoft's API simulator's): at most `limit` in any `window`, sliding;
/// the remaining count is the limit less what the window holds, this request included.
pub struct SlidingWindow {
    pub limit: f64,
    pub window: Duration,
    admitted: VecDeque<(Instant, f64)>,
}

impl SlidingWindow {
    pub fn new(limit: f64, window: Duration) -> SlidingWindow {
        SlidingWindow {
            limit,
            window,
            admitted: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while self
            .admitted
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= self.window)
        {
            self.admitted.pop_front();
        }
    }

    fn used(&self) -> f64 {
        self.admitted.iter().map(|(_, c)| c).sum()
    }

    /// Room for `cost` now; else how long until there is.
    fn room(&mut self, now: Instant, cost: f64) -> Result<(), Duration> {
        self.expire(now);
        let mut used = self.used();
        if used + cost <= self.limit {
            return Ok(());
        }
        for (t, c) in &self.admitted {
            used -= c;
            if used + cost <= self.limit {
                return Err((*t + self.window).saturating_duration_since(now));
            }
        }
        Err(self.window)
    }

    fn take(&mut self, now: Instant, cost: f64) -> f64 {
        self.admitted.push_back((now, cost));
        (self.limit - self.used()).max(0.0).floor()
    }
}

/// A deployment limiting requests and tokens with a sliding window each.
pub struct Windows {
    pub requests: SlidingWindow,
    pub tokens: SlidingWindow,
}

impl Service for Windows {
    fn arrive(&mut self, now: Instant, tokens: f64) -> Verdict {
        let wait = [
            self.requests.room(now, 1.0).err(),
            self.tokens.room(now, tokens).err(),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(retry_after) = wait {
            return Verdict::Limited { retry_after };
        }
        Verdict::Admitted(QuotaHeaders {
            remaining_requests: Some(self.requests.take(now, 1.0)),
            remaining_tokens: Some(self.tokens.take(now, tokens)),
            ..QuotaHeaders::default()
        })
    }
}

/// A bucket of `capacity` refilled continuously at `rate` a second (the test server's way).
pub struct Bucket {
    pub capacity: f64,
    pub rate: f64,
    level: f64,
    last: Option<Instant>,
}

impl Bucket {
    pub fn new(capacity: f64, rate: f64) -> Bucket {
        Bucket {
            capacity,
            rate,
            level: capacity,
            last: None,
        }
    }
}

impl Service for Bucket {
    fn arrive(&mut self, now: Instant, _tokens: f64) -> Verdict {
        let last = *self.last.get_or_insert(now);
        self.level = (self.level + self.rate * now.saturating_duration_since(last).as_secs_f64())
            .min(self.capacity);
        self.last = Some(now);
        if self.level < 1.0 {
            return Verdict::Limited {
                retry_after: Duration::from_secs_f64((1.0 - self.level) / self.rate),
            };
        }
        self.level -= 1.0;
        Verdict::Admitted(QuotaHeaders {
            remaining_requests: Some(self.level.floor()),
            remaining_tokens: Some(1e9),
            ..QuotaHeaders::default()
        })
    }
}

/// A gateway in front of a server with no quota (or one far above our pace), as proxies in front
/// of OpenAI-compatible servers do: every answer says the same remaining count, whatever was
/// sent, and nothing is ever refused.
pub struct ConstantRemaining(pub f64);

impl Service for ConstantRemaining {
    fn arrive(&mut self, _now: Instant, _tokens: f64) -> Verdict {
        Verdict::Admitted(QuotaHeaders {
            remaining_requests: Some(self.0),
            ..QuotaHeaders::default()
        })
    }
}

/// `service`, but its answers report this constant remaining token count.
pub struct ConstantTokens<S>(pub S, pub f64);

impl<S: Service> Service for ConstantTokens<S> {
    fn arrive(&mut self, now: Instant, tokens: f64) -> Verdict {
        match self.0.arrive(now, tokens) {
            Verdict::Admitted(headers) => Verdict::Admitted(QuotaHeaders {
                remaining_tokens: Some(self.1),
                ..headers
            }),
            refused => refused,
        }
    }
}

/// Another client sharing the deployment: from `start` on, it sends `rate` requests a second
/// (of `tokens` each), whether or not they are admitted.
pub struct Shared<S> {
    pub service: S,
    pub start: Duration,
    pub rate: f64,
    pub tokens: f64,
    next: Option<Instant>,
    t0: Option<Instant>,
}

impl<S: Service> Shared<S> {
    pub fn new(service: S, start: Duration, rate: f64, tokens: f64) -> Shared<S> {
        Shared {
            service,
            start,
            rate,
            tokens,
            next: None,
            t0: None,
        }
    }
}

impl<S: Service> Service for Shared<S> {
    fn arrive(&mut self, now: Instant, tokens: f64) -> Verdict {
        let t0 = *self.t0.get_or_insert(now);
        let mut next = *self.next.get_or_insert(t0 + self.start);
        while next <= now {
            let _ = self.service.arrive(next, self.tokens);
            next += Duration::from_secs_f64(1.0 / self.rate);
        }
        self.next = Some(next);
        self.service.arrive(now, tokens)
    }
}

/// What a simulated run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub admitted: u64,
    pub limited: u64,
    /// Admitted after `late_from`.
    pub admitted_late: u64,
}

/// The simulated client: always more work than the quota allows.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub duration: Duration,
    /// Each request is answered this long after it is sent (judged at half of it).
    pub latency: Duration,
    pub max_in_flight: usize,
    /// Tokens each request costs.
    pub tokens: f64,
    /// Admitted requests are also counted from this long on.
    pub late_from: Duration,
    /// Requests per minute the user told: sends are also spaced evenly at that rate.
    pub told_rpm: Option<u32>,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            duration: Duration::from_secs(60),
            latency: Duration::from_millis(20),
            max_in_flight: 8,
            tokens: 50.0,
            late_from: Duration::ZERO,
            told_rpm: None,
        }
    }
}

/// Runs `client` against `service`, paced by a header learner and the 429 feedback as
/// `QuotaLimiter::acquire` does.
pub fn drive(service: &mut dyn Service, client: Client) -> Outcome {
    let Client {
        duration,
        latency,
        max_in_flight,
        tokens,
        late_from,
        told_rpm,
    } = client;
    let t0 = Instant::now();
    let mut now = t0;
    let mut learner = HeaderLearner::default();
    let spacing = told_rpm.map(|rpm| Duration::from_secs_f64(60.0 / f64::from(rpm)));
    let mut configured_next = t0;
    let mut aimd = Aimd::new(max_in_flight, t0);
    let mut in_flight: Vec<(Instant, u64, Instant, Verdict)> = Vec::new();
    let mut paused_until = t0;
    let mut outcome = Outcome::default();
    while now < t0 + duration {
        // Answers due by now.
        in_flight.sort_by_key(|(at, ..)| *at);
        while in_flight.first().is_some_and(|(at, ..)| *at <= now) {
            let (at, seq, sent_at, verdict) = in_flight.remove(0);
            match verdict {
                Verdict::Admitted(headers) => {
                    learner.answered(seq, sent_at, &headers, at);
                    aimd.on_admitted(at);
                }
                Verdict::Limited { retry_after } => {
                    paused_until = paused_until.max(at + retry_after);
                    learner.rate_limited(seq, sent_at, at);
                    aimd.on_rate_limited(at, false);
                }
            }
        }
        let next_answer = in_flight.iter().map(|(at, ..)| *at).min();
        let mut wake = next_answer.unwrap_or(now + RECHECK);
        if now < paused_until {
            wake = wake.min(paused_until);
        } else if now < configured_next {
            wake = wake.min(configured_next);
        } else if in_flight.len() < aimd.in_flight_cap {
            // As in `QuotaLimiter::acquire`, a request waiting for the learner holds a slot in
            // flight: with always more work than slots, it is idle only with a single slot.
            let idle = aimd.in_flight_cap <= 1;
            match learner.try_send(tokens, now, aimd.factor, idle, PROBE_AFTER) {
                Ok(seq) => {
                    if let Some(spacing) = spacing {
                        configured_next = now + spacing;
                    }
                    let verdict = service.arrive(now + latency / 2, tokens);
                    match &verdict {
                        Verdict::Admitted(_) => {
                            outcome.admitted += 1;
                            if now >= t0 + late_from {
                                outcome.admitted_late += 1;
                            }
                        }
                        Verdict::Limited { .. } => outcome.limited += 1,
                    }
                    in_flight.push((now + latency, seq, now, verdict));
                    continue;
                }
                Err(wait) => wake = wake.min(now + wait.min(RECHECK)),
            }
        }
        now = wake.max(now + Duration::from_micros(100));
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn simulator() -> Windows {
        // Microsoft's API simulator at 6,000 tokens/min: 6 requests in any 10 s, 6,000 tokens
        // in any 60 s.
        Windows {
            requests: SlidingWindow::new(6.0, secs(10.0)),
            tokens: SlidingWindow::new(6_000.0, secs(60.0)),
        }
    }

    fn azure() -> Windows {
        // 1,200 requests/min evaluated over 1 s.
        Windows {
            requests: SlidingWindow::new(20.0, secs(1.0)),
            tokens: SlidingWindow::new(1e9, secs(60.0)),
        }
    }

    /// `outcome` admitted at least `share` of `bound` (counting from `late` if it is set),
    /// with at most `refused` 429s.
    fn check(name: &str, outcome: Outcome, late: bool, bound: f64, share: f64, refused: u64) {
        let admitted = if late {
            outcome.admitted_late
        } else {
            outcome.admitted
        } as f64;
        assert!(
            admitted >= bound * share && outcome.limited <= refused,
            "{name}: admitted {admitted} of {bound}, {} 429s (at least {share} of the bound and \
             at most {refused} 429s expected)",
            outcome.limited
        );
    }

    fn minutes(n: f64) -> Client {
        Client {
            duration: secs(60.0 * n),
            ..Client::default()
        }
    }

    #[test]
    fn a_sliding_window_is_paced_at_its_rate_once_learned() {
        // Requests bind: 6 in each of 30 windows. Learning the window costs about one (the
        // first refill is awaited at the slowest rate any service uses), then it is exact.
        let o = drive(&mut simulator(), minutes(5.0));
        check("requests bind", o, false, 6.0 * 30.0, 0.97, 1);
        // Tokens bind: 15 requests of 390 tokens in each of 5 minutes; a 429 for each window.
        let tokens = Client {
            tokens: 390.0,
            ..minutes(5.0)
        };
        let o = drive(&mut simulator(), tokens);
        check("tokens bind", o, false, 15.0 * 5.0, 0.98, 2);
        // A short window: its 20 slots are learned from the answers alone.
        let o = drive(&mut azure(), minutes(1.0));
        check("one-second window", o, false, 20.0 * 60.0, 0.95, 0);
    }

    #[test]
    fn a_window_told_its_quota_runs_with_no_429() {
        // The simulator told `--rpm 36` (one request every 1.67 s, the configured pace): the
        // configured pace never overruns the window, and the learner's cautious first guess
        // (before the window is seen) costs at most the first window.
        let told = Client {
            told_rpm: Some(36),
            ..minutes(5.0)
        };
        let o = drive(&mut simulator(), told);
        check("told", o, false, 0.6 * 300.0, 0.9, 0);
    }

    /// From 20 s on another client sends 10 requests/s into `service`'s 20/s: ours is the other
    /// half, counted from 30 s (once the change is seen).
    fn shared_from_20s<S: Service>(service: S) -> Outcome {
        let late = Client {
            late_from: secs(30.0),
            ..minutes(1.0)
        };
        drive(&mut Shared::new(service, secs(20.0), 10.0, 50.0), late)
    }

    #[test]
    fn a_window_shared_with_another_client_gives_the_share_left() {
        let o = shared_from_20s(azure());
        check("shared window", o, true, 10.0 * 30.0, 0.9, 3);
    }

    #[test]
    fn a_bucket_without_reset_headers_is_found_out_and_paced_as_a_bucket() {
        // Azure-style headers (no reset time) on a bucket refilled continuously: the window
        // the answers suggest keeps shrinking and 429s follow, so the learner falls back to
        // the refill rate.
        let o = drive(&mut Bucket::new(20.0, 20.0), minutes(1.0));
        check("bucket", o, false, 20.0 + 20.0 * 60.0, 0.95, 12);
        let o = shared_from_20s(Bucket::new(20.0, 20.0));
        check("shared bucket", o, true, 10.0 * 30.0, 0.95, 15);
    }

    /// A client answered at once: 8 in flight, answered in 2 ms, at most 4,000 requests a
    /// second whatever the service says.
    fn at_once(seconds: f64) -> Client {
        Client {
            duration: secs(seconds),
            latency: Duration::from_millis(2),
            ..Client::default()
        }
    }

    #[test]
    fn a_remaining_count_that_never_falls_does_not_pace() {
        // The server: `x-ratelimit-remaining-requests: 100` on every answer. Taken as
        // a quota of 100 (a minute's window at first, then a bucket refilled as fast as we
        // went), it paced the run at 101 a minute rising slowly: 51 requests in the first
        // second. The in-flight cap is the only bound here.
        let o = drive(&mut ConstantRemaining(100.0), at_once(1.0));
        check("first second", o, false, 4_000.0, 0.6, 0);
        let o = drive(&mut ConstantRemaining(100.0), at_once(10.0));
        check("ten seconds", o, false, 40_000.0, 0.95, 0);
        // A constant count of tokens the same way, while the requests' window binds: it
        // alone paces.
        let windows = Windows {
            requests: SlidingWindow::new(2_000.0, secs(1.0)),
            tokens: SlidingWindow::new(1e12, secs(60.0)),
        };
        let o = drive(&mut ConstantTokens(windows, 30_000.0), at_once(10.0));
        check("requests bind, tokens do not", o, false, 20_000.0, 0.9, 0);
    }

    #[test]
    fn a_bucket_that_binds_only_past_the_first_pace_is_found_out_by_probing() {
        // 100 requests refilled at 200/s, the client able to send 400/s: the count stays full
        // at the cautious first pace (not binding there), so the learner probes upward; the
        // count falls once the pace passes the refill, and the bucket paces the rest.
        let o = drive(&mut Bucket::new(100.0, 200.0), minutes(1.0));
        check("fast bucket", o, false, 100.0 + 200.0 * 60.0, 0.95, 5);
    }
}
