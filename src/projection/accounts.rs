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
    store::RecordedEvent,
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
            registered_at: recorded_at,
            activated_at: None,
            emails_sent: 0,
            last_email_at: None,
            version,
        });
    }
    let mut row = row?;
    row.version = version;
    match event {
        AccountEvent::ActivationEmailSent(sent) => {
            row.emails_sent += 1;
            row.last_email_at = Some(sent.sent_at);
        }
        AccountEvent::AccountActivated(activated) => {
            row.status = AccountStatus::Active.as_str().into();
            row.activated_at = Some(activated.activated_at);
        }
        AccountEvent::AccountRegistered(_)
        | AccountEvent::ActivationRequested(_)
        | AccountEvent::ActivationEmailFailed(_)
        | AccountEvent::SignUpAttemptedForExistingEmail(_)
        | AccountEvent::EmailRetryRequested(_)
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
        "SELECT id, username, email, status, registered_at, activated_at, emails_sent, last_email_at, version \
         FROM {} WHERE id = ANY($1)",
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
        "INSERT INTO {} (id, username, email, status, registered_at, activated_at, emails_sent, last_email_at, version) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], \
                              $6::timestamptz[], $7::int[], $8::timestamptz[], $9::bigint[]) \
         ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username, email = EXCLUDED.email, \
             status = EXCLUDED.status, registered_at = EXCLUDED.registered_at, \
             activated_at = EXCLUDED.activated_at, emails_sent = EXCLUDED.emails_sent, \
             last_email_at = EXCLUDED.last_email_at, version = EXCLUDED.version",
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
    }
}
