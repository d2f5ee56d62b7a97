//! Request and token quotas per deployment.
//!
//! One `QuotaLimiter` per deployment: a request bucket and a token bucket (governor), a
//! semaphore for requests in flight, and feedback from 429s. Azure evaluates quotas over short
//! windows (1 or 10 s), not per calendar minute, so the buckets allow a burst of half a
//! second's worth and then pace evenly at the configured rate: running *at* the quota, with
//! the other half second as slack for network jitter, so as not to run *into* it.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
}

/// Counters a run reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimiterStats {
    pub requests: u64,
    pub rate_limited: u64,
    pub slowdowns: u64,
}

struct Buckets {
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<DefaultDirectRateLimiter>,
    token_burst: u32,
}

/// The lowest share of the configured rate adaptive slowdown goes to.
const MIN_RATE_FACTOR: f64 = 0.1;
/// Each unexpected 429 multiplies the rate by this.
const SLOWDOWN: f64 = 0.8;
/// A minute without 429s gives back this factor of rate.
const RECOVERY: f64 = 1.1;

struct Adaptive {
    factor: f64,
    last_change: Instant,
    paused_until: Option<Instant>,
}

pub struct QuotaLimiter {
    config: QuotaConfig,
    buckets: RwLock<Arc<Buckets>>,
    in_flight: Arc<Semaphore>,
    adaptive: Mutex<Adaptive>,
    requests: AtomicU64,
    rate_limited: AtomicU64,
    slowdowns: AtomicU64,
}

/// Held while a request is in flight.
pub struct QuotaPermit {
    _in_flight: OwnedSemaphorePermit,
}

fn buckets_for(config: &QuotaConfig, factor: f64) -> Buckets {
    let scaled = |per_minute: u32| ((per_minute as f64 * factor).floor() as u32).max(1);
    let quota = |per_minute: u32| {
        let per_minute = scaled(per_minute);
        // Half a second's worth may go at once; the rest is paced evenly.
        let burst = (per_minute / 120).max(1);
        let period = Duration::from_secs_f64(60.0 / per_minute as f64);
        Quota::with_period(period)
            .map(|q| q.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)))
    };
    let token_burst = config.tpm.map(|t| (scaled(t) / 120).max(1)).unwrap_or(0);
    Buckets {
        requests: config.rpm.and_then(quota).map(RateLimiter::direct),
        tokens: config.tpm.and_then(quota).map(RateLimiter::direct),
        token_burst,
    }
}

impl QuotaLimiter {
    pub fn new(config: QuotaConfig) -> QuotaLimiter {
        QuotaLimiter {
            buckets: RwLock::new(Arc::new(buckets_for(&config, 1.0))),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            adaptive: Mutex::new(Adaptive {
                factor: 1.0,
                last_change: Instant::now(),
                paused_until: None,
            }),
            config,
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            slowdowns: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> QuotaConfig {
        self.config
    }

    /// Waits until a request estimated at `tokens` may be sent: no 429 pause in force, a slot
    /// in flight, a request cell and enough token cells.
    pub async fn acquire(&self, tokens: u32) -> QuotaPermit {
        loop {
            let pause = self.adaptive.lock().ok().and_then(|a| a.paused_until);
            match pause {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until.into()).await;
                }
                _ => break,
            }
        }
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .expect("the in-flight semaphore is never closed");
        let buckets = self.buckets.read().map(|b| Arc::clone(&b)).ok();
        if let Some(buckets) = buckets {
            if let Some(requests) = &buckets.requests {
                requests.until_ready().await;
            }
            if let Some(token_bucket) = &buckets.tokens {
                // A request larger than the token burst takes the whole burst:
                // it cannot be split, and waiting for more than the bucket holds would never end.
                let n = tokens.clamp(1, buckets.token_burst.max(1));
                let _ = token_bucket
                    .until_n_ready(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
                    .await;
            }
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.maybe_recover();
        QuotaPermit { _in_flight: permit }
    }

    /// A 429 arrived. Everyone waits out `retry_after`; since our own buckets let the request
    /// through, someone else shares the quota (or it is smaller than configured): slow down.
    pub fn on_rate_limited(&self, retry_after: Option<Duration>) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        let wait = retry_after.unwrap_or(Duration::from_secs(1));
        let mut rebuild = None;
        if let Ok(mut adaptive) = self.adaptive.lock() {
            let until = Instant::now() + wait;
            if adaptive.paused_until.is_none_or(|p| p < until) {
                adaptive.paused_until = Some(until);
            }
            // At most one slowdown a second: a burst of 429s is one signal, not twenty.
            if (self.config.rpm.is_some() || self.config.tpm.is_some())
                && adaptive.last_change.elapsed() >= Duration::from_secs(1)
                && adaptive.factor > MIN_RATE_FACTOR
            {
                adaptive.factor = (adaptive.factor * SLOWDOWN).max(MIN_RATE_FACTOR);
                adaptive.last_change = Instant::now();
                rebuild = Some(adaptive.factor);
            }
        }
        if let Some(factor) = rebuild {
            self.slowdowns.fetch_add(1, Ordering::Relaxed);
            self.set_factor(factor);
        }
    }

    fn maybe_recover(&self) {
        let mut rebuild = None;
        if let Ok(mut adaptive) = self.adaptive.lock()
            && adaptive.factor < 1.0
            && adaptive.last_change.elapsed() >= Duration::from_secs(60)
        {
            adaptive.factor = (adaptive.factor * RECOVERY).min(1.0);
            adaptive.last_change = Instant::now();
            rebuild = Some(adaptive.factor);
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
        self.adaptive.lock().map(|a| a.factor).unwrap_or(1.0)
    }

    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            requests: self.requests.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            slowdowns: self.slowdowns.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_one_seconds_worth_at_once_then_paces() {
        let buckets = buckets_for(
            &QuotaConfig {
                rpm: Some(600),
                tpm: Some(120_000),
                max_in_flight: 100,
            },
            1.0,
        );
        let requests = buckets.requests.as_ref().unwrap();
        let granted = (0..50).filter(|_| requests.check().is_ok()).count();
        // 600 RPM is 10 requests a second: a burst of 5, then one per 100 ms.
        assert_eq!(granted, 5);
        assert_eq!(buckets.token_burst, 1_000);
        let halved = buckets_for(
            &QuotaConfig {
                rpm: Some(600),
                tpm: None,
                max_in_flight: 1,
            },
            0.5,
        );
        let granted = (0..50)
            .filter(|_| halved.requests.as_ref().unwrap().check().is_ok())
            .count();
        assert_eq!(granted, 2);
    }

    #[test]
    fn a_429_slows_down_and_splitting_divides_the_quota() {
        let limiter = QuotaLimiter::new(QuotaConfig {
            rpm: Some(600),
            tpm: Some(60_000),
            max_in_flight: 4,
        });
        limiter.adaptive.lock().unwrap().last_change = Instant::now() - Duration::from_secs(2);
        limiter.on_rate_limited(Some(Duration::from_millis(10)));
        limiter.on_rate_limited(Some(Duration::from_millis(10)));
        assert!((limiter.rate_factor() - 0.8).abs() < 1e-9);
        assert_eq!(limiter.stats().rate_limited, 2);
        assert_eq!(limiter.stats().slowdowns, 1);
        let quarter = limiter.config().split(4);
        assert_eq!(
            (quarter.rpm, quarter.tpm, quarter.max_in_flight),
            (Some(150), Some(15_000), 1)
        );
    }
}
