//! How every part of Porter connects to Postgres and Redis: pool size,
//! timeouts and reconnects, stated once. A leaf, because the worker opens a
//! fresh Redis connection at each restart of its email worker and must not
//! reach the assembly layer (`startup`) for it.

use std::time::Duration;

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::platform::config::{DatabaseConfig, SecretUrl};

/// How long a request waits for a Postgres connection before it is answered
/// `503`: long enough to ride out a busy pool, short enough to fail fast
/// when Postgres is down.
const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn connect_postgres(database: &DatabaseConfig) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(PG_ACQUIRE_TIMEOUT)
        // No ping before every use: a dead connection fails its query, which
        // the caller maps to 503 or retries, and the pool replaces it.
        .test_before_acquire(false)
        .connect(database.url.expose())
        .await
        .with_context(|| format!("connect to Postgres at {}", database.url))
}

/// A Redis connection that reconnects by itself and fails fast while Redis is
/// away, instead of hanging the caller. It connects lazily, so a process can
/// start (and sign-ups succeed) while Redis is down.
pub async fn connect_redis(url: &SecretUrl) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url.expose()).context("parse REDIS_URL")?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client, config).context("set up the Redis connection")
}
