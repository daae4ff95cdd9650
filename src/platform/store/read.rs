//! Reading the log: one stream, several streams, or the whole log in its
//! global order, and the cursors a reader starts from.
//!
//! Readers that must not miss an event read only settled transactions
//! (those below the oldest one still running), so an identity that commits
//! out of order is never skipped.

use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::recorded::EVENT_COLUMNS;
use super::{Cursor, RecordedEvent, TxId};

/// Which events [`read_events`] lists.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub stream: Option<String>,
    pub event_type: Option<String>,
}

/// The events of one stream after `after_version` (0 for all of them), in
/// version order.
#[tracing::instrument(skip_all, fields(stream_id, after_version))]
pub async fn load_stream<'e>(
    executor: impl PgExecutor<'e>,
    stream_id: &str,
    after_version: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version"
    )))
    .bind(stream_id)
    .bind(after_version)
    .fetch_all(executor)
    .await
}

/// Up to `limit` committed events after `cursor`, in `(tx_id, position)` order.
///
/// The `ORDER BY` names the table's columns (`events.tx_id`): a bare `tx_id`
/// would mean the `tx_id::text` output column, ordering transaction ids as
/// strings ("100000" before "99999") while the `WHERE` compares them as
/// numbers, so a batch ending in a higher-sorting string would move the
/// cursor past events it never returned. Ordering by the indexed columns
/// also lets Postgres read the index in order instead of sorting the rest
/// of the log for every batch.
///
/// Only transactions older than every transaction still running are read
/// (`tx_id < pg_snapshot_xmin(pg_current_snapshot())`): a transaction that took
/// a lower position but has not committed yet would otherwise be skipped for
/// good once the cursor moved past it.
pub async fn read_committed_after<'e>(
    executor: impl PgExecutor<'e>,
    cursor: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (tx_id, position) > ($1::text::xid8, $2) \
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY events.tx_id, events.position \
         LIMIT $3"
    )))
    .bind(cursor.tx_id.0.to_string())
    .bind(cursor.position)
    .bind(limit)
    .fetch_all(executor)
    .await
}

/// Up to `limit` events after `after` that match `filter`, in global order.
/// With `settled_only`, only events below the oldest running transaction,
/// like [`read_committed_after`]; without, also events that a transaction
/// committing late may still overtake (an operator's listing of the log).
pub async fn read_events(
    pool: &PgPool,
    filter: &EventFilter,
    after: Cursor,
    limit: i64,
    settled_only: bool,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let settled = if settled_only {
        "AND tx_id < pg_snapshot_xmin(pg_current_snapshot())"
    } else {
        ""
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (tx_id, position) > ($1::text::xid8, $2) {settled} \
           AND ($3::text IS NULL OR stream_id = $3) \
           AND ($4::text IS NULL OR event_type = $4) \
         ORDER BY events.tx_id, events.position \
         LIMIT $5"
    )))
    .bind(after.tx_id.0.to_string())
    .bind(after.position)
    .bind(&filter.stream)
    .bind(&filter.event_type)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Every event of the given streams, each stream in version order.
pub async fn load_streams(
    pool: &PgPool,
    stream_ids: &[String],
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ANY($1) ORDER BY stream_id, version"
    )))
    .bind(stream_ids)
    .fetch_all(pool)
    .await
}

/// The cursor of the event at `position`; `None` when there is none.
pub async fn cursor_at(pool: &PgPool, position: i64) -> Result<Option<Cursor>, sqlx::Error> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT tx_id::text, position FROM events WHERE position = $1")
            .bind(position)
            .fetch_optional(pool)
            .await?;
    row.map(Cursor::from_row).transpose()
}

/// The cursor just before the event `event_id`, so a reader resuming there
/// reads that event first; `None` when there is no such event.
pub async fn cursor_before_event(
    pool: &PgPool,
    event_id: Uuid,
) -> Result<Option<Cursor>, sqlx::Error> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT tx_id::text, position - 1 FROM events WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(pool)
            .await?;
    row.map(Cursor::from_row).transpose()
}

/// A cursor at the read horizon: every event after it has committed after
/// this call or is still being written, every event before it was settled
/// when it was made. Where a new reader of the log starts "from now"
/// without skipping a transaction that commits late.
pub async fn read_horizon(pool: &PgPool) -> Result<Cursor, sqlx::Error> {
    let xmin: String = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(pool)
        .await?;
    Ok(Cursor {
        tx_id: TxId::try_from(xmin)?,
        position: 0,
    })
}

/// The last event in the global order among those committed now, or the
/// start of the log when it is empty.
pub async fn last_committed(pool: &PgPool) -> Result<Cursor, sqlx::Error> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "SELECT tx_id::text, position FROM events \
         ORDER BY events.tx_id DESC, events.position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Cursor::from_row).transpose()?.unwrap_or_default())
}

/// How many events the log holds.
pub async fn count_events(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
}
