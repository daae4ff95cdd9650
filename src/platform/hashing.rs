//! Password hashing and verification with Argon2id on dedicated threads,
//! with a bounded queue.
//!
//! Sign-in verifies on the same threads and under the same limits as sign-up
//! hashes, so a flood of sign-ins is shed with `503` like a flood of
//! sign-ups. A sign-in for a login that names no account still costs one
//! hash ([`PasswordHasher::verify`] with no stored hash), so its timing does
//! not tell it from a wrong password.
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
    domain::{Password, PasswordHash},
    platform::config::{Argon2Cost, HashingConfig},
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
    #[error("password hashing failed: {0:#}")]
    Failed(anyhow::Error),
}

impl HashError {
    /// A failure whose cause is `error`, kept whole, with what was being done.
    fn failed<E>(doing: &'static str) -> impl FnOnce(E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |error| Self::Failed(anyhow::Error::new(error).context(doing))
    }
}

/// What a hashing thread is asked to do.
enum Work {
    Hash(Password),
    /// Check `password` against `stored`; `None` costs one hash and never
    /// matches.
    Verify {
        password: Password,
        stored: Option<PasswordHash>,
    },
}

enum Done {
    Hashed(PasswordHash),
    Verified(Verification),
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub matches: bool,
    /// The stored hash was made with other parameters than today's (or
    /// another Argon2 variant): worth hashing again after a match.
    pub outdated: bool,
}

struct Job {
    work: Work,
    queued_at: Instant,
    reply: oneshot::Sender<Result<Done, HashError>>,
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
                .map_err(HashError::failed("start a hashing thread"))?;
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
        match self.run(Work::Hash(password)).await? {
            Done::Hashed(hash) => Ok(hash),
            Done::Verified(_) => Err(HashError::Failed(anyhow::anyhow!(
                "a hash job was verified"
            ))),
        }
    }

    /// Checks `password` against `stored`. With no stored hash (the login
    /// names no account) it hashes `password` anyway and reports no match,
    /// so both cases cost one hash.
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<PasswordHash>,
    ) -> Result<Verification, HashError> {
        match self.run(Work::Verify { password, stored }).await? {
            Done::Verified(verification) => Ok(verification),
            Done::Hashed(_) => Err(HashError::Failed(anyhow::anyhow!(
                "a verify job was hashed"
            ))),
        }
    }

    async fn run(&self, work: Work) -> Result<Done, HashError> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.queue_limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Overloaded);
        }
        let _in_flight = InFlight(self.in_flight.clone());
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work,
            queued_at: Instant::now(),
            reply,
        };
        self.jobs
            .send(job)
            .map_err(HashError::failed("the hashing threads have stopped"))?;
        answer
            .await
            .map_err(HashError::failed("a hashing thread dropped the job"))?
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
        .map_err(HashError::failed("calibration password"))?;
    hash_with(&params, &password, &mut memory)?;
    let started = Instant::now();
    hash_with(&params, &password, &mut memory)?;
    Ok(started.elapsed())
}

fn params(cost: Argon2Cost) -> Result<Params, HashError> {
    Params::new(cost.memory_kib, cost.iterations, LANES, Some(OUTPUT_BYTES))
        .map_err(HashError::failed("invalid Argon2 parameters"))
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
        if job.reply.is_closed() {
            continue;
        }
        let result = if job.queued_at.elapsed() > max_wait {
            Err(HashError::Overloaded)
        } else {
            let done = match &job.work {
                Work::Hash(password) => hash_with(&params, password, &mut memory).map(Done::Hashed),
                Work::Verify {
                    password,
                    stored: Some(stored),
                } => verify_with(&params, password, stored, &mut memory).map(Done::Verified),
                Work::Verify {
                    password,
                    stored: None,
                } => hash_with(&params, password, &mut memory).map(|_| {
                    Done::Verified(Verification {
                        matches: false,
                        outdated: false,
                    })
                }),
            };
            if done.is_ok() {
                computed.fetch_add(1, Ordering::AcqRel);
            }
            done
        };
        let _ = job.reply.send(result);
    }
}

