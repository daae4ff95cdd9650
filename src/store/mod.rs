//! The event store: Postgres as an append-only log of account streams.
//!
//! Writers append to one stream at an expected version; the
//! `UNIQUE (stream_id, version)` constraint turns a lost race into a typed
//! [`AppendError::Conflict`] instead of a lost update. Unique claims (username,
//! email) are inserted in the same transaction, so uniqueness never rests on a
//! read-then-write, and released only in the transaction that appends the
//! event ending their registration ([`Append::releases_claims`]). Readers of the whole log use [`read_committed_after`], which
//! is safe against identities that commit out of order.
//!
//! Every statement on `events`, `checkpoints` and `unique_claims` is in this
//! module; everything above it reads the log as decoded [`RecordedEvent`]s and
//! cursors, never through SQL of its own or payload JSON paths that would
//! bypass decoding and upcasting.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::{AccountEvent, DecodeError, EncodeError, EncodedEvent};

mod privileges;
mod snapshots;

pub use privileges::grant_runtime_privileges;
pub use snapshots::{StoredSnapshot, load_snapshot, save_snapshot};

/// The stream of one account.
pub fn account_stream(account_id: Uuid) -> String {
    format!("account-{account_id}")
}

/// An event to append, already in its stored shape.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub encoded: EncodedEvent,
}

impl NewEvent {
    /// Wraps a domain event. Request events use their request id as event id,
    /// so the job that carries out the request can be keyed by it.
    pub fn from_domain(event: &AccountEvent) -> Result<Self, EncodeError> {
        Ok(Self {
            event_id: event.request_id().unwrap_or_else(Uuid::now_v7),
            encoded: event.encode()?,
        })
    }
}

/// A value only one account may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub kind: ClaimKind,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    Username,
    Email,
    /// The one live sign-up held against an address an active (or blocked)
    /// account owns (the owner holds `Email`): the next such sign-up
    /// supersedes it, as for an address a pending registration holds.
    EmailAttempt,
}

impl ClaimKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::Email => "email",
            Self::EmailAttempt => "email-attempt",
        }
    }
}

/// Context stored beside each event; never personal data in clear.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EventMetadata {
    /// The HTTP request that appended the event; stored as `request_id`.
    #[serde(rename = "request_id", skip_serializing_if = "Option::is_none")]
    pub http_request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip_hash: Option<String>,
    /// Who acted, for operators' acts: `api-key:<id>` (admin API) or
    /// `operator` (`porter accounts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// An event as read back from the log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordedEvent {
    pub position: i64,
    /// The writing transaction id (`xid8`, read as text and parsed).
    #[sqlx(try_from = "String")]
    pub tx_id: TxId,
    pub event_id: Uuid,
    pub stream_id: String,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    pub fn decode(&self) -> Result<AccountEvent, DecodeError> {
        AccountEvent::decode(&self.event_type, self.schema_version, self.payload.clone())
    }

    /// The account whose stream holds this event.
    pub fn account_id(&self) -> Option<Uuid> {
        self.stream_id
            .strip_prefix("account-")
            .and_then(|id| Uuid::parse_str(id).ok())
    }

    /// The cursor just past this event.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            tx_id: self.tx_id,
            position: self.position,
        }
    }
}

/// A Postgres `xid8`: 64-bit, never wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct TxId(pub u64);

/// `xid8` has no Rust type in sqlx, so every statement reads it as text; this
/// is the one place that text becomes a [`TxId`]. A value that does not parse
/// is a decoding error, never a silent 0 (which would rewind a cursor to the
/// start of the log).
impl TryFrom<String> for TxId {
    type Error = sqlx::Error;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
            .map(TxId)
            .map_err(|e| sqlx::Error::Decode(format!("xid8 {text:?}: {e}").into()))
    }
}

/// A place in the global order `(tx_id, position)`. Readers resume after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    pub tx_id: TxId,
    pub position: i64,
}

