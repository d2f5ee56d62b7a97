//! Several deployments of one model (e.g. regions) behind one backend: calls go round-robin
//! in proportion to each deployment's request quota, and a deployment that fails is rested
//! while the others carry the run.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{
    Backend, BackendError, Capabilities, EmbedReply, EmbedRequest, GenReply, GenRequest,
    SelectReply, SelectRequest,
};

/// How long a deployment rests after a failure that is not its quota.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// After a fatal answer (bad key, unknown deployment) it rests much longer.
const REST_AFTER_FATAL: Duration = Duration::from_secs(600);

pub struct DeploymentPool {
    identity: String,
    members: Vec<Box<dyn Backend>>,
    /// Member indices repeated by weight: the round-robin schedule.
    schedule: Vec<usize>,
    next: AtomicUsize,
    resting_until: Vec<Mutex<Option<Instant>>>,
}

impl DeploymentPool {
    /// `members` with their weights (requests per minute; equal when unknown).
    pub fn new(identity: String, members: Vec<(Box<dyn Backend>, u32)>) -> DeploymentPool {
        let smallest = members.iter().map(|(_, w)| (*w).max(1)).min().unwrap_or(1);
        let mut schedule = Vec::new();
        for (index, (_, weight)) in members.iter().enumerate() {
            // Weights relative to the smallest, capped so the schedule stays short.
            let share = ((*weight).max(1) / smallest).clamp(1, 16);
            schedule.extend(std::iter::repeat_n(index, share as usize));
        }
        let resting_until = members.iter().map(|_| Mutex::new(None)).collect();
        DeploymentPool {
            identity,
            members: members.into_iter().map(|(m, _)| m).collect(),
            schedule,
            next: AtomicUsize::new(0),
            resting_until,
        }
    }

    /// Members to try for one call: the scheduled one first, then the others; resting
    /// members last (better a tired deployment than none).
    fn order(&self) -> Vec<usize> {
        let start = self.schedule[self.next.fetch_add(1, Ordering::Relaxed) % self.schedule.len()];
        let now = Instant::now();
        let (mut awake, resting): (Vec<usize>, Vec<usize>) = (0..self.members.len())
            .map(|i| (start + i) % self.members.len())
            .partition(|&i| {
                self.resting_until[i]
                    .lock()
                    .ok()
                    .and_then(|r| *r)
                    .is_none_or(|until| until <= now)
            });
        awake.extend(resting);
        awake
    }

    fn rest(&self, index: usize, error: &BackendError) {
        let span = match error {
            error if error.is_fatal() => REST_AFTER_FATAL,
            BackendError::RateLimited { retry_after } => {
                retry_after.unwrap_or(Duration::from_secs(1))
            }
            _ => REST_AFTER_FAILURE,
        };
        if let Ok(mut slot) = self.resting_until[index].lock() {
            *slot = Some(Instant::now() + span);
        }
    }

    async fn route<'c, T, F>(&'c self, call: F) -> Result<T, BackendError>
    where
        F: Fn(&'c dyn Backend) -> futures::future::BoxFuture<'c, Result<T, BackendError>>,
    {
        let mut last_error = None;
        for index in self.order() {
            match call(self.members[index].as_ref()).await {
                Ok(value) => return Ok(value),
                // The request itself is at fault: another deployment would refuse it too.
                Err(error @ BackendError::ContentFilter(_)) => return Err(error),
                Err(error) => {
                    self.rest(index, &error);
                    last_error = Some(error);
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| BackendError::Fatal("the deployment pool is empty".into())))
    }
}

#[async_trait]
impl Backend for DeploymentPool {
    fn identity(&self) -> String {
        self.identity.clone()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = self
            .members
            .first()
            .map(|m| m.capabilities())
            .unwrap_or_default();
        for member in &self.members[1..] {
            let other = member.capabilities();
            caps.logprobs &= other.logprobs;
            caps.json_schema &= other.json_schema;
            caps.images &= other.images;
        }
        caps
    }

    fn quota_traces(&self) -> Vec<crate::limiter::DeploymentQuota> {
        self.members.iter().flat_map(|m| m.quota_traces()).collect()
    }

    async fn select(&self, request: &SelectRequest) -> Result<SelectReply, BackendError> {
        self.route(|member| member.select(request)).await
    }

    async fn generate(&self, request: &GenRequest) -> Result<GenReply, BackendError> {
        self.route(|member| member.generate(request)).await
    }

    async fn embed(&self, request: &EmbedRequest) -> Result<EmbedReply, BackendError> {
        self.route(|member| member.embed(request)).await
    }
}
