//! Configuration from the environment (twelve-factor).
//!
//! Every setting is read and checked once at start, so a bad value stops the
//! process with one line naming the variable instead of failing on the first
//! request that needs it. Values are read through a lookup function rather than
//! `std::env` directly so the rules can be unit-tested without touching the
//! process environment.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use hmac::{Hmac, KeyInit as _, Mac as _};
use lettre::{Address, message::Mailbox};
use rand::{TryRng as _, rngs::SysRng};
use serde::Serialize;
use sha2::Sha256;
use url::Url;

use crate::domain::Locale;

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

/// Everything the web and worker processes need to run, by concern.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub mail: MailConfig,
    pub web: WebConfig,
    pub worker: WorkerConfig,
    pub limits: RateLimits,
    pub webhooks: WebhookConfig,
    /// Where a process serves `GET /metrics` (`METRICS_PORT`), web and
    /// worker alike; never on the public port; no listener when unset.
    pub metrics_port: Option<u16>,
    /// The interface `METRICS_PORT` listens on (`METRICS_BIND_ADDRESS`):
    /// loopback unless set, since the metrics name the deployment's state.
    pub metrics_bind_address: IpAddr,
    pub templates: TemplatesConfig,
    pub log_format: LogFormat,
    /// `SECRET_KEY`: the root of the keys Porter derives for its own MACs.
    pub secret_key: SecretKey,
}

/// `SECRET_KEY`: one secret from the environment from which each use
/// derives its own key ([`SecretKey::derive`]), so a key leaked or misused
/// in one place says nothing about another. At least 32 characters, e.g.
/// `openssl rand -hex 32`; every web and worker process of a deployment
/// shares it. Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// Fewest characters accepted: 32 hex digits carry 128 bits.
    pub const MIN_LEN: usize = 32;

    /// The key for `purpose`: `HMAC-SHA256(SECRET_KEY, purpose)`.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.0.as_bytes()).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A fresh random value for `SECRET_KEY` (64 hex digits), for
    /// `porter dev` when none is set.
    pub fn generate() -> Result<String, rand::rngs::SysError> {
        let mut bytes = [0u8; 32];
        SysRng.try_fill_bytes(&mut bytes)?;
        Ok(hex::encode(bytes))
    }
}

impl FromStr for SecretKey {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        if raw.chars().count() < Self::MIN_LEN {
            return Err(format!(
                "must be at least {} characters (e.g. `openssl rand -hex 32`)",
                Self::MIN_LEN
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// What emails and pages say, and in which language: `TEMPLATES_DIR`,
/// `DEFAULT_LOCALE`, `PRODUCT_NAME`, `SUPPORT_URL`, `SUPPORT_EMAIL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplatesConfig {
    /// Files here replace the built-in templates of the same path
    /// (`de/activation/subject.hbs`), and a complete folder adds a locale.
    pub dir: Option<PathBuf>,
    /// The locale of a person whose request names none Porter has.
    pub default_locale: Locale,
    pub brand: Brand,
}

/// The operator's brand, given to every template as `product_name`,
/// `support_url` and `support_email`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Brand {
    pub product_name: String,
    pub support_url: Option<String>,
    pub support_email: Option<String>,
}

/// `DATABASE_URL`, `MIGRATION_DATABASE_URL`.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The runtime role's connection: `web`, `worker` and the operator
    /// commands that only read or append.
    pub url: SecretUrl,
    /// The schema owner's connection, for `migrate` and `replay` (which
    /// swaps a read model's table); `None` when one role does everything.
    pub migration_url: Option<SecretUrl>,
}

/// `REDIS_URL`, `REDIS_NAMESPACE`, `RATE_LIMIT_REDIS_URL`.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: SecretUrl,
    /// Where rate-limit budgets live; `REDIS_URL` unless set. Budgets are
    /// many small expiring keys that may be lost without harm, so they may
    /// go to a Redis without persistence, apart from queues and keys.
    pub rate_limit_url: SecretUrl,
    /// Prefix of every Redis key Porter writes, queues included, so deployments
    /// (and test runs) can share one Redis without seeing each other's keys.
    pub namespace: String,
}

/// What Porter emails, from where, with which links, and how often.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `smtp://`, `smtps://` or `file://` (a local mailbox of `.eml` files).
    pub smtp_url: SecretUrl,
    pub from: Mailbox,
    /// The only source of the host in links Porter sends; request headers never are.
    pub public_base_url: Url,
    /// How long an emailed activation key works.
    pub activation_ttl: Duration,
    /// How long an emailed password reset key works.
    pub reset_ttl: Duration,
    /// At least this long between two emails to one address.
    pub min_interval: Duration,
    /// At most this many emails to one address per window (sign-up
    /// notices, activation links and resends together); requests beyond it
    /// are recorded but not emailed.
    pub per_address: Limit,
    pub retry: RetryPolicy,
}

/// The web process: its ports, connections, proxies and password hashing.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub port: u16,
    /// The interface `PORT` listens on (`BIND_ADDRESS`); every one unless set.
    pub bind_address: IpAddr,
    pub connections: ConnectionLimits,
    /// Connections one client (an IPv4 address, an IPv6 network of
    /// `RATE_LIMIT_IPV6_PREFIX`) may hold at once; `TRUSTED_PROXIES` are not
    /// capped. Keeps one client from holding every `MAX_CONNECTIONS` slot.
    pub max_connections_per_client: usize,
    /// A request not answered by then gets `503`, unless its events are
    /// being committed (then it is answered when they are).
    pub handler_deadline: Duration,
    /// The proxies whose `X-Forwarded-For` is believed, as addresses or
    /// CIDR ranges.
    pub trusted_proxies: Vec<IpRange>,
    pub hashing: HashingConfig,
    pub sessions: SessionConfig,
}

