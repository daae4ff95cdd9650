//! The email queue on Redis: the producer side, and (in [`backend`]) the one
//! place that knows how apalis-redis lays the queue out.
//!
//! Jobs are pushed with the requesting event's id as the job id. apalis-redis
//! ignores a push whose id already exists, so the web process and the outbox
//! relay can both push the same request and it still runs once.

use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_redis::RedisStorage;
use chrono::{DateTime, Utc};
use porter_jobs::{AddressRequest, SendAccountEmail};
use redis::aio::ConnectionManager;

pub mod backend;

use backend::email_queue_config;

/// How long a push may take before the caller gives up on Redis for now; the
/// event is already durable, so a slow Redis must not hold a sign-up.
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The producer side of the email queue.
#[derive(Clone)]
pub struct EmailQueue {
    storage: RedisStorage<SendAccountEmail>,
    /// The same queue, for address requests.
    address_requests: RedisStorage<AddressRequest>,
}

impl std::fmt::Debug for EmailQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailQueue")
            .field("queue", &self.storage.get_config().queue)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("redis did not answer within {PUSH_TIMEOUT:?}")]
    Timeout,
    #[error("push to the email queue failed: {0:#}")]
    Redis(anyhow::Error),
}

impl EmailQueue {
    pub fn new(redis: ConnectionManager, namespace: &str) -> Self {
        Self {
            storage: RedisStorage::new(redis.clone()).with_config(email_queue_config(namespace)),
            address_requests: RedisStorage::new(redis).with_config(email_queue_config(namespace)),
        }
    }

    /// Enqueues `job` under its request id, to run no earlier than
    /// `not_before`; a second push of the same request is a no-op.
    #[tracing::instrument(skip_all, fields(email_request_id = %job.request_id))]
    pub async fn push(
        &self,
        job: SendAccountEmail,
        not_before: Option<DateTime<Utc>>,
    ) -> Result<(), PushError> {
        let mut task = TaskBuilder::new(job.clone()).task_id(TaskId::from_string(job.job_id()));
        if let Some(at) = not_before.filter(|at| *at > Utc::now()) {
            // apalis schedules in whole seconds; round up, never early.
            task = task.run_at_timestamp(u64::try_from(at.timestamp() + 1).unwrap_or(0));
        }
        let task = task.build();
        let mut storage = self.storage.clone();
        within_timeout(storage.push_task(task)).await
    }

    /// Enqueues an address request for the worker to look up, to run no
    /// earlier than `not_before`; a second push of the same request is a
    /// no-op.
    #[tracing::instrument(skip_all, fields(address_request_id = %job.request_id))]
    pub async fn push_address_request(
        &self,
        job: AddressRequest,
        not_before: Option<DateTime<Utc>>,
    ) -> Result<(), PushError> {
        let id = TaskId::from_string(job.job_id());
        let mut task = TaskBuilder::new(job).task_id(id);
        if let Some(at) = not_before.filter(|at| *at > Utc::now()) {
            task = task.run_at_timestamp(u64::try_from(at.timestamp() + 1).unwrap_or(0));
        }
        let task = task.build();
        let mut storage = self.address_requests.clone();
        within_timeout(storage.push_task(task)).await
    }

    /// Enqueues many jobs in one round trip (the relay's batches); like
    /// [`Self::push`], a job whose request id is already queued is skipped.
    pub async fn push_many(&self, jobs: Vec<SendAccountEmail>) -> Result<(), PushError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let tasks = jobs.into_iter().map(|job| {
            let id = TaskId::from_string(job.job_id());
            TaskBuilder::new(job).task_id(id).build()
        });
        let mut storage = self.storage.clone();
        within_timeout(storage.push_all(futures::stream::iter(tasks))).await
    }
}

/// Gives up on a push that Redis does not answer within [`PUSH_TIMEOUT`].
async fn within_timeout<E: std::error::Error + Send + Sync + 'static>(
    push: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), PushError> {
    match tokio::time::timeout(PUSH_TIMEOUT, push).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(PushError::Redis(e.into())),
        Err(_) => Err(PushError::Timeout),
    }
}
