//! `porter deliveries`: the email queue's state, its dead letters and why
//! they died, and `retry`, which sends a dead email again.
//!
//! A dead job's reason comes from the `EmailFailed` event the worker
//! recorded for its request (Postgres), falling back to apalis's stored result
//! (Redis) when that event is missing, e.g. because Postgres was away when
//! the job gave up.
//!
//! # Why a retry is a new request
//!
//! Pushing the dead job again would do nothing: apalis ignores a push whose
//! id it already holds, and even a fresh job for the same request would find
//! it recorded as failed, for which the aggregate plans no email
//! ([`crate::domain::Account::email_plan`]) and refuses a second
//! `EmailFailed`. That refusal is what keeps a job that runs twice
//! from doing harm, so it stays. Instead a retry appends an
//! `EmailRetryRequested` event through the normal command path
//! (`commands::Commands::execute`, which pushes its job): a new request of
//! the same kind as the failed one, with its own id, and removes the old id
//! from the dead set. A push that fails (Redis away) is left to the outbox
//! relay, like any request's. The email job handles it like any other request; the
//! log shows who asked for the second attempt and which failure it answers.
//!
//! The new request id is derived from the failed one, so running the same
//! retry twice (say after a crash between the append and the push) appends
//! nothing new and pushes the same job id, which apalis ignores if present.
//! A retry that is no longer needed (the account is active, a newer link went
//! out, or the email was sent after all) appends nothing and only clears the
//! dead entry. A dead address request (a password reset request whose
//! lookup never succeeded) is pushed again under a derived id; the worker
//! looks the address up afresh.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use porter_jobs::{AddressRequest, SendAccountEmail};
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::masking::mask_addresses_in;
use crate::{
    domain::{
        AccountCommand, AccountEvent, DecodeError, DomainError, RetryNotNeeded, RetryPlan,
        text::printable,
    },
    platform::{
        commands::{CommandError, Commands},
        queue::{
            EmailQueue, PushError,
            backend::{self as queue, DeadJob, QueueStats},
        },
        store::{self, EventMetadata, account_stream},
    },
};

/// How many dead letters `porter deliveries` lists by default.
pub const DEFAULT_LIST_LIMIT: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum DeliveriesError {
    #[error("job {0} is not in the dead-letter set")]
    NotDead(String),
    #[error("job {0} has no readable payload in Redis")]
    UnreadableJob(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("event {position} cannot be read: {source}")]
    Undecodable { position: i64, source: DecodeError },
}

/// What the worker recorded when it gave up on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub permanent: bool,
    pub attempts: u32,
    pub recorded_at: DateTime<Utc>,
}

/// A dead job with the failure recorded for its request, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub job: DeadJob,
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deliveries {
    pub stats: QueueStats,
    pub dead: Vec<DeadLetter>,
}

/// The queue's counts and workers, and up to `limit` dead letters.
pub async fn overview(
    pool: &PgPool,
    redis: &mut ConnectionManager,
    namespace: &str,
    limit: usize,
) -> Result<Deliveries, DeliveriesError> {
    let stats = queue::stats(redis, namespace).await?;
    let jobs = queue::dead_jobs(redis, namespace, limit).await?;
    let requests: Vec<SendAccountEmail> = jobs.iter().filter_map(|job| job.job.clone()).collect();
    let mut failures = failures(pool, &requests).await?;
    let dead = jobs
        .into_iter()
        .map(|job| {
            let failure = job
                .job
                .as_ref()
                .and_then(|j| failures.remove(&j.request_id));
            DeadLetter { job, failure }
        })
        .collect();
    Ok(Deliveries { stats, dead })
}

/// The latest recorded failure of each of `requests`, read from their
/// accounts' streams and decoded like every other reader of the log.
pub async fn failures(
    pool: &PgPool,
    requests: &[SendAccountEmail],
) -> Result<HashMap<Uuid, Failure>, DeliveriesError> {
    let wanted: HashSet<Uuid> = requests.iter().map(|job| job.request_id).collect();
    let mut streams: Vec<String> = requests
        .iter()
        .map(|job| account_stream(job.account_id))
        .collect();
    streams.sort();
    streams.dedup();
    let mut failures = HashMap::new();
    if streams.is_empty() {
        return Ok(failures);
    }
    // Each stream comes in version order, so a later failure replaces an
    // earlier one.
    for recorded in store::load_streams(pool, &streams).await? {
        let event = recorded
            .decode()
            .map_err(|source| DeliveriesError::Undecodable {
                position: recorded.position,
                source,
            })?;
        if let AccountEvent::EmailFailed(failed) = event
            && wanted.contains(&failed.request_id)
        {
            failures.insert(
                failed.request_id,
                Failure {
                    reason: failed.reason,
                    permanent: failed.permanent,
                    attempts: failed.attempts,
                    recorded_at: recorded.recorded_at,
                },
            );
        }
    }
    Ok(failures)
}

