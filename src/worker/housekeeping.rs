//! Housekeeping: finished jobs do not pile up in Redis forever.
//!
//! apalis-redis keeps every finished job's payload, metadata and id. Porter
//! deletes jobs that finished successfully more than the retention ago; the
//! event log already records what they did. Dead jobs are kept: they are the
//! dead-letter set an operator inspects and re-drives.

use std::time::Duration;

use redis::{Script, aio::ConnectionManager};
use tokio_util::sync::CancellationToken;

use crate::queue::email_queue_config;

/// How often housekeeping runs.
const INTERVAL: Duration = Duration::from_secs(600);
/// Ids examined per round trip.
const SCAN_BATCH: usize = 500;

/// Deletes the given done jobs that finished before the cutoff.
const PURGE_DONE: &str = r"
local done_set, data_hash, meta_prefix = KEYS[1], KEYS[2], KEYS[3]
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
    redis.call('SREM', done_set, id)
    removed = removed + 1
  end
end
return removed
";

/// Runs [`purge_finished_jobs`] every [`INTERVAL`] until `shutdown`.
pub async fn run(
    redis: ConnectionManager,
    namespace: String,
    retention: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match purge_finished_jobs(&redis, &namespace, retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "housekeeping: finished jobs purged"),
            Err(error) => tracing::warn!(%error, "housekeeping failed; trying again later"),
        }
        tokio::select! {
            () = tokio::time::sleep(INTERVAL) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Deletes the data of email jobs that finished successfully longer than
/// `retention` ago. Returns how many it deleted.
pub async fn purge_finished_jobs(
    redis: &ConnectionManager,
    namespace: &str,
    retention: Duration,
) -> Result<usize, redis::RedisError> {
    let config = email_queue_config(namespace);
    let (done_set, data_hash, meta_prefix) = (
        config.done_jobs_set(),
        config.job_data_hash(),
        config.job_meta_hash(),
    );
    let mut redis = redis.clone();
    let now: (u64, u64) = redis::cmd("TIME").query_async(&mut redis).await?;
    let cutoff = now.0.saturating_sub(retention.as_secs());
    let script = Script::new(PURGE_DONE);
    let mut cursor = 0u64;
    let mut removed = 0;
    loop {
        let (next, ids): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(&done_set)
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_BATCH)
            .query_async(&mut redis)
            .await?;
        if !ids.is_empty() {
            let purged: usize = script
                .key(&done_set)
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
