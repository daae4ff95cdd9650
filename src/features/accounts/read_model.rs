//! The `accounts` read model: one row per account with its status and email
//! history, for operators and for anything that lists accounts.
//!
//! A batch is applied in three statements whatever its size: load the rows it
//! touches, fold the events into them in memory, write them back with one
//! multi-row upsert. Replay of millions of events depends on that.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::ProjectionError;
use crate::{
    domain::{AccountEvent, AccountStatus},
    platform::store::RecordedEvent,
};

/// The checkpoint row of this read model.
pub const CHECKPOINT: &str = "accounts";

/// Which physical table a batch goes to: the live one, or the shadow that a
/// replay builds before swapping it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Live,
    Shadow,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Self::Live => "accounts",
            Self::Shadow => "accounts_shadow",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountRow {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub status: String,
    pub registered_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub emails_sent: i32,
    pub last_email_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub locale: String,
    /// When the registration was superseded, cancelled or expired.
    pub ended_at: Option<DateTime<Utc>>,
    /// When an operator blocked the account; cleared on unblock.
    pub blocked_at: Option<DateTime<Utc>>,
    /// The newest email request the account is still waiting for, and when
    /// it was recorded: what the stranded-request sweep looks at.
    pub outstanding_request: Option<Uuid>,
    pub outstanding_since: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, username, email, status, registered_at, activated_at, emails_sent, \
     last_email_at, version, locale, ended_at, blocked_at, outstanding_request, outstanding_since";

impl AccountRow {
    fn wait_for(&mut self, request_id: Uuid, since: DateTime<Utc>) {
        self.outstanding_request = Some(request_id);
        self.outstanding_since = Some(since);
    }

    /// The request's email went out, failed or was withheld.
    fn settled(&mut self, request_id: Uuid) {
        if self.outstanding_request == Some(request_id) {
            self.outstanding_request = None;
            self.outstanding_since = None;
        }
    }

    fn end(&mut self, status: AccountStatus, at: DateTime<Utc>) {
        self.status = status.as_str().into();
        self.ended_at = Some(at);
        self.settled_all();
    }

    /// Nothing is waiting for an email any more (the account is active
    /// without its link, or its registration ended).
    fn settled_all(&mut self) {
        self.outstanding_request = None;
        self.outstanding_since = None;
    }
}

/// Folds one event into the row of its account.
pub fn fold(
    row: Option<AccountRow>,
    event: &AccountEvent,
    recorded_at: DateTime<Utc>,
    version: i64,
) -> Option<AccountRow> {
    if let AccountEvent::AccountRegistered(registered) = event {
        return Some(AccountRow {
            id: registered.account_id,
            username: registered.username.clone(),
            email: registered.email_canonical.clone(),
            status: AccountStatus::Pending.as_str().into(),
            registered_at: registered.registered_at.unwrap_or(recorded_at),
            activated_at: None,
            emails_sent: 0,
            last_email_at: None,
            version,
            locale: registered.locale.clone(),
            ended_at: None,
            blocked_at: None,
            outstanding_request: None,
            outstanding_since: None,
        });
    }
    let mut row = row?;
    row.version = version;
    match event {
        AccountEvent::ActivationRequested(e) => row.wait_for(e.request_id, recorded_at),
        AccountEvent::SignUpAttemptedForExistingEmail(e) => row.wait_for(e.request_id, recorded_at),
        AccountEvent::EmailRetryRequested(e) => row.wait_for(e.request_id, recorded_at),
        AccountEvent::EmailSent(sent) => {
            row.emails_sent += 1;
            row.last_email_at = Some(sent.sent_at);
            row.settled(sent.request_id);
        }
        AccountEvent::EmailFailed(e) => row.settled(e.request_id),
        AccountEvent::EmailWithheld(e) => row.settled(e.request_id),
        AccountEvent::AccountActivated(activated) => {
            row.status = AccountStatus::Active.as_str().into();
            row.activated_at = Some(activated.activated_at);
        }
        AccountEvent::AccountActivatedManually(activated) => {
            row.status = AccountStatus::Active.as_str().into();
            row.activated_at = Some(activated.activated_at);
            row.settled_all();
        }
        AccountEvent::AccountBlocked(blocked) => {
            row.status = AccountStatus::Blocked.as_str().into();
            row.blocked_at = Some(blocked.at);
        }
        AccountEvent::AccountUnblocked(_) => {
            row.status = AccountStatus::Active.as_str().into();
            row.blocked_at = None;
        }
        AccountEvent::RegistrationSuperseded(e) => row.end(AccountStatus::Superseded, e.at),
        AccountEvent::RegistrationCancelled(e) => row.end(AccountStatus::Cancelled, e.at),
        AccountEvent::RegistrationExpired(e) => row.end(AccountStatus::Expired, e.at),
        AccountEvent::AccountRegistered(_)
        | AccountEvent::PasswordResetRequested(_)
        | AccountEvent::PasswordChanged(_) => {}
    }
    Some(row)
}

/// Applies `events` (in global order) to `table` inside `tx`.
pub async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    table: Table,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let mut decoded = Vec::with_capacity(events.len());
    for recorded in events {
        let event = recorded
            .decode()
            .map_err(|source| ProjectionError::Undecodable {
                position: recorded.position,
                event_type: recorded.event_type.clone(),
                source,
            })?;
        if let Some(account_id) = recorded.account_id() {
            decoded.push((account_id, recorded, event));
        }
    }
    let ids: Vec<Uuid> = decoded.iter().map(|(id, _, _)| *id).collect();
    let existing: Vec<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM {} WHERE id = ANY($1)",
        table.name()
    )))
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut rows: HashMap<Uuid, AccountRow> =
        existing.into_iter().map(|row| (row.id, row)).collect();
    for (account_id, recorded, event) in &decoded {
        let row = rows.remove(account_id);
        if let Some(row) = fold(row, event, recorded.recorded_at, recorded.version) {
            rows.insert(*account_id, row);
        }
    }
    upsert(tx, table, rows.into_values().collect()).await?;
    Ok(())
}

