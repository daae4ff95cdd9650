//! Housekeeping: finished jobs do not pile up in Redis forever.
//!
//! apalis-redis keeps every finished job's payload, metadata and id. Porter
//! deletes jobs that finished successfully more than the retention ago; the
//! event log already records what they did. Dead jobs are kept: they are the
//! dead-letter set an operator inspects and re-drives.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use crate::queue::backend::purge_finished_jobs;

/// How often housekeeping runs.
const INTERVAL: Duration = Duration::from_secs(600);

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
