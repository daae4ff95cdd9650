//! Configuration from the environment (twelve-factor).
//!
//! Every setting is read and checked once at start, so a bad value stops the
//! process with one line naming the variable instead of failing on the first
//! request that needs it. Values are read through a lookup function rather than
//! `std::env` directly so the rules can be unit-tested without touching the
//! process environment.
//!
//! Each setting is one row of a table ([`settings`]), declared in the file of
//! its section beside the struct it fills: its default is written there once,
//! and the configuration reference (`docs/configuration.md`) and `porter
//! config` are made from the same rows. A new setting is one row in its
//! section's `section!` and one field its reader fills; then `porter config
//! --reference > docs/configuration.md` (a test says so when forgotten).

#[macro_use]
mod settings;
mod limits_settings;
mod mail_settings;
mod process_settings;
mod stores_settings;
mod templates_settings;
mod values;
mod web_settings;
mod webhooks_settings;
mod worker_settings;

use std::net::IpAddr;

pub use self::{
    limits_settings::RateLimits,
    mail_settings::{MailConfig, RetryPolicy},
    process_settings::{LogFormat, SecretKey, log_filter_from_env, log_format_from_env},
    settings::{Effective, Origin, Secrecy, Section, Setting, Unset, render_effective},
    stores_settings::{DatabaseConfig, RedisConfig},
    templates_settings::{Brand, TemplatesConfig},
    values::{IpRange, Limit, SecretUrl},
    web_settings::{
        Argon2Cost, ConnectionLimits, HashingConfig, Http2Limits, SessionConfig, WebConfig,
    },
    webhooks_settings::WebhookConfig,
    worker_settings::WorkerConfig,
};
use self::{
    process_settings::{METRICS_BIND_ADDRESS, METRICS_PORT, SECRET_KEY},
    settings::{Env, process_env},
    values::{parse_ip_address, parse_number},
};

/// The table of every setting Porter reads, by section, in the order of the
/// configuration reference.
pub const SECTIONS: &[Section] = &[
    stores_settings::DATABASE_SETTINGS,
    stores_settings::REDIS_SETTINGS,
    process_settings::PROCESS_SETTINGS,
    mail_settings::MAIL_SETTINGS,
    web_settings::WEB_SETTINGS,
    web_settings::HASHING_SETTINGS,
    web_settings::SESSION_SETTINGS,
    worker_settings::WORKER_SETTINGS,
    limits_settings::LIMIT_SETTINGS,
    webhooks_settings::WEBHOOK_SETTINGS,
    templates_settings::TEMPLATE_SETTINGS,
];

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
    /// `RUST_LOG`: which log lines are written.
    pub log_filter: String,
    /// `SECRET_KEY`: the root of the keys Porter derives for its own MACs.
    pub secret_key: SecretKey,
}

impl Config {
    /// Reads the whole configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::read(&process_env())
    }

    /// Reads the whole configuration through `lookup`, which returns a
    /// variable's value or `None` when it is unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(&Env::new(&lookup))
    }

    /// Reads the configuration as [`Self::from_env`] does, and tells the
    /// value of every setting and where it came from, in the table's order,
    /// secrets masked: `porter config`.
    pub fn effective_from_env() -> Result<Vec<Effective>, ConfigError> {
        Self::effective(&|name| std::env::var(name).ok())
    }

    fn effective(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Effective>, ConfigError> {
        let env = Env::new(lookup);
        Self::read(&env)?;
        let mut read = env.into_effective();
        let position = |name: &str| {
            SECTIONS
                .iter()
                .flat_map(|section| section.settings)
                .position(|setting| setting.name == name)
        };
        read.sort_by_key(|effective| position(effective.name));
        Ok(read)
    }

    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::read(env)?,
            redis: RedisConfig::read(env)?,
            mail: MailConfig::read(env)?,
            web: WebConfig::read(env)?,
            worker: WorkerConfig::read(env)?,
            limits: RateLimits::read(env)?,
            webhooks: WebhookConfig::read(env)?,
            metrics_port: env.optional(&METRICS_PORT, parse_number)?,
            metrics_bind_address: env.setting(&METRICS_BIND_ADDRESS, parse_ip_address)?,
            templates: TemplatesConfig::read(env)?,
            log_format: process_settings::read_log_format(env)?,
            log_filter: process_settings::read_log_filter(env)?,
            secret_key: env.required(&SECRET_KEY, str::parse)?,
        })
    }
}

/// The configuration reference, `docs/configuration.md`, from the table.
pub fn reference() -> String {
    settings::reference(SECTIONS)
}

#[cfg(test)]
mod tests;
