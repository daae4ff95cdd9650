//! The event store: Postgres as an append-only log of account streams.
//!
//! Writers append to one stream at an expected version; the
//! `UNIQUE (stream_id, version)` constraint turns a lost race into a typed
//! [`AppendError::Conflict`] instead of a lost update. Unique claims (username,
//! email) are inserted in the same transaction, so uniqueness never rests on a
//! read-then-write. Readers of the whole log use [`read_committed_after`], which
//! is safe against identities that commit out of order.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::{AccountEvent, DecodeError, EncodeError, EncodedEvent};

pub mod accounts;

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
}

impl ClaimKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::Email => "email",
        }
    }
}

/// Context stored beside each event; never personal data in clear.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EventMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip_hash: Option<String>,
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

impl TryFrom<String> for TxId {
    type Error = std::num::ParseIntError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse().map(TxId)
    }
}

/// A place in the global order `(tx_id, position)`. Readers resume after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    pub tx_id: TxId,
    pub position: i64,
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
    .await?;
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
    let metadata = serde_json::to_value(metadata).unwrap_or(Value::Null);
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
        Err(e) => Err(e.into()),
    }
}

/// Every event of one stream, in version order.
#[tracing::instrument(skip_all, fields(stream_id))]
pub async fn load_stream(
    pool: &PgPool,
    stream_id: &str,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY version"
    )))
    .bind(stream_id)
    .fetch_all(pool)
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
    Ok(row.map(|(tx_id, position)| Cursor {
        tx_id: TxId(tx_id.parse().unwrap_or_default()),
        position,
    }))
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

/// The account holding a claim, if any.
pub async fn claim_holder(
    pool: &PgPool,
    kind: ClaimKind,
    value: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT account_id FROM unique_claims WHERE kind = $1 AND value = $2")
        .bind(kind.as_str())
        .bind(value)
        .fetch_optional(pool)
        .await
}
