//! API keys: how the application that uses Porter authenticates to the
//! admin API.
//!
//! A key is `pk_` followed by 256 random bits from the OS CSPRNG, base64url
//! (43 characters); the prefix makes a leaked key easy to recognise in a
//! repository or a log scanner. Postgres keeps only SHA-256 of it, so a
//! dump of `api_keys` opens nothing, and a key is shown once, when created.
//! A revoked key stops working at once (every request looks it up).

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rand::RngExt as _;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// What every key starts with.
pub const PREFIX: &str = "pk_";
/// Random bytes in a key: 256 bits.
const SECRET_BYTES: usize = 32;

/// A newly created key: the only moment its secret exists outside the
/// caller's hands.
pub struct CreatedKey {
    pub id: Uuid,
    pub secret: String,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Creates a key named `name` and returns its secret, once.
pub async fn create(pool: &PgPool, name: &str) -> Result<CreatedKey, sqlx::Error> {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill(&mut bytes);
    let secret = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO api_keys (id, name, key_hash) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(name)
        .bind(digest(&secret))
        .execute(pool)
        .await?;
    Ok(CreatedKey { id, secret })
}

/// Every key, oldest first, revoked ones included.
pub async fn list(pool: &PgPool) -> Result<Vec<ApiKey>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await
}

/// Revokes key `id`; `false` when there is no such key or it was revoked
/// already.
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let revoked =
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(pool)
            .await?;
    Ok(revoked.rows_affected() == 1)
}

/// The id of the live key `presented`, if it is one, and notes its use.
/// Anything that is not shaped like a key is refused without a query.
pub async fn authenticate(pool: &PgPool, presented: &str) -> Result<Option<Uuid>, sqlx::Error> {
    let shaped_like_a_key = presented.len() == PREFIX.len() + 43
        && presented.starts_with(PREFIX)
        && presented[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !shaped_like_a_key {
        return Ok(None);
    }
    sqlx::query_scalar(
        "UPDATE api_keys SET last_used_at = now() \
         WHERE key_hash = $1 AND revoked_at IS NULL RETURNING id",
    )
    .bind(digest(presented))
    .fetch_optional(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_only_its_hash_at_rest_and_never_in_debug_output() {
        let created = CreatedKey {
            id: Uuid::nil(),
            secret: "pk_secret".into(),
        };
        assert!(!format!("{created:?}").contains("pk_secret"));
        assert_eq!(digest("pk_a").len(), 32);
        assert_ne!(digest("pk_a"), digest("pk_b"));
    }
}
