//! Housekeeping: finished jobs and dead letters do not pile up in Redis
//! forever.
//!
//! apalis-redis keeps every finished job's payload, metadata and id. Porter
//! deletes jobs that finished successfully more than `JOB_RETENTION` ago,
//! and dead letters more than `DEAD_LETTER_RETENTION` ago (long enough for
//! an operator to inspect and re-drive them); the event log already records
//! what each did, failures included.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use crate::platform::{
    config::WorkerConfig,
    queue::backend::{purge_dead_letters, purge_finished_jobs},
};

/// How often housekeeping runs at most and at least: a few times per
/// retention, so a job outlives its retention by a fraction of it.
const MAX_INTERVAL: Duration = Duration::from_secs(600);
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Purges finished jobs and dead letters past their retention, then again
/// every [`interval`], until `shutdown`.
pub async fn run(
    redis: ConnectionManager,
    namespace: String,
    config: WorkerConfig,
    shutdown: CancellationToken,
) {
    let interval = interval(&config);
    loop {
        match purge_finished_jobs(&redis, &namespace, config.job_retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "housekeeping: finished jobs purged"),
            Err(error) => tracing::warn!(%error, "housekeeping failed; trying again later"),
        }
        match purge_dead_letters(&redis, &namespace, config.dead_letter_retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "housekeeping: expired dead letters purged"),
            Err(error) => tracing::warn!(%error, "housekeeping failed; trying again later"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// A quarter of the shorter retention, within [`MIN_INTERVAL`] and
/// [`MAX_INTERVAL`].
fn interval(config: &WorkerConfig) -> Duration {
    (config.job_retention.min(config.dead_letter_retention) / 4).clamp(MIN_INTERVAL, MAX_INTERVAL)
}
