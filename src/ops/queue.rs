//! The email queue as apalis-redis 1.0 lays it out in Redis, read directly.
//!
//! apalis-redis's own `Metrics` runs Lua that errors on these key types, so
//! Porter reads the keys itself. For a queue named `q` (see
//! [`crate::queue::email_queue_name`]):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `q:active` | list | job ids waiting to be fetched |
//! | `q:scheduled` | zset | job ids to run later (score: unix seconds) |
//! | `q:inflight:<worker>` | set | job ids a worker has fetched |
//! | `q:dead` | set | job ids given up |
//! | `q:done` | set | job ids finished |
//! | `q:workers` | zset | worker names (score: last heartbeat, unix seconds) |
//! | `q:data` | hash | job id → job payload (JSON) |
//! | `q:meta:<id>` | hash | `attempts`, `status`, `result`, `done_at`, ... |
//!
//! These are apalis-redis internals: re-check them when upgrading it.

use std::time::{SystemTime, UNIX_EPOCH};

use porter_jobs::SendAccountEmail;
use redis::aio::ConnectionManager;

use crate::queue::{HEARTBEAT_INTERVAL, MISSED_HEARTBEATS, email_queue_config, email_queue_name};

/// The Redis key names of one queue, as apalis-redis's own `Config` names
/// them (the same source the worker and the producer use).
#[derive(Debug, Clone)]
pub struct QueueKeys {
    pub queue: String,
    config: apalis_redis::Config,
}

impl QueueKeys {
    pub fn email(namespace: &str) -> Self {
        Self {
            queue: email_queue_name(namespace),
            config: email_queue_config(namespace),
        }
    }

    pub fn active(&self) -> String {
        self.config.active_jobs_list()
    }

    pub fn scheduled(&self) -> String {
        self.config.scheduled_jobs_set()
    }

    pub fn dead(&self) -> String {
        self.config.dead_jobs_set()
    }

    pub fn done(&self) -> String {
        self.config.done_jobs_set()
    }

    pub fn workers(&self) -> String {
        self.config.workers_set()
    }

    pub fn inflight(&self, worker: &str) -> String {
        format!("{}:{worker}", self.config.inflight_jobs_set())
    }

    pub fn data(&self) -> String {
        self.config.job_data_hash()
    }

    pub fn meta(&self, job_id: &str) -> String {
        format!("{}:{job_id}", self.config.job_meta_hash())
    }
}

/// A worker registered on the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    pub name: String,
    /// Seconds since its last heartbeat.
    pub seen_secs_ago: u64,
    /// Heartbeat recent enough that other workers do not take its jobs back.
    pub live: bool,
    /// Jobs it has fetched and not finished.
    pub running: u64,
}

/// Counts of the queue's job states.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    pub queue: String,
    pub active: u64,
    pub scheduled: u64,
    pub running: u64,
    pub dead: u64,
    pub done: u64,
    pub workers: Vec<WorkerInfo>,
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads the queue's counts and workers in two round trips.
pub async fn stats(
    redis: &mut ConnectionManager,
    namespace: &str,
) -> Result<QueueStats, redis::RedisError> {
    let keys = QueueKeys::email(namespace);
    let (active, scheduled, dead, done, workers): (u64, u64, u64, u64, Vec<(String, f64)>) =
        redis::pipe()
            .cmd("LLEN")
            .arg(keys.active())
            .cmd("ZCARD")
            .arg(keys.scheduled())
            .cmd("SCARD")
            .arg(keys.dead())
            .cmd("SCARD")
            .arg(keys.done())
            .cmd("ZRANGE")
            .arg(keys.workers())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(redis)
            .await?;
    let running: Vec<u64> = if workers.is_empty() {
        vec![]
    } else {
        let mut pipe = redis::pipe();
        for (name, _) in &workers {
            pipe.cmd("SCARD").arg(keys.inflight(name));
        }
        pipe.query_async(redis).await?
    };
    let now = now_unix();
    let threshold = HEARTBEAT_INTERVAL.as_secs() * MISSED_HEARTBEATS as u64;
    let workers: Vec<WorkerInfo> = workers
        .into_iter()
        .zip(running)
        .map(|((name, last_seen), running)| {
            let seen_secs_ago = now.saturating_sub(last_seen as u64);
            WorkerInfo {
                name,
                seen_secs_ago,
                live: seen_secs_ago <= threshold,
                running,
            }
        })
        .collect();
    Ok(QueueStats {
        queue: keys.queue,
        active,
        scheduled,
        running: workers.iter().map(|w| w.running).sum(),
        dead,
        done,
        workers,
    })
}

