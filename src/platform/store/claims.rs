//! Values only one account may hold (username, email address) and the
//! per-address lock that serialises sign-ups for one address.
//!
//! Claims are taken and released inside the transactions that append (see
//! `append`); this module names them and answers who holds one.

use sqlx::{PgExecutor, PgPool, Postgres, Transaction};
use uuid::Uuid;

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