/// `SESSION_TTL`, `SESSION_IDLE`: a session ends at the first of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Longest life of a session from sign-in, however busy.
    pub ttl: Duration,
    /// A session unused this long ends.
    pub idle: Duration,
    /// `SESSIONS_PER_ACCOUNT`: a sign-in beyond this many live sessions
    /// ends the account's oldest.
    pub per_account: usize,
}

/// What one HTTP listener allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; one more is closed at once.
    pub max_connections: usize,
    /// A connection with no request in progress (including one that has
    /// sent nothing yet) is closed after this long.
    pub idle_timeout: Duration,
    /// Cleartext HTTP/2 (prior knowledge), off unless `HTTP2=true`.
    pub http2: Option<Http2Limits>,
}

impl ConnectionLimits {
    /// A metrics listener: a scraper or two, HTTP/1 only.
    pub const METRICS: Self = Self {
        max_connections: 16,
        idle_timeout: Duration::from_secs(10),
        http2: None,
    };
}

/// HTTP/2's own bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    /// Concurrent streams per connection.
    pub max_streams: u32,
    /// A PING goes out after this long without frames; no answer within
    /// 20 s closes the connection.
    pub keep_alive_interval: Duration,
    /// After this long the connection is told to go away (GOAWAY) and
    /// drains, so a client cannot hold one connection for ever.
    pub max_connection_age: Duration,
}

/// Argon2id on bounded threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingConfig {
    /// How many hashing threads run (CPU-bound, one hash each at a time).
    pub concurrency: usize,
    /// Sign-ups waiting for a hashing thread beyond this many are shed with
    /// `503` rather than queued.
    pub queue_limit: usize,
    pub argon2: Argon2Cost,
    /// A sign-up that waited this long for a hashing thread is answered
    /// `503` rather than hashed late. `None` (unset): derived at start from
    /// the hash rate measured there (`hashing::default_max_wait`).
    pub max_wait: Option<Duration>,
}

/// The worker process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Email jobs one worker process runs at once.
    pub concurrency: usize,
    /// Finished jobs' data is deleted from Redis after this long.
    pub job_retention: Duration,
    /// A registration not confirmed within this long expires and releases
    /// its username and address.
    pub registration_ttl: Duration,
    /// How often the sweeps look for expired registrations and for email
    /// requests whose job Redis lost.
    pub sweep_interval: Duration,
    /// An email request still outstanding after this long has its job
    /// pushed again (a no-op when the job is still in Redis).
    pub stranded_after: Duration,
    /// Dead letters (jobs given up) are deleted from Redis after this long;
    /// the failure stays in the event log.
    pub dead_letter_retention: Duration,
}

/// An address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare
/// address is the range of that one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Whether `ip` is in the range. An IPv4 range never holds an IPv6
    /// address, IPv4-mapped ones included: a proxy is named as it connects.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let invalid = || format!("{raw:?} is not an IP address or CIDR range");
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let network: IpAddr = address.parse().map_err(|_| invalid())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse().map_err(|_| invalid())?
            }
            Some(_) => return Err(invalid()),
        };
        if prefix > max {
            return Err(invalid());
        }
        Ok(Self { network, prefix })
    }
}

/// A URL that may carry a password (`postgres://user:secret@host/db`). Its
/// `Debug` and `Display` mask the password, so a configuration printed
/// with `{:?}` or a connection error never shows it; [`Self::expose`] is
/// for the one place that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn redacted(&self) -> String {
        match Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                // Setting a password fails only for URLs that cannot have one.
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            Ok(_) => self.0.clone(),
            Err(_) => "<unparsable URL>".into(),
        }
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretUrl({:?})", self.redacted())
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Argon2id cost. The default is OWASP's m=19456 KiB, t=2; OWASP lists
/// equivalent pairs that trade memory for passes (m=9216 t=4, m=7168 t=5),
/// which a memory-tight deployment may choose. A cost is accepted only when
/// it is at least one of OWASP's pairs in both memory and passes, so memory
/// is bounded from below too: many passes over a little memory are cheap
/// on a GPU, which is what Argon2's memory is there to prevent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Argon2Cost {
    /// OWASP's first recommendation, and Porter's default.
    pub const OWASP_DEFAULT: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
    };
    /// OWASP's Password Storage Cheat Sheet, Argon2id: (KiB, passes).
    const OWASP_PAIRS: [(u32, u32); 5] = [
        (47_104, 1),
        (19_456, 2),
        (12_288, 3),
        (9_216, 4),
        (7_168, 5),
    ];
}

/// `max` per `window`: a burst of `max`, then one more every `window / max`
/// (a GCRA, `rate_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

/// The request budgets, shared by every web process through Redis; what each
/// gives an attacker is in docs/security.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub sign_up_per_ip: Limit,
    /// All sign-ups together, whatever their source.
    pub sign_up_global: Limit,
    pub resend_per_ip: Limit,
    pub resend_per_email: Limit,
    pub failed_activation_per_ip: Limit,
    /// Admin API requests without a valid API key.
    pub failed_admin_auth_per_ip: Limit,
    /// IPv6 clients are budgeted by their network of this prefix length.
    pub ipv6_prefix: u8,
    /// Wrong passwords per login as typed (canonical form), per device
    /// token, and at password change per account.
    pub failed_sign_in_per_login: Limit,
    pub failed_sign_in_per_ip: Limit,
    /// Successful sign-ins per account: each one is a session.
    pub sign_in_per_account: Limit,
    pub sign_in_per_ip: Limit,
    pub reset_per_ip: Limit,
    pub reset_per_email: Limit,
}

