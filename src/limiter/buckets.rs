//! The configured quota as hard ceilings: a request bucket and a token bucket (governor).
//!
//! Azure evaluates quotas over short windows (1 or 10 s), not per calendar minute, so the
//! buckets allow a burst of half a second's worth and then pace evenly at the configured rate:
//! running *at* the quota, with the other half second as slack for network jitter, so as not
//! to run *into* it.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::QuotaConfig;

pub(super) struct Buckets {
    pub requests: Option<DefaultDirectRateLimiter>,
    pub tokens: Option<DefaultDirectRateLimiter>,
    pub token_burst: u32,
}

/// The buckets of `config` at `factor` of its rates (429 feedback lowers the factor).
pub(super) fn buckets_for(config: &QuotaConfig, factor: f64) -> Buckets {
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

impl Buckets {
    /// Waits for a request cell and for `tokens` token cells.
    pub async fn until_ready(&self, tokens: u32) {
        if let Some(requests) = &self.requests {
            requests.until_ready().await;
        }
        if let Some(token_bucket) = &self.tokens {
            // A request larger than the token burst takes the whole burst:
            // it cannot be split, and waiting for more than the bucket holds would never end.
            let n = tokens.clamp(1, self.token_burst.max(1));
            let _ = token_bucket
                .until_n_ready(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_half_a_seconds_worth_at_once_then_paces() {
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
}
