//! The services Porter's processes share, wired once: [`Services`] (the
//! connections, the command runner, link keys, sessions, budgets), and from
//! them the state the web handlers ([`AppState`]) and the worker's jobs
//! ([`WorkerState`]) are given. Web, worker and the command line get them
//! from here, so they cannot drift apart in how they build them.

use std::time::Duration;

use anyhow::Context as _;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::platform::{
    commands::Commands,
    config::Config,
    connections::connect_redis,
    hashing::PasswordHasher,
    link_keys::{KeyPurpose, LinkKeys},
    mail::{DevMailbox, MailTransport, Mailer, Templates},
    queue::EmailQueue,
    rate_limit::RateLimiter,
    sessions::Sessions,
};

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

/// Everything a request handler may use; shared by all connections.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub commands: Commands,
    pub activation_keys: LinkKeys,
    pub reset_keys: LinkKeys,
    pub sessions: Sessions,
    /// For address requests, which the web process pushes without a command.
    pub email_queue: EmailQueue,
    pub templates: Templates,
    pub hasher: PasswordHasher,
    pub rate_limiter: RateLimiter,
    /// `porter dev` only: the emails its worker sent, served on `/dev/mail`.
    pub dev_mailbox: Option<DevMailbox>,
}

/// What the worker's tasks need ([`worker_state`] builds it).
#[derive(Debug)]
pub struct WorkerState {
    pub config: Config,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub commands: Commands,
    pub activation_keys: LinkKeys,
    pub reset_keys: LinkKeys,
    pub templates: Templates,
    pub mailer: Mailer,
    /// Counts emails per address against `EMAIL_PER_ADDRESS`.
    pub rate_limiter: RateLimiter,
    /// The email queue, for jobs put back to run later.
    pub queue: EmailQueue,
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