/// How the worker retries a transient email failure: capped exponential
/// backoff with full jitter, within a fixed number of attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

/// Webhook deliveries (the worker) and subscriptions (`porter webhooks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Send to, and subscribe, URLs whose host is a loopback, private,
    /// link-local or metadata address. Off in production: a subscription
    /// must not reach inside the network Porter runs in.
    pub allow_private_networks: bool,
    /// A delivery attempt gives up after this long.
    pub timeout: Duration,
    /// Retries of a failing delivery wait a capped exponential backoff
    /// with full jitter.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// A subscription whose every attempt has failed for this long is
    /// paused (never skipped).
    pub failure_pause: Duration,
    /// How long a worker process holds a subscription without renewing:
    /// how long a killed worker's subscriptions wait to be taken over.
    pub lease: Duration,
    /// After `rotate-secret`, the old secret signs too for this long.
    pub secret_overlap: Duration,
}

impl WebhookConfig {
    /// For `porter webhooks`, which needs nothing else.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(&PROCESS_ENV)
    }

    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            allow_private_networks: env
                .optional("WEBHOOK_ALLOW_PRIVATE_NETWORKS", parse_bool)?
                .unwrap_or(false),
            timeout: env
                .optional("WEBHOOK_TIMEOUT", parse_duration)?
                .unwrap_or(Duration::from_secs(10)),
            retry_base: env
                .optional("WEBHOOK_RETRY_BASE", parse_duration)?
                .unwrap_or(Duration::from_secs(1)),
            retry_cap: env
                .optional("WEBHOOK_RETRY_CAP", parse_duration)?
                .unwrap_or(Duration::from_secs(300)),
            failure_pause: env
                .optional("WEBHOOK_FAILURE_PAUSE", parse_duration)?
                .unwrap_or(Duration::from_secs(24 * 3600)),
            lease: env
                .optional("WEBHOOK_LEASE", parse_duration)?
                .unwrap_or(Duration::from_secs(30)),
            secret_overlap: env
                .optional("WEBHOOK_SECRET_OVERLAP", parse_duration)?
                .unwrap_or(Duration::from_secs(24 * 3600)),
        })
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Reads the whole configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the whole configuration through `lookup`, which returns a
    /// variable's value or `None` when it is unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        Ok(Self {
            database: DatabaseConfig::read(&env)?,
            redis: RedisConfig::read(&env)?,
            mail: MailConfig::read(&env)?,
            web: WebConfig::read(&env)?,
            worker: WorkerConfig::read(&env)?,
            limits: RateLimits::read(&env)?,
            webhooks: WebhookConfig::read(&env)?,
            metrics_port: env.optional("METRICS_PORT", parse_number)?,
            metrics_bind_address: env
                .optional("METRICS_BIND_ADDRESS", parse_ip_address)?
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            templates: TemplatesConfig::read(&env)?,
            log_format: read_log_format(&env)?,
            secret_key: env.required("SECRET_KEY", SecretKey::from_str)?,
        })
    }
}

impl DatabaseConfig {
    /// For commands that need nothing else (`migrate`, `replay`, `events`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(&PROCESS_ENV)
    }

    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.required("DATABASE_URL", parse_database_url)?,
            migration_url: env.optional("MIGRATION_DATABASE_URL", parse_database_url)?,
        })
    }

    /// The connection that owns the schema: `MIGRATION_DATABASE_URL`, or
    /// `DATABASE_URL` when that is unset.
    pub fn owner(&self) -> Self {
        Self {
            url: self
                .migration_url
                .clone()
                .unwrap_or_else(|| self.url.clone()),
            migration_url: None,
        }
    }
}

impl RedisConfig {
    /// For the operator commands that look at Redis (`deliveries`, `status`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(&PROCESS_ENV)
    }

    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let url = env.required("REDIS_URL", parse_redis_url)?;
        Ok(Self {
            rate_limit_url: env
                .optional("RATE_LIMIT_REDIS_URL", parse_redis_url)?
                .unwrap_or_else(|| url.clone()),
            url,
            namespace: env
                .optional("REDIS_NAMESPACE", parse_namespace)?
                .unwrap_or_else(|| "porter".into()),
        })
    }
}

impl MailConfig {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            smtp_url: env.required("SMTP_URL", parse_smtp_url)?,
            from: env.required("MAIL_FROM", parse_mailbox)?,
            public_base_url: check_link_security(
                env.required("PUBLIC_BASE_URL", parse_public_base_url)?,
                env.optional("ALLOW_INSECURE_LINKS", parse_bool)?
                    .unwrap_or(false),
            )?,
            activation_ttl: env
                .optional("ACTIVATION_TTL", parse_activation_ttl)?
                .unwrap_or(Duration::from_secs(15 * 60)),
            reset_ttl: env
                .optional("RESET_TTL", parse_duration)?
                .unwrap_or(Duration::from_secs(30 * 60)),
            min_interval: env
                .optional("EMAIL_MIN_INTERVAL", parse_duration)?
                .unwrap_or(Duration::from_secs(60)),
            per_address: env
                .optional("EMAIL_PER_ADDRESS", parse_limit)?
                .unwrap_or(Limit::per(5, 3600)),
            retry: RetryPolicy {
                attempts: env
                    .optional("EMAIL_RETRY_ATTEMPTS", parse_positive)?
                    .map_or(8, |n| n.min(100) as u32),
                base: env
                    .optional("EMAIL_RETRY_BASE", parse_duration)?
                    .unwrap_or(Duration::from_secs(2)),
                cap: env
                    .optional("EMAIL_RETRY_CAP", parse_duration)?
                    .unwrap_or(Duration::from_secs(300)),
            },
        })
    }
}

