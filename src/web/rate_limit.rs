//! Request budgets kept in Redis, so every web process shares them.
//!
//! Each budget is a sliding log: a sorted set of the admitted requests'
//! timestamps in the window, trimmed and counted atomically in one script that
//! reads Redis's clock (web processes' clocks may disagree). A refused request
//! is not logged, so a client that keeps hammering is admitted again as soon as
//! its window has room. When Redis is unreachable the limiter lets requests
//! through: sign-ups must keep working, and the event log, not Redis, is what
//! must never lose them.

use std::time::Duration;

use redis::{Script, aio::ConnectionManager};
use sha2::{Digest, Sha256};

use super::response::ApiError;
use crate::config::Limit;

/// Trims the log, then either refuses with the wait until the oldest entry
/// leaves the window, or (when ARGV[3] is "1") records this request.
const SLIDING_LOG: &str = r"
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local window_us = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_us - window_us)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + window_us - now_us
end
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now_us, now_us .. '-' .. math.random(1000000000))
  redis.call('PEXPIRE', KEYS[1], math.ceil(window_us / 1000))
end
return 0
";

/// What a budget is for; part of the Redis key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    SignUpPerIp,
    ResendPerIp,
    ResendPerEmail,
    /// Failed uses of an emailed link (activation or password reset).
    FailedActivationPerIp,
    /// Wrong passwords at sign-in or password change, per account (per
    /// login when it names no account).
    FailedSignInPerAccount,
    FailedSignInPerIp,
    ResetPerIp,
    ResetPerEmail,
}

impl Budget {
    fn name(self) -> &'static str {
        match self {
            Self::SignUpPerIp => "sign-up-ip",
            Self::ResendPerIp => "resend-ip",
            Self::ResendPerEmail => "resend-email",
            Self::FailedActivationPerIp => "failed-activation-ip",
            Self::FailedSignInPerAccount => "failed-sign-in-account",
            Self::FailedSignInPerIp => "failed-sign-in-ip",
            Self::ResetPerIp => "reset-ip",
            Self::ResetPerEmail => "reset-email",
        }
    }
}

#[derive(Clone)]
pub struct RateLimiter {
    redis: ConnectionManager,
    namespace: String,
    script: Script,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(redis: ConnectionManager, namespace: &str) -> Self {
        Self {
            redis,
            namespace: namespace.to_owned(),
            script: Script::new(SLIDING_LOG),
        }
    }

    /// Admits one request of `subject` against `budget`, or refuses it with
    /// `429` and how long to wait.
    pub async fn admit(&self, budget: Budget, limit: Limit, subject: &str) -> Result<(), ApiError> {
        self.run(budget, limit, subject, true).await
    }

    /// Whether `subject` has spent `budget`, without spending any of it;
    /// for budgets that count failures, recorded with [`Self::record`].
    pub async fn check(&self, budget: Budget, limit: Limit, subject: &str) -> Result<(), ApiError> {
        self.run(budget, limit, subject, false).await
    }

    /// Spends one unit of `budget` (a failure happened).
    pub async fn record(&self, budget: Budget, limit: Limit, subject: &str) {
        // Over budget already: nothing more to record.
        let _ = self.run(budget, limit, subject, true).await;
    }

    async fn run(
        &self,
        budget: Budget,
        limit: Limit,
        subject: &str,
        record: bool,
    ) -> Result<(), ApiError> {
        let key = format!(
            "{}:ratelimit:{}:{}",
            self.namespace,
            budget.name(),
            subject_key(subject)
        );
        let result: Result<i64, _> = self
            .script
            .key(key)
            .arg(u64::try_from(limit.window.as_micros()).unwrap_or(u64::MAX))
            .arg(limit.max)
            .arg(if record { "1" } else { "0" })
            .invoke_async(&mut self.redis.clone())
            .await;
        match result {
            Ok(0) => Ok(()),
            Ok(wait_us) => {
                let retry_after = Duration::from_micros(wait_us.unsigned_abs());
                tracing::warn!(budget = budget.name(), "rate limit exceeded");
                Err(ApiError::RateLimited {
                    retry_after_secs: retry_after.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
            Err(error) => {
                tracing::warn!(budget = budget.name(), %error, "rate limiter unavailable; admitting");
                Ok(())
            }
        }
    }
}

/// Subjects (addresses, IPs) are hashed so Redis holds no personal data in
/// clear.
fn subject_key(subject: &str) -> String {
    hex::encode(&Sha256::digest(subject.as_bytes())[..12])
}
