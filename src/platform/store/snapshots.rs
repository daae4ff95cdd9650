//! The `account_snapshots` table: one row per stream with the account's
//! state at some version (see `domain::snapshot`).
//!
//! Unlike `events` it is rewritten in place: a row only ever moves to a
//! later version (or to another schema), so of two processes saving at once
//! the later state stays. Losing every row costs only time.

use serde_json::Value;
use sqlx::PgExecutor;

/// A stored snapshot: the state after event `version` of its stream.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    pub version: i64,
    pub state: Value,
}

/// The snapshot of `stream_id` written in `schema`, if there is one.
pub async fn load_snapshot<'e>(
    executor: impl PgExecutor<'e>,
    stream_id: &str,
    schema: i32,
) -> Result<Option<StoredSnapshot>, sqlx::Error> {
    let row: Option<(i64, Value)> = sqlx::query_as(
        "SELECT version, state FROM account_snapshots WHERE stream_id = $1 AND schema = $2",
    )
    .bind(stream_id)
    .bind(schema)
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|(version, state)| StoredSnapshot { version, state }))
}

/// Saves `snapshot` of `stream_id` unless a later one of the same schema
/// is already stored.
pub async fn save_snapshot<'e>(
    executor: impl PgExecutor<'e>,
    stream_id: &str,
    schema: i32,
    snapshot: &StoredSnapshot,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO account_snapshots (stream_id, version, schema, state) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (stream_id) DO UPDATE \
         SET version = EXCLUDED.version, schema = EXCLUDED.schema, state = EXCLUDED.state, \
             saved_at = now() \
         WHERE account_snapshots.version < EXCLUDED.version \
            OR account_snapshots.schema <> EXCLUDED.schema",
    )
    .bind(stream_id)
    .bind(snapshot.version)
    .bind(schema)
    .bind(&snapshot.state)
    .execute(executor)
    .await?;
    Ok(())
}