impl WebConfig {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let concurrency = env
            .optional("HASH_CONCURRENCY", parse_positive)?
            .unwrap_or(cpus);
        let http2 = env.optional("HTTP2", parse_bool)?.unwrap_or(false);
        Ok(Self {
            port: env.optional("PORT", parse_number)?.unwrap_or(8080),
            bind_address: env
                .optional("BIND_ADDRESS", parse_ip_address)?
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            max_connections_per_client: env
                .optional("MAX_CONNECTIONS_PER_CLIENT", parse_positive)?
                .unwrap_or(64),
            connections: ConnectionLimits {
                max_connections: env
                    .optional("MAX_CONNECTIONS", parse_positive)?
                    .unwrap_or(1024),
                idle_timeout: env
                    .optional("CONNECTION_IDLE_TIMEOUT", parse_duration)?
                    .unwrap_or(Duration::from_secs(10)),
                http2: match http2 {
                    false => None,
                    true => Some(Http2Limits {
                        max_streams: env
                            .optional("HTTP2_MAX_STREAMS", parse_positive)?
                            .map_or(100, |n| n.min(10_000) as u32),
                        keep_alive_interval: env
                            .optional("HTTP2_KEEP_ALIVE_INTERVAL", parse_duration)?
                            .unwrap_or(Duration::from_secs(20)),
                        max_connection_age: env
                            .optional("HTTP2_MAX_CONNECTION_AGE", parse_duration)?
                            .unwrap_or(Duration::from_secs(600)),
                    }),
                },
            },
            handler_deadline: env
                .optional("HANDLER_DEADLINE", parse_duration)?
                .unwrap_or(Duration::from_secs(30)),
            trusted_proxies: env
                .optional("TRUSTED_PROXIES", parse_ip_ranges)?
                .unwrap_or_default(),
            hashing: HashingConfig {
                concurrency,
                queue_limit: env
                    .optional("HASH_QUEUE_LIMIT", parse_positive)?
                    .unwrap_or(concurrency * 32),
                argon2: parse_argon2_cost(
                    env.optional("ARGON2_MEMORY_KIB", parse_number)?
                        .unwrap_or(Argon2Cost::OWASP_DEFAULT.memory_kib),
                    env.optional("ARGON2_ITERATIONS", parse_number)?
                        .unwrap_or(Argon2Cost::OWASP_DEFAULT.iterations),
                )?,
                max_wait: env.optional("HASH_MAX_WAIT", parse_duration)?,
            },
            sessions: SessionConfig {
                ttl: env
                    .optional("SESSION_TTL", parse_duration)?
                    .unwrap_or(Duration::from_secs(7 * 24 * 3600)),
                idle: env
                    .optional("SESSION_IDLE", parse_duration)?
                    .unwrap_or(Duration::from_secs(24 * 3600)),
                per_account: env
                    .optional("SESSIONS_PER_ACCOUNT", parse_positive)?
                    .unwrap_or(50),
            },
        })
    }
}

impl WorkerConfig {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            concurrency: env
                .optional("WORKER_CONCURRENCY", parse_positive)?
                .unwrap_or(16),
            job_retention: env
                .optional("JOB_RETENTION", parse_duration)?
                .unwrap_or(Duration::from_secs(24 * 3600)),
            registration_ttl: env
                .optional("REGISTRATION_TTL", parse_duration)?
                .unwrap_or(Duration::from_secs(72 * 3600)),
            sweep_interval: env
                .optional("SWEEP_INTERVAL", parse_duration)?
                .unwrap_or(Duration::from_secs(60)),
            stranded_after: env
                .optional("STRANDED_REQUEST_AGE", parse_duration)?
                .unwrap_or(Duration::from_secs(5 * 60)),
            dead_letter_retention: env
                .optional("DEAD_LETTER_RETENTION", parse_duration)?
                .unwrap_or(Duration::from_secs(30 * 24 * 3600)),
        })
    }
}

