//! Webhook subscriptions: what operators manage (`porter webhooks`) and
//! what a worker holds while it delivers.
//!
//! A subscription's place in the log is a checkpoint of the store
//! (`webhook:<id>`), so its lag is measured like the projector's. A worker
//! process delivers a subscription only while it holds its lease (renewed in
//! database time, so clocks of different hosts do not matter), and it saves
//! its progress only while it still holds it and nobody replayed the
//! subscription meanwhile (`generation`): a worker that stalled past its
//! lease, or an operator's `replay`, can never be overwritten by a late
//! save. Every operator action is one statement or one transaction.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::{
    ToSchema,
    openapi::{Array, ObjectBuilder, RefOr, Schema, Type},
};
use uuid::Uuid;

use super::signature::Secret;
use crate::{
    features::public_events,
    platform::store::{self, Cursor},
};

/// A subscription as operators see it: never its secrets.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    pub id: Uuid,
    pub url: String,
    /// The public types delivered; null for all
    #[schema(schema_with = event_types_schema, required = true)]
    pub event_types: Option<Vec<String>>,
    /// `active`, `paused` or `disabled`.
    #[schema(schema_with = state_schema)]
    pub state: String,
    #[schema(required = true)]
    pub state_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    #[schema(minimum = 0)]
    pub delivered: i64,
    #[schema(required = true)]
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// Since when every attempt has failed; null while deliveries succeed
    #[schema(required = true)]
    pub failing_since: Option<DateTime<Utc>>,
    /// Consecutive failed attempts
    #[schema(minimum = 0)]
    pub failed_attempts: i64,
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// The worker process delivering it now
    #[schema(required = true)]
    pub lease_owner: Option<String>,
    /// Until when the secret before the last rotation still signs
    #[schema(required = true)]
    pub previous_secret_until: Option<DateTime<Utc>>,
}

fn event_types_schema() -> RefOr<Schema> {
    let mut array = Array::new_nullable(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(public_events::TYPES)),
    );
    array.description = Some("The public types delivered; null for all".into());
    Schema::Array(array).into()
}

fn state_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["active", "paused", "disabled"]))
        .into()
}

const COLUMNS: &str = "id, url, event_types, state, state_reason, created_at, delivered, \
     last_delivered_at, failing_since, failed_attempts, last_error, \
     CASE WHEN lease_until > now() THEN lease_owner END AS lease_owner, \
     CASE WHEN previous_secret_until > now() THEN previous_secret_until END \
         AS previous_secret_until";

/// A subscription and how far behind the log it is.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ListedWebhookSubscription)]
pub struct Listed {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// Committed log events not delivered yet (internal ones included)
    #[schema(minimum = 0)]
    pub lag_events: i64,
    /// Age of the oldest of them
    #[schema(minimum = 0)]
    pub lag_seconds: f64,
}

/// The checkpoint holding a subscription's place in the log.
pub fn checkpoint(id: Uuid) -> String {
    format!("webhook:{id}")
}

/// A new subscription: its id and its secret, shown once.
#[derive(Debug)]
pub struct Added {
    pub id: Uuid,
    pub secret: Secret,
}

/// Subscribes `url` to `event_types` (all when `None`) from now on: the
/// first event delivered is the first to commit after this call.
pub async fn add(
    pool: &PgPool,
    url: &str,
    event_types: Option<&[String]>,
) -> Result<Added, sqlx::Error> {
    let id = Uuid::now_v7();
    let secret = Secret::generate();
    let start = store::read_horizon(pool).await?;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_subscriptions (id, url, event_types, secret) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(url)
    .bind(event_types)
    .bind(secret.expose())
    .execute(&mut *tx)
    .await?;
    store::create_checkpoint(&mut *tx, &checkpoint(id), start).await?;
    tx.commit().await?;
    Ok(Added { id, secret })
}