/// What a retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The email goes out again as the job `job_id` (the new request).
    Redriven { job_id: Uuid },
    /// Nothing left to send; the dead entry was cleared.
    NotNeeded(RetryNotNeeded),
}

impl std::fmt::Display for RetryOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redriven { job_id } => write!(f, "re-driven as job {job_id}"),
            Self::NotNeeded(reason) => write!(f, "not retried: {reason}; dead entry cleared"),
        }
    }
}

/// The request id a retry of `failed_request_id` gets: the same every time,
/// so a repeated retry is idempotent (a version-8 UUID from SHA-256).
pub fn retry_request_id(failed_request_id: Uuid) -> Uuid {
    let digest = Sha256::new()
        .chain_update(b"porter:email-retry:")
        .chain_update(failed_request_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Sends the email of dead job `job_id` again (see the module docs).
#[tracing::instrument(skip_all, fields(job_id))]
pub async fn retry(
    commands: &Commands,
    redis: &mut ConnectionManager,
    namespace: &str,
    job_id: &str,
) -> Result<RetryOutcome, DeliveriesError> {
    let dead = queue::dead_job(redis, namespace, job_id)
        .await?
        .ok_or_else(|| DeliveriesError::NotDead(job_id.to_owned()))?;
    if let Some(request) = dead.address_request {
        return retry_address_request(commands.email_queue(), redis, namespace, job_id, request)
            .await;
    }
    let job = dead
        .job
        .ok_or_else(|| DeliveriesError::UnreadableJob(job_id.to_owned()))?;
    let request_id = retry_request_id(job.request_id);
    let command = AccountCommand::RetryEmail {
        failed_request_id: job.request_id,
        request_id,
    };
    let metadata = EventMetadata {
        causation_id: Some(job.request_id),
        ..EventMetadata::default()
    };
    let executed = commands.execute(job.account_id, command, &metadata).await?;
    let outcome = match executed.account.retry_plan(job.request_id, request_id)? {
        RetryPlan::NotNeeded(reason) => RetryOutcome::NotNeeded(reason),
        RetryPlan::Retry | RetryPlan::AlreadyRequested => {
            if executed.events.is_empty() {
                // Recorded by an earlier run, whose push may have been lost
                // with Redis; the command pushed a request it just recorded.
                commands.push_email(&executed.account, request_id).await;
            }
            RetryOutcome::Redriven { job_id: request_id }
        }
    };
    // Only once the request is recorded: a crash before this leaves the old
    // entry for the operator to retry again, which is harmless.
    queue::forget_dead(redis, namespace, job_id).await?;
    tracing::info!(%outcome, "dead email job retried");
    Ok(outcome)
}

/// Pushes a dead address request again under a request id derived from the
/// dead one (so a second retry pushes the same job, which Redis ignores),
/// then clears the dead entry. The worker looks the address up afresh.
async fn retry_address_request(
    email_queue: &EmailQueue,
    redis: &mut ConnectionManager,
    namespace: &str,
    job_id: &str,
    request: AddressRequest,
) -> Result<RetryOutcome, DeliveriesError> {
    let request_id = retry_request_id(request.request_id);
    let again = AddressRequest {
        request_id,
        failed_attempts: 0,
        ..request
    };
    email_queue.push_address_request(again, None).await?;
    queue::forget_dead(redis, namespace, job_id).await?;
    let outcome = RetryOutcome::Redriven { job_id: request_id };
    tracing::info!(%outcome, "dead address request retried");
    Ok(outcome)
}

/// Retries every dead job; one failing does not stop the others.
pub async fn retry_all(
    commands: &Commands,
    redis: &mut ConnectionManager,
    namespace: &str,
) -> Result<Vec<(String, Result<RetryOutcome, DeliveriesError>)>, DeliveriesError> {
    let ids = queue::dead_job_ids(redis, namespace).await?;
    let mut outcomes = Vec::with_capacity(ids.len());
    for id in ids {
        let outcome = retry(commands, redis, namespace, &id).await;
        outcomes.push((id, outcome));
    }
    Ok(outcomes)
}

/// The text `porter deliveries` prints. Addresses in failure reasons are
/// masked; `porter events --reveal` shows them.
pub fn render(deliveries: &Deliveries) -> String {
    use std::fmt::Write as _;
    let mut out = render_queue(&deliveries.stats);
    let stats = &deliveries.stats;
    let listed = deliveries.dead.len() as u64;
    let _ = if listed < stats.dead {
        writeln!(out, "dead letters: {} (first {listed})", stats.dead)
    } else {
        writeln!(out, "dead letters: {}", stats.dead)
    };
    for letter in &deliveries.dead {
        let (account, request) = match (&letter.job.job, &letter.job.address_request) {
            (Some(job), _) => (job.account_id.to_string(), job.request_id.to_string()),
            (None, Some(request)) => (
                format!("(address request, {:?})", request.action),
                request.request_id.to_string(),
            ),
            (None, None) => ("?".into(), "?".into()),
        };
        let _ = writeln!(
            out,
            "  job {}  account {account}  request {request}",
            letter.job.job_id
        );
        let line = match &letter.failure {
            Some(failure) => format!(
                "{} after {} attempt{} at {}: {}",
                if failure.permanent {
                    "failed permanently"
                } else {
                    "gave up"
                },
                failure.attempts,
                if failure.attempts == 1 { "" } else { "s" },
                failure.recorded_at.format("%Y-%m-%d %H:%M:%SZ"),
                failure.reason
            ),
            None => format!(
                "no failure recorded in the log; queue says {} after {} attempt(s): {}",
                letter.job.status.as_deref().unwrap_or("?"),
                letter.job.attempts.unwrap_or(0),
                letter.job.result.as_deref().unwrap_or("?")
            ),
        };
        let _ = writeln!(out, "    {}", printable(&mask_addresses_in(&line)));
    }
    if stats.dead > 0 {
        let _ = writeln!(
            out,
            "retry one with `porter deliveries retry <job id>`, all with `porter deliveries retry --all`"
        );
    }
    out
}

/// The queue counts and workers, shared with `porter status`.
pub fn render_queue(stats: &QueueStats) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "queue {}: {} active, {} scheduled, {} running, {} dead, {} done",
        stats.queue, stats.active, stats.scheduled, stats.running, stats.dead, stats.done
    );
    let live = stats.workers.iter().filter(|w| w.live).count();
    let _ = writeln!(
        out,
        "workers: {live} live, {} stale",
        stats.workers.len() - live
    );
    for worker in &stats.workers {
        let _ = writeln!(
            out,
            "  {}  {}  seen {} s ago  running {}",
            printable(&worker.name),
            if worker.live { "live " } else { "stale" },
            worker.seen_secs_ago,
            worker.running
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::text::test_support::{HOSTILE, assert_printable};

    #[test]
    fn retry_ids_are_stable_and_distinct() {
        let failed = Uuid::from_u128(7);
        assert_eq!(retry_request_id(failed), retry_request_id(failed));
        assert_ne!(retry_request_id(failed), failed);
        assert_ne!(
            retry_request_id(retry_request_id(failed)),
            retry_request_id(failed)
        );
        assert_eq!(retry_request_id(failed).get_version_num(), 8);
    }

    #[test]
    fn dead_letters_show_ids_reason_and_attempts_with_addresses_masked() {
        let job = SendAccountEmail::new(Uuid::from_u128(1), Uuid::from_u128(2));
        let deliveries = Deliveries {
            stats: QueueStats {
                queue: "porter:queue:email".into(),
                dead: 1,
                done: 3,
                ..QueueStats::default()
            },
            dead: vec![DeadLetter {
                job: DeadJob {
                    job_id: job.job_id(),
                    job: Some(job),
                    address_request: None,
                    attempts: Some(1),
                    status: Some("Killed".into()),
                    result: None,
                },
                failure: Some(Failure {
                    reason: "550 <bob@example.com> refused".into(),
                    permanent: true,
                    attempts: 1,
                    recorded_at: DateTime::from_timestamp(1_800_000_000, 0).expect("valid"),
                }),
            }],
        };
        let text = render(&deliveries);
        assert!(
            text.contains(
                "queue porter:queue:email: 0 active, 0 scheduled, 0 running, 1 dead, 3 done"
            ),
            "{text}"
        );
        assert!(
            text.contains("job 00000000-0000-0000-0000-000000000002  account 00000000-0000-0000-0000-000000000001"),
            "{text}"
        );
        assert!(
            text.contains("failed permanently after 1 attempt at 2027-01-15 08:00:00Z: 550 <b***@example.com> refused"),
            "{text}"
        );

        let mut hostile = deliveries;
        if let Some(failure) = &mut hostile.dead[0].failure {
            failure.reason = HOSTILE.into();
        }
        assert_printable(&render(&hostile));
    }
}