impl RateLimits {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        // Renamed when failures became counted per login text: a deployment
        // still setting the old name must not fall back to the default
        // without a word.
        env.optional("RATE_LIMIT_FAILED_SIGN_IN_PER_ACCOUNT", |_| {
            Err::<(), _>("was renamed to RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN".to_owned())
        })?;
        Ok(Self {
            sign_up_per_ip: env
                .optional("RATE_LIMIT_SIGN_UP_PER_IP", parse_limit)?
                .unwrap_or(Limit::per(30, 300)),
            sign_up_global: env
                .optional("RATE_LIMIT_SIGN_UP_GLOBAL", parse_limit)?
                .unwrap_or(Limit::per(1000, 60)),
            resend_per_ip: env
                .optional("RATE_LIMIT_RESEND_PER_IP", parse_limit)?
                .unwrap_or(Limit::per(30, 300)),
            resend_per_email: env
                .optional("RATE_LIMIT_RESEND_PER_EMAIL", parse_limit)?
                .unwrap_or(Limit::per(3, 3600)),
            failed_activation_per_ip: env
                .optional("RATE_LIMIT_FAILED_ACTIVATION_PER_IP", parse_limit)?
                .unwrap_or(Limit::per(10, 60)),
            failed_admin_auth_per_ip: env
                .optional("RATE_LIMIT_FAILED_ADMIN_AUTH_PER_IP", parse_limit)?
                .unwrap_or(Limit::per(10, 60)),
            ipv6_prefix: env
                .optional("RATE_LIMIT_IPV6_PREFIX", parse_ipv6_prefix)?
                .unwrap_or(64),
            failed_sign_in_per_login: env
                .optional("RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN", parse_limit)?
                .unwrap_or(Limit::per(10, 900)),
            failed_sign_in_per_ip: env
                .optional("RATE_LIMIT_FAILED_SIGN_IN_PER_IP", parse_limit)?
                .unwrap_or(Limit::per(100, 900)),
            sign_in_per_account: env
                .optional("RATE_LIMIT_SIGN_IN_PER_ACCOUNT", parse_limit)?
                .unwrap_or(Limit::per(20, 900)),
            sign_in_per_ip: env
                .optional("RATE_LIMIT_SIGN_IN_PER_IP", parse_limit)?
                .unwrap_or(Limit::per(100, 900)),
            reset_per_ip: env
                .optional("RATE_LIMIT_RESET_PER_IP", parse_limit)?
                .unwrap_or(Limit::per(30, 300)),
            reset_per_email: env
                .optional("RATE_LIMIT_RESET_PER_EMAIL", parse_limit)?
                .unwrap_or(Limit::per(3, 3600)),
        })
    }
}

impl TemplatesConfig {
    /// For `porter templates`, which needs nothing else.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(&PROCESS_ENV)
    }

    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            dir: env.optional("TEMPLATES_DIR", |raw| Ok(PathBuf::from(raw)))?,
            default_locale: env
                .optional("DEFAULT_LOCALE", |raw| {
                    Locale::parse(raw).map_err(|e| format!("{raw:?} {e}"))
                })?
                .unwrap_or_else(Locale::english),
            brand: Brand {
                product_name: env
                    .optional("PRODUCT_NAME", parse_product_name)?
                    .unwrap_or_else(|| "Porter".into()),
                support_url: env.optional("SUPPORT_URL", |raw| {
                    parse_url_with_schemes(raw, &["http", "https", "mailto"]).map(String::from)
                })?,
                support_email: env.optional("SUPPORT_EMAIL", |raw| {
                    Address::from_str(raw)
                        .map(|address| address.to_string())
                        .map_err(|e| format!("is not an email address ({e})"))
                })?,
            },
        })
    }
}

/// A name shown in subjects and headings: one line of text.
fn parse_product_name(raw: &str) -> Result<String, String> {
    if raw.chars().count() > 100 {
        return Err("must be at most 100 characters".into());
    }
    if raw.chars().any(char::is_control) {
        return Err("must be one line without control characters".into());
    }
    Ok(raw.to_owned())
}

/// Reads `LOG_FORMAT` alone, which telemetry needs before the rest is loaded.
pub fn log_format_from_env() -> Result<LogFormat, ConfigError> {
    read_log_format(&PROCESS_ENV)
}

fn read_log_format(env: &Env<'_>) -> Result<LogFormat, ConfigError> {
    Ok(env
        .optional("LOG_FORMAT", parse_log_format)?
        .unwrap_or(LogFormat::Text))
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

/// The process environment, for the readers of one section.
const PROCESS_ENV: Env<'static> = Env(&process_var);

fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Env<'_> {
    fn optional<T>(
        &self,
        variable: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match (self.0)(variable) {
            None => Ok(None),
            Some(raw) if raw.trim().is_empty() => Ok(None),
            Some(raw) => parse(raw.trim())
                .map(Some)
                .map_err(|problem| ConfigError { variable, problem }),
        }
    }

    fn required<T>(
        &self,
        variable: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        self.optional(variable, parse)?.ok_or_else(|| ConfigError {
            variable,
            problem: "is not set".into(),
        })
    }
}

fn parse_url_with_schemes(raw: &str, schemes: &[&str]) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
    if schemes.contains(&url.scheme()) {
        Ok(url)
    } else {
        Err(format!("scheme must be one of {}", schemes.join(", ")))
    }
}

fn parse_database_url(raw: &str) -> Result<SecretUrl, String> {
    parse_url_with_schemes(raw, &["postgres", "postgresql"]).map(|_| SecretUrl::new(raw))
}

fn parse_redis_url(raw: &str) -> Result<SecretUrl, String> {
    parse_url_with_schemes(raw, &["redis", "rediss"]).map(|_| SecretUrl::new(raw))
}

fn parse_smtp_url(raw: &str) -> Result<SecretUrl, String> {
    parse_url_with_schemes(raw, &["smtp", "smtps", "file"]).map(|_| SecretUrl::new(raw))
}

fn parse_public_base_url(raw: &str) -> Result<Url, String> {
    let mut url = parse_url_with_schemes(raw, &["http", "https"])?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("must not carry credentials, a query or a fragment".into());
    }
    // A trailing slash makes `join` keep the path prefix (`https://x/app/`).
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Links sent in clear can be read and used by anyone on the path, so an
/// `http` base URL is for a machine's own loopback only, unless the
/// operator says otherwise (`ALLOW_INSECURE_LINKS=true`).
fn check_link_security(url: Url, allow_insecure: bool) -> Result<Url, ConfigError> {
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if url.scheme() == "http" && !loopback && !allow_insecure {
        return Err(ConfigError {
            variable: "PUBLIC_BASE_URL",
            problem: "links over http are only for localhost; use https, or set \
                      ALLOW_INSECURE_LINKS=true"
                .into(),
        });
    }
    Ok(url)
}