/// Every subscription with its lag, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Listed>, sqlx::Error> {
    let subscriptions: Vec<Subscription> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions ORDER BY created_at, id"
    )))
    .fetch_all(pool)
    .await?;
    let mut listed = Vec::with_capacity(subscriptions.len());
    for subscription in subscriptions {
        listed.push(with_lag(pool, subscription).await?);
    }
    Ok(listed)
}

/// One subscription with its lag, if it exists.
pub async fn show(pool: &PgPool, id: Uuid) -> Result<Option<Listed>, sqlx::Error> {
    match get(pool, id).await? {
        Some(subscription) => Ok(Some(with_lag(pool, subscription).await?)),
        None => Ok(None),
    }
}

async fn with_lag(pool: &PgPool, subscription: Subscription) -> Result<Listed, sqlx::Error> {
    let lag = store::checkpoint_lag(pool, &checkpoint(subscription.id)).await?;
    Ok(Listed {
        lag_events: lag.as_ref().map_or(0, |lag| lag.events_behind),
        lag_seconds: lag.as_ref().map_or(0.0, |lag| lag.seconds_behind),
        subscription,
    })
}

/// One subscription, if it exists.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Subscription>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Removes subscription `id` and its checkpoint; `false` when there is none.
pub async fn remove(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let removed = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    store::remove_checkpoint(&mut *tx, &checkpoint(id)).await?;
    tx.commit().await?;
    Ok(removed)
}

/// Pauses an active subscription; `false` when it is not active. Its worker
/// stops after the delivery in flight; nothing is skipped.
pub async fn pause(pool: &PgPool, id: Uuid, reason: &str) -> Result<bool, sqlx::Error> {
    let paused = sqlx::query(
        "UPDATE webhook_subscriptions SET state = 'paused', state_reason = $2 \
         WHERE id = $1 AND state = 'active'",
    )
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(paused.rows_affected() == 1)
}

