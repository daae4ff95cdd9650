//! What Porter emails, from where, with which links, how often, and how a
//! failed email is retried.

use std::{str::FromStr, time::Duration};

use lettre::message::Mailbox;
use url::Url;

use super::{
    ConfigError,
    settings::Env,
    values::{
        Limit, SecretUrl, parse_bool, parse_duration, parse_limit, parse_positive, parse_smtp_url,
        parse_url_with_schemes,
    },
};

section! {
    MAIL_SETTINGS = "Email and links" {
        SMTP_URL: Required, UrlPassword,
            "`smtp://host:port`, `smtp://user:pass@host:587?tls=required`, `smtps://…`, or `file:///dir` for a local mailbox of `.eml` files";
        MAIL_FROM: Required, Public,
            "sender mailbox, e.g. `Porter <no-reply@example.com>`";
        PUBLIC_BASE_URL: Required, Public,
            "the only source of the host in emailed links; `https` adds `Strict-Transport-Security` to every answer; `http` is refused for any host but localhost/loopback";
        ALLOW_INSECURE_LINKS: Value("false"), Public,
            "`true` lets `PUBLIC_BASE_URL` be `http` for a public host (links then travel in clear)";
        ACTIVATION_TTL: Value("15m"), Public,
            "lifetime of an activation key (`900`, `900s`, `15m`, `1h`), at most `24h`";
        RESET_TTL: Value("30m"), Public,
            "lifetime of a password reset key";
        EMAIL_MIN_INTERVAL: Value("60s"), Public,
            "at least this long between two emails to one address";
        EMAIL_PER_ADDRESS: Value("5/1h"), Public,
            "at most this many emails (activation links, notices, resends together) to one address per window; further requests are answered alike and recorded (`EmailWithheld`) but not sent";
        EMAIL_RETRY_ATTEMPTS: Value("8"), Public,
            "attempts for a transient email failure (SMTP 4xx, timeouts, Redis or Postgres away), at most 100; a 5xx, or an address the relay cannot carry (non-ASCII without SMTPUTF8), fails at once";
        EMAIL_RETRY_BASE: Value("2s"), Public,
            "first wait of the capped exponential backoff with full jitter between attempts; a job waiting to retry sits in the queue's schedule (1 s resolution), not in a worker slot";
        EMAIL_RETRY_CAP: Value("300s"), Public,
            "longest wait between two attempts";
    }
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

/// How the worker retries a transient email failure: capped exponential
/// backoff with full jitter, within a fixed number of attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl MailConfig {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            smtp_url: env.required(&SMTP_URL, parse_smtp_url)?,
            from: env.required(&MAIL_FROM, parse_mailbox)?,
            public_base_url: check_link_security(
                env.required(&PUBLIC_BASE_URL, parse_public_base_url)?,
                env.setting(&ALLOW_INSECURE_LINKS, parse_bool)?,
            )?,
            activation_ttl: env.setting(&ACTIVATION_TTL, parse_activation_ttl)?,
            reset_ttl: env.setting(&RESET_TTL, parse_duration)?,
            min_interval: env.setting(&EMAIL_MIN_INTERVAL, parse_duration)?,
            per_address: env.setting(&EMAIL_PER_ADDRESS, parse_limit)?,
            retry: RetryPolicy {
                attempts: env.setting(&EMAIL_RETRY_ATTEMPTS, |raw| {
                    parse_positive(raw).map(|n| n.min(100) as u32)
                })?,
                base: env.setting(&EMAIL_RETRY_BASE, parse_duration)?,
                cap: env.setting(&EMAIL_RETRY_CAP, parse_duration)?,
            },
        })
    }
}

pub(super) fn parse_public_base_url(raw: &str) -> Result<Url, String> {
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
            variable: PUBLIC_BASE_URL.name,
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
