//! The worker process: how many emails at once, and how long registrations,
//! jobs and dead letters are kept.

use std::time::Duration;

use super::{
    ConfigError,
    settings::Env,
    values::{parse_duration, parse_positive},
};

section! {
    WORKER_SETTINGS = "Worker process" {
        WORKER_CONCURRENCY: Value("16"), Public,
            "email jobs one worker process runs at once";
        REGISTRATION_TTL: Value("72h"), Public,
            "a registration not confirmed by then expires and releases its username and address";
        SWEEP_INTERVAL: Value("60s"), Public,
            "how often a worker looks for expired registrations and stranded email requests";
        STRANDED_REQUEST_AGE: Value("5m"), Public,
            "an email request still outstanding after this long has its job pushed again (a no-op when Redis still has it)";
        JOB_RETENTION: Value("24h"), Public,
            "finished jobs' data is purged from Redis after this long";
        DEAD_LETTER_RETENTION: Value("30d"), Public,
            "dead letters (emails given up) are purged from Redis after this long; the failure stays in the event log";
    }
}
/// The worker process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Email jobs one worker process runs at once.
    pub concurrency: usize,
    /// Finished jobs' data is deleted from Redis after this long.
    pub job_retention: Duration,
    /// A registration not confirmed within this long expires and releases
    /// its username and address.
    pub registration_ttl: Duration,
    /// How often the sweeps look for expired registrations and for email
    /// requests whose job Redis lost.
    pub sweep_interval: Duration,
    /// An email request still outstanding after this long has its job
    /// pushed again (a no-op when the job is still in Redis).
    pub stranded_after: Duration,
    /// Dead letters (jobs given up) are deleted from Redis after this long;
    /// the failure stays in the event log.
    pub dead_letter_retention: Duration,
}

impl WorkerConfig {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            concurrency: env.setting(&WORKER_CONCURRENCY, parse_positive)?,
            job_retention: env.setting(&JOB_RETENTION, parse_duration)?,
            registration_ttl: env.setting(&REGISTRATION_TTL, parse_duration)?,
            sweep_interval: env.setting(&SWEEP_INTERVAL, parse_duration)?,
            stranded_after: env.setting(&STRANDED_REQUEST_AGE, parse_duration)?,
            dead_letter_retention: env.setting(&DEAD_LETTER_RETENTION, parse_duration)?,
        })
    }
}
