//! The projector loop: keeps read models close behind the event log.
//!
//! It polls rather than listens because a committed event only becomes
//! readable once every older transaction has ended; a notification would
//! still need the same poll. A full batch means more is waiting, so it goes
//! again at once.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::features::accounts::{BATCH_SIZE, ProjectionError, project_accounts};

const IDLE_POLL: Duration = Duration::from_millis(100);
const ERROR_BACKOFF: Duration = Duration::from_secs(2);

/// Runs until `shutdown`; returns an error only for an event it cannot read,
/// which an operator must look at.
pub async fn run(pool: PgPool, shutdown: CancellationToken) -> Result<(), ProjectionError> {
    loop {
        let pause = match project_accounts(&pool, BATCH_SIZE).await {
            Ok(applied) if applied as i64 == BATCH_SIZE => Duration::ZERO,
            Ok(_) => IDLE_POLL,
            Err(error @ ProjectionError::Undecodable { .. }) => {
                // Skipping would build a wrong read model; stop and say why.
                tracing::error!(error = %error, "projector stopped: unreadable event");
                return Err(error);
            }
            Err(error) => {
                tracing::warn!(error = %error, "projector round failed; retrying");
                ERROR_BACKOFF
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}
