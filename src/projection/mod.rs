//! Read models: tables derived from the event log, for queries and operators.
//!
//! A projector reads committed events in global order after its checkpoint,
//! applies a batch to its table and moves the checkpoint in the same
//! transaction, so a crash can neither skip nor double-apply an event. The
//! checkpoint row is taken with `FOR UPDATE SKIP LOCKED`: when several worker
//! processes run, one projects and the others wait for the next round.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::{
    domain::DecodeError,
    store::{Cursor, RecordedEvent, TxId, lock_checkpoint, read_committed_after, save_checkpoint},
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

/// How far a read model is behind the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    pub checkpoint: Cursor,
    pub checkpoint_updated_at: DateTime<Utc>,
    /// Committed events after the checkpoint.
    pub events_behind: i64,
    /// Age of the oldest of them; 0 when caught up.
    pub seconds_behind: f64,
}

/// The lag of the read model whose checkpoint is `name`; `None` when there is
/// no such checkpoint.
pub async fn lag(pool: &PgPool, name: &str) -> Result<Option<Lag>, sqlx::Error> {
    let row: Option<(String, i64, DateTime<Utc>, i64, f64)> = sqlx::query_as(
        "SELECT c.tx_id::text, c.position, c.updated_at, behind.events, \
                COALESCE(EXTRACT(EPOCH FROM now() - behind.oldest), 0)::float8 \
         FROM checkpoints c \
         CROSS JOIN LATERAL ( \
             SELECT count(*) AS events, min(e.recorded_at) AS oldest FROM events e \
             WHERE (e.tx_id, e.position) > (c.tx_id, c.position) \
         ) behind \
         WHERE c.name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(
        row.map(|(tx_id, position, updated_at, events, seconds)| Lag {
            checkpoint: Cursor {
                tx_id: TxId(tx_id.parse().unwrap_or_default()),
                position,
            },
            checkpoint_updated_at: updated_at,
            events_behind: events,
            seconds_behind: seconds.max(0.0),
        }),
    )
}
