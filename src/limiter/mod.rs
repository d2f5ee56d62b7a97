//! Request and token quotas per deployment.
//!
//! One `QuotaLimiter` per deployment. Every request passes three gates:
//! - the requests in flight, capped by the configuration and lowered by 429s (`aimd`);
//! - the configured quota, a hard ceiling (`buckets`, governor);
//! - what was learned about the deployment's real quota: from the rate-limit headers of its
//!   answers when it sends them (`learner`, reading `headers`; each of requests and tokens is
//!   a `dimension`, a sliding window or a refilled bucket, over our `history` of sends), else
//!   from its 429s (`aimd`).
//!
//! A configured quota is never exceeded; learning can only make the pace slower than it. What
//! the limiter learned is kept as a bounded trace (`trace`) for the run's results and report.

mod aimd;
mod buckets;
mod dimension;
mod headers;
mod history;
mod learner;
#[cfg(test)]
mod simulation;
mod trace;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use headers::QuotaHeaders;
pub use trace::{DeploymentQuota, PaceSample, PacingMode, Quantity, QuotaTrace, TraceEvent};

use aimd::Aimd;
use buckets::{Buckets, buckets_for};
use learner::HeaderLearner;
use trace::{PaceNow, Recorder};

/// A deployment's quota as the user configured it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuotaConfig {
    /// Requests per minute; `None` means no request limit.
    pub rpm: Option<u32>,
    /// Tokens per minute (prompt estimate + max_tokens, the way Azure counts); `None`: no limit.
    pub tpm: Option<u32>,
    /// Requests in flight at once.
    pub max_in_flight: usize,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            rpm: None,
            tpm: None,
            max_in_flight: 8,
        }
    }
}

impl QuotaConfig {
    /// The share of this quota one of `count` shards may use.
    pub fn split(self, count: u32) -> QuotaConfig {
        let count = count.max(1);
        QuotaConfig {
            rpm: self.rpm.map(|r| (r / count).max(1)),
            tpm: self.tpm.map(|t| (t / count).max(1)),
            max_in_flight: (self.max_in_flight / count as usize).max(1),
        }
    }

    fn configured(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some()
    }
}

/// Counters a run reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimiterStats {
    pub requests: u64,
    pub rate_limited: u64,
    pub slowdowns: u64,
}

/// The lowest share of the configured rate adaptive slowdown goes to.
const MIN_RATE_FACTOR: f64 = 0.1;
/// Each unexpected 429 multiplies the configured rate by this.
const SLOWDOWN: f64 = 0.8;
/// A minute without 429s gives back this factor of rate.
const RECOVERY: f64 = 1.1;
/// With nothing in flight, a wait longer than this becomes a probe: only answers bring news.
const PROBE_AFTER: Duration = Duration::from_secs(1);
/// Waits are re-checked at least this often (answers may bring room earlier).
const RECHECK: Duration = Duration::from_millis(50);

struct State {
    learner: HeaderLearner,
    aimd: Aimd,
    recorder: Recorder,
    in_flight: usize,
    paused_until: Option<Instant>,
    /// Share of the configured rate (429s lower it, quiet minutes raise it).
    factor: f64,
    last_change: Instant,
    /// Earliest next send when pacing by the rate 429s taught.
    rate_next: Option<Instant>,
}

impl State {
    /// Whether each quantity's reported quota binds (`None` while unknown).
    fn binding(&self) -> [(Quantity, Option<bool>); 2] {
        let binding = |dim: &dimension::Dimension| dim.known().then(|| dim.binding());
        [
            (Quantity::Requests, binding(&self.learner.requests)),
            (Quantity::Tokens, binding(&self.learner.tokens)),
        ]
    }

    /// Records in the trace what changed since `before`.
    fn record_binding(&mut self, now: Instant, before: [(Quantity, Option<bool>); 2]) {
        for ((quantity, was), (_, is)) in before.into_iter().zip(self.binding()) {
            if let Some(is) = is
                && was.is_some_and(|was| was != is)
            {
                self.recorder.binding(now, quantity, is);
            }
        }
    }