/// An Argon2id PHC string for `password` with a fresh random salt.
fn hash_with(
    params: &Params,
    password: &Password,
    memory: &mut [Block],
) -> Result<PasswordHash, HashError> {
    let mut salt = [0u8; SALT_BYTES];
    rand::rng().fill(&mut salt);
    let mut output = [0u8; OUTPUT_BYTES];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.expose().as_bytes(), &salt, &mut output, memory)
        .map_err(HashError::failed("hash the password"))?;
    let phc = Phc {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(HashError::failed("encode the hash"))?,
        salt: Some(Salt::new(&salt).map_err(HashError::failed("encode the hash"))?),
        hash: Some(Output::new(&output).map_err(HashError::failed("encode the hash"))?),
    };
    Ok(PasswordHash(phc.to_string()))
}

/// Checks `password` against the PHC string `stored`, with the parameters
/// the string names. Hashes made with today's parameters reuse the thread's
/// buffer; older ones (until they are rehashed) get a buffer of their own.
fn verify_with(
    current: &Params,
    password: &Password,
    stored: &PasswordHash,
    memory: &mut [Block],
) -> Result<Verification, HashError> {
    let phc = Phc::new(&stored.0).map_err(HashError::failed("stored hash"))?;
    let algorithm =
        Algorithm::try_from(phc.algorithm.as_str()).map_err(HashError::failed("stored hash"))?;
    let version = match phc.version {
        Some(v) => Version::try_from(v).map_err(HashError::failed("stored hash"))?,
        None => Version::V0x10,
    };
    let params = Params::try_from(&phc).map_err(HashError::failed("stored hash"))?;
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return Err(HashError::Failed(anyhow::anyhow!(
            "stored hash: no salt or no hash"
        )));
    };
    let mut output = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut own_memory;
    let memory = if params.block_count() == memory.len() {
        memory
    } else {
        own_memory = vec![Block::default(); params.block_count()];
        &mut own_memory
    };
    argon2
        .hash_password_into_with_memory(password.expose().as_bytes(), &salt, &mut output, memory)
        .map_err(HashError::failed("stored hash"))?;
    // `Output`'s equality is constant-time.
    let matches = Output::new(&output).map_err(HashError::failed("stored hash"))? == expected;
    let outdated = algorithm != Algorithm::Argon2id
        || version != Version::V0x13
        || params.m_cost() != current.m_cost()
        || params.t_cost() != current.t_cost()
        || params.p_cost() != current.p_cost();
    Ok(Verification { matches, outdated })
}

#[cfg(test)]
mod tests {
    use argon2::PasswordVerifier as _;

    use super::*;

    fn config(threads: usize, queue_limit: usize) -> HashingConfig {
        HashingConfig {
            concurrency: threads,
            queue_limit,
            argon2: Argon2Cost::OWASP_DEFAULT,
            max_wait: Some(Duration::from_secs(60)),
        }
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

    fn hasher(threads: usize, queue_limit: usize) -> PasswordHasher {
        PasswordHasher::new(config(threads, queue_limit)).expect("threads")
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
    async fn verification_matches_only_the_right_password_and_flags_older_parameters() {
        let hasher = hasher(1, 4);
        let parse = |raw: &str| Password::for_sign_in(raw).expect("not too long");
        let hash = hasher
            .hash(parse("correct horse battery staple"))
            .await
            .expect("hashes");
        let right = hasher
            .verify(parse("correct horse battery staple"), Some(hash.clone()))
            .await
            .expect("verifies");
        assert_eq!(
            right,
            Verification {
                matches: true,
                outdated: false
            }
        );
        let wrong = hasher
            .verify(parse("wrong horse battery staple"), Some(hash))
            .await
            .expect("verifies");
        assert!(!wrong.matches);

        // A hash made with OWASP's m=9216, t=4 pair: still verifies, but is
        // flagged for an upgrade.
        let older = PasswordHasher::new(HashingConfig {
            argon2: Argon2Cost {
                memory_kib: 9216,
                iterations: 4,
            },
            ..config(1, 1)
        })
        .expect("threads")
        .hash(parse("correct horse battery staple"))
        .await
        .expect("hashes");
        let upgraded = hasher
            .verify(parse("correct horse battery staple"), Some(older))
            .await
            .expect("verifies");
        assert_eq!(
            upgraded,
            Verification {
                matches: true,
                outdated: true
            }
        );

        let before = hasher.computed();
        let unknown = hasher
            .verify(parse("correct horse battery staple"), None)
            .await
            .expect("costs a hash");
        assert!(!unknown.matches);
        assert_eq!(
            hasher.computed(),
            before + 1,
            "an unknown login costs one hash"
        );
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