impl Cursor {
    /// A cursor from a row's `tx_id::text` and `position`.
    fn from_row((tx_id, position): (String, i64)) -> Result<Self, sqlx::Error> {
        Ok(Self {
            tx_id: TxId::try_from(tx_id)?,
            position,
        })
    }
}

/// Which events [`read_events`] lists.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub stream: Option<String>,
    pub event_type: Option<String>,
}

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

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to the stream first; reload and decide again.
    #[error("stream {stream_id} is no longer at version {expected_version}")]
    Conflict {
        stream_id: String,
        expected_version: i64,
    },
    /// The claimed value already belongs to another account.
    #[error("{} is already claimed", .0.as_str())]
    ClaimTaken(ClaimKind),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

const EVENT_COLUMNS: &str = "position, tx_id::text AS tx_id, event_id, stream_id, version, event_type, \
     schema_version, payload, metadata, recorded_at";

/// Events for one account's stream, which must be at `expected_version`
/// (0 for a new stream).
#[derive(Debug, Clone)]
pub struct Append {
    pub account_id: Uuid,
    pub expected_version: i64,
    pub events: Vec<NewEvent>,
    /// The events end the account's registration: every claim it holds is
    /// released in the same transaction.
    pub releases_claims: bool,
}

/// Appends `events` to `stream_id`, which must be at `expected_version`
/// (0 for a new stream), and inserts `claims`, all in one transaction.
/// Returns the stream's new version.
#[tracing::instrument(skip_all, fields(stream_id, expected_version, events = events.len()))]
pub async fn append(
    pool: &PgPool,
    stream_id: &str,
    expected_version: i64,
    events: &[NewEvent],
    claims: &[(Claim, Uuid)],
    metadata: &EventMetadata,
) -> Result<i64, AppendError> {
    if claims.is_empty() {
        // One statement is one transaction: no BEGIN/COMMIT round trips.
        let mut connection = pool.acquire().await?;
        return insert_events(
            &mut connection,
            stream_id,
            expected_version,
            events,
            metadata,
        )
        .await;
    }
    let mut tx = pool.begin().await?;
    insert_claims(&mut tx, claims).await?;
    let version = insert_events(&mut tx, stream_id, expected_version, events, metadata).await?;
    tx.commit().await?;
    Ok(version)
}

/// Appends to several streams in one transaction: first the claims of the
/// registrations that end are released, then `claims` are taken, then each
/// stream is appended at its expected version. A sign-up that supersedes a
/// pending registration moves the address's claim this way, so no moment
/// exists in which the address is free or held twice.
#[tracing::instrument(skip_all, fields(streams = appends.len()))]
pub async fn append_all(
    pool: &PgPool,
    appends: &[Append],
    claims: &[(Claim, Uuid)],
    metadata: &EventMetadata,
) -> Result<(), AppendError> {
    append_all_in(pool.begin().await?, appends, claims, metadata).await
}

/// [`append_all`] in `tx` (one from [`lock_address`]), which it commits.
pub async fn append_all_in(
    mut tx: Transaction<'_, Postgres>,
    appends: &[Append],
    claims: &[(Claim, Uuid)],
    metadata: &EventMetadata,
) -> Result<(), AppendError> {
    let released: Vec<Uuid> = appends
        .iter()
        .filter(|append| append.releases_claims)
        .map(|append| append.account_id)
        .collect();
    if !released.is_empty() {
        sqlx::query("DELETE FROM unique_claims WHERE account_id = ANY($1)")
            .bind(&released)
            .execute(&mut *tx)
            .await
            .map_err(lost_race_or)?;
    }
    if !claims.is_empty() {
        insert_claims(&mut tx, claims).await?;
    }
    for append in appends.iter().filter(|append| !append.events.is_empty()) {
        insert_events(
            &mut tx,
            &account_stream(append.account_id),
            append.expected_version,
            &append.events,
            metadata,
        )
        .await?;
    }
    tx.commit().await.map_err(lost_race_or)?;
    Ok(())
}

