//! What an answer says about the quota: its rate-limit headers, in the units the service
//! counts. Reading them off an HTTP answer (`x-ratelimit-*`, and `retry-after*` on a 429) is the
//! transport's job (`backend::http::quota_headers` and `retry_after`); learning from them is the
//! learner's (`learner.rs`).

use std::time::Duration;

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
