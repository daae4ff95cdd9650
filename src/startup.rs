//! Putting a process together: the [`Services`] it shares between its parts,
//! wired once, the web and worker states built from them, and starting the
//! processes' parts; shared by the binary's subcommands and the integration
//! tests. Only the assembly layer wires services, so web, worker and the
//! command line cannot drift apart in how they build them.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use redis::aio::ConnectionManager;
use sqlx::{PgPool, postgres::PgConnectOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    commands::Commands,
    config::{Config, DatabaseConfig, SecretUrl},
    connections::{connect_postgres, connect_redis},
    gauges,
    hashing::PasswordHasher,
    link_keys::{KeyPurpose, LinkKeys},
    mail::{DevMailbox, MailTransport, Mailer, Templates},
    queue::EmailQueue,
    rate_limit::RateLimiter,
    sessions::Sessions,
    store,
    web::{self, AppState},
    worker::{self, WorkerState},
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

/// The services a process's parts share, each wired here and nowhere else,
/// once per process, from the configuration and the Postgres pool: `porter
/// web`, `porter worker` and `porter accounts` build one each, `porter dev`
/// one for its web server and its worker together. Nothing touches Redis
/// yet (its connections are lazy), so a process starts while Redis is down.
#[derive(Debug, Clone)]
pub struct Services {
    pub config: Config,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    /// For address requests, which the web process pushes without a command.
    pub email_queue: EmailQueue,
    pub commands: Commands,
    pub activation_keys: LinkKeys,
    pub reset_keys: LinkKeys,
    pub sessions: Sessions,
    pub rate_limiter: RateLimiter,
    /// What the metrics listeners read shared gauges from.
    pub gauges: gauges::Sources,
}

impl Services {
    /// The services of `porter web`, `porter worker` and `porter dev`.
    pub async fn connect(config: Config, pool: PgPool) -> anyhow::Result<Self> {
        let email_min_interval = config.mail.min_interval;
        Self::wire(config, pool, email_min_interval).await
    }

    /// The services of an operator's command: a resend is pushed at once
    /// (see [`operator_commands`]).
    pub async fn for_operator(config: Config, pool: PgPool) -> anyhow::Result<Self> {
        Self::wire(config, pool, OPERATOR_EMAIL_INTERVAL).await
    }

    async fn wire(
        config: Config,
        pool: PgPool,
        email_min_interval: Duration,
    ) -> anyhow::Result<Self> {
        let redis = connect_redis(&config.redis.url).await?;
        let namespace = &config.redis.namespace;
        let (email_queue, commands) =
            queue_and_commands(&pool, &redis, namespace, email_min_interval);
        Ok(Self {
            email_queue,
            commands,
            activation_keys: LinkKeys::new(
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
            rate_limiter: RateLimiter::new(
                connect_redis(&config.redis.rate_limit_url).await?,
                namespace,
                config.limits.ipv6_prefix,
            ),
            gauges: gauges::Sources::new(pool.clone(), redis.clone(), namespace),
            redis,
            pool,
            config,
        })
    }
}

/// An operator's resend or retry is pushed at once, whatever the interval
/// between emails: the worker still keeps to it when it sends.
const OPERATOR_EMAIL_INTERVAL: Duration = Duration::ZERO;

/// The commands of `porter deliveries retry`, which needs only Postgres and
/// Redis (not the whole configuration of [`Services::for_operator`]).
pub fn operator_commands(pool: &PgPool, redis: &ConnectionManager, namespace: &str) -> Commands {
    queue_and_commands(pool, redis, namespace, OPERATOR_EMAIL_INTERVAL).1
}

/// The email queue and the commands that push onto it.
fn queue_and_commands(
    pool: &PgPool,
    redis: &ConnectionManager,
    namespace: &str,
    email_min_interval: Duration,
) -> (EmailQueue, Commands) {
    let email_queue = EmailQueue::new(redis.clone(), namespace);
    let commands = Commands::new(pool.clone(), email_queue.clone(), email_min_interval);
    (email_queue, commands)
}

/// The templates each process checks and loads at start.
fn load_templates(config: &Config) -> anyhow::Result<Templates> {
    Templates::load(&config.templates).context("load templates")
}

/// The web process's state: the services, its templates and its password
/// hashing threads.
pub fn web_state(services: &Services) -> anyhow::Result<AppState> {
    let services = services.clone();
    Ok(AppState {
        templates: load_templates(&services.config)?,
        hasher: PasswordHasher::new(services.config.web.hashing)
            .context("start the password hashing threads")?,
        commands: services.commands,
        email_queue: services.email_queue,
        activation_keys: services.activation_keys,
        reset_keys: services.reset_keys,
        sessions: services.sessions,
        rate_limiter: services.rate_limiter,
        gauges: services.gauges,
        dev_mailbox: None,
        redis: services.redis,
        pool: services.pool,
        config: services.config,
    })
}

/// The worker's state: the services, its templates and its mailer, which
/// also keeps what it sends in `dev_mailbox` (`porter dev` only).
pub fn worker_state(
    services: &Services,
    dev_mailbox: Option<DevMailbox>,
) -> anyhow::Result<WorkerState> {
    let services = services.clone();
    let templates = load_templates(&services.config)?;
    let transport = MailTransport::from_config(services.config.mail.smtp_url.expose())
        .context("set up the mail transport")?;
    let mut mailer = Mailer::new(transport, services.config.mail.from.clone());
    if let Some(mailbox) = dev_mailbox {
        mailer = mailer.keeping_in(mailbox);
    }
    Ok(WorkerState {
        templates,
        mailer,
        commands: services.commands,
        activation_keys: services.activation_keys,
        reset_keys: services.reset_keys,
        rate_limiter: services.rate_limiter,
        queue: services.email_queue,
        redis: services.redis,
        pool: services.pool,
        config: services.config,
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
    services: &Services,
    listeners: WebListeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = Arc::new(web_state(services)?);
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
        serve_web(Arc::new(web), listeners, shutdown.clone()),
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
    tokio::spawn(worker::metrics_endpoint::serve(
        listener,
        services.gauges.clone(),
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
