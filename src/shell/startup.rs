//! Putting a process together: migrations, the listeners, and starting the
//! web server, the worker and `porter dev` on the [`Services`] built once
//! (`platform::services`); shared by the binary's subcommands and the
//! integration tests.

use std::sync::Arc;

use anyhow::Context as _;
use sqlx::{PgPool, postgres::PgConnectOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    features::operations::gauges,
    platform::{
        config::{DatabaseConfig, SecretUrl},
        connections::connect_postgres,
        mail::DevMailbox,
        services::{AppState, Services, web_state, worker_state},
        store,
    },
    shell::{web, worker},
};

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

/// Where the web process listens: the API, and `/metrics` apart from it.
#[derive(Debug)]
pub struct WebListeners {
    pub api: TcpListener,
    pub metrics: Option<TcpListener>,
}

/// Serves HTTP on `listeners` until `shutdown` is cancelled.
pub async fn run_web(
    services: &Services,
    listeners: WebListeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = Arc::new(web_state(services)?);
    serve_web(state, listeners, gauge_sources(services), shutdown).await
}

/// Serves HTTP with an already built state and gauge sources (tests keep a
/// handle on both).
pub async fn serve_web(
    state: Arc<AppState>,
    listeners: WebListeners,
    gauges: gauges::Sources,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Some(metrics) = listeners.metrics {
        tracing::info!(address = %metrics.local_addr()?, "web metrics: listening");
        tokio::spawn(web::serve_metrics(
            metrics,
            state.clone(),
            gauges,
            shutdown.clone().cancelled_owned(),
        ));
    }
    tracing::info!(address = %listeners.api.local_addr()?, "web: listening");
    web::serve(listeners.api, state, shutdown.cancelled_owned()).await;
    Ok(())
}

/// Runs the email worker and projector until `shutdown` is cancelled.
pub async fn run_worker(services: &Services, shutdown: CancellationToken) -> anyhow::Result<()> {
    let state = Arc::new(worker_state(services, None)?);
    worker::run(state, shutdown).await
}

/// `porter dev`: the web server and the worker in one process, on the same
/// services, sharing a mailbox of what the worker sent, which the web server
/// shows on `/dev/mail`. Only this function turns that mailbox on.
pub async fn run_dev(
    services: &Services,
    listeners: WebListeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mailbox = DevMailbox::new();
    let mut web = web_state(services)?;
    web.dev_mailbox = Some(mailbox.clone());
    let worker = worker_state(services, Some(mailbox))?;
    tracing::info!("dev: the emails sent are listed on /dev/mail");
    let (web, worker) = tokio::join!(
        serve_web(
            Arc::new(web),
            listeners,
            gauge_sources(services),
            shutdown.clone()
        ),
        worker::run(Arc::new(worker), shutdown),
    );
    web.and(worker)
}

/// Starts the worker's `GET /metrics` listener on `METRICS_PORT`, if set.
pub fn serve_worker_metrics(
    services: &Services,
    listener: TcpListener,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "worker metrics: listening");
    tokio::spawn(worker::metrics_listener::serve(
        listener,
        gauge_sources(services),
        shutdown.clone().cancelled_owned(),
    ));
    Ok(())
}

/// What a process's `/metrics` listener reads the shared gauges from: one
/// per process, so concurrent scrapes share one read.
pub fn gauge_sources(services: &Services) -> gauges::Sources {
    gauges::Sources::new(
        services.pool.clone(),
        services.redis.clone(),
        &services.config.redis.namespace,
    )
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
