//! Writing the log: appending to streams at an expected version, with the
//! unique claims taken and released in the same transaction.
//!
//! A lost race (the stream moved, a claim is held, Postgres aborted one of
//! two transactions) comes back as a typed [`AppendError`], never as a lost
//! update, so the caller reloads and decides again.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::{Claim, ClaimKind, account_stream};
use crate::domain::{AccountEvent, EncodeError, EncodedEvent};

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

/// [`append_all`] in `tx` (one from [`lock_address`](super::lock_address)),
/// which it commits.
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
