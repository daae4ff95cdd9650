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
    store::{Cursor, RecordedEvent, TxId, read_committed_after},
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
    let checkpoint: Option<(String, i64)> = sqlx::query_as(
        "SELECT tx_id::text, position FROM checkpoints WHERE name = $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(accounts::CHECKPOINT)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((tx_id, position)) = checkpoint else {
        return Ok(0);
    };
    let cursor = Cursor {
        tx_id: TxId(tx_id.parse().unwrap_or_default()),
        position,
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

async fn save_checkpoint(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    name: &str,
    cursor: Cursor,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE checkpoints SET tx_id = $2::text::xid8, position = $3, updated_at = now() WHERE name = $1",
    )
    .bind(name)
    .bind(cursor.tx_id.0.to_string())
    .bind(cursor.position)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
