//! The outbox relay: makes sure every email request in the log reaches the
//! queue.
//!
//! The web process pushes a job right after committing a request, but Redis
//! may be down at that moment, or the process may die in between. The relay
//! reads the log in commit order after its own checkpoint and pushes a job for
//! every event that asks for an email (those with an
//! [`crate::domain::AccountEvent::request_id`], the same definition the command side uses),
//! with the request id as job id: a push of a job the web process already made
//! is ignored by Redis, and a request that was already emailed is a no-op in
//! the job. Its checkpoint only moves once the pushes before it succeeded, so
//! nothing is lost while Redis is away; it is never reset, so a Redis that lost
//! its data (`FLUSHALL`) does not bring old requests back.
//!
//! No transaction is open while it pushes: an open transaction that locked
//! the checkpoint row holds an xid, and every reader of the log (the
//! projector too) reads only below the oldest running xid, so a slow Redis
//! would hold them all back. The checkpoint is read, the batch pushed, and
//! the checkpoint advanced in one statement that never moves it backwards; two
//! workers may push one batch twice, which the job ids make harmless.

use std::time::Duration;

use porter_jobs::SendAccountEmail;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::platform::{
    queue::{EmailQueue, PushError},
    store::{RecordedEvent, advance_checkpoint, read_checkpoint, read_committed_after},
};

const CHECKPOINT: &str = "relay";
const BATCH_SIZE: i64 = 500;
const IDLE_POLL: Duration = Duration::from_millis(200);
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Push(#[from] PushError),
}

/// Relays until `shutdown`. Failures (Postgres or Redis away) are retried with
/// a growing pause; an event it cannot read is skipped here, because the
/// projector stops on it and an operator must look anyway.
pub async fn run(pool: PgPool, queue: EmailQueue, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let pause = match relay_batch(&pool, &queue).await {
            Ok(pushed) if pushed as i64 == BATCH_SIZE => Duration::ZERO,
            Ok(_) => {
                backoff = Duration::from_millis(250);
                IDLE_POLL
            }
            Err(error) => {
                tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "relay round failed");
                let pause = backoff;
                backoff = (backoff * 2).min(ERROR_BACKOFF_MAX);
                pause
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Pushes the jobs of the next batch of committed events; returns how many
/// events it moved past.
async fn relay_batch(pool: &PgPool, queue: &EmailQueue) -> Result<usize, RelayError> {
    let cursor = read_checkpoint(pool, CHECKPOINT).await?;
    let events = read_committed_after(pool, cursor, BATCH_SIZE).await?;
    let Some(last) = events.last().map(RecordedEvent::cursor) else {
        return Ok(0);
    };
    queue
        .push_many(events.iter().filter_map(email_request).collect())
        .await?;
    advance_checkpoint(pool, CHECKPOINT, last).await?;
    Ok(events.len())
}

fn email_request(recorded: &RecordedEvent) -> Option<SendAccountEmail> {
    let account_id = recorded.account_id()?;
    match recorded.decode() {
        Ok(event) => Some(SendAccountEmail::new(account_id, event.request_id()?)),
        Err(error) => {
            tracing::error!(position = recorded.position, %error, "relay skipped an unreadable event");
            None
        }
    }
}
