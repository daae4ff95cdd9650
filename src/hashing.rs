//! Password hashing and verification with Argon2id on dedicated threads, with
//! a bounded queue.
//!
//! A hash costs about 20 ms of one core and 19 MiB of memory. Each of
//! `HASH_CONCURRENCY` threads owns one Argon2 memory buffer and reuses it for
//! every hash: allocating 19 MiB per hash on tokio's changing blocking threads
//! left glibc holding hundreds of MiB (measured: 800 MiB peak RSS under load,
//! against about 50 MiB now). Requests that find the queue full, or that
//! waited past `HASH_MAX_WAIT` for a thread, are shed with a typed error
//! (the web layer answers `503`) instead of letting latency grow without
//! bound; a request whose client went away is not hashed at all.
//!
//! The wait must fit the machine: a fixed default that suits a fast, idle
//! machine sheds most of a burst on a slow or busy one. Unless
//! `HASH_MAX_WAIT` is set, the hasher times Argon2 at start and allows a
//! full queue twice the time it takes to drain ([`default_max_wait`]).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, ParamsString, PasswordHash as Phc, Salt},
};
use rand::RngExt as _;
use tokio::sync::oneshot;

use crate::{
    config::{Argon2Cost, HashingConfig},
    domain::{Password, PasswordHash},
};

/// One lane: the threads, not the lanes, give parallelism.
const LANES: u32 = 1;
/// How much longer than a full queue's drain time the default wait is:
/// other work on the machine (builds, Postgres, the worker) can halve the
/// hash rate measured at start.
const HEADROOM: u32 = 2;
/// The default wait is never shorter than this, however fast the machine.
const MIN_DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1);
const SALT_BYTES: usize = 16;
const OUTPUT_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the password hashing queue is full")]
    Overloaded,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// What a hashing thread is asked to do; both cost one Argon2 run.
enum Work {
    Hash {
        password: Password,
        reply: oneshot::Sender<Result<PasswordHash, HashError>>,
    },
    /// Check a password as typed (no policy: it was checked when set)
    /// against a stored hash.
    Verify {
        password: String,
        hash: PasswordHash,
        reply: oneshot::Sender<Result<bool, HashError>>,
    },
}

impl Work {
    fn client_gone(&self) -> bool {
        match self {
            Self::Hash { reply, .. } => reply.is_closed(),
            Self::Verify { reply, .. } => reply.is_closed(),
        }
    }
}

struct Job {
    work: Work,
    queued_at: Instant,
}

#[derive(Debug, Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
    /// Hashes running or waiting; compared against `queue_limit` to shed load.
    in_flight: Arc<AtomicUsize>,
    queue_limit: usize,
    /// Hashes computed since start, for metrics and for proving that refused
    /// requests cost none.
    computed: Arc<AtomicU64>,
    /// How long a request may wait for a thread before it is shed.
    max_wait: Duration,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("queued_at", &self.queued_at)
            .finish_non_exhaustive()
    }
}

/// Decrements the in-flight count however the request ends, including when
/// the client goes away and the future is dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordHasher {
    /// Starts `threads` hashing threads; up to `queue_limit` hashes may run or
    /// wait. The threads end when the last clone of the hasher is dropped.
    /// Without a configured wait, it first times two hashes on the calling
    /// thread (about 50 ms at OWASP's cost) to derive one.
    pub fn new(config: HashingConfig) -> Result<Self, HashError> {
        let HashingConfig {
            concurrency: threads,
            queue_limit,
            argon2: cost,
            max_wait,
        } = config;
        let queue_limit = queue_limit.max(threads);
        let max_wait = match max_wait {
            Some(max_wait) => max_wait,
            None => {
                let one_hash = time_one_hash(cost)?;
                let max_wait = default_max_wait(queue_limit, threads, one_hash);
                tracing::info!(
                    one_hash_ms = one_hash.as_millis() as u64,
                    max_wait_ms = max_wait.as_millis() as u64,
                    "HASH_MAX_WAIT unset: derived from the measured hash time"
                );
                max_wait
            }
        };
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let computed = Arc::new(AtomicU64::new(0));
        for n in 0..threads.max(1) {
            let (queue, computed) = (queue.clone(), computed.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || hash_loop(&queue, &computed, cost, max_wait))
                .map_err(|e| HashError::Failed(format!("start a hashing thread: {e}")))?;
        }
        Ok(Self {
            jobs,
            in_flight: Arc::new(AtomicUsize::new(0)),
            queue_limit,
            computed,
            max_wait,
        })
    }

    /// How long a request may wait for a hashing thread before it is shed.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
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
        let (reply, answer) = oneshot::channel();
        self.run(Work::Hash { password, reply }, answer).await
    }

    /// Whether `password` matches `hash`, on the same threads and under the
    /// same queue limit as hashing: a verification costs what a hash costs.
    pub async fn verify(&self, password: String, hash: PasswordHash) -> Result<bool, HashError> {
        let (reply, answer) = oneshot::channel();
        self.run(
            Work::Verify {
                password,
                hash,
                reply,
            },
            answer,
        )
        .await
    }

    async fn run<T>(
        &self,
        work: Work,
        answer: oneshot::Receiver<Result<T, HashError>>,
    ) -> Result<T, HashError> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.queue_limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Overloaded);
        }
        let _in_flight = InFlight(self.in_flight.clone());
        let job = Job {
            work,
            queued_at: Instant::now(),
        };
        self.jobs
            .send(job)
            .map_err(|_| HashError::Failed("the hashing threads have stopped".into()))?;
        answer
            .await
            .map_err(|_| HashError::Failed("a hashing thread dropped the job".into()))?
    }
}