/// Makes a paused or disabled subscription active again, with a clean
/// failure record; delivery continues at the first undelivered event.
/// `false` when it is active already or does not exist.
pub async fn resume(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let resumed = sqlx::query(
        "UPDATE webhook_subscriptions SET state = 'active', state_reason = NULL, \
             failing_since = NULL, failed_attempts = 0 \
         WHERE id = $1 AND state <> 'active'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(resumed.rows_affected() == 1)
}

/// A new secret for subscription `id`, returned once; the old one keeps
/// signing beside it for `overlap`. `None` when there is no such
/// subscription.
pub async fn rotate_secret(
    pool: &PgPool,
    id: Uuid,
    overlap: Duration,
) -> Result<Option<Secret>, sqlx::Error> {
    let secret = Secret::generate();
    let rotated = sqlx::query(
        "UPDATE webhook_subscriptions SET previous_secret = secret, secret = $2, \
             previous_secret_until = now() + make_interval(secs => $3) \
         WHERE id = $1",
    )
    .bind(id)
    .bind(secret.expose())
    .bind(overlap.as_secs_f64())
    .execute(pool)
    .await?;
    Ok((rotated.rows_affected() == 1).then_some(secret))
}

/// Deletes every rotated-out secret whose overlap has ended, so an old
/// secret does not outlive its use in the database (and its backups);
/// returns how many. Run by every deliverer's claim loop.
pub async fn forget_expired_secrets(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let forgotten = sqlx::query(
        "UPDATE webhook_subscriptions SET previous_secret = NULL, previous_secret_until = NULL \
         WHERE previous_secret_until <= now()",
    )
    .execute(pool)
    .await?;
    Ok(forgotten.rows_affected())
}

/// Moves subscription `id` back (or forward) to `from`: the events after it
/// are delivered again, with the same ids. `false` when there is no such
/// subscription.
pub async fn replay_from(pool: &PgPool, id: Uuid, from: Cursor) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let found =
        sqlx::query("UPDATE webhook_subscriptions SET generation = generation + 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
    if found {
        store::save_checkpoint(&mut tx, &checkpoint(id), from).await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// What a worker needs to deliver a subscription it holds.
#[derive(Debug, Clone)]
pub struct Held {
    pub id: Uuid,
    pub url: String,
    pub event_types: Option<Vec<String>>,
    /// The current secret first, then the old one during an overlap.
    pub secrets: Vec<Secret>,
    pub generation: i64,
    /// Where delivery continues.
    pub checkpoint: Cursor,
    /// When the lease was last renewed (taken just before, so never later
    /// than the database's renewal).
    pub renewed_at: Instant,
}

#[derive(sqlx::FromRow)]
struct HeldRow {
    url: String,
    event_types: Option<Vec<String>>,
    secret: String,
    previous_secret: Option<String>,
    generation: i64,
}

/// What one claim round gave a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Subscriptions it now holds that were free.
    pub ids: Vec<Uuid>,
    /// How many it holds beyond its fair share: it should let that many go.
    pub excess: usize,
}

/// One claim round of worker `owner`: records that it is alive, then takes
/// free subscriptions (nobody holds them, or their holder's lease ran out)
/// up to its fair share, the active subscriptions divided by the workers
/// seen within a lease, rounded up. A worker holding more than its share is
/// told how many to let go, so a worker that starts later gets some.
pub async fn claim(pool: &PgPool, owner: &str, lease: Duration) -> Result<Claimed, sqlx::Error> {
    let lease = lease.as_secs_f64();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_deliverers (owner) VALUES ($1)          ON CONFLICT (owner) DO UPDATE SET seen_at = now()",
    )
    .bind(owner)
    .execute(&mut *tx)
    .await?;
    // Workers gone for three leases are forgotten.
    sqlx::query(
        "DELETE FROM webhook_deliverers WHERE seen_at < now() - make_interval(secs => $1 * 3)",
    )
    .bind(lease)
    .execute(&mut *tx)
    .await?;
    let (share, held): (i64, i64) = sqlx::query_as(
        "SELECT              ceil((SELECT count(*) FROM webhook_subscriptions WHERE state = 'active')::numeric                   / (SELECT count(*) FROM webhook_deliverers                      WHERE seen_at > now() - make_interval(secs => $2)))::bigint,              (SELECT count(*) FROM webhook_subscriptions               WHERE lease_owner = $1 AND lease_until > now() AND state = 'active')",
    )
    .bind(owner)
    .bind(lease)
    .fetch_one(&mut *tx)
    .await?;
    let ids = sqlx::query_scalar(
        "UPDATE webhook_subscriptions SET lease_owner = $1, \
             lease_until = now() + make_interval(secs => $2) \
         WHERE id IN ( \
             SELECT id FROM webhook_subscriptions \
             WHERE state = 'active' AND (lease_owner IS NULL OR lease_until < now()) \
             ORDER BY id LIMIT $3 \
             FOR UPDATE SKIP LOCKED) \
         RETURNING id",
    )
    .bind(owner)
    .bind(lease)
    .bind((share - held).max(0))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Claimed {
        ids,
        excess: usize::try_from(held - share).unwrap_or(0),
    })
}

/// Renews `owner`'s lease of subscription `id` and reads what delivering it
/// needs; `None` when `owner` no longer holds it or it is no longer active
/// (paused, disabled, removed): the worker stops delivering it.
pub async fn hold(
    pool: &PgPool,
    id: Uuid,
    owner: &str,
    lease: Duration,
) -> Result<Option<Held>, sqlx::Error> {
    let renewed_at = Instant::now();
    let row: Option<HeldRow> = sqlx::query_as(
        "UPDATE webhook_subscriptions SET lease_until = now() + make_interval(secs => $3) \
         WHERE id = $1 AND lease_owner = $2 AND state = 'active' \
         RETURNING url, event_types, secret, \
             CASE WHEN previous_secret_until > now() THEN previous_secret END AS previous_secret, \
             generation",
    )
    .bind(id)
    .bind(owner)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let secrets = std::iter::once(row.secret)
        .chain(row.previous_secret)
        .map(|text| Secret::parse(&text).map_err(|e| sqlx::Error::Decode(e.into())))
        .collect::<Result<_, _>>()?;
    Ok(Some(Held {
        id,
        url: row.url,
        event_types: row.event_types,
        secrets,
        generation: row.generation,
        checkpoint: store::read_checkpoint(pool, &checkpoint(id)).await?,
        renewed_at,
    }))
}