/// Two transactions that move claims between registrations can wait on each
/// other's rows; Postgres then aborts one (deadlock, serialization failure).
/// That is a lost race like a version conflict: the caller decides again.
fn lost_race_or(error: sqlx::Error) -> AppendError {
    match &error {
        sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("40P01" | "40001")) => {
            AppendError::Conflict {
                stream_id: String::new(),
                expected_version: 0,
            }
        }
        _ => AppendError::Database(error),
    }
}

/// Inserts all `claims` in one statement; the first one (in the given
/// order) that another account holds is reported.
async fn insert_claims(
    tx: &mut Transaction<'_, Postgres>,
    claims: &[(Claim, Uuid)],
) -> Result<(), AppendError> {
    // ON CONFLICT waits for a concurrent claimant to commit or roll back, so of
    // two racing sign-ups exactly one gets the row. Rows are inserted in the
    // given order (username before email), so racing sign-ups cannot deadlock.
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO unique_claims (kind, value, account_id) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[]) \
         ON CONFLICT DO NOTHING RETURNING kind",
    )
    .bind(
        claims
            .iter()
            .map(|(claim, _)| claim.kind.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        claims
            .iter()
            .map(|(claim, _)| claim.value.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        claims
            .iter()
            .map(|(_, account_id)| *account_id)
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut **tx)
    .await
    .map_err(lost_race_or)?;
    match claims
        .iter()
        .find(|(claim, _)| !inserted.iter().any(|kind| kind == claim.kind.as_str()))
    {
        Some((taken, _)) => Err(AppendError::ClaimTaken(taken.kind)),
        None => Ok(()),
    }
}

async fn insert_events(
    connection: &mut PgConnection,
    stream_id: &str,
    expected_version: i64,
    events: &[NewEvent],
    metadata: &EventMetadata,
) -> Result<i64, AppendError> {
    let metadata = serde_json::to_value(metadata).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let versions: Vec<i64> = (1..)
        .map(|n| expected_version + n)
        .take(events.len())
        .collect();
    let result = sqlx::query(
        "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, payload, metadata) \
         SELECT e.event_id, $1, e.version, e.event_type, e.schema_version, e.payload, $2 \
         FROM UNNEST($3::uuid[], $4::bigint[], $5::text[], $6::int[], $7::jsonb[]) \
              AS e(event_id, version, event_type, schema_version, payload) \
         ORDER BY e.version",
    )
    .bind(stream_id)
    .bind(&metadata)
    .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
    .bind(&versions)
    .bind(events.iter().map(|e| e.encoded.event_type).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.encoded.schema_version).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.encoded.payload.clone()).collect::<Vec<_>>())
    .execute(&mut *connection)
    .await;
    match result {
        Ok(_) => Ok(versions.last().copied().unwrap_or(expected_version)),
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("events_stream_version_key") => {
            Err(AppendError::Conflict {
                stream_id: stream_id.to_owned(),
                expected_version,
            })
        }
        Err(e) => Err(lost_race_or(e)),
    }
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

/// The account holding a claim, if any.
pub async fn claim_holder<'e>(
    executor: impl PgExecutor<'e>,
    kind: ClaimKind,
    value: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT account_id FROM unique_claims WHERE kind = $1 AND value = $2")
        .bind(kind.as_str())
        .bind(value)
        .fetch_optional(executor)
        .await
}

/// Begins a transaction that holds the advisory lock of one email address
/// until it ends. Sign-ups for one address take it before they read who
/// holds the address, so a burst of them is decided one after the other
/// instead of each losing races on the holder's stream (dozens of writers
/// on one stream would otherwise exhaust their rounds). Other writers of
/// that stream (activation, expiry) still meet the version check.
pub async fn lock_address(
    pool: &PgPool,
    canonical_email: &str,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('porter:address:' || $1, 0))")
        .bind(canonical_email)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_id_that_does_not_parse_is_an_error_not_zero() {
        assert_eq!(
            TxId::try_from("18446744073709551615".to_owned()).expect("parses"),
            TxId(u64::MAX)
        );
        for bad in ["", "-1", "12a", "18446744073709551616"] {
            assert!(TxId::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
        assert!(Cursor::from_row(("x".into(), 7)).is_err());
    }
}
