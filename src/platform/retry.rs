//! Porter's own retry policy for email jobs, and the backoff webhook
//! deliveries share.
//!
//! apalis-redis would re-run a failed job up to a hard-coded 25 times on its
//! own schedule, ignoring any configured budget. Porter instead decides here
//! whether a failure is worth repeating and how long to wait (capped
//! exponential backoff, full jitter); the job then schedules its successor
//! that much later and reports every run to apalis as done or aborted, so
//! what happens to a failing email is decided here and recorded in the log.

use std::time::Duration;

use rand::RngExt as _;

/// A failure, whole with its causes, as an attempt error holds it.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Whether a failed attempt is worth repeating. Either way the failure is
/// kept whole: it reads as the error it wraps, causes included.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// Might succeed later: SMTP 4xx, timeouts, Redis or Postgres away.
    #[error(transparent)]
    Transient(Cause),
    /// Will fail the same way every time: SMTP 5xx, a refused address, a
    /// template error, an account or request that does not exist.
    #[error(transparent)]
    Permanent(Cause),
    /// Too soon after the last email to this address; try again after the
    /// pause. Not a failure, so it spends no attempt.
    #[error("the previous email to this address went out too recently")]
    NotYet(Duration),
}

impl AttemptError {
    pub fn transient(error: impl Into<Cause>) -> Self {
        Self::Transient(error.into())
    }

    pub fn permanent(error: impl Into<Cause>) -> Self {
        Self::Permanent(error.into())
    }
}

/// The pause before attempt `attempt + 1`: uniform in
/// `[0, min(cap, base × 2^(attempt-1))]` ("full jitter"), so retries from
/// many jobs that failed together spread out instead of arriving together.
pub fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exponential = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    let ceiling = exponential.min(cap);
    ceiling.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..200 {
            assert!(backoff(base, cap, 1) <= Duration::from_millis(100));
            assert!(backoff(base, cap, 3) <= Duration::from_millis(400));
            assert!(backoff(base, cap, 30) <= Duration::from_secs(1));
        }
        let late: Vec<Duration> = (0..200).map(|_| backoff(base, cap, 8)).collect();
        assert!(
            late.iter().any(|d| *d > Duration::from_millis(500)),
            "jitter spans the range"
        );
    }
}
