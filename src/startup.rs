//! Connecting to Postgres and Redis and starting the processes' parts, shared
//! by the binary's subcommands and the integration tests.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    commands::Commands,
    config::{Config, DatabaseConfig, SecretUrl},
    gauges,
    hashing::PasswordHasher,
    keys::{KeyPurpose, LinkKeys},
    mail::{DevMailbox, Templates},
    queue::EmailQueue,
    rate_limit::RateLimiter,
    sessions::Sessions,
    store,
    web::{self, AppState},
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

/// `porter migrate`: applies the migrations as the schema's owner and, when
/// `web` and `worker` connect as another role, grants that role its rights
/// ([`store::grant_runtime_privileges`]).
pub async fn migrate_as_owner(database: &DatabaseConfig) -> anyhow::Result<()> {
    let pool = connect_postgres(&database.owner()).await?;
    migrate(&pool).await?;
    if let Some(role) = runtime_role(database)? {
        store::grant_runtime_privileges(&pool, &role)
            .await
            .with_context(|| format!("grant the runtime role {role} its privileges"))?;
        tracing::info!(role, "runtime role granted its privileges");
    }
    pool.close().await;
    Ok(())
}

/// The role of `DATABASE_URL`, when `MIGRATION_DATABASE_URL` names another.
fn runtime_role(database: &DatabaseConfig) -> anyhow::Result<Option<String>> {
    let Some(owner_url) = &database.migration_url else {
        return Ok(None);
    };
    let user = |url: &SecretUrl, variable: &str| -> anyhow::Result<String> {
        let options: PgConnectOptions = url
            .expose()
            .parse()
            .with_context(|| format!("parse {variable}"))?;
        Ok(options.get_username().to_owned())
    };
    let runtime = user(&database.url, "DATABASE_URL")?;
    Ok((runtime != user(owner_url, "MIGRATION_DATABASE_URL")?).then_some(runtime))
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
        templates: Templates::load(&config.templates).context("load templates")?,
        rate_limiter: RateLimiter::new(
            connect_redis(&config.redis.rate_limit_url).await?,
            namespace,
            config.limits.ipv6_prefix,
        ),
        hasher: PasswordHasher::new(config.web.hashing)
            .context("start the password hashing threads")?,
        gauges: gauges::Sources::new(pool.clone(), redis.clone(), namespace),
        dev_mailbox: None,
        redis,
        pool,
        config,
    })
}

/// Where the web process listens: the API, and `/metrics` apart from it.
#[derive(Debug)]
pub struct WebListeners {
    pub api: TcpListener,
    pub metrics: Option<TcpListener>,
}

/// Serves HTTP on `listeners` until `shutdown` is cancelled.
pub async fn run_web(
    config: Config,
    pool: PgPool,
    listeners: WebListeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = Arc::new(web_state(config, pool).await?);
    serve_web(state, listeners, shutdown).await
}

/// Serves HTTP with an already built state (tests keep a handle on it).
pub async fn serve_web(
    state: Arc<AppState>,
    listeners: WebListeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Some(metrics) = listeners.metrics {
        tracing::info!(address = %metrics.local_addr()?, "web metrics: listening");
        tokio::spawn(web::serve_metrics(
            metrics,
            state.clone(),
            shutdown.clone().cancelled_owned(),
        ));
    }
    tracing::info!(address = %listeners.api.local_addr()?, "web: listening");
    web::serve(listeners.api, state, shutdown.cancelled_owned()).await;
    Ok(())
}

/// Runs the email worker and projector until `shutdown` is cancelled.
pub async fn run_worker(
    config: Config,
    pool: PgPool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = Arc::new(WorkerState::connect(config, pool, None).await?);
    worker::run(state, shutdown).await
}

/// `porter dev`: the web server and the worker in one process, sharing a
/// mailbox of what the worker sent, which the web server shows on
/// `/dev/mail`. Only this function turns that mailbox on.
pub async fn run_dev(
    config: Config,
    pool: PgPool,
    listeners: WebListeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mailbox = DevMailbox::new();
    let mut web = web_state(config.clone(), pool.clone()).await?;
    web.dev_mailbox = Some(mailbox.clone());
    let worker = WorkerState::connect(config, pool, Some(mailbox)).await?;
    tracing::info!("dev: the emails sent are listed on /dev/mail");
    let (web, worker) = tokio::join!(
        serve_web(Arc::new(web), listeners, shutdown.clone()),
        worker::run(Arc::new(worker), shutdown),
    );
    web.and(worker)
}

/// Starts the worker's `GET /metrics` listener on `METRICS_PORT`, if set.
pub async fn serve_worker_metrics(
    config: &Config,
    pool: &PgPool,
    listener: TcpListener,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let sources = gauges::Sources::new(
        pool.clone(),
        connect_redis(&config.redis.url).await?,
        &config.redis.namespace,
    );
    tracing::info!(address = %listener.local_addr()?, "worker metrics: listening");
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
