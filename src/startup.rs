//! Connecting to Postgres and Redis and starting the processes' parts, shared
//! by the binary's subcommands and the integration tests.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::{PgPool, postgres::PgPoolOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    commands::Commands,
    config::{Config, DatabaseConfig, SecretUrl},
    gauges,
    hashing::PasswordHasher,
    keys::{KeyPurpose, LinkKeys},
    mail::Templates,
    queue::EmailQueue,
    sessions::Sessions,
    web::{self, AppState, RateLimiter},
    worker::{self, WorkerState},
};

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

/// Applies the embedded migrations. Concurrent runs are serialized by sqlx's
/// advisory lock, so every `release` step may run it.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("./migrations")
        .run(pool)
        .await
        .context("apply database migrations")
}

pub async fn web_state(config: Config, pool: PgPool) -> anyhow::Result<AppState> {
    let redis = connect_redis(&config.redis.url).await?;
    let namespace = &config.redis.namespace;
    let email_queue = EmailQueue::new(redis.clone(), namespace);
    Ok(AppState {
        commands: Commands::new(pool.clone(), email_queue.clone(), config.mail.min_interval),
        email_queue,
        keys: LinkKeys::new(
            redis.clone(),
            namespace,
            KeyPurpose::Activation,
            config.mail.activation_ttl,
        ),
        reset_keys: LinkKeys::new(
            redis.clone(),
            namespace,
            KeyPurpose::PasswordReset,
            config.mail.reset_ttl,
        ),
        sessions: Sessions::new(redis.clone(), namespace, config.web.sessions),
        templates: Templates::load().context("load templates")?,
        rate_limiter: RateLimiter::new(redis.clone(), namespace),
        hasher: PasswordHasher::new(config.web.hashing)
            .context("start the password hashing threads")?,
        redis,
        pool,
        config,
    })
}

/// Serves HTTP on `listener` until `shutdown` is cancelled.
pub async fn run_web(
    config: Config,
    pool: PgPool,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = Arc::new(web_state(config, pool).await?);
    serve_web(state, listener, shutdown).await
}

/// Serves HTTP with an already built state (tests keep a handle on it).
pub async fn serve_web(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "web: listening");
    web::serve(listener, state, shutdown.cancelled_owned()).await;
    Ok(())
}

/// Runs the email worker and projector until `shutdown` is cancelled.
pub async fn run_worker(
    config: Config,
    pool: PgPool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = Arc::new(WorkerState::connect(config, pool, shutdown.clone()).await?);
    worker::run(state, shutdown).await
}

/// Starts the worker's `GET /metrics` listener on `METRICS_PORT`, if set.
pub async fn serve_worker_metrics(
    config: &Config,
    pool: &PgPool,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(port) = config.worker.metrics_port else {
        return Ok(());
    };
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("bind port {port} (METRICS_PORT)"))?;
    let sources = gauges::Sources {
        pool: pool.clone(),
        redis: connect_redis(&config.redis.url).await?,
        redis_namespace: config.redis.namespace.clone(),
    };
    tracing::info!(port, "worker metrics: listening");
    tokio::spawn(worker::metrics::serve(
        listener,
        sources,
        shutdown.clone().cancelled_owned(),
    ));
    Ok(())
}

/// A token cancelled on SIGTERM or SIGINT, for graceful shutdown.
pub fn shutdown_on_signal() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        }
        cancel.cancel();
    });
    Ok(token)
}