/// Records `delivered` more deliveries (which end a run of failures) and
/// moves the checkpoint to `to`, if `owner` still holds the subscription at
/// `held.generation`; `false` when it does not (the worker reloads or
/// stops).
pub async fn save_progress(
    pool: &PgPool,
    held: &Held,
    owner: &str,
    to: Cursor,
    delivered: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let still_held = sqlx::query(
        "UPDATE webhook_subscriptions SET delivered = delivered + $4, \
             last_delivered_at = CASE WHEN $4 > 0 THEN now() ELSE last_delivered_at END, \
             failing_since = CASE WHEN $4 > 0 THEN NULL ELSE failing_since END, \
             failed_attempts = CASE WHEN $4 > 0 THEN 0 ELSE failed_attempts END, \
             last_error = CASE WHEN $4 > 0 THEN NULL ELSE last_error END \
         WHERE id = $1 AND lease_owner = $2 AND generation = $3",
    )
    .bind(held.id)
    .bind(owner)
    .bind(held.generation)
    .bind(delivered)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !still_held {
        return Ok(false);
    }
    store::save_checkpoint(&mut tx, &checkpoint(held.id), to).await?;
    tx.commit().await?;
    Ok(true)
}

/// What a failed attempt left the subscription as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Retry after the backoff for this many consecutive failures.
    Retry { failed_attempts: i64 },
    /// Failing for longer than `failure_pause`: paused, not skipped.
    Paused,
    /// `owner` no longer holds it.
    Lost,
}

/// Records a failed attempt; pauses the subscription when every attempt
/// has failed for longer than `pause_after`.
pub async fn record_failure(
    pool: &PgPool,
    id: Uuid,
    owner: &str,
    error: &str,
    pause_after: Duration,
) -> Result<AfterFailure, sqlx::Error> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "UPDATE webhook_subscriptions SET \
             failing_since = COALESCE(failing_since, now()), \
             failed_attempts = failed_attempts + 1, \
             last_error = $3, \
             state = CASE WHEN failing_since < now() - make_interval(secs => $4) \
                 THEN 'paused' ELSE state END, \
             state_reason = CASE WHEN failing_since < now() - make_interval(secs => $4) \
                 THEN 'every attempt failed for longer than WEBHOOK_FAILURE_PAUSE' \
                 ELSE state_reason END \
         WHERE id = $1 AND lease_owner = $2 AND state = 'active' \
         RETURNING state, failed_attempts",
    )
    .bind(id)
    .bind(owner)
    .bind(error)
    .bind(pause_after.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => AfterFailure::Lost,
        Some((state, _)) if state == "paused" => AfterFailure::Paused,
        Some((_, failed_attempts)) => AfterFailure::Retry { failed_attempts },
    })
}

/// Disables subscription `id` for good (the receiver answered `410 Gone`);
/// only an operator's `resume` starts it again.
pub async fn disable(
    pool: &PgPool,
    id: Uuid,
    owner: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_subscriptions SET state = 'disabled', state_reason = $3, \
             lease_owner = NULL, lease_until = NULL \
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Lets go of `owner`'s lease of subscription `id` (a worker stopping), so
/// another worker takes it over at once instead of after the lease.
pub async fn release(pool: &PgPool, id: Uuid, owner: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_subscriptions SET lease_owner = NULL, lease_until = NULL \
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}