/// A job in the dead-letter set, as Redis knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadJob {
    pub job_id: String,
    /// `None` when the payload is missing or unreadable.
    pub job: Option<SendAccountEmail>,
    /// apalis's attempt count and status from the job's meta hash.
    pub attempts: Option<u32>,
    pub status: Option<String>,
    /// apalis's stored result (for an aborted job, the error text).
    pub result: Option<String>,
}

/// Up to `limit` dead jobs (in Redis's set order), with their payloads and
/// meta. Scans the set in pages so a huge dead set does not block Redis.
pub async fn dead_jobs(
    redis: &mut ConnectionManager,
    namespace: &str,
    limit: usize,
) -> Result<Vec<DeadJob>, redis::RedisError> {
    let keys = QueueKeys::email(namespace);
    let mut ids: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(keys.dead())
            .arg(cursor)
            .arg("COUNT")
            .arg(100)
            .query_async(redis)
            .await?;
        ids.extend(page);
        cursor = next;
        if cursor == 0 || ids.len() >= limit {
            break;
        }
    }
    ids.sort();
    ids.dedup();
    ids.truncate(limit);
    jobs(redis, &keys, ids).await
}

/// The dead-letter set's members: all of them, for `retry --all`.
pub async fn dead_job_ids(
    redis: &mut ConnectionManager,
    namespace: &str,
) -> Result<Vec<String>, redis::RedisError> {
    let mut ids: Vec<String> = redis::cmd("SMEMBERS")
        .arg(QueueKeys::email(namespace).dead())
        .query_async(redis)
        .await?;
    ids.sort();
    Ok(ids)
}

/// Whether `job_id` is in the dead-letter set, and its payload and meta.
pub async fn dead_job(
    redis: &mut ConnectionManager,
    namespace: &str,
    job_id: &str,
) -> Result<Option<DeadJob>, redis::RedisError> {
    let keys = QueueKeys::email(namespace);
    let dead: bool = redis::cmd("SISMEMBER")
        .arg(keys.dead())
        .arg(job_id)
        .query_async(redis)
        .await?;
    if !dead {
        return Ok(None);
    }
    Ok(jobs(redis, &keys, vec![job_id.to_owned()]).await?.pop())
}

async fn jobs(
    redis: &mut ConnectionManager,
    keys: &QueueKeys,
    ids: Vec<String>,
) -> Result<Vec<DeadJob>, redis::RedisError> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.cmd("HGET").arg(keys.data()).arg(id);
        pipe.cmd("HMGET")
            .arg(keys.meta(id))
            .arg("attempts")
            .arg("status")
            .arg("result");
    }
    let replies: Vec<redis::Value> = pipe.query_async(redis).await?;
    let mut replies = replies.into_iter();
    let mut jobs = Vec::with_capacity(ids.len());
    for job_id in ids {
        let data: Option<String> = replies
            .next()
            .and_then(|v| redis::from_redis_value(v).ok())
            .flatten();
        let meta: Vec<Option<String>> = replies
            .next()
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap_or_default();
        let field = |i: usize| meta.get(i).cloned().flatten();
        jobs.push(DeadJob {
            job: data.and_then(|d| serde_json::from_str(&d).ok()),
            attempts: field(0).and_then(|a| a.parse().ok()),
            status: field(1),
            result: field(2),
            job_id,
        });
    }
    Ok(jobs)
}

/// Takes `job_id` out of the dead-letter set once it has been re-driven.
/// Its payload and meta stay, like those of every finished job.
pub async fn forget_dead(
    redis: &mut ConnectionManager,
    namespace: &str,
    job_id: &str,
) -> Result<(), redis::RedisError> {
    redis::cmd("SREM")
        .arg(QueueKeys::email(namespace).dead())
        .arg(job_id)
        .query_async::<()>(redis)
        .await
}
