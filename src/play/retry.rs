//! Retries: which failed calls are tried again, how long to wait, and the flags that say so.

use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::failure::RowFailure;
use crate::backend::BackendError;

/// How failed calls are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    /// First wait after a failure; doubles each attempt (with jitter), capped at `max_interval`.
    pub initial_interval: Duration,
    pub max_interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 6,
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter": half the interval fixed, half random, so that
    /// rows failing together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial_interval.as_secs_f64()
            * 2f64.powi(attempt.saturating_sub(1).min(20) as i32);
        let capped = exp.min(self.max_interval.as_secs_f64());
        let jitter = rand::rng().random_range(0.0..=capped / 2.0);
        Duration::from_secs_f64(capped / 2.0 + jitter)
    }
}

pub struct Attempted<T> {
    pub value: T,
    pub attempts: u32,
    pub rate_limited: u32,
    pub latency: Duration,
    pub cached: bool,
}

pub async fn with_retries<T, F, Fut>(
    policy: RetryPolicy,
    mut call: F,
) -> Result<Attempted<T>, RowFailure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let mut attempts = 0;
    let mut rate_limited = 0;
    loop {
        attempts += 1;
        let started = Instant::now();
        match call().await {
            Ok(value) => {
                return Ok(Attempted {
                    value,
                    attempts,
                    rate_limited,
                    latency: started.elapsed(),
                    cached: false,
                });
            }
            Err(error) if error.is_retryable() && attempts <= policy.max_retries => {
                let wait = match &error {
                    BackendError::RateLimited { retry_after } => {
                        rate_limited += 1;
                        retry_after.unwrap_or_else(|| policy.backoff(attempts))
                    }
                    _ => policy.backoff(attempts),
                };
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(RowFailure::Backend { error, attempts }),
        }
    }
}

/// Retries and the response cache: one group of `evalr run`'s options (shared by `judge` and
/// `embed`), recorded flat in `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct RetryOptions {
    /// Response cache folder.
    #[arg(long, default_value = super::cache::DEFAULT_CACHE_DIR)]
    pub cache_dir: std::path::PathBuf,
    /// Do not read or write the response cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Retries of a failed call (429, 5xx, timeouts, connection errors).
    #[arg(long, default_value_t = 6)]
    pub max_retries: u32,
    /// First wait before a retry, in seconds; doubles each retry (with jitter).
    #[arg(long = "retry-interval", default_value_t = 0.5)]
    pub retry_interval_secs: f64,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            cache_dir: super::cache::DEFAULT_CACHE_DIR.into(),
            no_cache: false,
            max_retries: 6,
            retry_interval_secs: 0.5,
        }
    }
}

impl RetryOptions {
    /// The retry policy these options ask for.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            initial_interval: Duration::from_secs_f64(self.retry_interval_secs.max(0.0)),
            ..RetryPolicy::default()
        }
    }

    /// The response cache, unless `--no-cache`.
    pub fn cache(&self) -> Option<super::cache::ResponseCache> {
        (!self.no_cache).then(|| super::cache::ResponseCache::new(&self.cache_dir))
    }
}