/// The wait for a hashing thread when `HASH_MAX_WAIT` is unset: the time a
/// full queue of `queue_limit` takes to drain on `threads` threads at
/// `one_hash` each, times [`HEADROOM`], and at least
/// [`MIN_DEFAULT_MAX_WAIT`]. So a burst of `HASH_QUEUE_LIMIT` sign-ups is
/// accepted whole even while other work halves the hash rate. (2 cores at
/// 22 ms a hash: 32 rounds × 22 ms × 2 ≈ 1.4 s.)
pub fn default_max_wait(queue_limit: usize, threads: usize, one_hash: Duration) -> Duration {
    let rounds = u32::try_from(queue_limit.div_ceil(threads.max(1))).unwrap_or(u32::MAX);
    one_hash
        .saturating_mul(rounds)
        .saturating_mul(HEADROOM)
        .max(MIN_DEFAULT_MAX_WAIT)
}

/// How long one hash at `cost` takes on this thread: the second of two, so
/// that first-touch page faults on the buffer are not counted.
fn time_one_hash(cost: Argon2Cost) -> Result<Duration, HashError> {
    let params = params(cost)?;
    let mut memory = vec![Block::default(); params.block_count()];
    let password = Password::parse("calibration passphrase, never stored", None)
        .map_err(|e| HashError::Failed(format!("calibration password: {e}")))?;
    hash_with(&params, &password, &mut memory)?;
    let started = Instant::now();
    hash_with(&params, &password, &mut memory)?;
    Ok(started.elapsed())
}

fn params(cost: Argon2Cost) -> Result<Params, HashError> {
    Params::new(cost.memory_kib, cost.iterations, LANES, Some(OUTPUT_BYTES))
        .map_err(|e| HashError::Failed(format!("invalid Argon2 parameters: {e}")))
}

/// One hashing thread: takes jobs until the hasher is dropped, reusing one
/// Argon2 memory buffer.
fn hash_loop(
    queue: &Mutex<mpsc::Receiver<Job>>,
    computed: &AtomicU64,
    cost: Argon2Cost,
    max_wait: Duration,
) {
    let params = match params(cost) {
        Ok(params) => params,
        Err(error) => {
            tracing::error!(%error, "hashing thread stopped");
            return;
        }
    };
    let mut memory = vec![Block::default(); params.block_count()];
    loop {
        let job = match queue.lock().map(|queue| queue.recv()) {
            Ok(Ok(job)) => job,
            // The hasher was dropped (or a thread panicked holding the lock).
            Ok(Err(_)) | Err(_) => return,
        };
        if job.work.client_gone() {
            continue;
        }
        let overloaded = job.queued_at.elapsed() > max_wait;
        match job.work {
            Work::Hash { password, reply } => {
                let result = if overloaded {
                    Err(HashError::Overloaded)
                } else {
                    hash_with(&params, &password, &mut memory)
                };
                if result.is_ok() {
                    computed.fetch_add(1, Ordering::AcqRel);
                }
                let _ = reply.send(result);
            }
            Work::Verify {
                password,
                hash,
                reply,
            } => {
                let result = if overloaded {
                    Err(HashError::Overloaded)
                } else {
                    verify_with(&password, &hash, &mut memory)
                };
                if result.is_ok() {
                    computed.fetch_add(1, Ordering::AcqRel);
                }
                let _ = reply.send(result);
            }
        }
    }
}

/// Recomputes `hash` for `password` with the hash's own parameters and salt,
/// in the thread's buffer (grown once if the hash asks for more memory than
/// the current cost), and compares in constant time.
fn verify_with(
    password: &str,
    hash: &PasswordHash,
    memory: &mut Vec<Block>,
) -> Result<bool, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let phc = Phc::new(&hash.0).map_err(|e| failed(&e))?;
    let params = Params::try_from(&phc).map_err(|e| failed(&e))?;
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return Err(HashError::Failed(
            "the stored hash has no salt or output".into(),
        ));
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut output = vec![0u8; expected.len()];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt.as_ref(),
            &mut output,
            &mut memory[..params.block_count()],
        )
        .map_err(|e| failed(&e))?;
    Ok(Output::new(&output).map_err(|e| failed(&e))? == expected)
}

