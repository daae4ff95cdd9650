//! Webhook deliveries (the worker) and subscriptions (`porter webhooks`).

use std::time::Duration;

use super::{
    ConfigError,
    settings::{Env, process_env},
    values::{parse_bool, parse_duration},
};

section! {
    WEBHOOK_SETTINGS = "Webhooks" {
        WEBHOOK_ALLOW_PRIVATE_NETWORKS: Value("false"), Public,
            "`true` lets webhooks go to loopback, private, link-local and metadata addresses (`porter dev` defaults it to `true`)";
        WEBHOOK_TIMEOUT: Value("10s"), Public,
            "a delivery attempt gives up after this long";
        WEBHOOK_RETRY_BASE: Value("1s"), Public,
            "first wait of the capped exponential backoff with full jitter between attempts of a failing delivery";
        WEBHOOK_RETRY_CAP: Value("5m"), Public,
            "longest wait between two attempts of a failing delivery";
        WEBHOOK_FAILURE_PAUSE: Value("24h"), Public,
            "a subscription whose every attempt failed this long is paused (resume continues at the first undelivered event)";
        WEBHOOK_LEASE: Value("30s"), Public,
            "how long a worker holds a subscription without renewing: how soon a killed worker's subscriptions are taken over";
        WEBHOOK_SECRET_OVERLAP: Value("24h"), Public,
            "after `rotate-secret`, the old secret signs beside the new one this long, then a worker deletes it from the database";
    }
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
        Self::read(&process_env())
    }

    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            allow_private_networks: env.setting(&WEBHOOK_ALLOW_PRIVATE_NETWORKS, parse_bool)?,
            timeout: env.setting(&WEBHOOK_TIMEOUT, parse_duration)?,
            retry_base: env.setting(&WEBHOOK_RETRY_BASE, parse_duration)?,
            retry_cap: env.setting(&WEBHOOK_RETRY_CAP, parse_duration)?,
            failure_pause: env.setting(&WEBHOOK_FAILURE_PAUSE, parse_duration)?,
            lease: env.setting(&WEBHOOK_LEASE, parse_duration)?,
            secret_overlap: env.setting(&WEBHOOK_SECRET_OVERLAP, parse_duration)?,
        })
    }
}