/// Longest an activation key may live: a link is a password reset in
/// disguise, and a day covers any inbox delay.
const MAX_ACTIVATION_TTL: Duration = Duration::from_secs(24 * 3600);

fn parse_activation_ttl(raw: &str) -> Result<Duration, String> {
    let ttl = parse_duration(raw)?;
    if ttl > MAX_ACTIVATION_TTL {
        return Err("must be at most 24h".into());
    }
    Ok(ttl)
}

fn parse_mailbox(raw: &str) -> Result<Mailbox, String> {
    Mailbox::from_str(raw).map_err(|e| format!("is not a valid mailbox ({e})"))
}

fn parse_namespace(raw: &str) -> Result<String, String> {
    let ok = raw.len() <= 64
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err("must be at most 64 characters of [A-Za-z0-9._-]".into())
    }
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("{other:?} is not one of true, false")),
    }
}

fn parse_number<T: FromStr>(raw: &str) -> Result<T, String> {
    raw.parse()
        .map_err(|_| format!("{raw:?} is not a valid number"))
}

fn parse_positive(raw: &str) -> Result<usize, String> {
    match parse_number::<usize>(raw)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// Accepts a number of seconds, optionally with an `ms`, `s`, `m`, `h` or
/// `d` suffix.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let (digits, millis_per_unit) = if let Some(digits) = raw.strip_suffix("ms") {
        (digits, 1)
    } else if let Some(digits) = raw.strip_suffix('s') {
        (digits, 1_000)
    } else if let Some(digits) = raw.strip_suffix('m') {
        (digits, 60_000)
    } else if let Some(digits) = raw.strip_suffix('h') {
        (digits, 3_600_000)
    } else if let Some(digits) = raw.strip_suffix('d') {
        (digits, 86_400_000)
    } else {
        (raw, 1_000)
    };
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 900, 900s, 15m, 1h, 30d or 250ms"))?;
    match count.checked_mul(millis_per_unit) {
        Some(0) | None => Err("must be a positive duration".into()),
        Some(millis) => Ok(Duration::from_millis(millis)),
    }
}

impl Limit {
    const fn per(max: u32, seconds: u64) -> Self {
        Self {
            max,
            window: Duration::from_secs(seconds),
        }
    }
}

fn parse_argon2_cost(memory_kib: u32, iterations: u32) -> Result<Argon2Cost, ConfigError> {
    let meets_a_pair = Argon2Cost::OWASP_PAIRS
        .iter()
        .any(|&(m, t)| memory_kib >= m && iterations >= t);
    if !meets_a_pair {
        return Err(ConfigError {
            variable: "ARGON2_MEMORY_KIB",
            problem: format!(
                "{memory_kib} KiB × {iterations} passes is below every OWASP pair for Argon2id \
                 (at least one of 47104 × 1, 19456 × 2, 12288 × 3, 9216 × 4, 7168 × 5 in both)"
            ),
        });
    }
    Ok(Argon2Cost {
        memory_kib,
        iterations,
    })
}

/// `30/5m`: at most 30 per five minutes.
fn parse_limit(raw: &str) -> Result<Limit, String> {
    let (max, window) = raw
        .split_once('/')
        .ok_or_else(|| format!("{raw:?} is not a limit like 30/5m"))?;
    Ok(Limit {
        max: parse_positive(max)?
            .try_into()
            .map_err(|_| "is too large".to_owned())?,
        window: parse_duration(window)?,
    })
}

fn parse_ipv6_prefix(raw: &str) -> Result<u8, String> {
    match parse_number::<u8>(raw)? {
        prefix @ 1..=128 => Ok(prefix),
        _ => Err("must be a prefix length from 1 to 128".into()),
    }
}

fn parse_ip_address(raw: &str) -> Result<IpAddr, String> {
    raw.parse()
        .map_err(|_| format!("{raw:?} is not an IP address (0.0.0.0, 127.0.0.1, ::)"))
}

fn parse_ip_ranges(raw: &str) -> Result<Vec<IpRange>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

