//! The email queue on Redis, as both sides see it.
//!
//! Jobs are pushed with the requesting event's id as the job id. apalis-redis
//! ignores a push whose id already exists, so the web process and the outbox
//! relay can both push the same request and it still runs once.

use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_redis::{Config as QueueConfig, RedisStorage};
use chrono::{DateTime, Utc};
use porter_jobs::SendAccountEmail;
use redis::aio::ConnectionManager;

/// How long a push may take before the caller gives up on Redis for now; the
/// event is already durable, so a slow Redis must not hold a sign-up.
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a worker heartbeats, and how many heartbeats it may miss before
/// other workers take its jobs back: a killed worker's jobs resume within
/// `HEARTBEAT_INTERVAL × MISSED_HEARTBEATS` instead of apalis's 300 s default.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
pub const MISSED_HEARTBEATS: usize = 3;

/// The full queue name: namespaced so deployments sharing a Redis stay apart.
pub fn email_queue_name(namespace: &str) -> String {
    format!("{namespace}:{}", porter_jobs::queue::EMAIL)
}

pub fn email_queue_config(namespace: &str) -> QueueConfig {
    QueueConfig::default()
        .queue(email_queue_name(namespace))
        .heartbeat_interval(HEARTBEAT_INTERVAL)
        .missed_heartbeats(MISSED_HEARTBEATS)
}

/// Moves every job still claimed by the stopped worker `worker_name` back to
/// the queue, and wakes the other workers.
const HAND_BACK: &str = r"
local jobs = redis.call('SMEMBERS', KEYS[1])
if #jobs > 0 then
  redis.call('RPUSH', KEYS[2], unpack(jobs))
  redis.call('DEL', KEYS[1])
  redis.call('DEL', KEYS[3])
  redis.call('LPUSH', KEYS[3], 1)
end
return #jobs
";

/// Returns the jobs a stopped worker had fetched to the queue.
///
/// apalis-redis unregisters a worker when it stops, but jobs it fetched and
/// had not started can stay in its in-flight set; unregistered, it is never
/// treated as dead, so they would never run. Call this once the worker has
/// stopped. A job that in fact finished just before is re-run harmlessly:
/// every job is idempotent.
pub async fn hand_back_inflight(
    redis: &ConnectionManager,
    namespace: &str,
    worker_name: &str,
) -> Result<usize, redis::RedisError> {
    let config = email_queue_config(namespace);
    redis::Script::new(HAND_BACK)
        .key(format!("{}:{worker_name}", config.inflight_jobs_set()))
        .key(config.active_jobs_list())
        .key(config.signal_list())
        .invoke_async(&mut redis.clone())
        .await
}

/// The producer side of the email queue.
#[derive(Clone)]
pub struct EmailQueue {
    storage: RedisStorage<SendAccountEmail>,
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
    #[error("push to the email queue failed: {0}")]
    Redis(String),
}

impl EmailQueue {
    pub fn new(redis: ConnectionManager, namespace: &str) -> Self {
        Self {
            storage: RedisStorage::new(redis).with_config(email_queue_config(namespace)),
        }
    }

    /// Enqueues `job` under its request id, to run no earlier than
    /// `not_before`; a second push of the same request is a no-op.
    #[tracing::instrument(skip_all, fields(request_id = %job.request_id))]
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
async fn within_timeout<E: std::fmt::Display>(
    push: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), PushError> {
    match tokio::time::timeout(PUSH_TIMEOUT, push).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(PushError::Redis(e.to_string())),
        Err(_) => Err(PushError::Timeout),
    }
}
