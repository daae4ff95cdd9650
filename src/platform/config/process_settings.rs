//! Settings of every process alike: the secret its keys derive from, its
//! metrics listener and its logs.

use std::str::FromStr;

use hmac::{Hmac, KeyInit as _, Mac as _};
use rand::{TryRng as _, rngs::SysRng};
use sha2::Sha256;

use super::{
    ConfigError,
    settings::{Env, process_env},
};

section! {
    PROCESS_SETTINGS = "Every process" {
        SECRET_KEY: Required, Whole,
            "at least 32 characters (`openssl rand -hex 32`), the same in every web and worker process; each use derives its own key from it. `porter dev` makes one per run when unset, `scripts/dev` keeps one in `var/secret-key`";
        METRICS_PORT: None, Public,
            "`porter web`, `porter worker` and `porter dev` serve `GET /metrics` on this port (and nothing else there); shared gauges are read from Postgres and Redis at most once per 5 s however often it is scraped";
        METRICS_BIND_ADDRESS: Value("127.0.0.1"), Public,
            "the interface `METRICS_PORT` listens on; set `0.0.0.0` (or the scraper's network's address) when Prometheus scrapes from another host";
        LOG_FORMAT: Value("text"), Public,
            "`text` or `json` (one line per request, never a password, key or link)";
        RUST_LOG: Value("info"), Public,
            "log filter (`warn`, `porter=debug,info`, …); a filter that does not parse is `info`";
    }
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

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Reads `LOG_FORMAT` alone, which telemetry needs before the rest is loaded.
pub fn log_format_from_env() -> Result<LogFormat, ConfigError> {
    read_log_format(&process_env())
}

pub(super) fn read_log_format(env: &Env<'_>) -> Result<LogFormat, ConfigError> {
    env.setting(&LOG_FORMAT, parse_log_format)
}

/// Reads `RUST_LOG` alone, for telemetry, like [`log_format_from_env`].
pub fn log_filter_from_env() -> Result<String, ConfigError> {
    read_log_filter(&process_env())
}

pub(super) fn read_log_filter(env: &Env<'_>) -> Result<String, ConfigError> {
    env.setting(&RUST_LOG, |raw| Ok(raw.to_owned()))
}

fn parse_log_format(raw: &str) -> Result<LogFormat, String> {
    match raw {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("{other:?} is not one of text, json")),
    }
}
