//! Read models: tables derived from the event log, for queries and operators.
//!
//! A projector reads committed events in global order after its checkpoint,
//! applies a batch to its table and moves the checkpoint in the same
//! transaction, so a crash can neither skip nor double-apply an event. The
//! checkpoint row is taken with `FOR UPDATE SKIP LOCKED`: when several worker
//! processes run, one projects and the others wait for the next round.

use sqlx::PgPool;

use crate::{
    domain::DecodeError,
    store::{RecordedEvent, lock_checkpoint, read_committed_after, save_checkpoint},
};

pub mod accounts;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// A stored event this version of Porter cannot read. Projection stops
    /// here rather than skip it and build a wrong read model.
    #[error("cannot project event at position {position} ({event_type}): {source}")]
    Undecodable {
        position: i64,
        event_type: String,
        source: DecodeError,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// How many events one projection round reads at most.
pub const BATCH_SIZE: i64 = 1000;

/// Applies the next batch of committed events to the `accounts` read model.
/// Returns how many events it applied (0 when caught up or when another
/// process holds the checkpoint).
#[tracing::instrument(skip_all, name = "project_accounts")]
pub async fn project_accounts(pool: &PgPool, batch_size: i64) -> Result<usize, ProjectionError> {
    let mut tx = pool.begin().await?;
    let Some(cursor) = lock_checkpoint(&mut tx, accounts::CHECKPOINT).await? else {
        return Ok(0);
    };
    let events = read_committed_after(&mut *tx, cursor, batch_size).await?;
    let Some(last) = events.last().map(RecordedEvent::cursor) else {
        return Ok(0);
    };
    accounts::apply(&mut tx, accounts::Table::Live, &events).await?;
    save_checkpoint(&mut tx, accounts::CHECKPOINT, last).await?;
    tx.commit().await?;
    Ok(events.len())
}
