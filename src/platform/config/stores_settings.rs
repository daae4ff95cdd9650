//! Where Porter keeps its state: Postgres (the event log and read models)
//! and Redis (queues, keys, sessions and budgets).

use super::{
    ConfigError,
    settings::{Env, process_env},
    values::{SecretUrl, parse_database_url, parse_redis_url},
};

section! {
    DATABASE_SETTINGS = "Database" {
        DATABASE_URL: Required, UrlPassword,
            "Postgres, as the runtime role (`web`, `worker`, `events`, `deliveries`, `status`)";
        MIGRATION_DATABASE_URL: Computed("`DATABASE_URL`"), UrlPassword,
            "Postgres, as the schema's owner (`migrate`, `replay`); when its role differs from `DATABASE_URL`'s, `porter migrate` grants that role its runtime privileges";
    }
}

section! {
    REDIS_SETTINGS = "Redis" {
        REDIS_URL: Required, UrlPassword,
            "Redis (queues, link keys, and rate limits unless `RATE_LIMIT_REDIS_URL` is set)";
        REDIS_NAMESPACE: Value("porter"), Public,
            "prefix of every Redis key Porter writes, queues included";
        RATE_LIMIT_REDIS_URL: Computed("`REDIS_URL`"), UrlPassword,
            "where the budgets live; may be a separate Redis without persistence (budgets are small expiring keys, losing them is harmless)";
    }
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

impl DatabaseConfig {
    /// For commands that need nothing else (`migrate`, `replay`, `events`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(&process_env())
    }

    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.required(&DATABASE_URL, parse_database_url)?,
            migration_url: env.optional(&MIGRATION_DATABASE_URL, parse_database_url)?,
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
        Self::read(&process_env())
    }

    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let url = env.required(&REDIS_URL, parse_redis_url)?;
        Ok(Self {
            rate_limit_url: env.computed(&RATE_LIMIT_REDIS_URL, parse_redis_url, || url.clone())?,
            url,
            namespace: env.setting(&REDIS_NAMESPACE, parse_namespace)?,
        })
    }
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
