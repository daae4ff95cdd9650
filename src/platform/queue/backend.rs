//! The email queue as apalis-redis lays it out in Redis: the only file that
//! knows the layout. Queue settings, counts, dead letters, handing a stopped
//! worker's jobs back and purging finished jobs all read or write these keys
//! directly, because apalis-redis offers no API for them (its own `Metrics`
//! runs Lua that errors on these key types).
//!
//! Read from apalis 1.0.0 / apalis-redis 1.0.0, which `Cargo.toml` pins
//! exactly (`=1.0.0`); `tests/it/queue.rs` pushes a job through the producer
//! and reads it back through this file, so an upgrade that moves a key fails
//! there first. For a queue named `q` ([`email_queue_name`]):
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
//! | `q:signal` | list | a wake-up for workers waiting on the queue |
//! | `q:meta:result` | hash | job id → stored result |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis_redis::Config as QueueConfig;
use porter_jobs::{AddressRequest, SendAccountEmail};
use redis::{Script, aio::ConnectionManager};

/// How often a worker heartbeats, and how many heartbeats it may miss before
/// other workers take its jobs back: a killed worker's jobs resume within
/// `HEARTBEAT_INTERVAL × MISSED_HEARTBEATS` instead of apalis's 300 s default.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
pub const MISSED_HEARTBEATS: usize = 3;

/// Finished-job ids examined per round trip when purging.
const PURGE_SCAN_BATCH: usize = 500;

/// The full queue name: namespaced so deployments sharing a Redis stay apart.
pub fn email_queue_name(namespace: &str) -> String {
    format!("{namespace}:{}", porter_jobs::queue::EMAIL)
}

/// The settings both sides of the queue use: its name and heartbeats.
pub fn email_queue_config(namespace: &str) -> QueueConfig {
    QueueConfig::default()
        .queue(email_queue_name(namespace))
        .heartbeat_interval(HEARTBEAT_INTERVAL)
        .missed_heartbeats(MISSED_HEARTBEATS)
}

/// The Redis key names of one queue, as apalis-redis's own `Config` names
/// them (the same source the worker and the producer use).
#[derive(Debug, Clone)]
pub struct QueueKeys {
    pub queue: String,
    config: QueueConfig,
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

    pub fn meta_prefix(&self) -> String {
        self.config.job_meta_hash()
    }

    pub fn meta(&self, job_id: &str) -> String {
        format!("{}:{job_id}", self.meta_prefix())
    }

    pub fn signal(&self) -> String {
        self.config.signal_list()
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

fn now_unix() -> u64 {
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
    /// `None` when the payload is missing, unreadable or an address
    /// request.
    pub job: Option<SendAccountEmail>,
    /// The payload when the job is an address request.
    pub address_request: Option<AddressRequest>,
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
            job: data.as_deref().and_then(|d| serde_json::from_str(d).ok()),
            address_request: data.as_deref().and_then(|d| serde_json::from_str(d).ok()),
            attempts: field(0).and_then(|a| a.parse().ok()),
            status: field(1),
            result: field(2),
            job_id,
        });
    }
    Ok(jobs)
}

/// Takes `job_id` out of the dead-letter set once it has been re-driven,
/// into the done set: its payload and meta are then purged after
/// `JOB_RETENTION` like those of every finished job, rather than never.
pub async fn forget_dead(
    redis: &mut ConnectionManager,
    namespace: &str,
    job_id: &str,
) -> Result<(), redis::RedisError> {
    let keys = QueueKeys::email(namespace);
    redis::cmd("SMOVE")
        .arg(keys.dead())
        .arg(keys.done())
        .arg(job_id)
        .query_async::<()>(redis)
        .await
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
    let keys = QueueKeys::email(namespace);
    Script::new(HAND_BACK)
        .key(keys.inflight(worker_name))
        .key(keys.active())
        .key(keys.signal())
        .invoke_async(&mut redis.clone())
        .await
}

/// Deletes the given finished jobs (of the set `KEYS[1]`, done or dead)
/// that finished before the cutoff.
const PURGE_FINISHED: &str = r"
local finished_set, data_hash, meta_prefix = KEYS[1], KEYS[2], KEYS[3]
local cutoff = tonumber(ARGV[1])
local removed = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local meta = meta_prefix .. ':' .. id
  local done_at = tonumber(redis.call('HGET', meta, 'done_at') or '0') or 0
  if done_at <= cutoff then
    redis.call('HDEL', data_hash, id)
    redis.call('HDEL', meta_prefix .. ':result', id)
    redis.call('DEL', meta)
    redis.call('SREM', finished_set, id)
    removed = removed + 1
  end
end
return removed
";

/// Deletes the data of email jobs that finished successfully longer than
/// `retention` ago (by Redis's clock). Returns how many it deleted.
pub async fn purge_finished_jobs(
    redis: &ConnectionManager,
    namespace: &str,
    retention: Duration,
) -> Result<usize, redis::RedisError> {
    let keys = QueueKeys::email(namespace);
    purge_older_than(redis, &keys, keys.done(), retention).await
}

/// Deletes dead letters, with their data, that were given up longer than
/// `retention` ago (by Redis's clock). Returns how many it deleted. apalis
/// stamps `done_at` when it files a job as dead, so that is the age.
pub async fn purge_dead_letters(
    redis: &ConnectionManager,
    namespace: &str,
    retention: Duration,
) -> Result<usize, redis::RedisError> {
    let keys = QueueKeys::email(namespace);
    purge_older_than(redis, &keys, keys.dead(), retention).await
}

/// Scans `set` in batches and deletes its members that finished more than
/// `retention` ago, with their payloads, meta and results.
async fn purge_older_than(
    redis: &ConnectionManager,
    keys: &QueueKeys,
    set: String,
    retention: Duration,
) -> Result<usize, redis::RedisError> {
    let (data_hash, meta_prefix) = (keys.data(), keys.meta_prefix());
    let mut redis = redis.clone();
    let now: (u64, u64) = redis::cmd("TIME").query_async(&mut redis).await?;
    let cutoff = now.0.saturating_sub(retention.as_secs());
    let script = Script::new(PURGE_FINISHED);
    let mut cursor = 0u64;
    let mut removed = 0;
    loop {
        let (next, ids): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(&set)
            .arg(cursor)
            .arg("COUNT")
            .arg(PURGE_SCAN_BATCH)
            .query_async(&mut redis)
            .await?;
        if !ids.is_empty() {
            let purged: usize = script
                .key(&set)
                .key(&data_hash)
                .key(&meta_prefix)
                .arg(cutoff)
                .arg(&ids)
                .invoke_async(&mut redis)
                .await?;
            removed += purged;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}