/// An Argon2id PHC string for `password` with a fresh random salt.
fn hash_with(
    params: &Params,
    password: &Password,
    memory: &mut [Block],
) -> Result<PasswordHash, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let mut salt = [0u8; SALT_BYTES];
    rand::rng().fill(&mut salt);
    let mut output = [0u8; OUTPUT_BYTES];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.expose().as_bytes(), &salt, &mut output, memory)
        .map_err(|e| failed(&e))?;
    let phc = Phc {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
        hash: Some(Output::new(&output).map_err(|e| failed(&e))?),
    };
    Ok(PasswordHash(phc.to_string()))
}

#[cfg(test)]
mod tests {
    use argon2::PasswordVerifier as _;

    use super::*;

    fn hasher(threads: usize, queue_limit: usize) -> PasswordHasher {
        PasswordHasher::new(HashingConfig {
            concurrency: threads,
            queue_limit,
            argon2: Argon2Cost::OWASP_DEFAULT,
            max_wait: Some(Duration::from_secs(60)),
        })
        .expect("threads")
    }

    #[test]
    fn the_default_wait_lets_a_full_queue_drain_twice_over() {
        let ms = Duration::from_millis;
        assert_eq!(default_max_wait(64, 2, ms(22)), ms(32 * 22 * 2));
        assert_eq!(default_max_wait(65, 2, ms(22)), ms(33 * 22 * 2));
        assert_eq!(default_max_wait(32, 1, ms(100)), ms(6400));
        assert_eq!(
            default_max_wait(4, 2, ms(22)),
            MIN_DEFAULT_MAX_WAIT,
            "never under the floor"
        );
    }

    #[tokio::test]
    async fn without_a_configured_wait_the_hasher_measures_one() {
        let hasher = PasswordHasher::new(HashingConfig {
            concurrency: 1,
            queue_limit: 1000,
            argon2: Argon2Cost::OWASP_DEFAULT,
            max_wait: None,
        })
        .expect("threads");
        // 1000 rounds × 2 of a hash that touches 2 × 19 MiB, which no
        // machine does in under half a millisecond: above the floor.
        assert!(
            hasher.max_wait() > MIN_DEFAULT_MAX_WAIT,
            "{:?}",
            hasher.max_wait()
        );
        let password = Password::parse("correct horse battery staple", None).expect("valid");
        assert!(hasher.hash(password).await.is_ok());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let hasher = hasher(1, 1);
        let password =
            Password::parse("correct horse battery staple", None).expect("valid password");
        let hash = hasher.hash(password).await.expect("hashes");
        assert!(
            hash.0.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.0
        );
        let argon2 = Argon2::default();
        assert!(
            argon2
                .verify_password(b"correct horse battery staple", hash.0.as_str())
                .is_ok()
        );
        assert!(
            argon2
                .verify_password(b"wrong horse battery staple", hash.0.as_str())
                .is_err()
        );
        assert_eq!(hasher.queue_depth(), 0);
        assert_eq!(hasher.computed(), 1);
    }

    #[tokio::test]
    async fn verification_accepts_the_password_and_nothing_else() {
        let hasher = hasher(1, 1);
        let password =
            Password::parse("correct horse battery staple", None).expect("valid password");
        let hash = hasher.hash(password).await.expect("hashes");
        let verify = |typed: &str| hasher.verify(typed.into(), hash.clone());
        assert!(
            verify("correct horse battery staple")
                .await
                .expect("verifies")
        );
        assert!(
            !verify("correct horse battery stapl")
                .await
                .expect("verifies")
        );
        assert!(!verify("").await.expect("verifies"));
        // A hash made with a larger memory cost still verifies in this
        // thread's (smaller) buffer after it grows.
        let bigger = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(47104, 1, 1, Some(32)).expect("params"),
        );
        let stored = argon2::PasswordHasher::hash_password(&bigger, b"a long old passphrase")
            .expect("hashes")
            .to_string();
        assert!(
            hasher
                .verify("a long old passphrase".into(), PasswordHash(stored))
                .await
                .expect("verifies")
        );
        let garbage = hasher
            .verify("x".into(), PasswordHash("not a phc string".into()))
            .await;
        assert!(matches!(garbage, Err(HashError::Failed(_))));
    }

    #[tokio::test]
    async fn salts_differ_between_hashes_of_one_password() {
        let hasher = hasher(2, 2);
        let parse =
            || Password::parse("correct horse battery staple", None).expect("valid password");
        let (a, b) = tokio::join!(hasher.hash(parse()), hasher.hash(parse()));
        assert_ne!(a.expect("hashes").0, b.expect("hashes").0);
    }

    #[tokio::test]
    async fn a_full_queue_sheds_instead_of_waiting() {
        let hasher = hasher(1, 1);
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