    fn pace_now(&self, config: &QuotaConfig) -> PaceNow {
        let factor = self.aimd.factor;
        let learned = |dim: &dimension::Dimension| {
            (dim.known() && dim.binding()).then(|| dim.pace_per_minute(factor))
        };
        let configured = |limit: Option<u32>| limit.map(|l| l as f64 * self.factor);
        let min = |a: Option<f64>, b: Option<f64>| a.into_iter().chain(b).reduce(f64::min);
        PaceNow {
            pace_rpm: min(
                min(
                    learned(&self.learner.requests),
                    self.aimd.rate.map(|r| r * 60.0),
                ),
                configured(config.rpm),
            ),
            pace_tpm: min(learned(&self.learner.tokens), configured(config.tpm)),
            in_flight_cap: self.aimd.in_flight_cap,
        }
    }
}

pub struct QuotaLimiter {
    config: QuotaConfig,
    buckets: RwLock<Arc<Buckets>>,
    state: Mutex<State>,
    room: Notify,
    slowdowns: AtomicU64,
}

/// Held while a request is in flight; tell it how the request ended.
pub struct QuotaPermit {
    limiter: Arc<QuotaLimiter>,
    seq: u64,
    sent_at: Instant,
}

impl QuotaPermit {
    /// The service answered (not 429); `headers` is what it said about the quota.
    pub fn answered(&self, headers: &QuotaHeaders) {
        self.limiter.answered(self, headers);
    }

    /// The service answered 429, asking to wait `retry_after`.
    pub fn rate_limited(&self, retry_after: Option<Duration>) {
        self.limiter.rate_limited(self, retry_after);
    }
}

impl Drop for QuotaPermit {
    fn drop(&mut self) {
        if let Ok(mut state) = self.limiter.state.lock() {
            state.in_flight = state.in_flight.saturating_sub(1);
            if self.seq > 0 {
                // Answered permits are already out of flight; this covers transport errors.
                state.learner.abandoned(self.seq);
            }
        }
        self.limiter.room.notify_waiters();
    }
}

