//! Password hashing with Argon2id, off the async threads, with a bounded queue.
//!
//! A hash costs about 20 ms of one core and 19 MiB, so hashing runs on
//! blocking threads behind a semaphore sized to the cores. Requests that find
//! the queue full are shed with a typed error (the web layer answers `503`)
//! rather than let every request's latency grow without bound.

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version};
use tokio::sync::Semaphore;

use crate::domain::{Password, PasswordHash};

/// OWASP's recommended Argon2id parameters: 19 MiB, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19_456;
const PASSES: u32 = 2;
const LANES: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the password hashing queue is full")]
    Overloaded,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Hashes running or waiting; compared against `queue_limit` to shed load.
    in_flight: Arc<AtomicUsize>,
    queue_limit: usize,
    /// Hashes computed since start, for metrics and for proving that refused
    /// requests cost none.
    computed: Arc<AtomicU64>,
}

/// Decrements the in-flight count however the hashing future ends, including
/// when the client goes away and the future is dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordHasher {
    /// `concurrency` hashes run at once; up to `queue_limit` may run or wait.
    pub fn new(concurrency: usize, queue_limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            in_flight: Arc::new(AtomicUsize::new(0)),
            queue_limit: queue_limit.max(concurrency),
            computed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Hashes computed since start.
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Acquire)
    }

    /// Hashes running or waiting right now.
    pub fn queue_depth(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub async fn hash(&self, password: Password) -> Result<PasswordHash, HashError> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.queue_limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Overloaded);
        }
        let _in_flight = InFlight(self.in_flight.clone());
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError::Failed(e.to_string()))?;
        let hash = tokio::task::spawn_blocking(move || hash_now(&password))
            .await
            .map_err(|e| HashError::Failed(e.to_string()))??;
        self.computed.fetch_add(1, Ordering::AcqRel);
        Ok(hash)
    }
}

fn hash_now(password: &Password) -> Result<PasswordHash, HashError> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
        .map_err(|e| HashError::Failed(e.to_string()))?;
    let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.expose().as_bytes())
        .map_err(|e| HashError::Failed(e.to_string()))?;
    Ok(PasswordHash(phc.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_with_owasp_parameters() {
        let hasher = PasswordHasher::new(1, 1);
        let password =
            Password::parse("correct horse battery staple", None).expect("valid password");
        let hash = hasher.hash(password).await.expect("hashes");
        assert!(
            hash.0.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.0
        );
        assert_eq!(hasher.queue_depth(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_sheds_instead_of_waiting() {
        let hasher = PasswordHasher::new(1, 1);
        let first = Password::parse("correct horse battery staple", None).expect("valid password");
        let second = Password::parse("another long passphrase", None).expect("valid password");
        let (a, b) = tokio::join!(hasher.hash(first), hasher.hash(second));
        assert!(
            a.is_ok() != b.is_ok(),
            "exactly one of two hashes fits a queue of one"
        );
        assert!(matches!(a.err().or(b.err()), Some(HashError::Overloaded)));
    }
}