fn parse_log_format(raw: &str) -> Result<LogFormat, String> {
    match raw {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("{other:?} is not one of text, json")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn complete() -> HashMap<&'static str, String> {
        HashMap::from([
            ("DATABASE_URL", "postgres://u@127.0.0.1/p".to_owned()),
            ("REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
            ("PUBLIC_BASE_URL", "https://porter.example".to_owned()),
            ("SMTP_URL", "smtp://127.0.0.1:2525".to_owned()),
            ("MAIL_FROM", "Porter <no-reply@porter.example>".to_owned()),
            ("SECRET_KEY", "k".repeat(SecretKey::MIN_LEN)),
        ])
    }

    fn load(vars: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_renamed_failed_sign_in_budget_is_refused_under_its_old_name() {
        let mut vars = complete();
        vars.insert("RATE_LIMIT_FAILED_SIGN_IN_PER_ACCOUNT", "5/1m".to_owned());
        let error = load(&vars).expect_err("the old name is refused");
        assert_eq!(error.variable, "RATE_LIMIT_FAILED_SIGN_IN_PER_ACCOUNT");
        assert!(
            error
                .problem
                .contains("RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN")
        );
        vars.remove("RATE_LIMIT_FAILED_SIGN_IN_PER_ACCOUNT");
        vars.insert("RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN", "5/1m".to_owned());
        let config = load(&vars).expect("the new name loads");
        assert_eq!(config.limits.failed_sign_in_per_login, Limit::per(5, 60));
    }

    #[test]
    fn defaults_apply_when_optional_variables_are_unset() {
        let config = load(&complete()).expect("complete configuration loads");
        assert_eq!(config.web.port, 8080);
        assert_eq!(config.web.bind_address.to_string(), "0.0.0.0");
        assert_eq!(config.metrics_bind_address.to_string(), "127.0.0.1");
        assert_eq!(config.web.max_connections_per_client, 64);
        assert_eq!(config.mail.activation_ttl, Duration::from_secs(900));
        assert_eq!(config.mail.reset_ttl, Duration::from_secs(1800));
        assert_eq!(config.web.sessions.ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(config.web.sessions.idle, Duration::from_secs(86_400));
        assert_eq!(config.web.sessions.per_account, 50);
        assert_eq!(config.limits.sign_in_per_account, Limit::per(20, 900));
        assert_eq!(config.limits.sign_in_per_ip, Limit::per(100, 900));
        assert_eq!(config.redis.namespace, "porter");
        assert_eq!(
            config.mail.public_base_url.as_str(),
            "https://porter.example/"
        );
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(
            config.web.hashing.max_wait, None,
            "measured at start unless set"
        );
        assert_eq!(
            config.worker.dead_letter_retention,
            Duration::from_secs(30 * 86_400)
        );
    }

    #[test]
    fn passwords_in_urls_never_show_in_debug_output() {
        let mut vars = complete();
        vars.insert("DATABASE_URL", "postgres://porter:hunter2@db/porter".into());
        vars.insert("REDIS_URL", "redis://:sesame@cache:6379".into());
        vars.insert("SMTP_URL", "smtp://mailer:opensesame@smtp:587".into());
        let config = load(&vars).expect("loads");
        let printed = format!("{config:?} {}", config.database.url);
        for secret in ["hunter2", "sesame", "opensesame"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(
            printed.contains("postgres://porter:***@db/porter"),
            "{printed}"
        );
        assert_eq!(
            config.database.url.expose(),
            "postgres://porter:hunter2@db/porter"
        );
    }

    #[test]
    fn the_secret_key_is_required_long_enough_never_printed_and_derives_one_key_per_purpose() {
        let mut vars = complete();
        vars.remove("SECRET_KEY");
        let error = load(&vars).expect_err("required");
        assert_eq!(
            error.to_string(),
            "configuration error: SECRET_KEY: is not set"
        );
        vars.insert("SECRET_KEY", "short".into());
        let error = load(&vars).expect_err("too short");
        assert!(
            error
                .to_string()
                .starts_with("configuration error: SECRET_KEY: must be at least 32"),
            "{error}"
        );
        let secret = "s3cret-".repeat(8);
        vars.insert("SECRET_KEY", secret.clone());
        let config = load(&vars).expect("loads");
        assert!(!format!("{config:?}").contains(&secret));
        let key = &config.secret_key;
        assert_ne!(key.derive("client-ip"), key.derive("device"));
        assert_eq!(key.derive("client-ip"), key.derive("client-ip"));
        let other: SecretKey = SecretKey::generate()
            .expect("the OS generator works")
            .parse()
            .expect("a generated key is valid");
        assert_ne!(other.derive("client-ip"), key.derive("client-ip"));
    }

    #[test]
    fn each_missing_required_variable_is_named() {
        for name in [
            "DATABASE_URL",
            "REDIS_URL",
            "PUBLIC_BASE_URL",
            "SMTP_URL",
            "MAIL_FROM",
        ] {
            let mut vars = complete();
            vars.remove(name);
            let error = load(&vars).expect_err("missing variable is an error");
            assert_eq!(error.variable, name);
            assert_eq!(
                error.to_string(),
                format!("configuration error: {name}: is not set")
            );
        }
    }

    #[test]
    fn malformed_values_are_rejected_with_the_variable_named() {
        let cases = [
            ("PORT", "eighty"),
            ("PORT", "70000"),
            ("PUBLIC_BASE_URL", "ftp://x.example"),
            ("PUBLIC_BASE_URL", "https://x.example/?next=evil"),
            ("SMTP_URL", "http://mail.example"),
            ("MAIL_FROM", "not a mailbox"),
            ("ACTIVATION_TTL", "soon"),
            ("ACTIVATION_TTL", "0"),
            ("ACTIVATION_TTL", "25h"),
            ("ACTIVATION_TTL", "86401"),
            ("PUBLIC_BASE_URL", "http://porter.example"),
            ("PUBLIC_BASE_URL", "http://10.0.0.1:8080"),
            ("HTTP2", "yes"),
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS_PER_CLIENT", "0"),
            ("BIND_ADDRESS", "localhost"),
            ("METRICS_BIND_ADDRESS", "127.0.0.1:9090"),
            ("ALLOW_INSECURE_LINKS", "maybe"),
            ("WORKER_CONCURRENCY", "0"),
            ("TRUSTED_PROXIES", "10.0.0.1,nonsense"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("TRUSTED_PROXIES", "10.0.0.0/+8"),
            ("LOG_FORMAT", "xml"),
            ("REDIS_NAMESPACE", "a b"),
            ("RATE_LIMIT_SIGN_UP_PER_IP", "30"),
            ("RATE_LIMIT_RESEND_PER_EMAIL", "0/1h"),
            ("RATE_LIMIT_SIGN_UP_GLOBAL", "many/1m"),
            ("RATE_LIMIT_IPV6_PREFIX", "0"),
            ("RATE_LIMIT_IPV6_PREFIX", "129"),
            ("RATE_LIMIT_REDIS_URL", "http://cache"),
            ("DEFAULT_LOCALE", "en_US"),
            ("PRODUCT_NAME", "Acme\r\nBcc: x@example.com"),
            ("SUPPORT_URL", "javascript:alert(1)"),
            ("SUPPORT_EMAIL", "help desk"),
        ];
        for (name, value) in cases {
            let mut vars = complete();
            vars.insert(name, value.to_owned());
            let error = load(&vars).expect_err(value);
            assert_eq!(error.variable, name, "{value}");
        }
    }

    #[test]
    fn http_links_are_for_localhost_unless_allowed() {
        for local in [
            "http://localhost:8080",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://porter.localhost",
        ] {
            let mut vars = complete();
            vars.insert("PUBLIC_BASE_URL", local.into());
            assert!(load(&vars).is_ok(), "{local}");
        }
        let mut vars = complete();
        vars.insert("PUBLIC_BASE_URL", "http://porter.example".into());
        let error = load(&vars).expect_err("http for a public host");
        assert!(
            error.to_string().contains("ALLOW_INSECURE_LINKS"),
            "{error}"
        );
        vars.insert("ALLOW_INSECURE_LINKS", "true".into());
        assert!(load(&vars).is_ok(), "the operator allowed it");
    }

    #[test]
    fn activation_keys_live_at_most_a_day() {
        let mut vars = complete();
        vars.insert("ACTIVATION_TTL", "24h".into());
        assert_eq!(
            load(&vars).expect("a day").mail.activation_ttl,
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn templates_default_to_english_porter_without_support_links() {
        let config = load(&complete()).expect("complete");
        assert_eq!(config.templates.default_locale.as_str(), "en");
        assert_eq!(config.templates.dir, None);
        assert_eq!(config.templates.brand.product_name, "Porter");
        assert_eq!(config.templates.brand.support_url, None);
        let mut vars = complete();
        vars.insert("DEFAULT_LOCALE", "DE-ch".into());
        vars.insert("SUPPORT_EMAIL", "help@acme.example".into());
        let config = load(&vars).expect("valid");
        assert_eq!(config.templates.default_locale.as_str(), "de-CH");
        assert_eq!(
            config.templates.brand.support_email.as_deref(),
            Some("help@acme.example")
        );
    }

    #[test]
    fn http2_is_off_unless_asked_for_and_then_bounded() {
        assert_eq!(
            load(&complete()).expect("loads").web.connections.http2,
            None
        );
        let mut vars = complete();
        vars.insert("HTTP2", "true".into());
        let http2 = load(&vars)
            .expect("loads")
            .web
            .connections
            .http2
            .expect("on");
        assert_eq!(http2.max_streams, 100);
        assert_eq!(http2.max_connection_age, Duration::from_secs(600));
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn argon2_cost_defaults_to_owasp_and_refuses_weaker() {
        assert_eq!(
            load(&complete()).expect("loads").web.hashing.argon2,
            Argon2Cost {
                memory_kib: 19_456,
                iterations: 2
            }
        );
        let mut vars = complete();
        vars.insert("ARGON2_MEMORY_KIB", "9216".into());
        vars.insert("ARGON2_ITERATIONS", "4".into());
        assert_eq!(
            load(&vars)
                .expect("an OWASP pair")
                .web
                .hashing
                .argon2
                .memory_kib,
            9216
        );
        vars.insert("ARGON2_ITERATIONS", "1".into());
        assert_eq!(
            load(&vars).expect_err("too cheap").variable,
            "ARGON2_MEMORY_KIB"
        );
        // Passes do not make up for memory: m × t is huge, m is 8 KiB.
        vars.insert("ARGON2_MEMORY_KIB", "8".into());
        vars.insert("ARGON2_ITERATIONS", "100000".into());
        assert_eq!(
            load(&vars).expect_err("too little memory").variable,
            "ARGON2_MEMORY_KIB"
        );
        vars.insert("ARGON2_MEMORY_KIB", "7167".into());
        vars.insert("ARGON2_ITERATIONS", "50".into());
        assert!(load(&vars).is_err(), "below OWASP's least memory");
        vars.insert("ARGON2_MEMORY_KIB", "12288".into());
        vars.insert("ARGON2_ITERATIONS", "3".into());
        assert!(load(&vars).is_ok(), "an OWASP pair");
    }

    #[test]
    fn limits_read_as_count_per_window() {
        assert_eq!(parse_limit("30/5m"), Ok(Limit::per(30, 300)));
        assert_eq!(parse_limit("3/1h"), Ok(Limit::per(3, 3600)));
    }

    #[test]
    fn trusted_proxies_accept_addresses_and_cidr_ranges() {
        let ranges = parse_ip_ranges("10.0.0.0/8, ::1, fd00::/8").expect("valid");
        let trusted = |ip: &str| {
            let ip: IpAddr = ip.parse().expect("ip");
            ranges.iter().any(|range| range.contains(ip))
        };
        assert!(trusted("10.255.0.1"));
        assert!(trusted("::1"));
        assert!(trusted("fd12::7"));
        assert!(!trusted("11.0.0.1"));
        assert!(!trusted("::2"));
        assert!(!trusted("::ffff:10.0.0.1"));
        let everything: IpRange = "0.0.0.0/0".parse().expect("valid");
        assert!(everything.contains("203.0.113.1".parse().expect("ip")));
    }

    #[test]
    fn base_url_keeps_its_path_prefix() {
        let url = parse_public_base_url("https://x.example/porter").expect("valid");
        assert_eq!(
            url.join("activate/k").expect("join").as_str(),
            "https://x.example/porter/activate/k"
        );
    }
}