impl QuotaLimiter {
    pub fn new(config: QuotaConfig) -> QuotaLimiter {
        let now = Instant::now();
        QuotaLimiter {
            buckets: RwLock::new(Arc::new(buckets_for(&config, 1.0))),
            state: Mutex::new(State {
                learner: HeaderLearner::default(),
                aimd: Aimd::new(config.max_in_flight, now),
                recorder: Recorder::new(now),
                in_flight: 0,
                paused_until: None,
                factor: 1.0,
                last_change: now,
                rate_next: None,
            }),
            room: Notify::new(),
            config,
            slowdowns: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> QuotaConfig {
        self.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind: keep using them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request estimated at `tokens` may be sent: no 429 pause in force, a slot
    /// in flight, room in the configured buckets and in what was learned of the real quota.
    pub async fn acquire(self: &Arc<Self>, tokens: u32) -> QuotaPermit {
        loop {
            let pause = self.state().paused_until;
            match pause {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until.into()).await;
                }
                _ => break,
            }
        }
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.state();
                if state.in_flight < state.aimd.in_flight_cap {
                    state.in_flight += 1;
                    break;
                }
            }
            notified.await;
        }
        let mut permit = QuotaPermit {
            limiter: Arc::clone(self),
            seq: 0,
            sent_at: Instant::now(),
        };
        let buckets = self.buckets.read().map(|b| Arc::clone(&b)).ok();
        if let Some(buckets) = buckets {
            buckets.until_ready(tokens).await;
        }
        loop {
            let decision = {
                let mut state = self.state();
                let now = Instant::now();
                let idle = state.in_flight <= 1;
                let by_rate = (!state.learner.active())
                    .then_some(state.aimd.rate)
                    .flatten()
                    .filter(|_| !self.config.configured());
                let rate_wait = match (by_rate, state.rate_next) {
                    (Some(_), Some(next)) => next.saturating_duration_since(now),
                    _ => Duration::ZERO,
                };
                if !rate_wait.is_zero() {
                    Err(rate_wait)
                } else {
                    let factor = state.aimd.factor;
                    let sent =
                        state
                            .learner
                            .try_send(tokens as f64, now, factor, idle, PROBE_AFTER);
                    if sent.is_ok() {
                        if let Some(rate) = by_rate {
                            let from = state.rate_next.unwrap_or(now).max(now);
                            state.rate_next = Some(from + Duration::from_secs_f64(1.0 / rate));
                        }
                        state.recorder.sent(u64::from(tokens));
                        let pace = state.pace_now(&self.config);
                        state.recorder.tick(now, pace);
                    }
                    sent.map(|seq| (seq, now))
                }
            };
            match decision {
                Ok((seq, now)) => {
                    permit.seq = seq;
                    permit.sent_at = now;
                    break;
                }
                Err(wait) => tokio::time::sleep(wait.min(RECHECK)).await,
            }
        }
        self.maybe_recover();
        permit
    }

    fn answered(&self, permit: &QuotaPermit, headers: &QuotaHeaders) {
        let now = Instant::now();
        let mut state = self.state();
        let before = state.binding();
        state
            .learner
            .answered(permit.seq, permit.sent_at, headers, now);
        state.record_binding(now, before);
        if let Some((from, to)) = state.aimd.on_admitted(now) {
            state.recorder.in_flight(now, from, to);
        }
        if headers.remaining_requests.is_some() || headers.remaining_tokens.is_some() {
            state
                .recorder
                .remaining(headers.remaining_requests, headers.remaining_tokens);
        }
        let pace = state.pace_now(&self.config);
        state.recorder.tick(now, pace);
        drop(state);
        self.room.notify_waiters();
    }

    /// A 429 arrived. Everyone waits out `retry_after`; since our own gates let the request
    /// through, someone else shares the quota (or it is smaller than configured or learned):
    /// slow down.
    fn rate_limited(&self, permit: &QuotaPermit, retry_after: Option<Duration>) {
        let now = Instant::now();
        let wait = retry_after.unwrap_or(Duration::from_secs(1));
        let mut rebuild = None;
        {
            let mut state = self.state();
            state.recorder.rate_limited(now, retry_after);
            let until = now + wait;
            if state.paused_until.is_none_or(|p| p < until) {
                state.paused_until = Some(until);
            }
            let before = state.binding();
            state.learner.rate_limited(permit.seq, permit.sent_at, now);
            state.record_binding(now, before);
            let by_rate = !state.learner.active() && !self.config.configured();
            if let Some(decrease) = state.aimd.on_rate_limited(now, by_rate) {
                let (from, to) = decrease.in_flight;
                if from != to {
                    state.recorder.in_flight(now, from, to);
                }
            }
            // At most one slowdown a second: a burst of 429s is one signal, not twenty.
            if self.config.configured()
                && state.last_change.elapsed() >= Duration::from_secs(1)
                && state.factor > MIN_RATE_FACTOR
            {
                state.factor = (state.factor * SLOWDOWN).max(MIN_RATE_FACTOR);
                state.last_change = now;
                rebuild = Some(state.factor);
            }
            let pace = state.pace_now(&self.config);
            state.recorder.tick(now, pace);
        }
        if let Some(factor) = rebuild {
            self.slowdowns.fetch_add(1, Ordering::Relaxed);
            self.set_factor(factor);
        }
    }

    fn maybe_recover(&self) {
        let mut rebuild = None;
        {
            let mut state = self.state();
            if state.factor < 1.0 && state.last_change.elapsed() >= Duration::from_secs(60) {
                state.factor = (state.factor * RECOVERY).min(1.0);
                state.last_change = Instant::now();
                rebuild = Some(state.factor);
            }
        }
        if let Some(factor) = rebuild {
            self.set_factor(factor);
        }
    }

    fn set_factor(&self, factor: f64) {
        let buckets = Arc::new(buckets_for(&self.config, factor));
        if let Ok(mut slot) = self.buckets.write() {
            *slot = buckets;
        }
    }

    /// The current share of the configured rate (1.0 unless 429s slowed it down).
    pub fn rate_factor(&self) -> f64 {
        self.state().factor
    }

    pub fn stats(&self) -> LimiterStats {
        let state = self.state();
        LimiterStats {
            requests: state.recorder.requests,
            rate_limited: state.recorder.rate_limited,
            slowdowns: self.slowdowns.load(Ordering::Relaxed),
        }
    }

    /// What the limiter learned so far, for the run's results.
    pub fn trace(&self) -> QuotaTrace {
        let state = self.state();
        let now = Instant::now();
        let pace = state.pace_now(&self.config);
        let learner = &state.learner;
        let mode = if learner.heard() {
            PacingMode::Headers
        } else if state.aimd.rate.is_some() && !self.config.configured() {
            PacingMode::RateLimits
        } else if self.config.configured() {
            PacingMode::Configured
        } else {
            PacingMode::Unlimited
        };
        let capacity = |dim: &dimension::Dimension| dim.known().then_some(dim.capacity);
        QuotaTrace {
            mode,
            configured_rpm: self.config.rpm,
            configured_tpm: self.config.tpm,
            max_in_flight: self.config.max_in_flight,
            learned_rpm: pace.pace_rpm.filter(|_| mode != PacingMode::Configured),
            learned_tpm: pace.pace_tpm.filter(|_| mode == PacingMode::Headers),
            request_capacity: capacity(&learner.requests),
            token_capacity: capacity(&learner.tokens),
            request_window_s: learner.requests.windowed(),
            token_window_s: learner.tokens.windowed(),
            requests: state.recorder.requests,
            rate_limited: state.recorder.rate_limited,
            in_flight_changes: state.recorder.in_flight_changes,
            samples: state.recorder.samples_now(now, pace),
            events: state.recorder.events.clone(),
            events_dropped: state.recorder.events_dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_429_slows_down_and_splitting_divides_the_quota() {
        let limiter = Arc::new(QuotaLimiter::new(QuotaConfig {
            rpm: Some(600),
            tpm: Some(60_000),
            max_in_flight: 4,
        }));
        limiter.state().last_change = Instant::now() - Duration::from_secs(2);
        for _ in 0..2 {
            let permit = limiter.acquire(10).await;
            permit.rate_limited(Some(Duration::from_millis(10)));
        }
        assert!((limiter.rate_factor() - 0.8).abs() < 1e-9);
        assert_eq!(limiter.stats().rate_limited, 2);
        assert_eq!(limiter.stats().slowdowns, 1);
        // The 429 also halved the requests in flight.
        assert_eq!(limiter.state().aimd.in_flight_cap, 2);
        let trace = limiter.trace();
        assert_eq!(trace.rate_limited, 2);
        assert_eq!(
            trace.events[1],
            TraceEvent::InFlight {
                at_s: match trace.events[1] {
                    TraceEvent::InFlight { at_s, .. } => at_s,
                    _ => -1.0,
                },
                from: 4,
                to: 2
            }
        );
        let quarter = limiter.config().split(4);
        assert_eq!(
            (quarter.rpm, quarter.tpm, quarter.max_in_flight),
            (Some(150), Some(15_000), 1)
        );
    }

    #[tokio::test]
    async fn the_in_flight_cap_holds_back_the_next_request() {
        let limiter = Arc::new(QuotaLimiter::new(QuotaConfig {
            rpm: None,
            tpm: None,
            max_in_flight: 2,
        }));
        let first = limiter.acquire(1).await;
        first.answered(&QuotaHeaders::default());
        let _second = limiter.acquire(1).await;
        let blocked = tokio::time::timeout(Duration::from_millis(100), limiter.acquire(1)).await;
        assert!(blocked.is_err(), "a third request went past a cap of two");
        drop(first);
        let third = tokio::time::timeout(Duration::from_millis(500), limiter.acquire(1)).await;
        assert!(third.is_ok());
    }
}
