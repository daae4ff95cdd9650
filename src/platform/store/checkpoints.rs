//! The `checkpoints` table: how far each reader of the log has got.
//!
//! A reader saves its cursor in the transaction that did the work it
//! covers, or advances it afterwards when that work is idempotent; the row
//! lock also elects the one worker that reads at a time.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

use super::Cursor;

/// How far a checkpointed reader is behind the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    pub checkpoint: Cursor,
    pub checkpoint_updated_at: DateTime<Utc>,
    /// Committed events after the checkpoint.
    pub events_behind: i64,
    /// Age of the oldest of them; 0 when caught up.
    pub seconds_behind: f64,
}

/// Takes the checkpoint row `name` for the rest of `tx`, or `None` when
/// another process holds it (`SKIP LOCKED`): of several workers, one reads
/// the log at a time and the others try again next round.
pub async fn lock_checkpoint(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
) -> Result<Option<Cursor>, sqlx::Error> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "SELECT tx_id::text, position FROM checkpoints WHERE name = $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(Cursor::from_row).transpose()
}

/// Takes the checkpoint row `name` for the rest of `tx`, waiting for a
/// holder to commit: how a replay pauses the projector for its swap.
pub async fn lock_checkpoint_waiting(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
) -> Result<Cursor, sqlx::Error> {
    let row: (String, i64) =
        sqlx::query_as("SELECT tx_id::text, position FROM checkpoints WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_one(&mut **tx)
            .await?;
    Cursor::from_row(row)
}

/// The checkpoint `name` as it stands, without locking it.
pub async fn read_checkpoint(pool: &PgPool, name: &str) -> Result<Cursor, sqlx::Error> {
    let row: (String, i64) =
        sqlx::query_as("SELECT tx_id::text, position FROM checkpoints WHERE name = $1")
            .bind(name)
            .fetch_one(pool)
            .await?;
    Cursor::from_row(row)
}

/// Moves the checkpoint `name` forward to `cursor` in one statement, unless
/// it is there or further already; never backwards. For readers whose work
/// is idempotent (the relay's pushes): two of them may do one batch twice,
/// but neither holds a transaction open while it works, which would hold
/// back the read horizon of every reader of the log.
pub async fn advance_checkpoint(
    pool: &PgPool,
    name: &str,
    cursor: Cursor,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE checkpoints SET tx_id = $2::text::xid8, position = $3, updated_at = now() \
         WHERE name = $1 AND (tx_id, position) < ($2::text::xid8, $3)",
    )
    .bind(name)
    .bind(cursor.tx_id.0.to_string())
    .bind(cursor.position)
    .execute(pool)
    .await?;
    Ok(())
}

/// Moves the checkpoint `name`, in the transaction that did the work it
/// covers.
pub async fn save_checkpoint(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    cursor: Cursor,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE checkpoints SET tx_id = $2::text::xid8, position = $3, updated_at = now() WHERE name = $1")
        .bind(name)
        .bind(cursor.tx_id.0.to_string())
        .bind(cursor.position)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Adds the checkpoint `name` at `cursor` (a new reader of the log).
pub async fn create_checkpoint<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
    cursor: Cursor,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO checkpoints (name, tx_id, position) VALUES ($1, $2::text::xid8, $3)")
        .bind(name)
        .bind(cursor.tx_id.0.to_string())
        .bind(cursor.position)
        .execute(executor)
        .await?;
    Ok(())
}

/// Removes the checkpoint `name` (a reader that is gone for good).
pub async fn remove_checkpoint<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM checkpoints WHERE name = $1")
        .bind(name)
        .execute(executor)
        .await?;
    Ok(())
}

/// The lag of the reader whose checkpoint is `name`; `None` when there is no
/// such checkpoint.
pub async fn checkpoint_lag(pool: &PgPool, name: &str) -> Result<Option<Lag>, sqlx::Error> {
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
    row.map(|(tx_id, position, updated_at, events, seconds)| {
        Ok(Lag {
            checkpoint: Cursor::from_row((tx_id, position))?,
            checkpoint_updated_at: updated_at,
            events_behind: events,
            seconds_behind: seconds.max(0.0),
        })
    })
    .transpose()
}