async fn upsert(
    tx: &mut Transaction<'_, Postgres>,
    table: Table,
    rows: Vec<AccountRow>,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut columns = Columns::default();
    for row in rows {
        columns.push(row);
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} ({COLUMNS}) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], \
                              $6::timestamptz[], $7::int[], $8::timestamptz[], $9::bigint[], \
                              $10::text[], $11::timestamptz[], $12::timestamptz[], $13::uuid[], \
                              $14::timestamptz[]) \
         ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username, email = EXCLUDED.email, \
             status = EXCLUDED.status, registered_at = EXCLUDED.registered_at, \
             activated_at = EXCLUDED.activated_at, emails_sent = EXCLUDED.emails_sent, \
             last_email_at = EXCLUDED.last_email_at, version = EXCLUDED.version, \
             locale = EXCLUDED.locale, ended_at = EXCLUDED.ended_at, \
             blocked_at = EXCLUDED.blocked_at, \
             outstanding_request = EXCLUDED.outstanding_request, \
             outstanding_since = EXCLUDED.outstanding_since",
        table.name()
    )))
    .bind(columns.id)
    .bind(columns.username)
    .bind(columns.email)
    .bind(columns.status)
    .bind(columns.registered_at)
    .bind(columns.activated_at)
    .bind(columns.emails_sent)
    .bind(columns.last_email_at)
    .bind(columns.version)
    .bind(columns.locale)
    .bind(columns.ended_at)
    .bind(columns.blocked_at)
    .bind(columns.outstanding_request)
    .bind(columns.outstanding_since)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Rows turned into one array per column, the shape `UNNEST` takes.
#[derive(Default)]
struct Columns {
    id: Vec<Uuid>,
    username: Vec<String>,
    email: Vec<String>,
    status: Vec<String>,
    registered_at: Vec<DateTime<Utc>>,
    activated_at: Vec<Option<DateTime<Utc>>>,
    emails_sent: Vec<i32>,
    last_email_at: Vec<Option<DateTime<Utc>>>,
    version: Vec<i64>,
    locale: Vec<String>,
    ended_at: Vec<Option<DateTime<Utc>>>,
    blocked_at: Vec<Option<DateTime<Utc>>>,
    outstanding_request: Vec<Option<Uuid>>,
    outstanding_since: Vec<Option<DateTime<Utc>>>,
}

impl Columns {
    fn push(&mut self, row: AccountRow) {
        self.id.push(row.id);
        self.username.push(row.username);
        self.email.push(row.email);
        self.status.push(row.status);
        self.registered_at.push(row.registered_at);
        self.activated_at.push(row.activated_at);
        self.emails_sent.push(row.emails_sent);
        self.last_email_at.push(row.last_email_at);
        self.version.push(row.version);
        self.locale.push(row.locale);
        self.ended_at.push(row.ended_at);
        self.blocked_at.push(row.blocked_at);
        self.outstanding_request.push(row.outstanding_request);
        self.outstanding_since.push(row.outstanding_since);
    }
}

/// Pending registrations made before `cutoff`, oldest first: the expiry
/// sweep's candidates. The aggregate decides again on each.
pub async fn pending_registered_before(
    pool: &sqlx::PgPool,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM accounts WHERE status = 'pending' AND registered_at <= $1 \
         ORDER BY registered_at LIMIT $2",
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Accounts whose newest email request has waited since before `cutoff`,
/// oldest first, with that request: the stranded-request sweep's candidates.
pub async fn outstanding_since_before(
    pool: &sqlx::PgPool,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, outstanding_request FROM accounts \
         WHERE outstanding_request IS NOT NULL AND outstanding_since <= $1 \
         ORDER BY outstanding_since LIMIT $2",
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One account in a listing page.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListedAccount {
    pub id: Uuid,
    pub username: String,
    /// Canonical form
    pub email: String,
    #[schema(schema_with = status_schema)]
    pub status: String,
    pub registered_at: DateTime<Utc>,
}

/// An account status, as the admin API names it.
pub fn status_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(AccountStatus::ALL.map(AccountStatus::as_str)))
        .into()
}

/// Up to `limit` accounts after `after` (a `(registered_at, id)` position)
/// in registration order, with `status` if given. The order is total and
/// a new sign-up sorts after every existing account, so paging while
/// sign-ups arrive returns each existing account exactly once.
pub async fn list_page(
    pool: &sqlx::PgPool,
    status: Option<AccountStatus>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<ListedAccount>, sqlx::Error> {
    let (after_at, after_id) = after.unzip();
    sqlx::query_as(
        "SELECT id, username, email, status, registered_at FROM accounts \
         WHERE ($1::text IS NULL OR status = $1) \
           AND ($2::timestamptz IS NULL OR (registered_at, id) > ($2, $3::uuid)) \
         ORDER BY registered_at, id LIMIT $4",
    )
    .bind(status.map(AccountStatus::as_str))
    .bind(after_at)
    .bind(after_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}
